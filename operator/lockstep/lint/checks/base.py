"""What the per-statement checks produce, and the file state they read and update."""

from __future__ import annotations

import re

from lockstep.lint.datafacts import DataFacts
from lockstep.lint.facts import PgType, stronger_lock
from lockstep.lint.model import LintConfig
from lockstep.lint.record import FrozenRecord, Record
from lockstep.lint.tokens import TokenView


class Hit(FrozenRecord):
    """A rule that fired, at a file offset; `help` overrides the rule's generic help."""

    __slots__ = ("help", "message", "offset", "rule", "table", "work")

    rule: str
    offset: int
    message: str
    help: str | None
    table: str | None
    """The table whose size decides how long the statement blocks (live facts scale it)."""
    work: str | None
    """What the statement does to that table: "scan", "rewrite" or "index"."""

    def __init__(
        self,
        rule: str,
        offset: int,
        message: str,
        help: str | None = None,
        table: str | None = None,
        work: str | None = None,
    ) -> None:
        self.rule = rule
        self.offset = offset
        self.message = message
        self.help = help
        self.table = table
        self.work = work


_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")
_PLAIN_DOTTED = re.compile(r"[a-z_][a-z0-9_$]*(?:\.[a-z_][a-z0-9_$]*)*")


def sql_name(name: str) -> str:
    """A folded, dot-joined name written back as SQL (parts quoted where needed)."""
    if _PLAIN_DOTTED.fullmatch(name):
        return name  # the common case: nothing to quote
    return ".".join(
        part if _PLAIN_NAME.fullmatch(part) else '"' + part.replace('"', '""') + '"'
        for part in name.split(".")
    )


def bare(name: str) -> str:
    """The object name without its schema: file state is keyed by it (search_path aside, a
    migration rarely has two tables of one name in two schemas)."""
    return name.rsplit(".", 1)[-1]


EARLIER_FILE = -(2**62)
"""Transaction id of statements in an earlier migration of the set (never a current one)."""


class FileState(Record):
    """What earlier statements of the file established."""

    __slots__ = (
        "checked_columns",
        "column_types",
        "created_indexes",
        "created_tables",
        "not_null_checks",
        "not_valid",
        "proven_not_null",
        "transaction",
    )

    created_tables: set[str]
    created_indexes: set[str]
    column_types: dict[tuple[str, str], PgType]
    checked_columns: set[tuple[str, str]]
    not_null_checks: dict[tuple[str, str], str]
    """(table, constraint) -> column, for CHECK (column IS NOT NULL) constraints."""
    proven_not_null: set[tuple[str, str]]
    """(table, column) with a validated CHECK (column IS NOT NULL)."""
    not_valid: dict[tuple[str, str], tuple[int, int]]
    """(table, constraint) added NOT VALID -> (transaction id, file offset of the ADD)."""
    transaction: int
    """Transaction id of the statement being analysed (see engine)."""

    def __init__(
        self,
        created_tables: set[str] | None = None,
        created_indexes: set[str] | None = None,
        column_types: dict[tuple[str, str], PgType] | None = None,
        checked_columns: set[tuple[str, str]] | None = None,
        not_null_checks: dict[tuple[str, str], str] | None = None,
        proven_not_null: set[tuple[str, str]] | None = None,
        not_valid: dict[tuple[str, str], tuple[int, int]] | None = None,
        transaction: int = 0,
    ) -> None:
        self.created_tables = set() if created_tables is None else created_tables
        self.created_indexes = set() if created_indexes is None else created_indexes
        self.column_types = {} if column_types is None else column_types
        self.checked_columns = set() if checked_columns is None else checked_columns
        self.not_null_checks = {} if not_null_checks is None else not_null_checks
        self.proven_not_null = set() if proven_not_null is None else proven_not_null
        self.not_valid = {} if not_valid is None else not_valid
        self.transaction = transaction

    def is_new_table(self, name: str) -> bool:
        return bare(name) in self.created_tables

    def carried(self) -> FileState:
        """The facts a later migration of the same set may rely on.

        Tables and indexes created here are existing ones for the next file (they may hold
        rows by the time it runs), and a NOT VALID constraint added here was committed in
        another transaction than the next file's.
        """
        return FileState(
            column_types=dict(self.column_types),
            checked_columns=set(self.checked_columns),
            not_null_checks=dict(self.not_null_checks),
            proven_not_null=set(self.proven_not_null),
            not_valid={key: (EARLIER_FILE, offset) for key, (_, offset) in self.not_valid.items()},
        )


