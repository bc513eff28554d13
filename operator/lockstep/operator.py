"""The kopf operator: settings, watch-fed indexes, and one daemon per object.

Each FeatureRelease and DatabaseMigration gets a daemon that looks at the object, decides and
acts (in a worker thread), then waits until either something it depends on changes (an index
update or a change of the object wakes it) or the delay its decision asked for passes. The
world is read from kopf indexes fed by watches, so an idle operator makes no API requests.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from prometheus_client import start_http_server

from . import GROUP, VERSION
from .api.base import now as utcnow
from .kube import Kube, load_api_client
from .migrations import reconcile as migration_reconcile
from .migrations.gate import ReleaseGate
from .objects import Snapshot
from .redact import install_log_redaction
from .release import reconcile as release_reconcile
from .release.world import (
    COLOR_LABEL,
    RELEASE_LABEL,
    REVISION_LABEL,
    DeploymentView,
    JobView,
    MigrationView,
    ServiceView,
    World,
)

log = logging.getLogger("lockstep.operator")
MANAGED = {"app.kubernetes.io/managed-by": "lockstep"}
MIGRATION_LABEL = "lockstep.dev/migration"
FINALIZER = "lockstep.dev/finalizer"


class Wakers:
    """One asyncio.Event per object, set when something the object depends on changes."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str, str], asyncio.Event] = {}
        # Who depends on what: (namespace, service or migration name) -> release names.
        self.service_users: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.migration_users: dict[tuple[str, str], set[str]] = defaultdict(set)

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
                delay = 5.0
            await wakers.sleep(kind, namespace, name, delay, stopped)
    finally:
        wakers.forget(kind, namespace, name)


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
    settings.execution.max_workers = workers
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lockstep")
    )
    memo.kube = Kube(load_api_client(pool_size=workers))
    memo.wakers = Wakers()
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
    template_labels = (spec.get("template", {}).get("metadata", {}) or {}).get("labels", {}) or {}
    view = DeploymentView(
        color=color,  # type: ignore[arg-type]
        revision=template_labels.get(REVISION_LABEL),
        replicas=_int(spec.get("replicas", 1)),
        updated=_int(status.get("updatedReplicas")),
        ready=_int(status.get("readyReplicas")),
        available=_int(status.get("availableReplicas")),
        current=_int(status.get("observedGeneration")) >= _int(meta.get("generation")),
    )
    memo.wakers.wake("FeatureRelease", namespace, release)
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
        memo.wakers.wake("FeatureRelease", namespace, labels[RELEASE_LABEL])
        return {("FeatureRelease", namespace, labels[RELEASE_LABEL]): view}
    if labels.get(MIGRATION_LABEL):
        memo.wakers.wake("DatabaseMigration", namespace, labels[MIGRATION_LABEL])
        return {("DatabaseMigration", namespace, labels[MIGRATION_LABEL]): view}
    return None


@kopf.index("", "v1", "services")
async def service_selectors(
    namespace: str | None, name: str, spec: Any, memo: Any, **_: Any
) -> dict[Any, dict[str, str]]:
    for release in memo.wakers.service_users.get((namespace, name), ()):
        memo.wakers.wake("FeatureRelease", namespace, release)
    return {(namespace, name): dict(spec.get("selector") or {})}


@kopf.index(GROUP, VERSION, "databasemigrations")
async def migration_views(
    namespace: str | None, name: str, meta: Any, status: Any, annotations: Any, memo: Any, **_: Any
) -> dict[Any, MigrationView]:
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    last_request = status.get("lastRequest") or {}
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
        last_request_id=last_request.get("id"),
        last_request_outcome=last_request.get("outcome"),
    )
    for release in memo.wakers.migration_users.get((namespace, name), ()):
        memo.wakers.wake("FeatureRelease", namespace, release)
    return {(namespace, name): view}


@kopf.index(GROUP, VERSION, "featurereleases")
async def release_gates(
    namespace: str | None, name: str, spec: Any, status: Any, meta: Any, memo: Any, **_: Any
) -> dict[Any, dict[str, Any]] | None:
    """What each release tells its DatabaseMigration: may contract migrations run?"""
    gate = spec.get("migration") or {}
    ref = gate.get("ref")
    if not ref:
        return None
    memo.wakers.wake("DatabaseMigration", namespace, ref)
    current = _int(status.get("observedGeneration")) == _int(meta.get("generation"))
    return {
        (namespace, ref): {
            "name": name,
            "settled": bool(status.get("settled")) and current,
            "contractThrough": gate.get("contractVersion"),
        }
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
    status: dict[str, Any] = copy.deepcopy(dict(body.get("status") or {}))
    users: list[tuple[dict[tuple[str, str], set[str]], tuple[str, str]]] = []

    def depend_on(spec: dict[str, Any]) -> None:
        """Remember which Services and migration this release reads, to be woken by them."""
        nonlocal users
        for mapping, key in users:
            mapping[key].discard(name)
        users = [(wakers.service_users, (namespace, str(spec.get("service"))))]
        if spec.get("previewService"):
            users.append((wakers.service_users, (namespace, str(spec["previewService"]))))
        migration = (spec.get("migration") or {}).get("ref")
        if migration:
            users.append((wakers.migration_users, (namespace, str(migration))))
        for mapping, key in users:
            mapping[key].add(name)

    async def one_pass() -> float:
        nonlocal status
        obj = Snapshot.of("FeatureRelease", "featurereleases", body, status)
        depend_on(obj.spec)
        world = _release_world(namespace, name, obj.spec, deployments, jobs, services, migrations)
        status, delay = await asyncio.to_thread(release_reconcile.reconcile, memo.kube, obj, world)
        return delay

    try:
        await reconcile_forever("FeatureRelease", namespace, name, memo, stopped, one_pass)
    finally:
        for mapping, key in users:
            mapping[key].discard(name)


def _release_world(
    namespace: str | None,
    name: str,
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
        deployments={v.color: v for v in (deployments.get((namespace, name)) or [])},
        jobs={v.name: v for v in (jobs.get(("FeatureRelease", namespace, name)) or [])},
        migration=migration,
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
    gates: kopf.Index[Any, dict[str, Any]] = indexes["release_gates"]
    namespace = namespace or ""
    status: dict[str, Any] = copy.deepcopy(dict(body.get("status") or {}))
    stop = threading.Event()

    async def one_pass() -> float:
        nonlocal status
        obj = Snapshot.of("DatabaseMigration", "databasemigrations", body, status)
        world = migration_reconcile.MigrationWorld(
            jobs={v.name: v for v in (jobs.get(("DatabaseMigration", namespace, name)) or [])},
            gates=[
                ReleaseGate(g["name"], g["settled"], g["contractThrough"])
                for g in (gates.get((namespace, name)) or [])
            ],
            stop=stop,
        )
        status, delay = await asyncio.to_thread(
            migration_reconcile.reconcile, memo.kube, obj, world
        )
        return delay

    try:
        await reconcile_forever("DatabaseMigration", namespace, name, memo, stopped, one_pass)
    finally:
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
