"""What the per-statement checks produce, and the file state they read and update."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lockstep.lint.datafacts import DataFacts
from lockstep.lint.facts import PgType, stronger_lock
from lockstep.lint.model import LintConfig
from lockstep.lint.tokens import TokenView


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule that fired, at a file offset; `help` overrides the rule's generic help."""

    rule: str
    offset: int
    message: str
    help: str | None = None
    table: str | None = None
    """The table whose size decides how long the statement blocks (live facts scale it)."""
    work: str | None = None
    """What the statement does to that table: "scan", "rewrite" or "index"."""


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


@dataclass
class FileState:
    """What earlier statements of the file established."""

    created_tables: set[str] = field(default_factory=set)
    created_indexes: set[str] = field(default_factory=set)
    column_types: dict[tuple[str, str], PgType] = field(default_factory=dict)
    checked_columns: set[tuple[str, str]] = field(default_factory=set)
    not_null_checks: dict[tuple[str, str], str] = field(default_factory=dict)
    """(table, constraint) -> column, for CHECK (column IS NOT NULL) constraints."""
    proven_not_null: set[tuple[str, str]] = field(default_factory=set)
    """(table, column) with a validated CHECK (column IS NOT NULL)."""
    not_valid: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """(table, constraint) added NOT VALID -> (transaction id, file offset of the ADD)."""
    transaction: int = 0
    """Transaction id of the statement being analysed (see engine)."""

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


@dataclass
class Outcome:
    """What one statement does: the StatementInfo facts plus the hits and file-level facts."""

    kind: str
    lock: str = "NONE"
    transactional: bool = True
    rewrites: bool = False
    tables: list[str] = field(default_factory=list)
    concurrent_index: str | None = None
    if_not_exists: bool = False
    hits: list[Hit] = field(default_factory=list)
    bad_classes: set[str] = field(default_factory=set)
    additive: bool = False
    mixed: bool = False
    """Set by a part that is neither additive nor in a bad class (DROP INDEX, SET DEFAULT)."""
    robust: bool | None = None
    """Whether the statement carries IF [NOT] EXISTS; None when it has no such form."""
    robust_hint: str = ""
    only_new_tables: bool = False
    ddl_tables: set[str] = field(default_factory=set)
    data_changes: list[tuple[str, int, str]] = field(default_factory=list)
    """(table, offset, verb) of UPDATE/DELETE/MERGE targets."""
    transaction_control: str | None = None
    """"begin", "commit" or "rollback"."""
    settings: dict[str, bool] = field(default_factory=dict)
    """lock_timeout / statement_timeout -> set to a limit (True) or cleared (False)."""
    unanalysable: bool = False
    """The lint could not tell what (part of) the statement does: unless a reviewer ignores
    the finding that says so, the migration is a contract migration."""

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


@dataclass
class Context:
    """Everything a check of one statement may read, and the outcome it writes."""

    view: TokenView
    data: DataFacts | None
    """What a data statement's syntax tree says (None for other statements)."""
    state: FileState
    config: LintConfig
    outcome: Outcome
    start: int
    """Index of the first word after the statement's kind words."""
    schema_flagged: bool = False

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
