"""Facts read from the live database for the lint, `lockstep analyze` and the operator.

Read-only: the catalog (one read-only transaction), plus the sessions that would block a
migration (long transactions, sessions idle in a transaction). Nothing is written and no table
lock beyond catalog reads is taken.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lockstep.lint.checks.base import FileState
from lockstep.lint.model import LintConfig, LintResult, LiveTable, LiveTables
from lockstep.postgres import Connection

from .catalog import Catalog, introspect, split_name, unquote

if TYPE_CHECKING:
    from lockstep.migrations.source import Migration

LONG_TRANSACTION_SECONDS = 30.0


@dataclass(frozen=True)
class Session:
    """A session that holds a transaction open (it would block a migration's locks)."""

    pid: int
    application: str
    state: str
    seconds: float
    """How long its transaction has been open."""
    query: str
    """The start of its current (or last) statement."""
    since: datetime


@dataclass(frozen=True)
class LiveFacts:
    catalog: Catalog
    sessions: tuple[Session, ...]

    @property
    def version(self) -> tuple[int, int]:
        return self.catalog.version

    def tables(self) -> LiveTables:
        """Sizes for the lint's severity scaling."""
        return LiveTables(
            tuple(
                LiveTable(
                    _bare(table.name), unquote_name(table.name), table.rows, table.table_bytes
                )
                for table in self.catalog.tables
            )
        )

    def file_state(self) -> FileState:
        """What the catalog proves, in the lint's terms: column types, columns with a CHECK,
        and columns that are NOT NULL or have a validated CHECK (c IS NOT NULL)."""
        from lockstep.lint.facts import parse_type
        from lockstep.lint.lexer import tokenize
        from lockstep.lint.tokens import TokenView

        state = FileState()
        for table in self.catalog.tables:
            bare = _bare(table.name)
            for column in table.columns:
                key = (bare, unquote(column.name))
                view = TokenView(tokenize(column.type), column.type, 0)
                parsed = parse_type(view, 0, view.n)
                if parsed is not None:
                    state.column_types[key] = parsed
                if column.not_null:
                    state.proven_not_null.add(key)
            for constraint in table.constraints:
                if constraint.kind != "check":
                    continue
                for checked in constraint.columns:
                    state.checked_columns.add((bare, unquote(checked)))
                not_null = constraint.not_null_column
                if not_null is not None:
                    state.not_null_checks[(bare, unquote(constraint.name))] = unquote(not_null)
                    if constraint.validated:
                        state.proven_not_null.add((bare, unquote(not_null)))
        return state


def unquote_name(qualified: str) -> str:
    schema, name = split_name(qualified)
    return f"{unquote(schema)}.{unquote(name)}" if schema else unquote(name)


def _bare(qualified: str) -> str:
    return unquote(split_name(qualified)[1])


def read_live(conn: Connection, long_seconds: float = LONG_TRANSACTION_SECONDS) -> LiveFacts:
    return LiveFacts(introspect(conn), sessions(conn, long_seconds))


def sessions(
    conn: Connection, long_seconds: float = LONG_TRANSACTION_SECONDS
) -> tuple[Session, ...]:
    """Other sessions of this database whose transaction is older than `long_seconds`, or
    that sit idle in a transaction: a migration's lock waits behind them."""
    rows = conn.fetch_all(
        "SELECT pid, coalesce(application_name, ''), coalesce(state, ''), "
        "extract(epoch FROM now() - xact_start)::float8, left(coalesce(query, ''), 120), "
        "xact_start FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND xact_start IS NOT NULL AND backend_type = 'client backend' "
        "AND (state LIKE 'idle in transaction%%' OR now() - xact_start > "
        "make_interval(secs => %s)) ORDER BY xact_start",
        (long_seconds,),
    )
    return tuple(Session(*row) for row in rows)


# ------------------------------------------------------------------ the operator's live lint

# What the lint's live facts depend on, coarsely: the server version; each table and index
# (a new, dropped or rewritten one changes its relfilenode) with its size to a power of two
# (a duration estimate changes little within one); each constraint and whether it is
# validated; each column's type and NOT NULL. One query over the catalog, no table is read
# (sent without parameters: `%` is LIKE's own).
_FINGERPRINT = (
    "SELECT md5(concat_ws('|', current_setting('server_version_num'), "
    "(SELECT string_agg(concat_ws(':', c.oid, c.relkind, c.relfilenode, "
    "floor(log(2, greatest(pg_relation_size(c.oid), 8192)::numeric))), ',' ORDER BY c.oid) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'i') AND n.nspname NOT LIKE 'pg\\_%' "
    "AND n.nspname <> 'information_schema'), "
    "(SELECT string_agg(concat_ws(':', o.oid, o.convalidated), ',' ORDER BY o.oid) "
    "FROM pg_constraint o JOIN pg_namespace n ON n.oid = o.connamespace "
    "WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'), "
    "(SELECT string_agg(concat_ws(':', a.attrelid, a.attnum, a.atttypid, a.atttypmod, "
    "a.attnotnull, a.attisdropped), ',' ORDER BY a.attrelid, a.attnum) "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE a.attnum > 0 "
    "AND c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\\_%' "
    "AND n.nspname <> 'information_schema')))"
)


def catalog_fingerprint(conn: Connection) -> str:
    """A coarse fingerprint of what the live lint reads (see _FINGERPRINT): equal
    fingerprints give equal lint results, so a caller may keep them."""
    return str(conn.fetch_value(_FINGERPRINT) or "")


@dataclass(frozen=True)
class LiveLint:
    """Lint results by version in the light of the live database (`up` for every migration,
    `down` for those that have one), and the facts they were read in."""

    up: dict[str, LintResult]
    down: dict[str, LintResult]
    facts: LiveFacts
    pending: tuple[str, ...]
    """The versions linted with the live facts (not in the ledger)."""


def lint_live(
    conn: Connection,
    migrations: Sequence[Migration],
    config: LintConfig,
    applied: Collection[str] = (),
    *,
    blocking_budget: float | None = None,
) -> LiveLint:
    """Lint a migration source with the live database's facts, read in one catalog read.

    The pending migrations (versions not in `applied`), in version order, are one set linted
    with the server's version, the tables' sizes and what the catalog proves (types, NOT NULL,
    validated CHECKs): a rewrite of a tiny table is a warning, of a large one an error with
    its estimated time under the lock. Applied migrations are linted as before (they describe
    a database that is gone) and so is each down migration.
    """
    from lockstep.lint.engine import lint_set, lint_sql

    facts = read_live(conn)
    ordered = sorted(migrations, key=lambda m: m.version)
    done = [m for m in ordered if m.version in applied]
    pending = [m for m in ordered if m.version not in applied]
    changes: dict[str, Any] = {"pg_version": facts.version, "live": facts.tables()}
    if blocking_budget is not None:
        changes["blocking_budget"] = blocking_budget
    live_config = config.replace(**changes)
    static = config.replace(pg_version=facts.version)
    up = dict(zip((m.version for m in done), lint_set(_files(done), static), strict=True))
    up |= zip(
        (m.version for m in pending),
        lint_set(_files(pending), live_config, facts.file_state()),
        strict=True,
    )
    down = {
        m.version: lint_sql(m.down, static, path=m.down_origin or None)
        for m in ordered
        if m.down is not None
    }
    return LiveLint(up, down, facts, tuple(m.version for m in pending))


def _files(migrations: Sequence[Migration]) -> list[tuple[str, str | None]]:
    return [(m.up, m.origin or None) for m in migrations]
