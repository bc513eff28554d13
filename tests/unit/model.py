"""A model of both reconcilers in one simulated world, for model-based tests.

The world holds what the operators act on: one FeatureRelease and one DatabaseMigration as API
objects (spec, status, generation, resourceVersion, annotations), the two colours' Deployments
with pods that become ready when the "kubelet" gets to them, the Service, Jobs, and a database
(a ledger of applied migrations, the columns they leave, rows written by traffic, backups with
the moment their snapshot was taken). The operators are the real pure decision functions
(`lockstep.release.machine.decide`, `lockstep.migrations.machine.decide`) run the way the
reconcilers run them: each operator instance decides from its own view of the world (refreshed
only when the model says so, so it can be stale), writes the status only if the object is still
at the version it read (resourceVersion), then acts; the two actions that could cause an outage
check the live world first, as `lockstep.release.reconcile.perform` does. Nothing here talks to
Kubernetes, PostgreSQL or Prometheus: it is a unit-test stand-in for them.

Invariants (`World.check`) are the promises of the product; `World.violations` collects breaks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from lockstep.api.base import timestamp
from lockstep.api.migration import AppliedRecord, DatabaseMigrationSpec, DatabaseMigrationStatus
from lockstep.api.release import FeatureRelease
from lockstep.migrations import machine as migration_machine
from lockstep.migrations.linting import LintedSource, lint_config, lint_source
from lockstep.migrations.plan import PlanError, make_plan
from lockstep.migrations.reconcile import claim_of, quiet
from lockstep.migrations.records import AppliedMigration
from lockstep.migrations.source import Migration, from_inline, source_hash
from lockstep.objects import apply_merge_patch, merge_patch
from lockstep.release import machine as release_machine
from lockstep.release.analysis import QueryResult
from lockstep.release.reconcile import controls_from
from lockstep.release.world import (
    ApplyColor,
    BackupView,
    DeploymentView,
    Emit,
    JobView,
    Measure,
    MigrationView,
    PointService,
    RunCheck,
    ScaleColor,
    ServiceView,
)
from lockstep.release.world import World as ReleaseWorld

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NAME, NAMESPACE, DB = "web", "prod", "db"
VERSION_LABEL = "app.kubernetes.io/version"

# ------------------------------------------------------------------------------ the product


MIGRATIONS = [
    {
        "version": "001",
        "name": "create_items",
        "up": "CREATE TABLE items (id bigint PRIMARY KEY, name text);",
        "down": "DROP TABLE items;",
    },
    {
        "version": "002",
        "name": "add_email",
        "up": "ALTER TABLE items ADD COLUMN email text;",
        "down": "ALTER TABLE items DROP COLUMN email;",
    },
    {
        "version": "003",
        "name": "drop_name",
        "up": "ALTER TABLE items DROP COLUMN name;",
        "down": "ALTER TABLE items ADD COLUMN name text;",
        "phase": "contract",
    },
    {
        "version": "004",
        "name": "add_note",
        "up": "ALTER TABLE items ADD COLUMN note text;",
        "down": "ALTER TABLE items DROP COLUMN note;",
    },
]
# What each migration does to the columns the application can see.
EFFECTS: dict[str, tuple[set[str], set[str]]] = {
    "001": ({"name"}, set()),
    "002": ({"email"}, set()),
    "003": (set(), {"name"}),
    "004": ({"note"}, set()),
}


@dataclass(frozen=True)
class AppVersion:
    """An application version: the schema it needs, the contract it tolerates, its columns."""

    name: str
    target: str
    contract: str | None
    needs: frozenset[str]
    bad: bool = False  # its error rate trips the analysis
    never_ready: bool = False
    failing_check: bool = False


VERSIONS = {
    v.name: v
    for v in (
        AppVersion("v1", "001", None, frozenset({"name"})),
        AppVersion("v2", "002", "003", frozenset({"email"})),
        AppVersion("v2bad", "002", "003", frozenset({"email"}), bad=True),
        AppVersion("v3", "004", "003", frozenset({"email", "note"})),
        AppVersion("bad", "002", None, frozenset({"email"}), bad=True),
        AppVersion("never", "002", None, frozenset({"email"}), never_ready=True),
        AppVersion("checkfails", "002", None, frozenset({"email"}), failing_check=True),
    )
}


def template(version: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": NAME, VERSION_LABEL: version}},
        "spec": {"containers": [{"name": NAME, "image": f"example/web:{version}"}]},
    }


def release_spec(version: str, database: str = "restore", automatic: bool = True) -> dict[str, Any]:
    app = VERSIONS[version]
    migration: dict[str, Any] = {"ref": DB, "targetVersion": app.target, "timeoutSeconds": 60}
    if app.contract:
        migration["contractVersion"] = app.contract
    return {
        "selector": {"matchLabels": {"app": NAME}},
        "replicas": 2,
        "template": template(version),
        "service": NAME,
        "release": version,
        "migration": migration,
        "strategy": {"blueGreen": {"scaleDownDelaySeconds": 4, "progressDeadlineSeconds": 30}},
        "checks": {
            "prePromotion": [
                {"name": "smoke", "template": {"spec": {"containers": [{"name": "t"}]}}}
            ]
        },
        "analysis": {
            "prometheus": {"address": "http://prometheus:9090"},
            "interval": "2s",
            "duration": "6s",
            "failureLimit": 2,
            "consecutiveErrorLimit": 3,
            "metrics": [{"name": "errors", "query": "errors{color='{{color}}'}", "max": 0.05}],
        },
        "rollback": {"automatic": automatic, "database": database},
    }


def migration_spec(target: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
        "source": {"migrations": MIGRATIONS},
        "policy": {"backup": "auto"},
        "backup": {"destination": {"persistentVolumeClaim": {"claimName": "b"}}, "retention": 10},
        "dryRun": dry_run,
    }
    if target is not None:
        spec["targetVersion"] = target
    return spec


@cache
def source() -> tuple[list[Migration], LintedSource, str]:
    migrations = from_inline(
        DatabaseMigrationSpec.model_validate(migration_spec()).source.migrations or []
    )
    return migrations, lint_source(migrations, lint_config()), source_hash(migrations)


# ------------------------------------------------------------------------------ the world


@dataclass
class ApiObject:
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    generation: int = 1
    rv: int = 1
    uid: str = "00000000-0000-4000-8000-000000000001"


@dataclass
class Deployment:
    revision: str | None
    version: str
    template: dict[str, Any]
    release_name: str | None
    replicas: int = 1
    ready_new: int = 0  # ready pods of the current revision
    ready_old: int = 0  # ready pods of the revision it replaces (a rolling update)
    old_version: str | None = None
    owned: bool = True

    @property
    def available(self) -> int:
        return self.ready_new + self.ready_old

    def versions(self) -> set[str]:
        serving = set()
        if self.ready_new:
            serving.add(self.version)
        if self.ready_old and self.old_version:
            serving.add(self.old_version)
        return serving


@dataclass
class Job:
    kind: str  # check, backup, restore
    phase: str = "Running"
    message: str = ""
    version: str = ""  # check: the app version it tests
    backup: str = ""  # restore: the backup it restores
    key: tuple[Any, ...] = ()  # what the Job was made for


@dataclass
class Backup:
    ledger: list[AppliedMigration]
    rows: list[tuple[int, datetime]]
    snapshot_at: datetime
    serial: int


@dataclass
class Database:
    ledger: list[AppliedMigration] = field(default_factory=list)
    rows: list[tuple[int, datetime]] = field(default_factory=list)
    next_id: int = 1

    @property
    def version(self) -> str | None:
        return max((r.version for r in self.ledger), default=None)

    def columns(self) -> set[str]:
        columns: set[str] = set()
        for row in sorted(self.ledger, key=lambda r: r.version):
            added, removed = EFFECTS[row.version]
            columns = (columns | added) - removed
        return columns


def ledger_row(migration: Migration, phase: str, at: datetime) -> AppliedMigration:
    return AppliedMigration(
        version=migration.version,
        name=migration.name,
        checksum=migration.checksum,
        phase=phase,
        transactional=True,
        statements=1,
        started_at=at,
        finished_at=at,
        duration_ms=1,
        lock_wait_ms=0,
        attempts=1,
        applied_by="model",
        lockstep_version="model",
    )


@dataclass
class View:
    """What one operator instance knows: a copy of the world, as of its last refresh."""

    fr: ApiObject | None
    dbm: ApiObject
    deployments: dict[str, Deployment]
    service_color: str | None
    jobs: dict[str, Job]
    quiet_on: tuple[Any, ...] | None = None  # as the daemon: an idle migration is not looked at


@dataclass
class World:
    now: datetime = T0
    fr: ApiObject | None = None
    dbm: ApiObject = field(default_factory=lambda: ApiObject(spec=migration_spec()))
    deployments: dict[str, Deployment] = field(default_factory=dict)
    service_color: str | None = None
    jobs: dict[str, Job] = field(default_factory=dict)
    db: Database = field(default_factory=Database)
    backups: dict[str, Backup] = field(default_factory=dict)
    views: list[View] = field(default_factory=list)
    # failures the world injects
    prometheus_down: bool = False
    backup_fails: bool = False
    # what happened, for the invariants
    violations: list[str] = field(default_factory=list)
    applies: list[tuple[int, str | None, str | None, str | None]] = field(default_factory=list)
    """Every up-apply: (operation serial, from version, to version, its backup)."""
    restores: list[tuple[str, str | None]] = field(default_factory=list)
    job_keys: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    request_ids: dict[str, int] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)
    outage_caused: list[str] = field(default_factory=list)
    deleted_release: bool = False
    steps: int = 0

    def __post_init__(self) -> None:
        if not self.views:
            self.views = [self.snapshot()]

    # ------------------------------------------------------------------ views

    def snapshot(self, operator: int | None = None) -> View:
        # Specs, statuses and annotations are replaced, never changed in place, so a view may
        # share them; Deployments and Jobs change in place and are copied.
        return View(
            fr=dataclasses.replace(self.fr) if self.fr else None,
            dbm=dataclasses.replace(self.dbm),
            deployments={c: dataclasses.replace(d) for c, d in self.deployments.items()},
            service_color=self.service_color,
            jobs={n: dataclasses.replace(j) for n, j in self.jobs.items()},
            quiet_on=self.views[operator].quiet_on if operator is not None else None,
        )

    def refresh(self, operator: int) -> None:
        self.views[operator] = self.snapshot(operator)

    def add_operator(self) -> None:
        self.views.append(self.snapshot())

    # ------------------------------------------------------------------ user actions

    def create_release(
        self, version: str, database: str = "restore", automatic: bool = True
    ) -> None:
        self.fr = ApiObject(spec=release_spec(version, database, automatic), rv=self.bump())
        self.deleted_release = False

    def bump(self) -> int:
        self.steps += 1
        return self.steps + 1000

    def change_release(self, version: str) -> None:
        assert self.fr is not None
        spec = release_spec(
            version,
            self.fr.spec["rollback"]["database"],
            self.fr.spec["rollback"]["automatic"],
        )
        if spec != self.fr.spec:
            self.fr.spec = spec
            self.fr.generation += 1
            self.fr.rv = self.bump()

    def annotate(self, obj: ApiObject, key: str, value: str | None) -> None:
        annotations = dict(obj.annotations)
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
        obj.annotations = annotations
        obj.rv = self.bump()

    def request(self, action: str) -> None:
        assert self.fr is not None
        self.annotate(self.fr, "lockstep.dev/request", f"{action}@{self.bump()}")

    def set_migration_target(self, target: str | None) -> None:
        spec = {k: v for k, v in self.dbm.spec.items() if k != "targetVersion"}
        if target is not None:
            spec["targetVersion"] = target
        if spec != self.dbm.spec:
            self.dbm.spec = spec
            self.dbm.generation += 1
            self.dbm.rv = self.bump()

    def delete_release(self) -> None:
        """The FeatureRelease is deleted: the operator's delete handler runs, then the
        garbage collector removes what it still owns."""
        fr = self.fr
        if fr is None:
            return
        release = FeatureRelease.model_validate({"spec": fr.spec, "status": fr.status})
        st = release.status
        color = st.stable.color if st.stable else st.active_color
        if color is not None and st.stable_revision is not None:
            dep = self.deployments.get(color)
            if dep is not None and dep.available > 0:
                if self.service_color != color:
                    self.service_color = color
                dep.owned = False
        for c in list(self.deployments):
            if self.deployments[c].owned:
                del self.deployments[c]
        for name in [n for n, j in self.jobs.items() if j.kind == "check"]:
            del self.jobs[name]
        self.fr = None
        self.deleted_release = True

    # ------------------------------------------------------------------ the kubelet and Jobs

    def pods_ready(self) -> None:
        for dep in self.deployments.values():
            app = VERSIONS[dep.version]
            dep.ready_new = 0 if app.never_ready else dep.replicas
            if dep.ready_new >= dep.replicas:
                dep.ready_old = 0
                dep.old_version = None

    def finish_jobs(self) -> None:
        for name, job in self.jobs.items():
            if job.phase != "Running":
                continue
            if job.kind == "check":
                job.phase = "Failed" if VERSIONS[job.version].failing_check else "Succeeded"
            elif job.kind == "backup":
                if self.backup_fails:
                    job.phase, job.message = "Failed", "backup failed: disk full"
                    continue
                self.backups[name] = Backup(
                    ledger=list(self.db.ledger),
                    rows=list(self.db.rows),
                    snapshot_at=self.now,
                    serial=int(job.key[1]) if len(job.key) > 1 else 0,
                )
                job.phase = "Succeeded"
                job.message = (
                    f'{{"path":"{name}.dump","sizeBytes":1,"sha256":"{"a" * 64}",'
                    f'"at":"{timestamp(self.now)}"}}'
                )
            elif job.kind == "restore":
                backup = self.backups[job.backup]
                self.db.ledger = list(backup.ledger)
                self.db.rows = list(backup.rows)
                job.phase = "Succeeded"
                job.message = (
                    f'{{"path":"{job.backup}.dump","sizeBytes":1,"sha256":"{"a" * 64}",'
                    f'"at":"{timestamp(self.now)}"}}'
                )
                self.check_schema("a restore")

    def write(self) -> bool:
        """One write by the application's clients, through the Service."""
        dep = self.deployments.get(self.service_color or "")
        if dep is None or dep.available == 0:
            return False
        if any(not VERSIONS[v].needs <= self.db.columns() for v in dep.versions()):
            return False
        self.db.rows.append((self.db.next_id, self.now))
        self.db.next_id += 1
        return True

    # ------------------------------------------------------------------ invariants

    def serving_versions(self) -> set[str]:
        dep = self.deployments.get(self.service_color or "")
        return dep.versions() if dep is not None else set()

    def check_schema(self, what: str) -> None:
        if self.deleted_release or self.fr is None:
            return
        columns = self.db.columns()
        for version in self.serving_versions():
            missing = VERSIONS[version].needs - columns
            if missing:
                self.violations.append(
                    f"{what} removed {sorted(missing)} that the serving version {version} needs "
                    f"(database at {self.db.version})"
                )

    def serving(self) -> bool:
        dep = self.deployments.get(self.service_color or "")
        return dep is not None and dep.available > 0

    def record_job(self, name: str, key: tuple[Any, ...]) -> None:
        known = self.job_keys.setdefault(name, key)
        if known != key:
            self.violations.append(f"Job {name} was made for {known} and again for {key}")

    # ------------------------------------------------------------------ the release operator

    def release_pass(self, operator: int = 0) -> None:
        view = self.views[operator]
        if view.fr is None or self.fr is None:
            return
        obj = view.fr
        release = FeatureRelease.model_validate({"spec": obj.spec, "status": obj.status})
        dbm_status = DatabaseMigrationStatus.model_validate(view.dbm.status)
        migration = MigrationView(
            exists=True,
            current_version=dbm_status.current_version,
            target_version=dbm_status.target_version,
            phase=dbm_status.phase,
            message=dbm_status.message or "",
            stalled=any(c.type == "Stalled" and c.status == "True" for c in dbm_status.conditions),
            ready=any(c.type == "Ready" and c.status == "True" for c in dbm_status.conditions),
            observed_current=(dbm_status.observed_generation or 0) >= view.dbm.generation,
            pending_contract=tuple(dbm_status.pending_contract),
            applied_contract=tuple(dbm_status.applied_contract),
            backups=tuple(
                BackupView(b.name, b.database_version, b.completed_at) for b in dbm_status.backups
            ),
            acks={a.release: a for a in dbm_status.requests},
        )
        world = ReleaseWorld(
            now=self.now,
            service=ServiceView(
                NAME,
                True,
                {
                    "app": NAME,
                    **({"lockstep.dev/color": view.service_color} if view.service_color else {}),
                },
            ),
            preview_service=None,
            deployments={
                c: DeploymentView(
                    color=c,  # type: ignore[arg-type]
                    revision=d.revision,
                    replicas=d.replicas,
                    updated=d.ready_new,
                    ready=d.available,
                    available=d.available,
                    template=d.template,
                    release_name=d.release_name,
                )
                for c, d in view.deployments.items()
            },
            jobs={
                n: JobView(n, j.phase, j.message) for n, j in view.jobs.items() if j.kind == "check"
            },  # type: ignore[arg-type]
            migration=migration,
        )

        def measure(current: FeatureRelease, request: Measure) -> list[QueryResult]:
            if self.prometheus_down:
                return [QueryResult("errors", error="Prometheus unreachable")]
            dep = self.deployments.get(request.color)
            bad = dep is not None and any(VERSIONS[v].bad for v in dep.versions())
            return [QueryResult("errors", value=1.0 if bad and not request.preflight else 0.0)]

        decision = release_machine.decide(
            release, NAME, NAMESPACE, obj.generation, world, controls_from(obj.annotations), measure
        )
        status = decision.status.wire()
        work = [a for a in decision.actions if not isinstance(a, Emit)]
        if status == obj.status and not work:
            return
        if obj.rv != self.fr.rv:
            self.refresh(operator)  # conflict: re-read, decide again next time
            return
        self.fr.status = self.patched(obj.status, self.fr.status, status)
        self.fr.rv = self.bump()
        view.fr = dataclasses.replace(self.fr)
        claim = decision.status.database
        if claim is not None and claim.request is not None:
            known = self.request_ids.setdefault(claim.request.id, decision.status.attempt_serial)
            if known != decision.status.attempt_serial:
                self.violations.append(f"request id {claim.request.id} reused by another attempt")
        serving_before = self.serving()
        for action in decision.actions:
            self.release_action(action, decision)
        if serving_before and not self.serving():
            self.violations.append(
                f"the release operator left Service {NAME} selecting {self.service_color} without "
                f"available pods (step {decision.status.step})"
            )
        self.check_schema("the release operator")

    def patched(
        self, seen: dict[str, Any], stored: dict[str, Any], wanted: dict[str, Any]
    ) -> dict[str, Any]:
        """The status the API server keeps after the merge patch the reconcilers send."""
        result = apply_merge_patch(stored, merge_patch(seen, wanted))
        if result != wanted:
            self.violations.append(f"the status written is not the status decided: {result}")
        return result

    def release_action(self, action: Any, decision: release_machine.Decision) -> None:
        if isinstance(action, Emit):
            self.events.append((action.reason, action.message))
        elif isinstance(action, ApplyColor):
            version = action.template["metadata"]["labels"][VERSION_LABEL]
            dep = self.deployments.get(action.color)
            if dep is None:
                self.deployments[action.color] = Deployment(
                    action.revision, version, action.template, action.release_name
                )
            elif dep.revision != action.revision:
                dep.ready_old = min(dep.replicas, dep.ready_new + dep.ready_old)
                dep.old_version = dep.version if dep.ready_new else dep.old_version
                dep.ready_new = 0
                dep.revision, dep.version, dep.template = action.revision, version, action.template
                dep.release_name = action.release_name
                dep.owned = True
            else:
                dep.owned = True
        elif isinstance(action, ScaleColor):
            dep = self.deployments.get(action.color)
            if action.replicas == 0 and self.service_color == action.color:
                return  # refused: the Service selects it (perform checks the live Service)
            if dep is not None:
                dep.replicas = action.replicas
                dep.ready_new = min(dep.ready_new, action.replicas)
                dep.ready_old = min(dep.ready_old, action.replicas - dep.ready_new)
        elif isinstance(action, PointService):
            dep = self.deployments.get(action.color)
            if dep is None or dep.available < action.min_available:
                return  # refused: not enough available pods (perform checks the live Deployment)
            if action.service == NAME:
                self.service_color = action.color
        elif isinstance(action, RunCheck):
            dep = self.deployments.get(action.color)
            if action.job not in self.jobs:
                self.jobs[action.job] = Job(
                    "check",
                    version=dep.version if dep else "v1",
                    key=("check", decision.status.attempt_serial, action.check, action.stage),
                )
                self.record_job(action.job, self.jobs[action.job].key)

    # ------------------------------------------------------------------ the migration operator

    def claims(self, fr: ApiObject | None) -> list[migration_machine.ReleaseClaim]:
        if fr is None:
            return []
        return [claim_of(NAME, fr.generation, fr.status, DB)]

    def observed(self, view: View) -> migration_machine.Observed:
        migrations, linted, digest = source()
        return migration_machine.Observed(
            now=self.now,
            name=DB,
            uid=self.dbm.uid,
            generation=view.dbm.generation,
            migrations=migrations,
            linted=linted,
            source_hash=digest,
            applied=list(self.db.ledger),  # the ledger is read live
            jobs={
                n: JobView(n, j.phase, j.message) for n, j in view.jobs.items() if j.kind != "check"
            },  # type: ignore[arg-type]
            job_messages={
                n: j.message
                for n, j in self.jobs.items()
                if j.kind != "check" and j.phase != "Running"
            },
            claims=self.claims(view.fr),
            retry_request=view.dbm.annotations.get("lockstep.dev/request"),
        )

    def migration_pass(self, operator: int = 0) -> None:
        view = self.views[operator]
        inputs = (
            view.dbm.generation,
            view.dbm.annotations.get("lockstep.dev/request"),
            (
                view.fr.generation,
                view.fr.status.get("observedGeneration"),
                repr(view.fr.status.get("database")),
            )
            if view.fr
            else None,
            tuple(sorted((n, j.phase) for n, j in view.jobs.items() if j.kind != "check")),
        )
        if view.quiet_on == inputs:
            return  # idle, as the operator's daemon: nothing it watches has changed
        spec = DatabaseMigrationSpec.model_validate(view.dbm.spec)
        status = DatabaseMigrationStatus.model_validate(view.dbm.status)
        seen = self.observed(view)
        decision = migration_machine.decide(spec, status, seen)
        run = decision.run
        if run is not None and (run.allow_contract or run.direction == "down"):
            seen = dataclasses.replace(seen, claims=self.claims(self.fr))  # read again, fresh
            decision = migration_machine.decide(spec, status, seen)
            run = decision.run
        if not self.write_migration(operator, decision):
            return
        view.quiet_on = inputs if quiet(decision.status) and not decision.actions else None
        for action in decision.actions:
            if isinstance(action, migration_machine.Emit):
                self.events.append((action.reason, action.message))
            if isinstance(action, migration_machine.StartBackup):
                if action.name not in self.jobs:
                    self.jobs[action.name] = Job("backup", key=("backup", decision.status.serial))
                    self.record_job(action.name, ("backup", decision.status.serial))
            elif (
                isinstance(action, migration_machine.StartRestore) and action.name not in self.jobs
            ):
                self.jobs[action.name] = Job(
                    "restore",
                    backup=action.backup.name,
                    key=("restore", decision.status.serial),
                )
                self.record_job(action.name, ("restore", decision.status.serial))
                self.restores.append((action.backup.name, action.backup.database_version))
                self.check_restore(action.backup.name, action.backup.database_version)
        if run is None:
            return
        outcome = self.run_migrations(decision.status, run)
        after = migration_machine.after_run(
            spec, decision.status, dataclasses.replace(seen, applied=list(self.db.ledger)), outcome
        )
        after.status.current_version = self.db.version
        if self.write_migration(operator, after):
            self.events += [
                (a.reason, a.message)
                for a in after.actions
                if isinstance(a, migration_machine.Emit)
            ]

    def write_migration(self, operator: int, decision: migration_machine.Decision) -> bool:
        view = self.views[operator]
        status = decision.status.wire()
        work = [a for a in decision.actions if not isinstance(a, migration_machine.Emit)]
        if status == view.dbm.status and not work:
            return True
        if view.dbm.rv != self.dbm.rv:
            self.refresh(operator)
            return False
        self.dbm.status = self.patched(view.dbm.status, self.dbm.status, status)
        self.dbm.rv = self.bump()
        view.dbm = dataclasses.replace(self.dbm)
        return True

    def run_migrations(
        self, status: DatabaseMigrationStatus, run: migration_machine.RunMigrations
    ) -> migration_machine.RunOutcome:
        migrations, linted, _ = source()
        spec = DatabaseMigrationSpec.model_validate(self.dbm.spec)
        try:
            plan = make_plan(
                migrations,
                self.db.ledger,
                target=run.target,
                up_lint=linted.up,
                down_lint=linted.down,
                policy=spec.policy,
                allow_contract=run.allow_contract,
            )
        except PlanError as exc:
            return migration_machine.RunOutcome(stopped=str(exc))
        if plan.direction not in (run.direction, "none"):
            return migration_machine.RunOutcome(stopped="the engine refuses the other direction")
        if plan.direction == "down" and (run.target is None or plan.target_version != run.target):
            self.violations.append(f"a down run without a named target ({run.target})")
        op = status.operation
        before = self.db.version
        records = []
        for step in plan.steps:
            if step.direction == "up":
                self.db.ledger.append(ledger_row(step.migration, step.phase, self.now))
            else:
                self.db.ledger = [r for r in self.db.ledger if r.version != step.version]
            records.append(
                AppliedRecord(
                    version=step.version,
                    name=step.name,
                    direction=step.direction,
                    finished_at=timestamp(self.now),
                    duration_ms=1,
                )
            )
            self.check_schema(f"{step.direction} migration {step.version}")
        if plan.direction == "up" and plan.steps:
            self.applies.append(
                (op.serial if op else -1, before, self.db.version, op.backup if op else None)
            )
        return migration_machine.RunOutcome(applied=tuple(records))

    def check_restore(self, backup: str, version: str | None) -> None:
        """A restore undoes the last apply that went above `version`, with its own backup."""
        crossing = [a for a in self.applies if (a[1] or "") <= (version or "") < (a[2] or "")]
        if not crossing:
            self.violations.append(f"restore of {backup}: no apply above {version} to undo")
            return
        if crossing[-1][3] != backup:
            self.violations.append(
                f"restore of {backup} undoes the apply {crossing[-1]}, whose backup is "
                f"{crossing[-1][3]}: writes older than that apply would be lost"
            )

    # ------------------------------------------------------------------ settling

    def settled(self) -> bool:
        fr = self.fr
        dbm_status = DatabaseMigrationStatus.model_validate(self.dbm.status)
        db_idle = dbm_status.operation is None and (
            quiet(dbm_status) or dbm_status.phase in ("Ready", "Failed")
        )
        if fr is None:
            return db_idle
        step = fr.status.get("step")
        phase = fr.status.get("phase")
        return (
            db_idle
            and fr.status.get("observedGeneration") == fr.generation
            and (step in ("Done", "RolledBack") or phase in ("Blocked", "Paused"))
        )

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


def work(world: World, rounds: int, seconds: float = 1.0) -> None:
    """Rounds in which every operator looks (with a fresh view), pods get ready, Jobs finish
    and clients write, while time passes."""
    for _ in range(rounds):
        for i in range(len(world.views)):
            world.refresh(i)
            world.migration_pass(i)
            world.refresh(i)
            world.release_pass(i)
        world.pods_ready()
        world.finish_jobs()
        world.write()
        world.tick(seconds)


def cooperate(world: World, rounds: int = 300) -> int:
    """Let a cooperating world run until it settles; returns the rounds it took."""
    calm = 0
    for n in range(rounds):
        work(world, 1)
        calm = calm + 1 if world.settled() else 0
        if calm >= 3:  # everyone has seen what the others did last
            return n
    return rounds


def describe(world: World) -> str:
    fr = world.fr.status if world.fr else {}
    dbm = world.dbm.status
    deployments = {c: (d.version, d.replicas, d.available) for c, d in world.deployments.items()}
    return (
        f"release step={fr.get('step')} phase={fr.get('phase')} message={fr.get('message')!r}; "
        f"migration phase={dbm.get('phase')} message={dbm.get('message')!r}; "
        f"db={world.db.version} service={world.service_color} deployments={deployments}"
    )
