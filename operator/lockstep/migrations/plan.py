"""Deciding what an apply would do: pure functions, no I/O.

From the source migrations, the ledger rows, the target version, the lint results and the
policy, `make_plan` works out drift, direction, the steps in order (with phase, lock level
and transactional flag per statement), the contract migrations held back, whether a backup
is needed, and a one-line compatibility verdict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from lockstep.api.migration import MigrationPhase, MigrationPolicy
from lockstep.lint.model import is_session_setting as is_session_setting_text

from .records import AppliedMigration
from .source import Direction, Migration, sha256_hex

PlanDirection = Literal["up", "down", "none"]

SUMMARY_LENGTH = 120

# Transaction control would end the transaction lockstep runs the migration in.
_TRANSACTION_CONTROL_KINDS = frozenset(
    {"BEGIN", "COMMIT", "ROLLBACK", "PREPARE TRANSACTION", "COMMIT PREPARED", "ROLLBACK PREPARED"}
)


# ---------------------------------------------------------------------- what the lint tells us


class LintedStatement(Protocol):
    """What the plan needs of one statement of the lint's split (lockstep.lint.StatementInfo)."""

    @property
    def index(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def lock(self) -> str: ...
    @property
    def transactional(self) -> bool: ...
    @property
    def classes(self) -> frozenset[str]: ...
    @property
    def concurrent_index(self) -> str | None: ...
    @property
    def if_not_exists(self) -> bool: ...


class LintedFinding(Protocol):
    @property
    def rule(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def line(self) -> int: ...


class LintedSql(Protocol):
    """What the plan needs of a lint result (lockstep.lint.LintResult)."""

    @property
    def statements(self) -> Sequence[LintedStatement]: ...
    @property
    def findings(self) -> Sequence[LintedFinding]: ...
    @property
    def phase(self) -> str: ...
    @property
    def has_errors(self) -> bool: ...
    @property
    def needs_backup(self) -> bool: ...


# ------------------------------------------------------------------------------ plan shapes


class PlanError(ValueError):
    """The migrations cannot be applied as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Drift:
    """An applied migration that no longer matches the source."""

    version: str
    name: str
    kind: Literal["changed", "missing"]
    message: str


class DriftError(PlanError):
    """Applied migrations differ from the source: nothing may be applied until it is fixed."""

    def __init__(self, drift: Sequence[Drift]) -> None:
        self.drift = tuple(drift)
        lines = "\n".join(f"  - {item.message}" for item in self.drift)
        super().__init__(
            f"the database has drifted from the migration source "
            f"({len(self.drift)} problem{'s' if len(self.drift) != 1 else ''}):\n{lines}"
        )


@dataclass(frozen=True)
class PlannedStatement:
    """One statement of a step, as it will be executed."""

    index: int
    text: str
    line: int
    kind: str
    lock: str
    transactional: bool
    classes: tuple[str, ...]
    concurrent_index: str | None
    if_not_exists: bool
    observed: bool = False
    """True when `lock` was observed by the lock probe, not guessed from the rules."""
    rule_lock: str | None = None
    """The rules' guess, when the probe observed a different lock."""
    probe_notes: tuple[str, ...] = ()
    """What the probe saw that the rules did not say (a rewrite), or why it could not look."""

    @property
    def summary(self) -> str:
        return shorten(self.text)


@dataclass(frozen=True)
class Step:
    """One migration to run in one direction."""

    migration: Migration
    direction: Direction
    phase: MigrationPhase
    phase_source: Literal["declared", "lint"]
    statements: tuple[PlannedStatement, ...]
    needs_backup: bool
    lint_errors: tuple[str, ...] = ()
    """Error-level findings (`line N: rule: message`); an up step with any is not applied."""

    @property
    def version(self) -> str:
        return self.migration.version

    @property
    def name(self) -> str:
        return self.migration.name

    @property
    def label(self) -> str:
        return self.migration.label

    @property
    def sql(self) -> str:
        """The SQL this step runs: the migration's up or its down."""
        return self.migration.up if self.direction == "up" else (self.migration.down or "")

    @property
    def sql_checksum(self) -> str:
        return sha256_hex(self.sql)

    @property
    def transactional(self) -> bool:
        """Whether the step runs in one transaction (False: statements run on their own)."""
        return all(s.transactional for s in self.statements if not is_session_setting(s))

    @property
    def locks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.lock for s in self.statements if s.lock))


