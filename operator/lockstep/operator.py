"""The kopf operator: settings, watch-fed indexes, and one daemon per object.

Each FeatureRelease and DatabaseMigration gets a daemon that looks at the object, decides and
acts (in a worker thread), then waits until either something it depends on changes (an index
update or a change of the object wakes it) or the delay its decision asked for passes. The
world is read from kopf indexes fed by watches, so an idle operator makes no API requests.

Releases and migrations run on separate worker pools: a migration that waits for a lock or
builds an index concurrently never delays a release's rollback decision.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kopf
from prometheus_client import start_http_server

from . import GROUP, VERSION, metrics
from .api.base import now as utcnow
from .api.declarative import APPROVE_ANNOTATION
from .api.protocol import RequestAck
from .kube import Kube, load_api_client
from .migrations import reconcile as migration_reconcile
from .migrations.machine import ReleaseClaim
from .objects import Snapshot, newest
from .redact import install_log_redaction
from .release import reconcile as release_reconcile
from .release.world import (
    COLOR_LABEL,
    RELEASE_LABEL,
    REVISION_LABEL,
    BackupView,
    DeploymentView,
    JobView,
    MigrationView,
    ServiceView,
    World,
    label_value,
)

log = logging.getLogger("lockstep.operator")
MANAGED = {"app.kubernetes.io/managed-by": "lockstep"}
MIGRATION_LABEL = "lockstep.dev/migration"
RELEASE_NAME_ANNOTATION = "lockstep.dev/release-name"
FINALIZER = "lockstep.dev/finalizer"
QUIET_RECHECK_SECONDS = 3600.0
T = TypeVar("T")


class Wakers:
    """One asyncio.Event per object, set when something the object depends on changes."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str, str], asyncio.Event] = {}
        # Who depends on what: (namespace, service, migration or ConfigMap name) -> names.
        self.service_users: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.migration_users: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.configmap_users: dict[tuple[str, str], set[str]] = defaultdict(set)

    def event(self, kind: str, namespace: str, name: str) -> asyncio.Event:
        return self._events.setdefault((kind, namespace, name), asyncio.Event())

    def wake(self, kind: str, namespace: str, name: str | None) -> None:
        if name and (kind, namespace, name) in self._events:
            self._events[(kind, namespace, name)].set()

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self._events.pop((kind, namespace, name), None)

    async def sleep(
        self, kind: str, namespace: str, name: str, delay: float, stopped: kopf.DaemonStopped
    ) -> None:
        """Wait `delay` seconds, or less: until woken, or until kopf stops the daemon."""
        event = self.event(kind, namespace, name)
        waiters = {
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(stopped.wait()),
        }
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        event.clear()


