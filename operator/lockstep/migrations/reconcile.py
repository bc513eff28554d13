"""Carrying out DatabaseMigration decisions: the glue between `machine` and the outside world.

One look reads the inputs (the Secret's URL, the migration source, the ledger, the Jobs in
flight, the releases' claims), asks `machine.decide`, writes the status (only if the object is
still the version the decision was taken from), then acts: starts a backup or restore Job, or
runs migrations with the engine and writes their outcome. Before anything that removes schema
(a contract or a down migration) the releases' claims are read again from the API, so that a
stale watch never lets one through. It runs in a worker thread and never sleeps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .. import metrics
from ..api.base import now as utcnow
from ..api.base import seconds, timestamp
from ..api.declarative import APPROVE_ANNOTATION
from ..api.migration import (
    AnalysisStatus,
    AppliedRecord,
    DatabaseMigration,
    DatabaseMigrationSpec,
    DatabaseMigrationStatus,
    MigrationError,
)
from ..api.protocol import SchemaClaim
from ..backup import BackupError, backup_job, restore_job
from ..conditions import RETRIED_REASONS, Health, conditions_for
from ..kube import Conflict, Kube, NotFound
from ..objects import Snapshot, mark_invalid, write_status
from ..postgres import DatabaseError, connect, server_version
from ..redact import redact, remember
from ..release.world import JobView
from ..schema import declarative
from ..schema.analysis import dry_run_analysis
from ..schema.live import catalog_fingerprint, sessions
from . import engine, ledger
from .linting import LintedSource, lint_config, lint_source, lint_source_live
from .machine import (
    Decision,
    Emit,
    Observed,
    ReleaseClaim,
    RunMigrations,
    RunOutcome,
    StartBackup,
    StartRestore,
    after_run,
    awaited_jobs,
    decide,
)
from .plan import DriftError, PlanError
from .records import AppliedMigration
from .source import Migration, SourceError, from_configmap, from_inline, source_hash

log = logging.getLogger("lockstep.migration")

PLURAL = "databasemigrations"
REQUEST_ANNOTATION = "lockstep.dev/request"
APPLICATION = "lockstep-operator"
# Phases in which nothing happens until an input the watch shows changes (the spec, the
# ConfigMap, the releases' claims, an annotation): an idle DatabaseMigration is not looked at
# again, so it makes no API request and opens no database connection.
QUIET_PHASES = frozenset({"Ready", "WaitingForContract", "WaitingForReleases", "DryRun"})
# Failures that stay until a person changes the spec or the source, or asks for a retry.
QUIET_FAILURES = frozenset(
    {
        "MigrationFailed",
        "BackupFailed",
        "RestoreFailed",
        "LintFailed",
        "InvalidSpec",
        "InvalidSource",
        "SourceNotFound",
        "InvalidBackup",
    }
)


def quiet(status: DatabaseMigrationStatus) -> bool:
    """Nothing will happen until a watched input changes."""
    if status.operation is not None:
        return False
    if status.phase in QUIET_PHASES:
        return True
    return status.phase in ("Failed", "Retrying") and any(
        c.type == "Stalled" and c.status == "True" and c.reason in QUIET_FAILURES
        for c in status.conditions
    )


@dataclass
class MigrationWorld:
    jobs: dict[str, JobView]
    claims: list[ReleaseClaim]
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Outcome:
    obj: dict[str, Any] | None  # the object after our last write (or as re-read)
    delay: float
    quiet: bool = False  # nothing will happen until an input changes


class Stalled(Exception):
    """An input is missing or broken, or a person must act: the status says so and nothing
    else happens."""

    def __init__(
        self,
        reason: str,
        message: str,
        delay: float = 30.0,
        *,
        phase: str | None = None,
        health: Health = Health.STALLED,
        quiet: bool | None = None,
        update: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason, self.message, self.delay = reason, message, delay
        # an error lockstep retries by itself heals without a spec change: not Failed
        self.phase = phase or ("Retrying" if reason in RETRIED_REASONS else "Failed")
        self.health = health
        self.quiet = reason in QUIET_FAILURES if quiet is None else quiet
        self.update = update or {}  # status fields to write with it


_lint_cache: dict[tuple[str, ...], LintedSource] = {}
_lint_lock = threading.Lock()


def cached_lint(
    migrations: list[Migration],
    source_id: str,
    config_key: str,
    *,
    url: str | None = None,
    applied: Sequence[str] = (),
    **kwargs: Any,
) -> LintedSource:
    """Lint results per (source, configuration): linting every pass would waste the CPU.
    With `url`, the pending migrations are linted in the live database's facts, read again
    only when a coarse fingerprint of its catalog (one query) or the ledger changed."""
    key: tuple[str, ...] = (source_id, config_key)
    with contextlib.ExitStack() as stack:
        conn = None
        if url is not None:
            conn = stack.enter_context(connect(url, application_name=APPLICATION))
            key += (catalog_fingerprint(conn), ",".join(sorted(applied)))
        with _lint_lock:
            found = _lint_cache.get(key)
        if found is None:
            config = lint_config(**kwargs)
            if conn is None:
                found = lint_source(migrations, config)
            else:
                found = lint_source_live(conn, migrations, config, frozenset(applied))
            with _lint_lock:
                if len(_lint_cache) > 256:
                    _lint_cache.clear()
                _lint_cache[key] = found
    return found


# --------------------------------------------------------------------------------- inputs


def database_url(kube: Kube, obj: Snapshot, spec: DatabaseMigrationSpec) -> str:
    ref = spec.database.url_from.secret_key_ref
    try:
        url = kube.secret_value(obj.namespace, ref.name, ref.key)
    except NotFound as exc:
        raise Stalled(
            "SecretNotFound",
            f"{exc}: create it with the database URL under key {ref.key!r}; nothing was done",
            delay=10,
        ) from None
    remember(url)
    return url


def load_source(kube: Kube, obj: Snapshot, spec: DatabaseMigrationSpec) -> list[Migration]:
    source = spec.source
    try:
        if source.desired_schema is not None:
            raise ValueError("a desired schema is planned by `declarative_source`")
        if source.migrations is not None:
            return from_inline(source.migrations)
        assert source.config_map_ref is not None
        return from_configmap(kube.configmap_data(obj.namespace, source.config_map_ref.name))
    except NotFound as exc:
        raise Stalled("SourceNotFound", f"{exc}; nothing was done", delay=10) from None
    except SourceError as exc:
        raise Stalled("InvalidSource", f"{exc}; nothing was done") from None


def declarative_source(
    kube: Kube,
    obj: Snapshot,
    spec: DatabaseMigrationSpec,
    status: DatabaseMigrationStatus,
    url: str,
) -> tuple[list[Migration], DatabaseMigrationStatus]:
    """Declarative mode (lockstep.schema.declarative): the approved plan's migrations, or
    Stalled with the reason to wait (an approval, or a fix of the desired schema)."""
    desired = spec.source.desired_schema
    assert desired is not None
    server_url = None
    try:
        if desired.dev_database is not None:
            ref = desired.dev_database.url_from
            server_url = kube.secret_value(obj.namespace, ref.name, ref.key)
            remember(server_url)
        data = kube.configmap_data(obj.namespace, desired.config_map_ref.name)
    except NotFound as exc:
        raise Stalled("SourceNotFound", f"{exc}; nothing was done", delay=10) from None
    try:
        decision = declarative.plan_pass(
            url=url,
            desired=data,
            allow_hazards=desired.allow_hazards,
            server_url=server_url,
            previous=status.declarative,
            approved=obj.annotations.get(APPROVE_ANNOTATION),
            dry_run=spec.dry_run,
            name=obj.name,
        )
    except DatabaseError as exc:
        raise Stalled("DatabaseUnreachable", str(exc), delay=10) from None
    status = status.model_copy(update={"declarative": decision.status})
    outcome = decision.outcome
    if isinstance(outcome, declarative.Waiting):
        update = {"declarative": decision.status}
        if outcome.stalled:
            raise Stalled(outcome.reason, outcome.message, update=update, quiet=True)
        raise Stalled(
            outcome.reason,
            outcome.message,
            outcome.delay,
            phase="WaitingForApproval",
            health=Health.PAUSED,
            quiet=True,
            update=update,
        )
    return outcome.migrations, status


def inspect_database(url: str) -> tuple[tuple[int, int], list[AppliedMigration]]:
    """The server version and the ledger, on one connection (nothing is created or locked)."""
    try:
        with connect(url, application_name=APPLICATION) as conn:
            return server_version(conn), ledger.applied(conn)
    except DatabaseError as exc:
        raise Stalled("DatabaseUnreachable", str(exc), delay=10) from None


def claims_of(items: Sequence[dict[str, Any]], migration: str) -> list[ReleaseClaim]:
    """The claims of the FeatureReleases (as API objects) that use `migration`."""
    claims = []
    for item in items:
        spec, status = item.get("spec") or {}, item.get("status") or {}
        if (spec.get("migration") or {}).get("ref") != migration:
            continue
        meta = item.get("metadata") or {}
        claims.append(claim_of(str(meta.get("name")), meta.get("generation"), status, migration))
    return claims


def claim_of(name: str, generation: Any, status: dict[str, Any], migration: str) -> ReleaseClaim:
    """One release's claim. A release that has not published one yet (or whose claim names
    another DatabaseMigration) claims nothing and allows nothing."""
    raw = status.get("database") or {}
    try:
        claim = SchemaClaim.model_validate(raw) if raw else SchemaClaim(migration=migration)
    except ValidationError:
        claim = SchemaClaim(migration=migration)
    if claim.migration != migration:
        claim = SchemaClaim(migration=migration)
    current = int(status.get("observedGeneration") or 0) == int(generation or 0)
    return ReleaseClaim(release=name, current=current, claim=claim)


# ------------------------------------------------------------------------------- the look


def reconcile(kube: Kube, obj: Snapshot, world: MigrationWorld) -> Outcome:
    """One look at a DatabaseMigration."""
    with metrics.RECONCILE_SECONDS.labels("DatabaseMigration").time():
        try:
            spec = DatabaseMigration.model_validate({"spec": obj.spec}).spec
        except ValidationError as exc:
            metrics.reconciled("DatabaseMigration", "invalid")
            return Outcome(mark_invalid(kube, obj, exc), 60.0, quiet=True)
        status = DatabaseMigrationStatus.model_validate(obj.status or {})
        try:
            outcome = Look(kube, obj, world, spec, status).run()
        except Stalled as stall:
            outcome = write_stall(kube, obj, status, stall)
        except Conflict:
            metrics.reconciled("DatabaseMigration", "conflict")
            return Outcome(kube.get_custom(PLURAL, obj.namespace, obj.name), 0.05)
        except NotFound:
            return Outcome(None, 60.0, quiet=True)
        metrics.reconciled("DatabaseMigration", "ok")
        return outcome


class Look:
    def __init__(
        self,
        kube: Kube,
        obj: Snapshot,
        world: MigrationWorld,
        spec: DatabaseMigrationSpec,
        status: DatabaseMigrationStatus,
    ) -> None:
        self.kube, self.obj, self.world, self.spec, self.status = kube, obj, world, spec, status
        self.url = ""

    def observe(self, claims: list[ReleaseClaim] | None = None) -> Observed:
        if self.spec.source.desired_schema is not None:
            migrations, self.status = declarative_source(
                self.kube, self.obj, self.spec, self.status, self.url
            )
        else:
            migrations = load_source(self.kube, self.obj, self.spec)
        version, applied = inspect_database(self.url)
        self.status = self.status.model_copy(
            update={"server_version": f"{version[0]}.{version[1]}"}
        )
        policy = self.spec.policy
        source_id = source_hash(migrations)
        try:
            linted = cached_lint(
                migrations,
                source_id,
                f"{version}:{policy.lint.model_dump_json()}",
                policy=policy.lint,
                pg_version=version,
                url=self.url,
                applied=[r.version for r in applied],
            )
        except ValueError as exc:  # unknown rule ids in the policy
            raise Stalled("InvalidSpec", f"policy.lint: {exc}") from None
        except DatabaseError as exc:
            raise Stalled("DatabaseUnreachable", str(exc), delay=10) from None
        return Observed(
            now=utcnow(),
            name=self.obj.name,
            uid=self.obj.uid,
            generation=self.obj.generation,
            migrations=migrations,
            linted=linted,
            source_hash=source_id,
            applied=applied,
            jobs=self.world.jobs,
            job_messages=self.job_messages(),
            claims=self.world.claims if claims is None else claims,
            retry_request=self.retry_request(),
        )

    def analysis(self, seen: Observed) -> AnalysisStatus | None:
        """A dry run's analysis: the live facts, the sessions that would block right now and
        each pending statement's verdict (lockstep.schema.analysis)."""
        if seen.linted.live is None:
            return None
        try:
            with connect(self.url, application_name=APPLICATION) as conn:
                blocking = sessions(conn)
        except DatabaseError:
            blocking = None  # those read with the facts
        return dry_run_analysis(seen.linted.live, seen.migrations, blocking)

    def retry_request(self) -> str | None:
        value = self.obj.annotations.get(REQUEST_ANNOTATION, "")
        return value if value.split("@", 1)[0].strip().lower() == "retry" else None

    def job_messages(self) -> dict[str, str]:
        """Termination messages of the finished Jobs the operation in flight waits for."""
        messages = {}
        for name in awaited_jobs(self.status, self.obj.name, self.obj.uid):
            job = self.world.jobs.get(name)
            if job is None or job.phase == "Running":
                continue
            message = self.kube.job_termination_message(self.obj.namespace, name)
            if message:
                messages[name] = message
        return messages

    def fresh_claims(self) -> list[ReleaseClaim]:
        items = self.kube.list_custom("featurereleases", self.obj.namespace)
        return claims_of(items, self.obj.name)

    def run(self) -> Outcome:
        self.url = database_url(self.kube, self.obj, self.spec)
        seen = self.observe()
        decision = decide(self.spec, self.status, seen)
        run = decision.run
        if run is not None and (run.allow_contract or run.direction == "down"):
            # this removes schema: decide again on the releases as they are right now
            seen = dataclasses.replace(seen, claims=self.fresh_claims())
            decision = decide(self.spec, self.status, seen)
            run = decision.run
        decision.status.analysis = self.analysis(seen) if self.spec.dry_run else None
        written = self.write(decision)
        self.perform(decision)
        if run is None:
            waiting = any(not isinstance(a, Emit) for a in decision.actions)
            return Outcome(written, decision.delay, quiet=quiet(decision.status) and not waiting)
        outcome = self.migrate(seen, run)
        _, applied = inspect_database(self.url)
        after = after_run(
            self.spec, decision.status, dataclasses.replace(seen, applied=applied), outcome
        )
        after.status.current_version = max((r.version for r in applied), default=None)
        written = self.write(after) or written
        self.perform(after)
        return Outcome(written, after.delay)

    def write(self, decision: Decision) -> dict[str, Any] | None:
        status = decision.status.wire()
        work = [a for a in decision.actions if not isinstance(a, Emit)]
        result = write_status(self.kube, self.obj, status, always=bool(work))
        if result is not None:
            self.obj = Snapshot.of(self.obj.kind, self.obj.plural, result)
        self.count_backups(self.status, decision.status)
        self.status = decision.status
        return result

    def count_backups(
        self, before: DatabaseMigrationStatus, after: DatabaseMigrationStatus
    ) -> None:
        known = {b.name for b in before.backups}
        for backup in after.backups:
            if backup.name not in known:
                metrics.backup_finished(
                    self.obj.namespace,
                    self.obj.name,
                    backup.name,
                    backup.size_bytes,
                    backup.seconds,
                )
        failed = any(
            c.type == "Stalled" and c.status == "True" and c.reason == "BackupFailed"
            for c in after.conditions
        )
        if failed and before.operation is not None and before.operation.backup:
            metrics.backup_finished(
                self.obj.namespace, self.obj.name, before.operation.backup, None, None
            )

    def perform(self, decision: Decision) -> None:
        owner = self.obj.ref.owner_reference()
        url_secret = self.spec.database.url_from.secret_key_ref
        for action in decision.actions:
            if isinstance(action, Emit):
                self.kube.event(self.obj.ref, action.type, action.reason, action.message)
            elif isinstance(action, StartBackup):
                assert self.spec.backup is not None
                try:
                    body = backup_job(
                        migration_name=self.obj.name,
                        namespace=self.obj.namespace,
                        owner=owner,
                        url_secret=url_secret,
                        spec=self.spec.backup,
                        backup_name=action.name,
                        schema_version=action.database_version,
                    )
                except BackupError as exc:
                    raise Stalled("InvalidBackup", str(exc)) from None
                self.kube.create_job(body)
            elif isinstance(action, StartRestore):
                assert self.spec.backup is not None
                policy = self.spec.policy
                self.kube.create_job(
                    restore_job(
                        migration_name=self.obj.name,
                        namespace=self.obj.namespace,
                        owner=owner,
                        url_secret=url_secret,
                        spec=self.spec.backup,
                        backup=action.backup,
                        job_name=action.name,
                        lock_timeout_ms=int(seconds(policy.lock_timeout) * 1000),
                        lock_retries=policy.lock_timeout_retries,
                    )
                )

    def migrate(self, seen: Observed, run: RunMigrations) -> RunOutcome:
        """Run migrations with the engine; the outcome, whatever happened."""

        def on_event(kind: str, version: str | None, detail: str) -> None:
            if kind in ("applied", "reverted", "retrying", "invalid-index-dropped", "resumed"):
                self.kube.event(
                    self.obj.ref,
                    "Warning" if kind == "retrying" else "Normal",
                    "Migration" + kind.title().replace("-", ""),
                    detail,
                )

        try:
            result = engine.apply(
                self.url,
                seen.migrations,
                up_lint=seen.linted.up,
                down_lint=seen.linted.down,
                policy=self.spec.policy,
                applied_by=f"lockstep-operator:{self.obj.namespace}/{self.obj.name}",
                target=run.target,
                allow_contract=run.allow_contract,
                direction="down" if run.direction == "down" else "up",
                wait=self.world.stop.wait,
                on_event=on_event,
                application_name=APPLICATION,
            )
        except engine.MigrationFailed as exc:
            return RunOutcome(
                failure=MigrationError(
                    version=exc.version,
                    statement=exc.statement or "",
                    sqlstate=exc.sqlstate or "",
                    message=redact(exc.message),
                )
            )
        except engine.RunnerLockTimeout as exc:
            return RunOutcome(busy=redact(str(exc)))
        except engine.Cancelled:
            return RunOutcome(busy="the operator is stopping; the migration continues later")
        except (DriftError, PlanError) as exc:
            return RunOutcome(stopped=redact(str(exc)))
        except DatabaseError as exc:
            return RunOutcome(unreachable=redact(str(exc)))
        metrics.migrations_applied(result.results)
        return RunOutcome(
            applied=tuple(
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
            )
        )


def write_stall(
    kube: Kube, obj: Snapshot, status: DatabaseMigrationStatus, stall: Stalled
) -> Outcome:
    """An input is missing or broken (or a person must act): one Event when the message is
    new."""
    message = redact(stall.message)
    changed = (status.phase, status.message) != (stall.phase, message)
    st = status.model_copy(update=stall.update, deep=True)
    st.observed_generation = obj.generation
    st.phase, st.message = stall.phase, message
    st.conditions = conditions_for(
        stall.health, stall.reason, message, obj.generation, st.conditions, at=timestamp(utcnow())
    )
    written = write_status(kube, obj, st.wire())
    if changed:
        level = "Warning" if stall.health is Health.STALLED else "Normal"
        kube.event(obj.ref, level, stall.reason, message)
    return Outcome(written, stall.delay, quiet=stall.quiet)