class Outcome(Record):
    """What one statement does: the StatementInfo facts plus the hits and file-level facts."""

    __slots__ = (
        "additive",
        "bad_classes",
        "concurrent_index",
        "data_changes",
        "ddl_tables",
        "hits",
        "if_not_exists",
        "kind",
        "lock",
        "mixed",
        "only_new_tables",
        "rewrites",
        "robust",
        "robust_hint",
        "settings",
        "tables",
        "transaction_control",
        "transactional",
        "unanalysable",
    )

    kind: str
    lock: str
    transactional: bool
    rewrites: bool
    tables: list[str]
    concurrent_index: str | None
    if_not_exists: bool
    hits: list[Hit]
    bad_classes: set[str]
    additive: bool
    mixed: bool
    """Set by a part that is neither additive nor in a bad class (DROP INDEX, SET DEFAULT)."""
    robust: bool | None
    """Whether the statement carries IF [NOT] EXISTS; None when it has no such form."""
    robust_hint: str
    only_new_tables: bool
    ddl_tables: set[str]
    data_changes: list[tuple[str, int, str]]
    """(table, offset, verb) of UPDATE/DELETE/MERGE targets."""
    transaction_control: str | None
    """"begin", "commit" or "rollback"."""
    settings: dict[str, bool]
    """lock_timeout / statement_timeout -> set to a limit (True) or cleared (False)."""
    unanalysable: bool
    """The lint could not tell what (part of) the statement does: unless a reviewer ignores
    the finding that says so, the migration is a contract migration."""

    def __init__(
        self,
        kind: str,
        lock: str = "NONE",
        transactional: bool = True,
        rewrites: bool = False,
        tables: list[str] | None = None,
        concurrent_index: str | None = None,
        if_not_exists: bool = False,
        hits: list[Hit] | None = None,
        bad_classes: set[str] | None = None,
        additive: bool = False,
        mixed: bool = False,
        robust: bool | None = None,
        robust_hint: str = "",
        only_new_tables: bool = False,
        ddl_tables: set[str] | None = None,
        data_changes: list[tuple[str, int, str]] | None = None,
        transaction_control: str | None = None,
        settings: dict[str, bool] | None = None,
        unanalysable: bool = False,
    ) -> None:
        self.kind = kind
        self.lock = lock
        self.transactional = transactional
        self.rewrites = rewrites
        self.tables = [] if tables is None else tables
        self.concurrent_index = concurrent_index
        self.if_not_exists = if_not_exists
        self.hits = [] if hits is None else hits
        self.bad_classes = set() if bad_classes is None else bad_classes
        self.additive = additive
        self.mixed = mixed
        self.robust = robust
        self.robust_hint = robust_hint
        self.only_new_tables = only_new_tables
        self.ddl_tables = set() if ddl_tables is None else ddl_tables
        self.data_changes = [] if data_changes is None else data_changes
        self.transaction_control = transaction_control
        self.settings = {} if settings is None else settings
        self.unanalysable = unanalysable

    def take_lock(self, mode: str) -> None:
        self.lock = stronger_lock(self.lock, mode)

    def hit(
        self,
        rule: str,
        offset: int,
        message: str,
        help: str | None = None,
        *,
        table: str | None = None,
        work: str | None = None,
    ) -> None:
        self.hits.append(Hit(rule, offset, message, help, table, work))

    def mark(self, *classes: str) -> None:
        for name in classes:
            if name == "additive":
                self.additive = True
            else:
                self.bad_classes.add(name)

    def add_table(self, name: str) -> None:
        if name not in self.tables:
            self.tables.append(name)

    def classes(self) -> frozenset[str]:
        if self.bad_classes:
            return frozenset(self.bad_classes)
        if self.additive and not self.mixed:
            return frozenset({"additive"})
        return frozenset()


class Context(Record):
    """Everything a check of one statement may read, and the outcome it writes."""

    __slots__ = ("config", "data", "outcome", "schema_flagged", "start", "state", "view")

    view: TokenView
    data: DataFacts | None
    """What a data statement's syntax tree says (None for other statements)."""
    state: FileState
    config: LintConfig
    outcome: Outcome
    start: int
    """Index of the first word after the statement's kind words."""
    schema_flagged: bool

    def __init__(
        self,
        view: TokenView,
        data: DataFacts | None,
        state: FileState,
        config: LintConfig,
        outcome: Outcome,
        start: int,
        schema_flagged: bool = False,
    ) -> None:
        self.view = view
        self.data = data
        self.state = state
        self.config = config
        self.outcome = outcome
        self.start = start
        self.schema_flagged = schema_flagged

    @property
    def version(self) -> tuple[int, int]:
        return self.config.pg_version

    @property
    def statement_offset(self) -> int:
        return self.view.offset(0)

    def table_name(self, index: int, ddl: bool = True) -> tuple[str | None, int]:
        """Read a table name at `index`, record it, and flag it when it has no schema."""
        name, after = self.view.qualified(index)
        if name is None:
            return None, index
        self.outcome.add_table(name)
        if ddl and "." not in name and not self.schema_flagged:
            self.schema_flagged = True
            self.outcome.hit(
                "require-table-schema",
                self.view.offset(index),
                f"{name} has no schema: the statement acts on whatever search_path finds first.",
                f"Qualify it: public.{sql_name(name)}.",
            )
        return name, after

    def unrecognized(self, index: int, what: str) -> None:
        self.outcome.mixed = True
        self.outcome.unanalysable = True
        self.outcome.take_lock("ACCESS EXCLUSIVE")
        self.outcome.hit(
            "unrecognized-statement",
            self.view.offset(index),
            f"{what} could not be analysed; review it by hand.",
        )