@dataclass(frozen=True)
class Plan:
    """What an apply would do, in order."""

    current_version: str | None
    target_version: str | None
    direction: PlanDirection
    steps: tuple[Step, ...]
    held_back: tuple[Step, ...] = ()
    """Up steps not applied now: the first is a contract migration and contract is not allowed."""
    backup_needed: bool = False
    verdict: str = ""
    allow_contract: bool = False
    applied_versions: tuple[str, ...] = ()

    @property
    def blocked_contract(self) -> tuple[str, ...]:
        """Versions of the contract migrations held back."""
        return tuple(s.version for s in self.held_back if s.phase == "contract")

    @property
    def lint_blocked(self) -> tuple[Step, ...]:
        """Up migrations up to the target, held back or not, with lint errors: nothing is
        applied while one has them (every pending migration is linted before the database is
        touched; a contract migration that cannot run would strand the expand ones)."""
        return tuple(
            s for s in (*self.steps, *self.held_back) if s.direction == "up" and s.lint_errors
        )

    @property
    def up_to_date(self) -> bool:
        return not self.steps and not self.held_back


# ------------------------------------------------------------------------------------- drift


def find_drift(source: Sequence[Migration], applied: Sequence[AppliedMigration]) -> list[Drift]:
    """Applied migrations whose SQL changed since, or that the source no longer has."""
    by_version = {m.version: m for m in source}
    drift: list[Drift] = []
    for row in applied:
        migration = by_version.get(row.version)
        if migration is None:
            drift.append(
                Drift(
                    row.version,
                    row.name,
                    "missing",
                    f"migration {row.version} ({row.name}) is applied in the database but is "
                    "missing from the source; restore its file (applied migrations are never "
                    "deleted), or roll it back with its down migration first",
                )
            )
        elif migration.checksum != row.checksum:
            drift.append(
                Drift(
                    row.version,
                    row.name,
                    "changed",
                    f"migration {row.version} ({row.name}) was applied with checksum "
                    f"{row.checksum[:12]}… but {migration.origin or 'its source'} now has "
                    f"{migration.checksum[:12]}…; an applied migration must not change: restore "
                    "the applied text and put the change in a new migration",
                )
            )
    return drift


# -------------------------------------------------------------------------------------- plan


