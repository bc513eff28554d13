"""The DatabaseMigration reconciler: lint → backup (by policy) → apply expand → Ready, then
contract when the releases allow it; rollback (down or restore) when a release asks.

Every stage looks at the world first (the ledger in the database, the backup Jobs), so the
reconciler can stop at any point and start again without applying anything twice: the ledger
is the truth about what is applied, a backup Job's name is derived from the plan it protects.
It runs in a worker thread and never sleeps; waiting is the daemon's job.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .. import metrics
from ..api.base import RequestRecord, timestamp
from ..api.base import now as utcnow
from ..api.declarative import APPROVE_ANNOTATION, DesiredSchemaSource
from ..api.migration import (
    AppliedRecord,
    BackupRecord,
    DatabaseMigration,
    DatabaseMigrationSpec,
    DatabaseMigrationStatus,
    FindingStatus,
    LintStatus,
    MigrationError,
    PlannedMigration,
    PlannedStatement,
    PlanStatus,
)
from ..backup import (
    BackupError,
    backup_job,
    backup_job_name,
    parse_result,
    restore_job,
    restore_job_name,
)
from ..conditions import Health, conditions_for
from ..kube import Kube, NotFound
from ..objects import Snapshot, mark_invalid, write_status
from ..postgres import DatabaseError, connect, server_version
from ..redact import redact, remember
from ..release.world import JobView
from ..schema import declarative
from . import engine
from .gate import (
    ReleaseGate,
    RollbackRequest,
    backup_token,
    contract_decision,
    parse_rollback_request,
)
from .linting import LintedSource, lint_config, lint_source
from .plan import DriftError, Plan, PlanError
from .source import Migration, SourceError, from_configmap, from_inline, source_hash

log = logging.getLogger("lockstep.migration")

PLURAL = "databasemigrations"
ROLLBACK_REQUEST_ANNOTATION = "lockstep.dev/rollback-request"
REQUEST_ANNOTATION = "lockstep.dev/request"
FINDINGS_KEPT = 25
APPLIED_KEPT = 20


@dataclass
class MigrationWorld:
    jobs: dict[str, JobView]
    gates: list[ReleaseGate]
    stop: threading.Event = field(default_factory=threading.Event)


class Stop(Exception):
    """End this reconciliation with the status as it is now (carries the next delay)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay


_lint_cache: dict[tuple[str, str], LintedSource] = {}
_lint_lock = threading.Lock()


def cached_lint(
    migrations: list[Migration], source_id: str, config_key: str, **kwargs: Any
) -> LintedSource:
    """Lint results per (source, configuration): linting every pass would waste the CPU."""
    key = (source_id, config_key)
    with _lint_lock:
        found = _lint_cache.get(key)
    if found is None:
        found = lint_source(migrations, lint_config(**kwargs))
        with _lint_lock:
            if len(_lint_cache) > 256:
                _lint_cache.clear()
            _lint_cache[key] = found
    return found


