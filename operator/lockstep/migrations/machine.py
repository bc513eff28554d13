"""What a DatabaseMigration does next: a pure function of its spec, its status and what it sees.

`decide` takes the migrations and their lint, the ledger, the backup and restore Jobs and the
claims of the FeatureReleases that use the database (api/protocol.py), and returns the next
status and at most one action that changes the world: start a backup Job, start a restore Job,
or run migrations. The reconciler writes the status first and only then acts, so that the
operation in flight is on record before it starts (a restarted operator finishes the same
operation, with the same backup, instead of starting another); `after_run` folds the outcome of
running migrations back in.

The rules it keeps:
- a down migration never goes below what a serving revision needs (`claim.needs`), whether a
  lowered targetVersion asks for it or a release's rollback request does;
- a contract migration runs only as far as every release tolerates, each settled on its
  promoted revision (`claim.tolerates`), or with policy.allowBreaking;
- a rollback request names its version and goes strictly down; a restore uses only the backup
  taken immediately before the apply it undoes, and reports the window of writes it discards;
- every apply that needs a backup takes a new one, named by a serial that only increases;
- a dry run executes nothing, requests included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from ..api.base import timestamp
from ..api.migration import (
    AppliedRecord,
    BackupRecord,
    DatabaseMigrationSpec,
    DatabaseMigrationStatus,
    FindingStatus,
    GateStatus,
    HoldStatus,
    LintStatus,
    MigrationError,
    Operation,
    OperationKind,
    PlannedMigration,
    PlannedStatement,
    PlanStatus,
)
from ..api.protocol import AckOutcome, RequestAck, RollbackMode, SchemaClaim, WriteWindow
from ..backup import BackupError, backup_job_name, parse_result, restore_job_name
from ..conditions import Health, conditions_for
from ..redact import redact
from ..release.world import JobView
from .gate import ContractDecision, ReleaseGate, contract_decision
from .linting import LintedSource
from .plan import DriftError, Plan, PlanError, make_plan
from .records import AppliedMigration
from .source import Migration

FINDINGS_KEPT = 25
APPLIED_KEPT = 20
CONTRACT_KEPT = 50
DATA_LOSING = "data-losing"


@dataclass(frozen=True)
class ReleaseClaim:
    """One FeatureRelease's claim on the database, as the watch shows it."""

    release: str
    current: bool  # the release's status describes its latest spec
    claim: SchemaClaim


@dataclass(frozen=True)
class Observed:
    """What one look at a DatabaseMigration sees."""

    now: datetime
    name: str
    uid: str
    generation: int
    migrations: Sequence[Migration]
    linted: LintedSource
    source_hash: str
    applied: Sequence[AppliedMigration]
    jobs: Mapping[str, JobView]
    job_messages: Mapping[str, str]  # termination messages of finished Jobs in flight
    claims: Sequence[ReleaseClaim]
    retry_request: str | None = None


# ---------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class StartBackup:
    name: str
    database_version: str | None


@dataclass(frozen=True)
class StartRestore:
    name: str
    backup: BackupRecord


@dataclass(frozen=True)
class RunMigrations:
    """Bring the database to `target`, only in `direction` (the engine refuses the other)."""

    target: str | None
    direction: str
    allow_contract: bool


@dataclass(frozen=True)
class Emit:
    type: str
    reason: str
    message: str


Action = StartBackup | StartRestore | RunMigrations | Emit


@dataclass
class Decision:
    status: DatabaseMigrationStatus
    actions: list[Action] = field(default_factory=list)
    delay: float = 60.0
    health: Health = Health.PROGRESSING

    @property
    def run(self) -> RunMigrations | None:
        return next((a for a in self.actions if isinstance(a, RunMigrations)), None)


@dataclass(frozen=True)
class RunOutcome:
    """What running migrations gave: the records of what was applied, or why it stopped."""

    applied: tuple[AppliedRecord, ...] = ()
    failure: MigrationError | None = None  # a statement failed
    stopped: str | None = None  # drift, an impossible plan: the message
    busy: str | None = None  # another runner holds the lock, or the wait was cancelled
    unreachable: str | None = None  # the database could not be reached


class Stop(Exception):
    """End this look with the status as it is now."""


def backup_name(migration: str, uid: str, serial: int) -> str:
    """The name of the backup taken for operation `serial`: never reused (not even by a
    DatabaseMigration created again under the same name)."""
    return backup_job_name(migration, f"{uid.replace('-', '')[:8]}{serial}")