def make_plan(
    source: Sequence[Migration],
    applied: Sequence[AppliedMigration],
    *,
    target: str | None,
    up_lint: Mapping[str, LintedSql],
    down_lint: Mapping[str, LintedSql] | None = None,
    policy: MigrationPolicy,
    allow_contract: bool = False,
) -> Plan:
    """Decide what to run to bring the database from `applied` to `target` (None = latest).

    Raises DriftError when applied migrations differ from the source, and PlanError when the
    request cannot be met (unknown target, a missing down, a migration that must be split).
    """
    drift = find_drift(source, applied)
    if drift:
        raise DriftError(drift)
    ordered = sorted(source, key=lambda m: m.version)
    by_version = {m.version: m for m in ordered}
    applied_versions = sorted(row.version for row in applied)
    current = applied_versions[-1] if applied_versions else None
    _check_order(ordered, set(applied_versions), current)

    if target is None:
        target = ordered[-1].version if ordered else current
    elif target not in by_version:
        raise PlanError(f"unknown target version {target!r}: {_known_versions(ordered)}")
    allow_contract = allow_contract or policy.allow_breaking

    direction: PlanDirection
    steps: list[Step]
    held_back: list[Step] = []
    if target is None or target == current:
        direction, steps = "none", []
    elif current is None or target > current:
        direction = "up"
        pending = [m for m in ordered if (current is None or m.version > current)]
        pending = [m for m in pending if m.version <= target]
        all_up = [_step(m, "up", _lint_for(up_lint, m, "up")) for m in pending]
        for step in all_up:
            _check_runnable(step)
        steps = all_up
        if not allow_contract:
            first_contract = next(
                (i for i, step in enumerate(all_up) if step.phase == "contract"), None
            )
            if first_contract is not None:
                steps, held_back = all_up[:first_contract], all_up[first_contract:]
    else:
        direction = "down"
        reverting = [by_version[v] for v in reversed(applied_versions) if v > target]
        missing = [m for m in reverting if m.down is None]
        if missing:
            raise PlanError(
                f"cannot roll back to {target}: "
                + ", ".join(m.label for m in missing)
                + (" has" if len(missing) == 1 else " have")
                + " no down migration; add one, or restore from a backup"
            )
        steps = [_step(m, "down", _lint_for(down_lint or {}, m, "down")) for m in reverting]
        for step in steps:
            _check_runnable(step)

    backup_needed = _backup_needed(policy.backup, steps)
    plan = Plan(
        current_version=current,
        target_version=target,
        direction=direction,
        steps=tuple(steps),
        held_back=tuple(held_back),
        backup_needed=backup_needed,
        allow_contract=allow_contract,
        applied_versions=tuple(applied_versions),
    )
    return dataclasses.replace(plan, verdict=verdict(plan))


class Observed(Protocol):
    """What the plan needs of one probe observation (lockstep.schema.probe.Observation)."""

    @property
    def index(self) -> int: ...
    @property
    def observed(self) -> bool: ...
    @property
    def lock(self) -> str: ...
    @property
    def differences(self) -> list[str]: ...
    @property
    def note(self) -> str: ...


def with_observations(plan: Plan, observations: Mapping[str, Sequence[Observed]]) -> Plan:
    """The plan with each probed statement's observed lock in place of the rules' guess: the
    observation wins, and where it contradicts the guess the difference is kept as a note."""

    def observe(step: Step) -> Step:
        by_index = {o.index: o for o in observations.get(step.version, ())}
        statements = []
        for statement in step.statements:
            seen = by_index.get(statement.index)
            if seen is None:
                statements.append(statement)
            elif not seen.observed:
                note = f"not observed: {seen.note}" if seen.note else "not observed"
                statements.append(dataclasses.replace(statement, probe_notes=(note,)))
            else:
                statements.append(
                    dataclasses.replace(
                        statement,
                        lock=seen.lock,
                        observed=True,
                        rule_lock=statement.lock if seen.lock != statement.lock else None,
                        probe_notes=tuple(seen.differences),
                    )
                )
        return dataclasses.replace(step, statements=tuple(statements))

    return dataclasses.replace(
        plan,
        steps=tuple(observe(step) for step in plan.steps),
        held_back=tuple(observe(step) for step in plan.held_back),
    )


def verdict(plan: Plan) -> str:
    """One line on what the plan means for the application that is running now."""
    if plan.up_to_date:
        return f"up to date at {plan.current_version or 'an empty ledger'}: nothing to do"
    if plan.direction == "down":
        return (
            f"rollback: reverts {_versions(plan.steps)} with down migrations; the running "
            "application must not depend on what they remove"
        )
    contract = [s for s in plan.steps if s.phase == "contract"]
    expand = [s for s in plan.steps if s.phase == "expand"]
    if plan.held_back:
        applied_now = (
            f"{_count(expand, 'expand migration')} applied now ({_versions(expand)}); "
            if expand
            else "nothing applied now; "
        )
        return (
            f"compatible so far: {applied_now}contract migration "
            f"{', '.join(plan.blocked_contract)} breaks the running application and is held "
            "back (with what follows it) until contract is allowed"
        )
    if contract:
        return (
            f"breaking: contract migration {_versions(contract)} will be applied (contract "
            "allowed); the previous application version must no longer be running"
        )
    return (
        f"compatible: {_count(expand, 'expand migration')} ({_versions(expand)}), safe "
        "while the current application version runs"
    )