class Reconciliation:
    """One pass over one DatabaseMigration."""

    def __init__(
        self, kube: Kube, obj: Snapshot, world: MigrationWorld, spec: DatabaseMigrationSpec
    ) -> None:
        self.kube = kube
        self.obj = obj
        self.world = world
        self.spec = spec
        self.previous = DatabaseMigrationStatus.model_validate(obj.status or {})
        self.st = self.previous.model_copy(deep=True)
        self.st.observed_generation = obj.generation
        self.url = ""

    # ------------------------------------------------------------------ status

    def event(self, type_: str, reason: str, message: str) -> None:
        self.kube.event(self.obj.ref, type_, reason, message)

    def settle(
        self, phase: str, health: Health, reason: str, message: str, event: str | None = None
    ) -> None:
        """Set the coarse state; post an Event when it changed (not on every pass)."""
        message = redact(message)
        changed = (self.previous.phase, self.previous.message) != (phase, message)
        self.st.phase, self.st.message = phase, message
        self.st.conditions = conditions_for(
            health, reason, message, self.obj.generation, self.st.conditions, at=timestamp(utcnow())
        )
        if event and changed:
            self.event(event, reason, message)

    def stall(self, reason: str, message: str, delay: float = 30.0) -> Stop:
        self.settle("Failed", Health.STALLED, reason, message, event="Warning")
        return Stop(delay)

    def write(self) -> dict[str, Any]:
        status = self.st.wire()
        write_status(self.kube, self.obj, status)
        return status

    # ------------------------------------------------------------------ inputs

    def database_url(self) -> str:
        ref = self.spec.database.url_from.secret_key_ref
        try:
            url = self.kube.secret_value(self.obj.namespace, ref.name, ref.key)
        except NotFound as exc:
            raise self.stall(
                "SecretNotFound",
                f"{exc}: create it with the database URL under key {ref.key!r}; nothing was done",
                delay=10,
            ) from None
        remember(url)
        return url

    def migrations(self) -> list[Migration]:
        source = self.spec.source
        try:
            if source.desired_schema is not None:
                return self.declarative(source.desired_schema)
            if source.migrations is not None:
                return from_inline(source.migrations)
            assert source.config_map_ref is not None
            data = self.kube.configmap_data(self.obj.namespace, source.config_map_ref.name)
            return from_configmap(data)
        except NotFound as exc:
            raise self.stall("SourceNotFound", f"{exc}; nothing was done", delay=10) from None
        except SourceError as exc:
            raise self.stall("InvalidSource", f"{exc}; nothing was done") from None

    def declarative(self, desired: DesiredSchemaSource) -> list[Migration]:
        """Declarative mode (lockstep.schema.declarative): the approved plan's migrations, or
        a reason to wait (for an approval, or for a fix of the desired schema)."""
        dev = desired.dev_database
        server_url = None
        if dev is not None:
            server_url = self.kube.secret_value(
                self.obj.namespace, dev.url_from.name, dev.url_from.key
            )
            remember(server_url)
        try:
            decision = declarative.plan_pass(
                url=self.url,
                desired=self.kube.configmap_data(self.obj.namespace, desired.config_map_ref.name),
                allow_hazards=desired.allow_hazards,
                server_url=server_url,
                previous=self.st.declarative,
                approved=self.obj.annotations.get(APPROVE_ANNOTATION),
                dry_run=self.spec.dry_run,
                name=self.obj.name,
            )
        except DatabaseError as exc:
            raise self.stall("DatabaseUnreachable", str(exc), delay=10) from None
        self.st.declarative = decision.status
        waiting = decision.outcome
        if isinstance(waiting, declarative.Waiting):
            if waiting.stalled:
                raise self.stall(waiting.reason, waiting.message)
            self.settle(
                "WaitingForApproval", Health.PAUSED, waiting.reason, waiting.message, "Normal"
            )
            raise Stop(waiting.delay)
        return waiting.migrations

    def server(self) -> tuple[int, int]:
        try:
            with connect(self.url, application_name="lockstep-operator") as conn:
                version = server_version(conn)
        except DatabaseError as exc:
            raise self.stall("DatabaseUnreachable", str(exc), delay=10) from None
        self.st.server_version = f"{version[0]}.{version[1]}"
        return version

    # ------------------------------------------------------------------ the pass

    def run(self) -> float:
        retry = self.obj.annotations.get(REQUEST_ANNOTATION, "")
        if retry.startswith("retry") and retry != self.st.retry_request:
            # a person fixed what made the backup fail: take a fresh one
            self.st.retry_request = retry
            self.st.backup_attempt += 1
        self.url = self.database_url()
        migrations = self.migrations()
        source_id = source_hash(migrations)
        if self.st.source_hash != source_id:
            self.st.source_hash = source_id
        version = self.server()
        policy = self.spec.policy
        try:
            linted = cached_lint(
                migrations,
                source_id,
                f"{version}:{policy.lint.model_dump_json()}",
                policy=policy.lint,
                pg_version=version,
            )
        except ValueError as exc:  # unknown rule ids in the policy
            raise self.stall("InvalidSpec", f"policy.lint: {exc}") from None

        request = parse_rollback_request(self.obj.annotations.get(ROLLBACK_REQUEST_ANNOTATION))
        if isinstance(request, str):
            log.warning("DatabaseMigration %s/%s: %s", self.obj.namespace, self.obj.name, request)
            request = None
        if request is not None and (
            self.st.last_request is None or self.st.last_request.id != request.id
        ):
            return self.rollback(request, migrations, linted)
        held = (
            self.st.held_at
            if request is not None and self.st.hold_request == request.id and self.st.held_at
            else None
        )
        if held is None:
            self.st.held_at = self.st.hold_request = None

        target = held or self.spec.target_version
        plan = self.plan(migrations, linted, target, allow_contract=False)
        self.st.target_version = plan.target_version
        self.st.current_version = plan.current_version
        self.st.lint = lint_summary(plan, linted)
        self.st.plan = plan_summary(plan)
        self.st.pending_contract = list(plan.blocked_contract)

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
            raise Stop(60)

        if not plan.steps and plan.blocked_contract and held is None:
            decision = contract_decision(
                [m.version for m in migrations],
                plan.blocked_contract,
                self.world.gates,
                policy.allow_breaking,
                self.spec.target_version,
            )
            if not decision.allowed:
                self.settle(
                    "WaitingForContract",
                    Health.PROGRESSING,
                    "WaitingForContract",
                    f"expand migrations applied at {plan.current_version}; {decision.reason}",
                    event="Normal",
                )
                raise Stop(5)
            plan = self.plan(migrations, linted, decision.target or target, allow_contract=True)
            self.st.plan = plan_summary(plan)

        if not plan.steps:
            at = plan.current_version or "nothing applied"
            message = f"at version {at}" + (f" (held after a rollback to {held})" if held else "")
            self.settle("Ready", Health.READY, "UpToDate", message, event="Normal")
            self.st.last_error = None
            raise Stop(60)

        if plan.backup_needed and policy.backup != "never":
            self.ensure_backup(plan)
        return self.apply(migrations, linted, plan, allow_contract=plan.allow_contract)

    def plan(
        self,
        migrations: list[Migration],
        linted: LintedSource,
        target: str | None,
        allow_contract: bool,
    ) -> Plan:
        try:
            return engine.plan(
                self.url,
                migrations,
                up_lint=linted.up,
                down_lint=linted.down,
                policy=self.spec.policy,
                target=target,
                allow_contract=allow_contract,
                application_name="lockstep-operator",
            )
        except DriftError as exc:
            raise self.stall("Drift", str(exc)) from None
        except PlanError as exc:
            raise self.stall("InvalidPlan", str(exc)) from None
        except DatabaseError as exc:
            raise self.stall("DatabaseUnreachable", str(exc), delay=10) from None

    # ------------------------------------------------------------------ backup

    def ensure_backup(self, plan: Plan) -> None:
        """A completed backup of the database as it is before `plan`, or Stop."""
        backup = self.spec.backup
        assert backup is not None  # the model requires it unless policy.backup is never
        token = backup_token(
            self.st.source_hash or "", plan.current_version, self.st.backup_attempt
        )
        name = backup_job_name(self.obj.name, token)
        if any(b.name == name for b in self.st.backups):
            return
        job = self.world.jobs.get(name)
        if job is None:
            try:
                body = backup_job(
                    migration_name=self.obj.name,
                    namespace=self.obj.namespace,
                    owner=self.obj.ref.owner_reference(),
                    url_secret=self.spec.database.url_from.secret_key_ref,
                    spec=backup,
                    backup_name=name,
                    schema_version=plan.current_version,
                )
            except BackupError as exc:
                raise self.stall("InvalidBackup", str(exc)) from None
            if self.kube.create_job(body):
                self.event(
                    "Normal",
                    "BackupStarted",
                    f"Backing up before {plan.verdict or 'applying'}: Job {name}",
                )
            self.settle(
                "BackingUp",
                Health.PROGRESSING,
                "BackingUp",
                f"waiting for backup Job {name} before applying anything",
            )
            raise Stop(2)
        if job.phase == "Running":
            self.settle(
                "BackingUp",
                Health.PROGRESSING,
                "BackingUp",
                f"waiting for backup Job {name} before applying anything",
            )
            raise Stop(2)
        message = self.kube.job_termination_message(self.obj.namespace, name) or ""
        if job.phase == "Failed":
            reason = message or job.message
            raise self.stall(
                "BackupFailed",
                f"backup Job {name} failed ({redact(reason)[:300]}); no migration was applied. "
                "Fix the cause and retry with: kubectl annotate dbm "
                f"{self.obj.name} lockstep.dev/request=retry@$(date +%s) --overwrite",
            )
        try:
            result = parse_result(message)
        except BackupError as exc:
            raise self.stall(
                "BackupFailed", f"backup Job {name}: {exc}; no migration was applied"
            ) from None
        record = BackupRecord(
            name=name,
            path=result.path,
            size_bytes=result.size_bytes,
            sha256=result.sha256,
            database_version=plan.current_version,
            completed_at=timestamp(utcnow()),
        )
        self.st.backups = [*self.st.backups, record][-backup.retention :]
        self.event(
            "Normal",
            "BackupCompleted",
            f"Backup {name}: {result.path}, {result.size_bytes} bytes, sha256 {result.sha256[:12]}",
        )

    # ------------------------------------------------------------------ apply

    def apply(
        self, migrations: list[Migration], linted: LintedSource, plan: Plan, allow_contract: bool
    ) -> float:
        self.settle(
            "Migrating",
            Health.PROGRESSING,
            "Migrating",
            f"applying {', '.join(s.label for s in plan.steps)}",
        )
        self.write()

        def on_event(kind: str, version: str | None, detail: str) -> None:
            if kind in ("applied", "reverted", "retrying", "invalid-index-dropped", "resumed"):
                self.event(
                    "Warning" if kind == "retrying" else "Normal",
                    "Migration" + kind.title().replace("-", ""),
                    detail,
                )

        try:
            result = engine.apply(
                self.url,
                migrations,
                up_lint=linted.up,
                down_lint=linted.down,
                policy=self.spec.policy,
                applied_by=f"lockstep-operator:{self.obj.namespace}/{self.obj.name}",
                target=plan.target_version,
                allow_contract=allow_contract,
                wait=self.world.stop.wait,
                on_event=on_event,
                application_name="lockstep-operator",
            )
        except engine.MigrationFailed as exc:
            self.st.last_error = MigrationError(
                version=exc.version,
                statement=exc.statement or "",
                sqlstate=exc.sqlstate or "",
                message=exc.message,
            )
            raise self.stall("MigrationFailed", str(exc)) from None
        except engine.RunnerLockTimeout as exc:
            self.settle("Migrating", Health.PROGRESSING, "RunnerLockBusy", str(exc))
            raise Stop(10) from None
        except engine.Cancelled:
            raise Stop(1) from None
        except DriftError as exc:
            raise self.stall("Drift", str(exc)) from None
        except PlanError as exc:
            raise self.stall("InvalidPlan", str(exc)) from None
        except DatabaseError as exc:
            raise self.stall("DatabaseUnreachable", str(exc), delay=10) from None
        records = [
            AppliedRecord(
                version=r.version,
                name=r.name,
                direction=r.direction,
                finished_at=timestamp(r.finished_at),
                duration_ms=r.duration_ms,
                lock_wait_ms=r.lock_wait_ms,
                attempts=r.attempts,
            )
            for r in result.results
        ]
        for r in result.results:
            metrics.MIGRATIONS_APPLIED.labels(r.direction).inc()
        self.st.applied = [*self.st.applied, *records][-APPLIED_KEPT:]
        self.st.last_error = None
        return 0.2  # look again at once: contract may be next, or Ready

    # ------------------------------------------------------------------ rollback

    def rollback(
        self, request: RollbackRequest, migrations: list[Migration], linted: LintedSource
    ) -> float:
        """Take the database back for a FeatureRelease, then hold it there."""
        if request.mode == "restore":
            outcome = self.restore(request)
        else:
            self.settle(
                "RollingBack",
                Health.PROGRESSING,
                "RollingBack",
                f"rolling back to {request.to_version} for {request.requested_by}",
                event="Warning",
            )
            self.write()
            try:
                plan = self.plan(migrations, linted, request.to_version, allow_contract=True)
                self.apply(migrations, linted, plan, allow_contract=True)
                outcome = f"Succeeded: rolled back to {request.to_version} with down migrations"
            except Stop:
                if self.st.phase == "Failed":
                    outcome = f"Failed: {self.st.message}"
                else:
                    raise
        self.st.last_request = RequestRecord(
            id=request.id,
            action=f"rollback:{request.mode}",
            outcome=redact(outcome)[:500],
            at=timestamp(utcnow()),
        )
        if outcome.startswith("Succeeded"):
            self.st.held_at, self.st.hold_request = request.to_version, request.id
            self.event("Warning", "RolledBack", f"{outcome} (requested by {request.requested_by})")
        else:
            self.event("Warning", "RollbackFailed", outcome)
        return 0.2

    def restore(self, request: RollbackRequest) -> str:
        backup_spec = self.spec.backup
        candidates = [
            b for b in self.st.backups if b.database_version == request.to_version and b.sha256
        ]
        if backup_spec is None or not candidates:
            return f"Failed: no backup of version {request.to_version} to restore"
        backup = candidates[-1]
        name = restore_job_name(self.obj.name, backup_token(request.id, backup.name, 1))
        job = self.world.jobs.get(name)
        if job is None:
            body = restore_job(
                migration_name=self.obj.name,
                namespace=self.obj.namespace,
                owner=self.obj.ref.owner_reference(),
                url_secret=self.spec.database.url_from.secret_key_ref,
                spec=backup_spec,
                backup=backup,
                job_name=name,
            )
            self.kube.create_job(body)
            self.settle(
                "Restoring",
                Health.PROGRESSING,
                "Restoring",
                f"restoring backup {backup.name} (taken {backup.completed_at}); writes made "
                "since then are lost",
                event="Warning",
            )
            raise Stop(2)
        if job.phase == "Running":
            raise Stop(2)
        if job.phase == "Failed":
            message = self.kube.job_termination_message(self.obj.namespace, name) or job.message
            return f"Failed: restore Job {name}: {message}"
        return (
            f"Succeeded: restored backup {backup.name} of version {request.to_version}; writes "
            f"made after {backup.completed_at} are lost"
        )


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


def reconcile(kube: Kube, obj: Snapshot, world: MigrationWorld) -> tuple[dict[str, Any], float]:
    """One pass over a DatabaseMigration: returns (the status written, seconds until the next)."""
    with metrics.RECONCILE_SECONDS.labels("DatabaseMigration").time():
        try:
            spec = DatabaseMigration.model_validate({"spec": obj.spec}).spec
        except ValidationError as exc:
            metrics.RECONCILES.labels("DatabaseMigration", "invalid").inc()
            return mark_invalid(kube, obj, exc), 60.0
        run = Reconciliation(kube, obj, world, spec)
        try:
            delay = run.run()
        except Stop as stop:
            delay = stop.delay
        status = run.write()
        metrics.RECONCILES.labels("DatabaseMigration", run.st.phase or "none").inc()
        return status, delay
