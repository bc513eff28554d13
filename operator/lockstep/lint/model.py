"""The lint's public data: configuration, findings, per-statement facts and the result."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from typing import Any, Literal

from lockstep.lint.record import FrozenRecord, Record
from lockstep.lint.rules import Severity, resolve_rule_ids

Phase = Literal["expand", "contract"]

LOCK_MODES: tuple[str, ...] = (
    "NONE",
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
"""PostgreSQL table lock modes, weakest first ("NONE": no table lock)."""

LOCK_STRENGTH: dict[str, int] = {mode: rank for rank, mode in enumerate(LOCK_MODES)}

STATEMENT_CLASSES: frozenset[str] = frozenset(
    {"additive", "breaking", "long-locking", "data-losing"}
)


_SESSION_SETTING_KINDS = frozenset({"SET", "RESET"})
_TRANSACTION_SCOPED_SET = re.compile(
    r"^\s*SET\s+(LOCAL|TRANSACTION|CONSTRAINTS|SESSION\s+CHARACTERISTICS)\b", re.I
)


def is_session_setting(kind: str, text: str) -> bool:
    """A statement that only changes a setting of the session (`SET statement_timeout ...`):
    it may sit beside statements that cannot run in a transaction. The forms that act on the
    transaction do not count."""
    return kind in _SESSION_SETTING_KINDS and not _TRANSACTION_SCOPED_SET.match(text)


def _as_frozenset(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        # A bare string would become a set of characters.
        return frozenset({value})
    return frozenset(value)


class LiveTable(FrozenRecord):
    """One table of the live database, as the lint sees it."""

    __slots__ = ("bytes", "name", "qualified", "rows")

    name: str
    """Unqualified, as PostgreSQL stores it."""
    qualified: str
    rows: float
    bytes: int
    """Size of the table itself (what a rewrite or a scan reads)."""

    def __init__(self, name: str, qualified: str, rows: float, bytes: int) -> None:
        self.name = name
        self.qualified = qualified
        self.rows = rows
        self.bytes = bytes


class LiveTables:
    """Sizes read from the live database: the lint scales a blocking finding by them."""

    __slots__ = ("by_name", "tables")

    tables: tuple[LiveTable, ...]
    by_name: dict[str, LiveTable]

    def __init__(self, tables: tuple[LiveTable, ...] = ()) -> None:
        self.tables = tables
        self.by_name = {}
        for table in tables:
            self.by_name.setdefault(table.name, table)
            self.by_name[table.qualified] = table

    def find(self, name: str) -> LiveTable | None:
        return self.by_name.get(name) or self.by_name.get(name.rsplit(".", 1)[-1])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, LiveTables)
        return self.tables == other.tables

    def __hash__(self) -> int:
        return hash(self.tables)

    def __repr__(self) -> str:
        return f"LiveTables(tables={self.tables!r})"


_CONFIG_FIELDS = (
    "pg_version",
    "errors",
    "warnings",
    "ignore",
    "runner_sets_timeouts",
    "runner_manages_transactions",
    "runner_orders_contract",
    "live",
    "blocking_budget",
)


class LintConfig:
    """How to lint: the server version, per-rule severity changes and what the runner does.

    `errors`, `warnings` and `ignore` take rule ids (squawk's aliases
    `require-timeout-settings` and `prefer-timestamp-tz` are accepted). When an id is in more
    than one set, `ignore` wins over `errors`, and `errors` over `warnings`. Not changed once
    made (`replace` gives a changed copy); equal and hashed by its fields.
    """

    pg_version: tuple[int, int]
    errors: frozenset[str]
    warnings: frozenset[str]
    ignore: frozenset[str]
    runner_sets_timeouts: bool
    runner_manages_transactions: bool
    runner_orders_contract: bool
    """lockstep runs contract migrations only after the old application version is gone, so
    findings about breaking the running version are warnings in a contract migration."""
    live: LiveTables | None
    """Table sizes from the live database: a finding whose cost grows with the table is an
    error only when the estimated time under its lock exceeds `blocking_budget`."""
    blocking_budget: float
    """Seconds a statement may block a table (with live sizes) before it is an error."""

    def __init__(
        self,
        pg_version: tuple[int, int] = (15, 0),
        errors: Iterable[str] = frozenset(),
        warnings: Iterable[str] = frozenset(),
        ignore: Iterable[str] = frozenset(),
        runner_sets_timeouts: bool = True,
        runner_manages_transactions: bool = True,
        runner_orders_contract: bool = True,
        live: LiveTables | None = None,
        blocking_budget: float = 1.0,
    ) -> None:
        version = tuple(pg_version)
        if len(version) != 2 or not all(
            isinstance(part, int) and not isinstance(part, bool) and part >= 0 for part in version
        ):
            raise ValueError(
                f"pg_version must be (major, minor) with non-negative integers, got {pg_version!r}"
            )
        self.pg_version = (version[0], version[1])
        self.errors = _as_frozenset(errors)
        self.warnings = _as_frozenset(warnings)
        self.ignore = _as_frozenset(ignore)
        unknown: list[str] = []
        for ids in (self.errors, self.warnings, self.ignore):
            unknown.extend(resolve_rule_ids(ids)[1])
        if unknown:
            raise ValueError(
                "unknown lint rule id(s) in the configuration: "
                + ", ".join(sorted(set(unknown)))
                + " (see docs/lint-rules.md for the rule ids)"
            )
        self.runner_sets_timeouts = runner_sets_timeouts
        self.runner_manages_transactions = runner_manages_transactions
        self.runner_orders_contract = runner_orders_contract
        self.live = live
        self.blocking_budget = blocking_budget

    def _fields(self) -> tuple[object, ...]:
        return tuple([getattr(self, name) for name in _CONFIG_FIELDS])

    def replace(self, **changes: Any) -> LintConfig:
        """A copy with `changes` (field name -> value), checked as a new one is."""
        values: dict[str, Any] = {name: getattr(self, name) for name in _CONFIG_FIELDS}
        return LintConfig(**(values | changes))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, LintConfig)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in _CONFIG_FIELDS)
        return f"LintConfig({values})"

    @cached_property
    def severity_overrides(self) -> dict[str, Severity | None]:
        """Rule id -> its configured severity, or None when the rule is switched off."""
        overrides: dict[str, Severity | None] = {}
        for rule_id in resolve_rule_ids(self.warnings)[0]:
            overrides[rule_id] = "warning"
        for rule_id in resolve_rule_ids(self.errors)[0]:
            overrides[rule_id] = "error"
        for rule_id in resolve_rule_ids(self.ignore)[0]:
            overrides[rule_id] = None
        return overrides


class Finding(FrozenRecord):
    """One problem in a migration.

    `statement_index` is -1 for a finding about the file rather than one statement (an unused
    file-level ignore, an unsafe phase override).
    """

    __slots__ = ("column", "help", "line", "message", "path", "rule", "severity", "statement_index")

    rule: str
    severity: Severity
    message: str
    help: str
    line: int
    column: int
    statement_index: int
    path: str | None

    def __init__(
        self,
        rule: str,
        severity: Severity,
        message: str,
        help: str,
        line: int,
        column: int,
        statement_index: int,
        path: str | None = None,
    ) -> None:
        self.rule = rule
        self.severity = severity
        self.message = message
        self.help = help
        self.line = line
        self.column = column
        self.statement_index = statement_index
        self.path = path


class StatementInfo(FrozenRecord):
    """What one statement does, for the runner and the plan.

    `lock` is the strongest lock the statement takes on a table that existed before it
    (a new table's own lock is invisible to other sessions). `transactional` is False for
    statements that cannot run inside a transaction block. `if_not_exists` is True when the
    statement carries IF [NOT] EXISTS, so running it again after a partial failure is safe.
    """

    __slots__ = (
        "classes",
        "column",
        "concurrent_index",
        "if_not_exists",
        "index",
        "kind",
        "line",
        "lock",
        "rewrites",
        "tables",
        "text",
        "transactional",
    )

    index: int
    text: str
    line: int
    column: int
    kind: str
    lock: str
    transactional: bool
    classes: frozenset[str]
    rewrites: bool
    tables: tuple[str, ...]
    concurrent_index: str | None
    if_not_exists: bool

    def __init__(
        self,
        index: int,
        text: str,
        line: int,
        column: int,
        kind: str,
        lock: str,
        transactional: bool,
        classes: frozenset[str],
        rewrites: bool,
        tables: tuple[str, ...],
        concurrent_index: str | None,
        if_not_exists: bool,
    ) -> None:
        self.index = index
        self.text = text
        self.line = line
        self.column = column
        self.kind = kind
        self.lock = lock
        self.transactional = transactional
        self.classes = classes
        self.rewrites = rewrites
        self.tables = tables
        self.concurrent_index = concurrent_index
        self.if_not_exists = if_not_exists


class LintResult(Record):
    """The findings and statement facts of one migration file."""

    __slots__ = ("findings", "phase", "statements")

    findings: list[Finding]
    statements: list[StatementInfo]
    phase: Phase

    def __init__(
        self,
        findings: list[Finding] | None = None,
        statements: list[StatementInfo] | None = None,
        phase: Phase = "expand",
    ) -> None:
        self.findings = [] if findings is None else findings
        self.statements = [] if statements is None else statements
        self.phase = phase

    @property
    def errors(self) -> int:
        return sum(1 for finding in self.findings if finding.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for finding in self.findings if finding.severity == "warning")

    @property
    def has_errors(self) -> bool:
        return any(finding.severity == "error" for finding in self.findings)

    @property
    def needs_backup(self) -> bool:
        """True when any statement is not purely additive (so a backup is worth taking)."""
        return any(statement.classes != {"additive"} for statement in self.statements)