def restore_name(migration: str, uid: str, serial: int) -> str:
    return restore_job_name(migration, f"{uid.replace('-', '')[:8]}{serial}")


def awaited_jobs(status: DatabaseMigrationStatus, migration: str, uid: str) -> list[str]:
    """The Jobs whose result the operation in flight waits for."""
    op = status.operation
    if op is None:
        return []
    if op.kind == OperationKind.RESTORE:
        return [restore_name(migration, uid, op.serial)]
    return [op.backup] if op.backup and not op.backup_done else []


class Machine:
    def __init__(
        self,
        spec: DatabaseMigrationSpec,
        status: DatabaseMigrationStatus,
        seen: Observed,
    ) -> None:
        self.spec = spec
        self.previous = status
        # fields are replaced, never changed in place: a shallow copy keeps the input intact
        self.st = status.model_copy()
        self.seen = seen
        self.d = Decision(status=self.st)
        self.current = max((r.version for r in seen.applied), default=None)

    # ------------------------------------------------------------------ status

    def ts(self) -> str:
        return timestamp(self.seen.now)

    def emit(self, type_: str, reason: str, message: str) -> None:
        self.d.actions.append(Emit(type_, reason, redact(message)))

    def settle(
        self,
        phase: str,
        health: Health,
        reason: str,
        message: str,
        event: str | None = None,
        delay: float = 60.0,
    ) -> None:
        """Set the coarse state; post an Event when it changed (not on every look)."""
        message = redact(message)
        changed = (self.previous.phase, self.previous.message) != (phase, message)
        self.st.phase, self.st.message = phase, message
        self.st.conditions = conditions_for(
            health, reason, message, self.seen.generation, self.st.conditions, at=self.ts()
        )
        self.d.health = health
        self.d.delay = delay
        if event and changed:
            self.emit(event, reason, message)

    def stall(self, reason: str, message: str, delay: float = 60.0) -> Stop:
        self.settle("Failed", Health.STALLED, reason, message, event="Warning", delay=delay)
        return Stop()

    def acknowledge(
        self,
        release: str,
        request: str,
        outcome: AckOutcome,
        message: str,
        **extra: object,
    ) -> None:
        ack = RequestAck(
            release=release,
            id=request,
            outcome=outcome,
            message=redact(message)[:500],
            at=self.ts(),
            **extra,
        )
        self.st.requests = [a for a in self.st.requests if a.release != release] + [ack]
        if outcome.final:
            kind = "Normal" if outcome in (AckOutcome.SUCCEEDED, AckOutcome.PLANNED) else "Warning"
            self.emit(kind, f"Request{outcome.value}", f"{release}: {ack.message}")

    def ack_of(self, release: str) -> RequestAck | None:
        return next((a for a in self.st.requests if a.release == release), None)

    # ------------------------------------------------------------------ the look

    def decide(self) -> Decision:
        self.st.observed_generation = self.seen.generation
        self.st.source_hash = self.seen.source_hash
        self.st.current_version = self.current
        self.st.applied_contract = [r.version for r in self.seen.applied if r.phase == "contract"][
            -CONTRACT_KEPT:
        ]
        claimed = {c.release for c in self.seen.claims}
        self.st.requests = [a for a in self.st.requests if a.release in claimed]
        retry = self.seen.retry_request
        if retry and retry != self.st.retry_request:
            # a person fixed what stopped the migration: try again, with a fresh backup
            self.st.retry_request = retry
            self.st.last_error = None
            if self.st.operation is not None and self.st.operation.kind == OperationKind.APPLY:
                self.st.operation = None
        try:
            if self.st.operation is not None:
                self.continue_operation()
            elif (pending := self.next_request()) is not None:
                self.start_request(pending)
            else:
                self.forward()
        except Stop:
            pass
        self.st.gate = self.gate()
        return self.d

    # ------------------------------------------------------------------ what releases allow

    def gate(self) -> GateStatus:
        needs = [(c.claim.needs, c.release) for c in self.seen.claims if c.claim.needs]
        top = max((n for n, _ in needs), default=None)
        return GateStatus(
            needs=top,
            needed_by=sorted(r for n, r in needs if n == top),
            contract_through=self.contract_through(),
            holds=[HoldStatus(release=r, version=v) for r, v in self.holds()],
        )

    def contract_through(self) -> str | None:
        """How far contract migrations may go: as far as every release tolerates."""
        if self.spec.policy.allow_breaking:
            return self.spec.target_version or max(
                (m.version for m in self.seen.migrations), default=None
            )
        claims = self.seen.claims
        if not claims or any(
            not (c.current and c.claim.settled) or c.claim.tolerates is None for c in claims
        ):
            return None
        return min(c.claim.tolerates for c in claims if c.claim.tolerates)

    def contract_allowance(self, first: str) -> ContractDecision:
        return contract_decision(
            [m.version for m in self.seen.migrations],
            (first,),
            [
                ReleaseGate(c.release, c.claim.settled, c.claim.tolerates, c.current)
                for c in self.seen.claims
            ],
            self.spec.policy.allow_breaking,
            self.spec.target_version,
        )

    def holds(self) -> list[tuple[str, str]]:
        """Releases holding the database at a version after their rollback succeeded."""
        held = []
        for c in self.seen.claims:
            request = c.claim.request
            ack = self.ack_of(c.release)
            if (
                request is not None
                and ack is not None
                and ack.id == request.id
                and ack.outcome in (AckOutcome.SUCCEEDED, AckOutcome.IN_PROGRESS)
            ):
                held.append((c.release, request.to_version))
        return held

    def needed_above(self, version: str | None, besides: str | None = None) -> list[str]:
        """Releases (other than `besides`) whose serving revisions need more than `version`,
        or that have not yet said what their latest spec needs (fail closed)."""
        blockers = []
        for c in sorted(self.seen.claims, key=lambda c: c.release):
            if c.release == besides:
                continue
            if not c.current:
                blockers.append(f"{c.release} (has not acted on its latest spec yet)")
            elif c.claim.needs and (version is None or c.claim.needs > version):
                blockers.append(f"{c.release} (needs {c.claim.needs})")
        return blockers

    # ------------------------------------------------------------------ plans

    def plan(self, target: str | None, allow_contract: bool) -> Plan:
        try:
            return make_plan(
                self.seen.migrations,
                self.seen.applied,
                target=target,
                up_lint=self.seen.linted.up,
                down_lint=self.seen.linted.down,
                policy=self.spec.policy,
                allow_contract=allow_contract,
            )
        except DriftError as exc:
            raise self.stall("Drift", str(exc)) from None
        except PlanError as exc:
            raise self.stall("InvalidPlan", str(exc)) from None

    def describe(self, plan: Plan) -> None:
        self.st.target_version = plan.target_version
        self.st.lint = lint_summary(plan, self.seen.linted)
        self.st.plan = plan_summary(plan)
        self.st.pending_contract = list(plan.blocked_contract)

    # ------------------------------------------------------------------ forward

    def forward(self) -> None:
        if self.st.last_error is not None and self.previous.phase == "Failed":
            # stopped by a failure: stays stopped until a retry request or a new spec/source
            if (
                self.previous.observed_generation == self.seen.generation
                and self.previous.source_hash == self.seen.source_hash
            ):
                raise self.stall(self.reason_of(self.previous), self.previous.message or "stopped")
            self.st.last_error = None
        holds = self.holds()
        target = self.spec.target_version
        if holds:
            lowest = min(v for _, v in holds)
            wanted = target or max((m.version for m in self.seen.migrations), default=None)
            if wanted is None or lowest < wanted:
                target = lowest
        plan = self.plan(target, allow_contract=False)
        self.describe(plan)
        if plan.lint_blocked:
            blocked = ", ".join(s.label for s in plan.lint_blocked)
            raise self.stall(
                "LintFailed",
                f"the lint found errors in {blocked}: {plan.lint_blocked[0].lint_errors[0]}; fix "
                "the migration or adjust policy.lint; the database was not touched",
            )
        if self.spec.dry_run:
            count = len(plan.steps) + len(plan.held_back)
            self.settle(
                "DryRun",
                Health.PLANNED,
                "DryRun",
                f"dry run: {count} migration{'s' if count != 1 else ''} would run "
                f"({plan.verdict}); nothing was applied",
                event="Normal",
            )
            return
        held = ", ".join(f"{v} by {r}" for r, v in holds)
        if plan.direction == "down":
            assert plan.target_version is not None
            above = self.needed_above(plan.target_version)
            if above:
                self.settle(
                    "WaitingForReleases",
                    Health.PROGRESSING,
                    "WaitingForReleases",
                    f"at {plan.current_version}; going down to {plan.target_version} waits: "
                    f"FeatureRelease {', '.join(above)}",
                    event="Normal",
                )
                return
            self.start_operation(OperationKind.APPLY, plan, destroys=destroyed_by(plan))
            return
        if not plan.steps and plan.blocked_contract and not holds:
            decision = self.contract_allowance(plan.blocked_contract[0])
            if not decision.allowed:
                self.settle(
                    "WaitingForContract",
                    Health.PROGRESSING,
                    "WaitingForContract",
                    f"expand migrations applied at {plan.current_version}; {decision.reason}",
                    event="Normal",
                )
                return
            plan = self.plan(decision.target or target, allow_contract=True)
            self.describe(plan)
        if not plan.steps:
            at = plan.current_version or "nothing applied"
            message = f"at version {at}" + (f" (held by rollback: {held})" if held else "")
            self.settle("Ready", Health.READY, "UpToDate", message, event="Normal", delay=3600)
            return
        self.start_operation(OperationKind.APPLY, plan)

    def start_operation(
        self,
        kind: OperationKind,
        plan: Plan,
        *,
        release: str | None = None,
        request: str | None = None,
        destroys: Sequence[str] = (),
    ) -> None:
        self.st.serial += 1
        policy = self.spec.policy.backup
        needs_backup = policy != "never" and (
            plan.backup_needed or (plan.direction == "down" and bool(destroys))
        )
        self.st.operation = Operation(
            kind=kind,
            serial=self.st.serial,
            from_version=plan.current_version,
            to_version=plan.target_version,
            direction="down" if plan.direction == "down" else "up",
            allow_contract=plan.allow_contract,
            backup=backup_name(self.seen.name, self.seen.uid, self.st.serial)
            if needs_backup
            else None,
            release=release,
            request=request,
            destroys=list(destroys),
            started_at=self.ts(),
        )
        self.continue_operation()

    # ------------------------------------------------------------------ operations

    def continue_operation(self) -> None:
        op = self.st.operation
        assert op is not None
        if op.kind == OperationKind.RESTORE:
            self.continue_restore(op)
            return
        if op.backup and not op.backup_done:
            self.continue_backup(op)
            op = self.st.operation
            assert op is not None
        if not self.still_allowed(op):
            return
        if op.kind == OperationKind.ROLL_BACK:
            self.settle(
                "RollingBack",
                Health.PROGRESSING,
                "RollingBack",
                f"rolling back to {op.to_version} with down migrations for {op.release}"
                + (f"; this destroys {'; '.join(op.destroys)}" if op.destroys else ""),
                event="Warning",
                delay=0.2,
            )
        else:
            self.settle(
                "Migrating",
                Health.PROGRESSING,
                "Migrating",
                f"migrating from {op.from_version or 'nothing applied'} to {op.to_version}"
                + (f" (down; this destroys {'; '.join(op.destroys)})" if op.destroys else ""),
                delay=0.2,
            )
        self.d.actions.append(RunMigrations(op.to_version, op.direction, op.allow_contract))

    def still_allowed(self, op: Operation) -> bool:
        """An apply that removes schema is checked against the releases again right before it
        runs (they may have moved on while its backup was taken); if it is no longer allowed,
        it is dropped (only a backup was taken) and waits like any other."""
        if op.kind == OperationKind.ROLL_BACK:
            above = self.needed_above(op.to_version, besides=op.release)
            if above and op.release and op.request:
                self.st.operation = None
                self.acknowledge(
                    op.release,
                    op.request,
                    AckOutcome.REFUSED,
                    f"not rolling back to {op.to_version}: FeatureRelease {', '.join(above)} "
                    "serves on this database",
                )
                self.d.delay = 0.2
                return False
        elif op.direction == "down":
            above = self.needed_above(op.to_version)
            if above:
                self.st.operation = None
                self.settle(
                    "WaitingForReleases",
                    Health.PROGRESSING,
                    "WaitingForReleases",
                    f"at {self.current}; going down to {op.to_version} waits: FeatureRelease "
                    f"{', '.join(above)}",
                    event="Normal",
                )
                return False
        elif op.allow_contract and not self.spec.policy.allow_breaking:
            through = self.contract_through()
            if through is None or (op.to_version or "") > through:
                self.st.operation = None
                self.settle(
                    "WaitingForContract",
                    Health.PROGRESSING,
                    "WaitingForContract",
                    f"contract migrations up to {op.to_version} wait: the releases no longer "
                    f"tolerate them ({'only up to ' + through if through else 'none'})",
                    event="Normal",
                )
                return False
        return True

    def continue_backup(self, op: Operation) -> None:
        """Wait for the operation's backup; Stop unless it is complete."""
        assert op.backup is not None
        name = op.backup
        if any(b.name == name for b in self.st.backups):
            self.st.operation = op.model_copy(update={"backup_done": True})
            return
        job = self.seen.jobs.get(name)
        waiting = f"waiting for backup Job {name} before {op.kind.value.lower()}ing anything"
        if job is None:
            self.d.actions.append(StartBackup(name, op.from_version))
            self.emit("Normal", "BackupStarted", f"Backing up before {op.kind.value}: Job {name}")
            self.settle("BackingUp", Health.PROGRESSING, "BackingUp", waiting, delay=2)
            raise Stop()
        if job.phase == "Running":
            self.settle("BackingUp", Health.PROGRESSING, "BackingUp", waiting, delay=2)
            raise Stop()
        message = self.seen.job_messages.get(name, "")
        if job.phase == "Failed":
            self.operation_failed(
                op,
                "BackupFailed",
                f"backup Job {name} failed ({redact(message or job.message)[:300]}); no "
                "migration was applied. Fix the cause and retry with: kubectl annotate dbm "
                f"{self.seen.name} lockstep.dev/request=retry@$(date +%s) --overwrite",
            )
        try:
            result = parse_result(message)
        except BackupError as exc:
            self.operation_failed(
                op, "BackupFailed", f"backup Job {name}: {exc}; no migration was applied"
            )
        record = BackupRecord(
            name=name,
            path=result.path,
            size_bytes=result.size_bytes,
            sha256=result.sha256,
            database_version=op.from_version,
            taken_for=op.to_version,
            snapshot_at=result.at,
            completed_at=self.ts(),
            seconds=result.seconds,
        )
        retention = self.spec.backup.retention if self.spec.backup else 5
        self.st.backups = [*self.st.backups, record][-retention:]
        self.st.operation = op.model_copy(update={"backup_done": True})
        self.emit(
            "Normal",
            "BackupCompleted",
            f"Backup {name}: {result.path}, {result.size_bytes} bytes, sha256 {result.sha256[:12]}",
        )

    def operation_failed(self, op: Operation, reason: str, message: str) -> NoReturn:
        """The operation cannot go on: the database is stopped until a person retries."""
        self.st.operation = None
        if op.release and op.request:
            self.acknowledge(op.release, op.request, AckOutcome.FAILED, message)
        self.st.last_error = MigrationError(version=op.to_version or "", message=message[:500])
        raise self.stall(reason, message)

    def continue_restore(self, op: Operation) -> None:
        backup = next((b for b in self.st.backups if b.name == op.backup), None)
        assert op.release is not None
        assert op.request is not None
        if backup is None:
            self.st.operation = None
            self.acknowledge(
                op.release, op.request, AckOutcome.FAILED, f"backup {op.backup} is no longer kept"
            )
            self.d.delay = 0.2
            return
        name = restore_name(self.seen.name, self.seen.uid, op.serial)
        job = self.seen.jobs.get(name)
        discarding = (
            f"restoring backup {backup.name} of version {backup.database_version}: writes "
            f"committed after {backup.snapshot_at or backup.completed_at} are discarded"
        )
        if job is None:
            self.d.actions.append(StartRestore(name, backup))
            self.settle(
                "Restoring", Health.PROGRESSING, "Restoring", discarding, event="Warning", delay=2
            )
            return
        if job.phase == "Running":
            self.settle("Restoring", Health.PROGRESSING, "Restoring", discarding, delay=2)
            return
        message = self.seen.job_messages.get(name, "") or job.message
        self.st.operation = None
        if job.phase == "Failed":
            self.acknowledge(
                op.release,
                op.request,
                AckOutcome.FAILED,
                f"restore Job {name} failed, the database is unchanged: {message}",
                backup=backup.name,
            )
            self.st.last_error = MigrationError(version=op.to_version or "", message=message[:500])
            raise self.stall("RestoreFailed", f"restore Job {name} failed: {message}")
        try:
            result = parse_result(message)
        except BackupError as exc:
            result = None
            problem = str(exc)
        window = WriteWindow(
            start=backup.snapshot_at or backup.completed_at or "",
            end=(result.at if result and result.at else self.ts()),
        )
        self.acknowledge(
            op.release,
            op.request,
            AckOutcome.SUCCEEDED,
            f"restored backup {backup.name} of version {backup.database_version}; writes "
            f"committed between {window.start} and {window.end} were discarded"
            + ("" if result else f" (the Job's report was unreadable: {problem})"),
            backup=backup.name,
            discarded_writes=window,
        )
        self.d.delay = 0.2

    # ------------------------------------------------------------------ requests

    def next_request(self) -> ReleaseClaim | None:
        """The oldest request not answered yet."""
        pending = []
        for c in self.seen.claims:
            request = c.claim.request
            if request is None:
                continue
            ack = self.ack_of(c.release)
            if ack is None or ack.id != request.id:
                pending.append(c)
        pending.sort(
            key=lambda c: (c.claim.request.requested_at if c.claim.request else "", c.release)
        )
        return pending[0] if pending else None

    def start_request(self, claim: ReleaseClaim) -> None:
        request = claim.claim.request
        assert request is not None
        release, version = claim.release, request.to_version
        current = self.current

        def answer(outcome: AckOutcome, message: str, **extra: object) -> None:
            self.acknowledge(release, request.id, outcome, message, **extra)
            self.d.delay = 0.2

        if current is None or version >= current:
            answer(
                AckOutcome.SUCCEEDED,
                f"nothing to roll back: the database is at {current or 'nothing applied'}, "
                f"not above {version}; held there",
            )
            return
        above = self.needed_above(version, besides=release)
        if above:
            answer(
                AckOutcome.REFUSED,
                f"not rolling back to {version}: FeatureRelease {', '.join(above)} serves on "
                "this database",
            )
            return
        if request.mode == RollbackMode.RESTORE:
            backups = [b for b in self.st.backups if b.database_version == version and b.sha256]
            chosen = next((b for b in backups if b.name == request.backup), None)
            if chosen is None:
                answer(
                    AckOutcome.REFUSED,
                    f"backup {request.backup} of version {version} is not kept (retention) or "
                    "was never taken; nothing was restored",
                )
                return
            if backups[-1].name != chosen.name:
                answer(
                    AckOutcome.REFUSED,
                    f"backup {chosen.name} is not the one taken immediately before the apply "
                    f"being undone ({backups[-1].name} is newer); nothing was restored",
                )
                return
            if self.spec.dry_run:
                answer(
                    AckOutcome.PLANNED,
                    f"dry run: would restore backup {chosen.name} (discarding writes committed "
                    f"after {chosen.snapshot_at or chosen.completed_at}); nothing was executed",
                )
                return
            self.st.serial += 1
            self.st.operation = Operation(
                kind=OperationKind.RESTORE,
                serial=self.st.serial,
                from_version=current,
                to_version=version,
                direction="down",
                backup=chosen.name,
                release=release,
                request=request.id,
                started_at=self.ts(),
            )
            answer(
                AckOutcome.IN_PROGRESS,
                f"restoring backup {chosen.name}: writes committed after "
                f"{chosen.snapshot_at or chosen.completed_at} will be discarded",
                backup=chosen.name,
            )
            self.continue_restore(self.st.operation)
            return
        try:
            plan = make_plan(
                self.seen.migrations,
                self.seen.applied,
                target=version,
                up_lint=self.seen.linted.up,
                down_lint=self.seen.linted.down,
                policy=self.spec.policy,
            )
        except PlanError as exc:
            answer(AckOutcome.FAILED, f"cannot roll back to {version}: {exc}")
            return
        destroys = destroyed_by(plan)
        if self.spec.dry_run:
            answer(
                AckOutcome.PLANNED,
                f"dry run: would roll back to {version} with "
                f"{', '.join(s.label for s in plan.steps)}"
                + (f", destroying {'; '.join(destroys)}" if destroys else "")
                + "; nothing was executed",
                destroys=destroys,
            )
            return
        answer(
            AckOutcome.IN_PROGRESS,
            f"rolling back to {version} with down migrations"
            + (f" (a backup first: they destroy {'; '.join(destroys)})" if destroys else ""),
            destroys=destroys,
        )
        self.start_operation(
            OperationKind.ROLL_BACK, plan, release=release, request=request.id, destroys=destroys
        )

    @staticmethod
    def reason_of(status: DatabaseMigrationStatus) -> str:
        for condition in status.conditions:
            if condition.type == "Stalled" and condition.status == "True":
                return condition.reason
        return "Failed"


