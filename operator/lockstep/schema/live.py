"""Facts read from the live database for the lint and `lockstep analyze`.

Read-only: the catalog (one read-only transaction), plus the sessions that would block a
migration (long transactions, sessions idle in a transaction). Nothing is written and no table
lock beyond catalog reads is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lockstep.lint.checks.base import FileState
from lockstep.lint.model import LiveTable, LiveTables
from lockstep.postgres import Connection

from .catalog import Catalog, introspect, split_name, unquote

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