class Dependencies:
    """Remembers which names one object's daemon reads, so that their changes wake it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.users: list[tuple[dict[tuple[str, str], set[str]], tuple[str, str]]] = []

    def set(self, *uses: tuple[dict[tuple[str, str], set[str]], tuple[str, str]]) -> None:
        self.clear()
        self.users = list(uses)
        for mapping, key in self.users:
            mapping[key].add(self.name)

    def clear(self) -> None:
        for mapping, key in self.users:
            mapping[key].discard(self.name)
        self.users = []


async def in_pool(pool: ThreadPoolExecutor, function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, function, *args)


async def reconcile_forever(
    kind: str,
    namespace: str,
    name: str,
    memo: Any,
    stopped: kopf.DaemonStopped,
    one_pass: Callable[[], Awaitable[float]],
) -> None:
    """The body of every daemon: a pass, then sleep as long as the pass allows, until stopped."""
    wakers: Wakers = memo.wakers
    try:
        while not stopped:
            try:
                delay = await one_pass()
            except Exception:
                log.exception("Reconciling %s %s/%s failed", kind, namespace, name)
                metrics.reconcile_failed(kind)
                delay = 5.0
            await wakers.sleep(kind, namespace, name, delay, stopped)
    finally:
        wakers.forget(kind, namespace, name)
        metrics.forget(kind, namespace, name)


class Latest:
    """The newest copy of one object this daemon knows: kopf's body, or what our own last
    write (or a re-read after a conflict) returned, whichever is newer."""

    def __init__(self, body: kopf.Body) -> None:
        self.body = body
        self.ours: Mapping[str, Any] | None = None

    def get(self) -> Mapping[str, Any]:
        found = newest(self.body, self.ours)
        return found if found is not None else self.body

    def remember(self, obj: Mapping[str, Any] | None) -> None:
        if obj is not None:
            self.ours = obj


# ---------------------------------------------------------------------------- startup


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # We post our own Events (redacted, one per transition); kopf's would repeat log lines.
    settings.posting.enabled = False
    # No CRD/namespace scanning: the RBAC stays minimal and the resources are known.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 600
    settings.networking.request_timeout = 60
    workers = int(os.environ.get("LOCKSTEP_WORKERS", "32"))
    migration_workers = int(os.environ.get("LOCKSTEP_MIGRATION_WORKERS", "8"))
    settings.execution.max_workers = workers
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="lockstep")
    )
    memo.release_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="release")
    memo.migration_pool = ThreadPoolExecutor(
        max_workers=migration_workers, thread_name_prefix="migration"
    )
    memo.kube = Kube(load_api_client(pool_size=workers + migration_workers))
    memo.wakers = Wakers()
    # label value -> object name, for names shortened in labels (63 characters at most)
    memo.release_names = {}
    memo.migration_names = {}
    install_log_redaction()
    port = int(os.environ.get("LOCKSTEP_METRICS_PORT", "8080"))
    if port:
        start_http_server(port, addr=os.environ.get("LOCKSTEP_METRICS_ADDRESS", "0.0.0.0"))
        log.info("Serving metrics on port %d", port)


# ---------------------------------------------------------------------------- indexes


def _int(value: Any) -> int:
    return int(value or 0)


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
async def release_deployments(
    namespace: str | None,
    labels: Mapping[str, str],
    spec: Any,
    status: Any,
    meta: Any,
    memo: Any,
    **_: Any,
) -> dict[Any, DeploymentView] | None:
    release, color = labels.get(RELEASE_LABEL), labels.get(COLOR_LABEL)
    if not release or color not in ("blue", "green"):
        return None
    template = dict(spec.get("template") or {})
    template_meta = template.get("metadata") or {}
    view = DeploymentView(
        color=color,  # type: ignore[arg-type]
        revision=(template_meta.get("labels") or {}).get(REVISION_LABEL),
        replicas=_int(spec.get("replicas", 1)),
        updated=_int(status.get("updatedReplicas")),
        ready=_int(status.get("readyReplicas")),
        available=_int(status.get("availableReplicas")),
        current=_int(status.get("observedGeneration")) >= _int(meta.get("generation")),
        template=template,
        release_name=(template_meta.get("annotations") or {}).get(RELEASE_NAME_ANNOTATION),
        terminating=_int(status.get("terminatingReplicas")),
    )
    memo.wakers.wake("FeatureRelease", namespace, memo.release_names.get((namespace, release)))
    return {(namespace, release): view}


@kopf.index("batch", "v1", "jobs", labels=MANAGED)
async def lockstep_jobs(
    namespace: str | None, name: str, labels: Mapping[str, str], status: Any, memo: Any, **_: Any
) -> dict[Any, JobView] | None:
    phase, message = "Running", ""
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            phase = "Succeeded"
        elif condition.get("type") == "Failed":
            phase = "Failed"
            message = condition.get("message") or condition.get("reason") or "the Job failed"
    view = JobView(name=name, phase=phase, message=message)  # type: ignore[arg-type]
    if labels.get(RELEASE_LABEL):
        key = labels[RELEASE_LABEL]
        memo.wakers.wake("FeatureRelease", namespace, memo.release_names.get((namespace, key)))
        return {("FeatureRelease", namespace, key): view}
    if labels.get(MIGRATION_LABEL):
        key = labels[MIGRATION_LABEL]
        memo.wakers.wake("DatabaseMigration", namespace, memo.migration_names.get((namespace, key)))
        return {("DatabaseMigration", namespace, key): view}
    return None


@kopf.index("", "v1", "services")
async def service_selectors(
    namespace: str | None, name: str, spec: Any, memo: Any, **_: Any
) -> dict[Any, dict[str, str]]:
    for release in memo.wakers.service_users.get((namespace, name), ()):
        memo.wakers.wake("FeatureRelease", namespace, release)
    return {(namespace, name): dict(spec.get("selector") or {})}


@kopf.index("", "v1", "configmaps")
async def configmap_hashes(
    namespace: str | None, name: str, body: Any, memo: Any, **_: Any
) -> dict[Any, str]:
    """A hash of each ConfigMap's data: a change of a migration source wakes its users."""
    data = {"data": dict(body.get("data") or {}), "binary": dict(body.get("binaryData") or {})}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    for migration in memo.wakers.configmap_users.get((namespace, name), ()):
        memo.wakers.wake("DatabaseMigration", namespace, migration)
    return {(namespace, name): digest}