def destroyed_by(plan: Plan) -> list[str]:
    """What the down steps of a plan destroy: their data-losing statements."""
    if plan.direction != "down":
        return []
    return [
        f"{step.version}: {statement.summary}"
        for step in plan.steps
        for statement in step.statements
        if DATA_LOSING in statement.classes
    ]


def decide(
    spec: DatabaseMigrationSpec, status: DatabaseMigrationStatus, seen: Observed
) -> Decision:
    """The next status and actions of one DatabaseMigration."""
    return Machine(spec, status, seen).decide()


def after_run(
    spec: DatabaseMigrationSpec,
    status: DatabaseMigrationStatus,
    seen: Observed,
    outcome: RunOutcome,
) -> Decision:
    """Fold the outcome of RunMigrations into the status (the operation ends, or waits)."""
    machine = Machine(spec, status, seen)
    st, op = machine.st, machine.st.operation
    assert op is not None
    st.applied = [*st.applied, *outcome.applied][-APPLIED_KEPT:]
    try:
        if outcome.busy is not None:
            machine.settle(
                "Migrating", Health.PROGRESSING, "RunnerLockBusy", outcome.busy, delay=10
            )
            return machine.d
        if outcome.unreachable is not None:
            raise machine.stall("DatabaseUnreachable", outcome.unreachable, delay=10)
        if outcome.failure is not None or outcome.stopped is not None:
            if outcome.failure is not None:
                st.last_error = outcome.failure
            reason = "MigrationFailed" if outcome.failure is not None else "InvalidPlan"
            message = (
                outcome.stopped
                if outcome.stopped is not None
                else f"migration {outcome.failure.version} failed: {outcome.failure.message}"  # type: ignore[union-attr]
            )
            st.operation = None
            if op.release and op.request:
                machine.acknowledge(op.release, op.request, AckOutcome.FAILED, message or "")
            if st.last_error is None:
                st.last_error = MigrationError(version=op.to_version or "", message=message or "")
            raise machine.stall(reason, message or "")
        st.operation = None
        st.last_error = None
        if op.release and op.request:
            machine.acknowledge(
                op.release,
                op.request,
                AckOutcome.SUCCEEDED,
                f"rolled back to {op.to_version} with down migrations"
                + (f"; destroyed {'; '.join(op.destroys)}" if op.destroys else "")
                + (f" (backup {op.backup} taken first)" if op.backup else ""),
                destroys=list(op.destroys),
                backup=op.backup,
            )
        machine.d.delay = 0.2  # look again at once: contract may be next, or Ready
    except Stop:
        pass
    st.gate = machine.gate()
    return machine.d