def shorten(text: str, limit: int = SUMMARY_LENGTH) -> str:
    """A statement on one line, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ----------------------------------------------------------------------------------- helpers


def _lint_for(lint: Mapping[str, LintedSql], migration: Migration, direction: str) -> LintedSql:
    try:
        return lint[migration.version]
    except KeyError:
        raise ValueError(
            f"no lint result for the {direction} migration {migration.label}"
        ) from None


def _step(migration: Migration, direction: Direction, lint: LintedSql) -> Step:
    statements = tuple(
        PlannedStatement(
            index=s.index,
            text=s.text,
            line=s.line,
            kind=s.kind,
            lock=s.lock,
            transactional=s.transactional,
            classes=tuple(sorted(s.classes)),
            concurrent_index=s.concurrent_index,
            if_not_exists=s.if_not_exists,
        )
        for s in lint.statements
    )
    lint_phase: MigrationPhase = "contract" if lint.phase == "contract" else "expand"
    declared = migration.declared_phase if direction == "up" else None
    errors = tuple(
        f"line {f.line}: {f.rule}: {f.message}" for f in lint.findings if f.severity == "error"
    )
    return Step(
        migration=migration,
        direction=direction,
        phase=declared or lint_phase,
        phase_source="declared" if declared else "lint",
        statements=statements,
        needs_backup=lint.needs_backup,
        lint_errors=errors,
    )


def _check_runnable(step: Step) -> None:
    """Reject migrations lockstep cannot run safely as written."""
    what = f"{'the down migration' if step.direction == 'down' else 'migration'} {step.label}"
    if not step.statements:
        raise PlanError(
            f"{what} has no SQL statements (only comments?): write the change, or delete "
            "the file if it is not needed"
        )
    control = [s for s in step.statements if s.kind in _TRANSACTION_CONTROL_KINDS]
    if control:
        first = control[0]
        raise PlanError(
            f"{what} has transaction control at line {first.line} ({shorten(first.text, 40)}): "
            "lockstep runs every migration in its own transaction (or, for statements that "
            "cannot run in one, without); remove BEGIN/COMMIT/ROLLBACK"
        )
    outside = [s for s in step.statements if not s.transactional]
    inside = [s for s in step.statements if s.transactional and not is_session_setting(s)]
    if outside and inside:
        raise PlanError(
            f"{what} mixes statements that cannot run in a transaction (line "
            f"{outside[0].line}: {shorten(outside[0].text, 60)}) with statements that run in "
            f"one (line {inside[0].line}: {shorten(inside[0].text, 60)}): split it into "
            "separate migrations, one holding only the non-transactional statements"
        )


def is_session_setting(statement: PlannedStatement | LintedStatement) -> bool:
    """A statement that only changes a setting of the session (`SET statement_timeout ...`)."""
    return is_session_setting_text(statement.kind, statement.text)


def _check_order(ordered: Sequence[Migration], applied: set[str], current: str | None) -> None:
    if current is None:
        return
    skipped = [m for m in ordered if m.version < current and m.version not in applied]
    if skipped:
        raise PlanError(
            ", ".join(m.label for m in skipped)
            + f" {'is' if len(skipped) == 1 else 'are'} not applied, but the later "
            f"{current} is: migrations apply in version order; give "
            f"{'it a version' if len(skipped) == 1 else 'them versions'} after {current} "
            "(versions sort lexically)"
        )


def _backup_needed(policy: str, steps: Sequence[Step]) -> bool:
    if not steps or policy == "never":
        return False
    if policy == "always":
        return True
    return any(step.needs_backup for step in steps)


def _known_versions(ordered: Sequence[Migration]) -> str:
    if not ordered:
        return "the source has no migrations"
    versions = [m.version for m in ordered]
    shown = ", ".join(versions[-5:])
    return f"known versions are {'…, ' if len(versions) > 5 else ''}{shown}"


def _versions(steps: Iterable[Step]) -> str:
    return ", ".join(s.version for s in steps)


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"