@kopf.index(GROUP, VERSION, "databasemigrations")
async def migration_views(
    namespace: str | None, name: str, meta: Any, status: Any, memo: Any, **_: Any
) -> dict[Any, MigrationView]:
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    acks = {}
    for raw in status.get("requests") or []:
        try:
            ack = RequestAck.model_validate(raw)
        except ValueError:
            continue
        acks[ack.release] = ack
    view = MigrationView(
        exists=True,
        current_version=status.get("currentVersion"),
        target_version=status.get("targetVersion"),
        phase=status.get("phase"),
        message=status.get("message") or "",
        ready=conditions.get("Ready") == "True",
        stalled=conditions.get("Stalled") == "True",
        observed_current=_int(status.get("observedGeneration")) >= _int(meta.get("generation")),
        pending_contract=tuple(status.get("pendingContract") or ()),
        applied_contract=tuple(status.get("appliedContract") or ()),
        backups=tuple(
            BackupView(
                name=str(b.get("name")),
                database_version=b.get("databaseVersion"),
                completed_at=b.get("completedAt"),
            )
            for b in status.get("backups") or []
        ),
        acks=acks,
    )
    for release in memo.wakers.migration_users.get((namespace, name), ()):
        memo.wakers.wake("FeatureRelease", namespace, release)
    return {(namespace, name): view}


@kopf.index(GROUP, VERSION, "featurereleases")
async def release_claims(
    namespace: str | None, name: str, spec: Any, status: Any, meta: Any, memo: Any, **_: Any
) -> dict[Any, ReleaseClaim] | None:
    """What each release tells its DatabaseMigration (status.database)."""
    ref = (spec.get("migration") or {}).get("ref")
    if not ref:
        return None
    memo.wakers.wake("DatabaseMigration", namespace, ref)
    return {
        (namespace, ref): migration_reconcile.claim_of(
            name, meta.get("generation"), dict(status), str(ref)
        )
    }


def _first(index: Any, key: Any) -> Any:
    store = index.get(key) if index is not None else None
    return next(iter(store), None) if store else None


# ---------------------------------------------------------------------------- releases


@kopf.on.event(GROUP, VERSION, "featurereleases")
async def release_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo.wakers.wake("FeatureRelease", namespace, name)


@kopf.daemon(GROUP, VERSION, "featurereleases", id="release", cancellation_timeout=30.0)
async def release_daemon(
    name: str,
    namespace: str | None,
    body: kopf.Body,
    memo: Any,
    stopped: kopf.DaemonStopped,
    **indexes: Any,
) -> None:
    # kopf passes each index by its function's name; they are live, fed by the watches
    deployments: kopf.Index[Any, DeploymentView] = indexes["release_deployments"]
    jobs: kopf.Index[Any, JobView] = indexes["lockstep_jobs"]
    services: kopf.Index[Any, dict[str, str]] = indexes["service_selectors"]
    migrations: kopf.Index[Any, MigrationView] = indexes["migration_views"]
    namespace = namespace or ""
    wakers: Wakers = memo.wakers
    latest = Latest(body)
    dependencies = Dependencies(name)
    key = label_value(name)
    memo.release_names[(namespace, key)] = name

    async def one_pass() -> float:
        obj = Snapshot.of("FeatureRelease", "featurereleases", latest.get())
        spec = obj.spec
        uses = [(wakers.service_users, (namespace, str(spec.get("service"))))]
        if spec.get("previewService"):
            uses.append((wakers.service_users, (namespace, str(spec["previewService"]))))
        if (spec.get("migration") or {}).get("ref"):
            uses.append((wakers.migration_users, (namespace, str(spec["migration"]["ref"]))))
        dependencies.set(*uses)
        world = release_world(namespace, key, spec, deployments, jobs, services, migrations)
        outcome = await in_pool(
            memo.release_pool, release_reconcile.reconcile, memo.kube, obj, world
        )
        latest.remember(outcome.obj)
        return outcome.delay

    try:
        await reconcile_forever("FeatureRelease", namespace, name, memo, stopped, one_pass)
    finally:
        dependencies.clear()


def release_world(
    namespace: str,
    key: str,
    spec: dict[str, Any],
    deployments: Any,
    jobs: Any,
    services: Any,
    migrations: Any,
) -> World:
    def service(service_name: str | None) -> ServiceView | None:
        if not service_name:
            return None
        selector = _first(services, (namespace, service_name))
        return ServiceView(service_name, selector is not None, selector or {})

    migration_ref = (spec.get("migration") or {}).get("ref")
    migration = None
    if migration_ref:
        migration = _first(migrations, (namespace, migration_ref)) or MigrationView(exists=False)
    active = service(spec.get("service")) or ServiceView("", False)
    return World(
        now=utcnow(),
        service=active,
        preview_service=service(spec.get("previewService")),
        deployments={v.color: v for v in (deployments.get((namespace, key)) or [])},
        jobs={v.name: v for v in (jobs.get(("FeatureRelease", namespace, key)) or [])},
        migration=migration,
    )