# ------------------------------------------------------------------------------ summaries


def lint_summary(plan: Plan, linted: LintedSource) -> LintStatus:
    pending = [s.version for s in (*plan.steps, *plan.held_back) if s.direction == "up"]
    findings = []
    for version in pending:
        result = linted.up.get(version)
        if result is None:
            continue
        for f in result.findings:
            findings.append(
                FindingStatus(
                    rule=f.rule,
                    severity=f.severity,
                    version=version,
                    line=f.line,
                    column=f.column,
                    message=f.message,
                    help=f.help,
                )
            )
    findings.sort(key=lambda f: (f.severity != "error", f.version, f.line))
    return LintStatus(
        errors=sum(f.severity == "error" for f in findings),
        warnings=sum(f.severity == "warning" for f in findings),
        findings=findings[:FINDINGS_KEPT],
    )


def plan_summary(plan: Plan) -> PlanStatus:
    return PlanStatus(
        current_version=plan.current_version,
        target_version=plan.target_version,
        backup_needed=plan.backup_needed,
        migrations=[
            PlannedMigration(
                version=s.version,
                name=s.name,
                phase=s.phase,
                direction=s.direction,
                statements=[
                    PlannedStatement(
                        summary=st.summary,
                        lock=st.lock or "NONE",
                        transactional=st.transactional,
                        classes=list(st.classes),
                    )
                    for st in s.statements
                ],
            )
            for s in (*plan.steps, *plan.held_back)
        ],
    )


__all__ = [
    "Action",
    "Decision",
    "Emit",
    "Observed",
    "ReleaseClaim",
    "RunMigrations",
    "RunOutcome",
    "StartBackup",
    "StartRestore",
    "after_run",
    "decide",
]
