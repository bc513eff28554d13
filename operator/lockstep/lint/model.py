"""The lint's public data: configuration, findings, per-statement facts and the result."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

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


@dataclass(frozen=True, slots=True)
class LiveTable:
    """One table of the live database, as the lint sees it."""

    name: str
    """Unqualified, as PostgreSQL stores it."""
    qualified: str
    rows: float
    bytes: int
    """Size of the table itself (what a rewrite or a scan reads)."""


@dataclass(frozen=True)
class LiveTables:
    """Sizes read from the live database: the lint scales a blocking finding by them."""

    tables: tuple[LiveTable, ...] = ()
    by_name: dict[str, LiveTable] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for table in self.tables:
            self.by_name.setdefault(table.name, table)
            self.by_name[table.qualified] = table

    def find(self, name: str) -> LiveTable | None:
        return self.by_name.get(name) or self.by_name.get(name.rsplit(".", 1)[-1])

    def __hash__(self) -> int:
        return hash(self.tables)


@dataclass(frozen=True)
class LintConfig:
    """How to lint: the server version, per-rule severity changes and what the runner does.

    `errors`, `warnings` and `ignore` take rule ids (squawk's aliases
    `require-timeout-settings` and `prefer-timestamp-tz` are accepted). When an id is in more
    than one set, `ignore` wins over `errors`, and `errors` over `warnings`.
    """

    pg_version: tuple[int, int] = (15, 0)
    errors: frozenset[str] = frozenset()
    warnings: frozenset[str] = frozenset()
    ignore: frozenset[str] = frozenset()
    runner_sets_timeouts: bool = True
    runner_manages_transactions: bool = True
    runner_orders_contract: bool = True
    """lockstep runs contract migrations only after the old application version is gone, so
    findings about breaking the running version are warnings in a contract migration."""
    live: LiveTables | None = None
    """Table sizes from the live database: a finding whose cost grows with the table is an
    error only when the estimated time under its lock exceeds `blocking_budget`."""
    blocking_budget: float = 1.0
    """Seconds a statement may block a table (with live sizes) before it is an error."""

    def __post_init__(self) -> None:
        version = tuple(self.pg_version)
        if len(version) != 2 or not all(
            isinstance(part, int) and not isinstance(part, bool) and part >= 0 for part in version
        ):
            raise ValueError(
                f"pg_version must be (major, minor) with non-negative integers, "
                f"got {self.pg_version!r}"
            )
        object.__setattr__(self, "pg_version", (version[0], version[1]))
        unknown: list[str] = []
        for name in ("errors", "warnings", "ignore"):
            ids = _as_frozenset(getattr(self, name))
            object.__setattr__(self, name, ids)
            unknown.extend(resolve_rule_ids(ids)[1])
        if unknown:
            raise ValueError(
                "unknown lint rule id(s) in the configuration: "
                + ", ".join(sorted(set(unknown)))
                + " (see docs/lint-rules.md for the rule ids)"
            )

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


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem in a migration.

    `statement_index` is -1 for a finding about the file rather than one statement (an unused
    file-level ignore, an unsafe phase override).
    """

    rule: str
    severity: Severity
    message: str
    help: str
    line: int
    column: int
    statement_index: int
    path: str | None = None


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """What one statement does, for the runner and the plan.

    `lock` is the strongest lock the statement takes on a table that existed before it
    (a new table's own lock is invisible to other sessions). `transactional` is False for
    statements that cannot run inside a transaction block. `if_not_exists` is True when the
    statement carries IF [NOT] EXISTS, so running it again after a partial failure is safe.
    """

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


@dataclass
class LintResult:
    """The findings and statement facts of one migration file."""

    findings: list[Finding] = field(default_factory=list)
    statements: list[StatementInfo] = field(default_factory=list)
    phase: Phase = "expand"

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