@kopf.on.delete(GROUP, VERSION, "featurereleases", id="keep-serving")
async def release_deleted(
    name: str, namespace: str | None, body: kopf.Body, memo: Any, **_: Any
) -> None:
    """A deleted FeatureRelease leaves its stable colour serving (see release.deletion)."""
    await in_pool(
        memo.release_pool,
        release_reconcile.keep_serving,
        memo.kube,
        Snapshot.of("FeatureRelease", "featurereleases", body),
    )


# ---------------------------------------------------------------------------- migrations


@kopf.on.event(GROUP, VERSION, "databasemigrations")
async def migration_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo.wakers.wake("DatabaseMigration", namespace, name)


@kopf.daemon(GROUP, VERSION, "databasemigrations", id="migration", cancellation_timeout=60.0)
async def migration_daemon(
    name: str,
    namespace: str | None,
    body: kopf.Body,
    memo: Any,
    stopped: kopf.DaemonStopped,
    **indexes: Any,
) -> None:
    jobs: kopf.Index[Any, JobView] = indexes["lockstep_jobs"]
    claims: kopf.Index[Any, ReleaseClaim] = indexes["release_claims"]
    configmaps: kopf.Index[Any, str] = indexes["configmap_hashes"]
    namespace = namespace or ""
    wakers: Wakers = memo.wakers
    stop = threading.Event()
    latest = Latest(body)
    dependencies = Dependencies(name)
    key = label_value(name)
    memo.migration_names[(namespace, key)] = name
    quiet_on: tuple[Any, ...] | None = None  # the inputs of the last look that left it idle

    async def one_pass() -> float:
        nonlocal quiet_on
        obj = Snapshot.of("DatabaseMigration", "databasemigrations", latest.get())
        spec_source = obj.spec.get("source") or {}
        source = (
            spec_source.get("configMapRef")
            or (spec_source.get("desiredSchema") or {}).get("configMapRef")
            or {}
        )
        if source.get("name"):
            dependencies.set((wakers.configmap_users, (namespace, str(source["name"]))))
        else:
            dependencies.clear()
        world = migration_reconcile.MigrationWorld(
            jobs={v.name: v for v in (jobs.get(("DatabaseMigration", namespace, key)) or [])},
            claims=sorted(claims.get((namespace, name)) or [], key=lambda c: c.release),
            stop=stop,
        )
        inputs = (
            obj.generation,
            obj.annotations.get(migration_reconcile.REQUEST_ANNOTATION),
            obj.annotations.get(APPROVE_ANNOTATION),
            _first(configmaps, (namespace, source.get("name"))) if source.get("name") else None,
            tuple((c.release, c.current, c.claim.model_dump_json()) for c in world.claims),
            tuple(sorted((j.name, j.phase) for j in world.jobs.values())),
        )
        if quiet_on == inputs:
            return QUIET_RECHECK_SECONDS  # idle: no API request, no database connection
        outcome = await in_pool(
            memo.migration_pool, migration_reconcile.reconcile, memo.kube, obj, world
        )
        latest.remember(outcome.obj)
        quiet_on = inputs if outcome.quiet else None
        return QUIET_RECHECK_SECONDS if outcome.quiet else outcome.delay

    try:
        await reconcile_forever("DatabaseMigration", namespace, name, memo, stopped, one_pass)
    finally:
        dependencies.clear()
        stop.set()  # an apply waiting between lock-timeout retries gives up at once


# ---------------------------------------------------------------------------- leadership, shards
# `lockstep run` (commands/operator.py) starts kopf only on the replica that holds the Lease
# (leader.py), so that standbys run no daemons, watches or writes at all, and passes in the memo
# the leadership and the finalizer of this instance (shard.py). This block is all this module
# knows of either; it runs after `configure`, which registers first.


@kopf.on.startup()
async def lead_and_shard(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Kubernetes writes only while this replica leads (refused from the renew deadline on, also
    in a pass already under way); a label-sharded instance marks its objects with a finalizer
    of its own."""
    from .leader import guard_writes, user_agent

    leadership = getattr(memo, "leadership", None)
    if leadership is not None:
        guard_writes(memo.kube.api, leadership)
        memo.kube.api.user_agent = user_agent(leadership.identity)  # who wrote, in audit logs
    settings.persistence.finalizer = getattr(memo, "finalizer", None) or FINALIZER
