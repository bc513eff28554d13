"""The operator's own Prometheus metrics (served on /metrics by `lockstep run`).

The Grafana dashboard and the alerts in monitoring/ query these names (a test checks that
every metric they use is exported). The reconcilers report through the functions at the end,
one line per hook; everything here is cheap and never raises into a reconciliation.

Per-object series (phase, step, analysis values, last backup size) exist only on the replica
that reconciles the object and go when it stops (deleted, or another replica leads).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import __version__
from .api.base import now, parse_timestamp
from .conditions import health_of

if TYPE_CHECKING:
    from .api.release import FeatureReleaseStatus
    from .migrations.engine import StepResult
    from .release.analysis import QueryResult

log = logging.getLogger("lockstep.metrics")

BUILD = Info("lockstep_build", "Version of the lockstep operator.")
BUILD.info({"version": __version__})

# -- the operator
RECONCILES = Counter(
    "lockstep_reconciles_total",
    "Reconciliations by kind and result (ok, error, invalid).",
    ["kind", "result"],
)
RECONCILE_ERRORS = Counter(
    "lockstep_reconcile_errors_total",
    "Reconciliations that failed (an exception, or an action on the cluster that failed); "
    "they are retried.",
    ["kind"],
)
RECONCILE_SECONDS = Histogram(
    "lockstep_reconcile_duration_seconds",
    "Time spent in one reconciliation.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

# -- releases
ROLLBACKS = Counter(
    "lockstep_rollbacks_total",
    "Releases rolled back, by release and reason (AnalysisFailed, AnalysisErrored, CheckFailed, "
    "ProgressDeadlineExceeded, Aborted).",
    ["namespace", "name", "reason"],
)
PROMOTIONS = Counter("lockstep_promotions_total", "Releases promoted.", ["namespace", "name"])
PROMOTION_SECONDS = Histogram(
    "lockstep_release_promotion_seconds",
    "Time from the start of a release to its promotion.",
    buckets=(10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400),
)
MEASUREMENTS = Counter(
    "lockstep_analysis_queries_total",
    "Prometheus analysis queries by outcome (Value, NoData, Error).",
    ["outcome"],
)
ANALYSIS_VALUES = Gauge(
    "lockstep_analysis_value",
    "The last value an analysis query returned, by release and analysis metric.",
    ["namespace", "name", "metric"],
)

# -- migrations and backups
MIGRATIONS_APPLIED = Counter(
    "lockstep_migrations_applied_total", "Migrations applied, by direction.", ["direction"]
)
MIGRATION_SECONDS = Histogram(
    "lockstep_migration_duration_seconds",
    "Time to apply one migration, lock waits and retries included, by direction.",
    ["direction"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
MIGRATION_LOCK_WAIT_SECONDS = Histogram(
    "lockstep_migration_lock_wait_seconds",
    "Time one migration lost to lock timeouts (failed attempts and the backoff between them).",
    buckets=(0, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
BACKUPS = Counter(
    "lockstep_backups_total",
    "Backup Jobs finished, by DatabaseMigration and result (succeeded, failed).",
    ["namespace", "name", "result"],
)
BACKUP_SECONDS = Histogram(
    "lockstep_backup_duration_seconds",
    "How long pg_dump took in a backup Job.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 10800),
)
BACKUP_BYTES = Gauge(
    "lockstep_backup_size_bytes",
    "Size of the last backup of each DatabaseMigration.",
    ["namespace", "name"],
)


# ---------------------------------------------------------------------------- object states


def _ready_reason(status: Mapping[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("reason") or "")
    return ""


class ObjectStates(Collector):
    """The phase of every object this replica reconciles: one series per object, value 1."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str, str], dict[str, str]] = {}

    def set(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        state = {
            "phase": str(status.get("phase") or ""),
            "health": health.value if (health := health_of(status)) else "Unknown",
            "reason": _ready_reason(status),
            "step": str(status.get("step") or ""),
            "step_started_at": str(status.get("stepStartedAt") or ""),
        }
        with self._lock:
            self._states[(kind, namespace, name)] = state

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._states.pop((kind, namespace, name), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            states = list(self._states.items())
        labels = ["namespace", "name", "phase", "health", "reason"]
        releases = GaugeMetricFamily(
            "lockstep_release_phase",
            "FeatureReleases by phase: 1 for the phase each one is in, with its health "
            "(Ready, Progressing, Paused, Retrying, Stalled, Degraded) and reason.",
            labels=labels,
        )
        migrations = GaugeMetricFamily(
            "lockstep_migration_phase",
            "DatabaseMigrations by phase: 1 for the phase each one is in, with its health "
            "(Ready, Planned, Progressing, Retrying, Stalled) and reason.",
            labels=labels,
        )
        steps = GaugeMetricFamily(
            "lockstep_release_step_started_timestamp_seconds",
            "When each FeatureRelease entered its current step (Unix time).",
            labels=["namespace", "name", "step"],
        )
        for (kind, namespace, name), state in states:
            values = [namespace, name, state["phase"], state["health"], state["reason"]]
            (releases if kind == "FeatureRelease" else migrations).add_metric(values, 1)
            if kind == "FeatureRelease" and state["step_started_at"]:
                started = parse_timestamp(state["step_started_at"]).timestamp()
                steps.add_metric([namespace, name, state["step"]], started)
        yield releases
        yield migrations
        yield steps

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # collected on every scrape: the families depend on the objects seen


OBJECTS = ObjectStates()
REGISTRY.register(OBJECTS)
_counted_backups: dict[str, None] = {}  # backup Jobs already counted (insertion-ordered, bounded)


P = ParamSpec("P")


def _safely(hook: Callable[P, None]) -> Callable[P, None]:
    """Metrics never break a reconciliation: a failing hook logs and returns."""

    @functools.wraps(hook)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:
            log.exception("metrics hook %s failed", hook.__name__)

    return run


# ---------------------------------------------------------------------------- hooks


@_safely
def observed(kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """A status written (or found unchanged): the object's phase, health and step."""
    OBJECTS.set(kind, namespace, name, status)


@_safely
def reconciled(kind: str, result: str) -> None:
    """A pass finished: ok, error (an action failed; retried) or invalid (a spec refused)."""
    RECONCILES.labels(kind, result).inc()
    if result == "error":
        RECONCILE_ERRORS.labels(kind).inc()


@_safely
def reconcile_failed(kind: str) -> None:
    """A pass that raised (the daemon retries it)."""
    RECONCILE_ERRORS.labels(kind).inc()


@_safely
def forget(kind: str, namespace: str, name: str) -> None:
    """The object is no longer reconciled here: its per-object series go."""
    OBJECTS.forget(kind, namespace, name)
    if kind == "FeatureRelease":
        for family in (ROLLBACKS, PROMOTIONS, ANALYSIS_VALUES):
            _remove_object_series(family, namespace, name)
    else:
        for family in (BACKUPS, BACKUP_BYTES):
            _remove_object_series(family, namespace, name)


def _remove_object_series(family: Any, namespace: str, name: str) -> None:
    for sample in list(family._metrics):  # label tuples; prometheus_client has no public list
        if sample[:2] == (namespace, name):
            family.remove(*sample)


@_safely
def release_event(namespace: str, name: str, reason: str, status: FeatureReleaseStatus) -> None:
    """An Event of a FeatureRelease: Promoted and RolledBack are counted (status: the model)."""
    if reason == "RolledBack":
        cause = (status.abort_reason or "Unknown").split(":", 1)[0].strip() or "Unknown"
        ROLLBACKS.labels(namespace, name, cause).inc()
    elif reason == "Promoted":
        PROMOTIONS.labels(namespace, name).inc()
        if status.revision_started_at:
            started = parse_timestamp(status.revision_started_at)
            PROMOTION_SECONDS.observe(max((now() - started).total_seconds(), 0.0))


@_safely
def measured(namespace: str, name: str, results: Iterable[QueryResult]) -> None:
    """A round of analysis queries (QueryResult: metric, value, error)."""
    for result in results:
        if result.error is not None:
            MEASUREMENTS.labels("Error").inc()
        elif result.value is None:
            MEASUREMENTS.labels("NoData").inc()
        else:
            MEASUREMENTS.labels("Value").inc()
            ANALYSIS_VALUES.labels(namespace, name, result.metric).set(result.value)


@_safely
def migrations_applied(results: Iterable[StepResult]) -> None:
    """Migrations the engine applied or reverted (StepResult: direction, timings)."""
    for result in results:
        MIGRATIONS_APPLIED.labels(result.direction).inc()
        MIGRATION_SECONDS.labels(result.direction).observe(result.duration_ms / 1000)
        MIGRATION_LOCK_WAIT_SECONDS.observe(result.lock_wait_ms / 1000)


@_safely
def backup_finished(
    namespace: str, name: str, job: str, size_bytes: int | None, seconds: float | None
) -> None:
    """A backup Job's outcome, counted once per Job (size None: it failed)."""
    if job in _counted_backups:
        return
    _counted_backups[job] = None
    if len(_counted_backups) > 10_000:
        del _counted_backups[next(iter(_counted_backups))]
    if size_bytes is None:
        BACKUPS.labels(namespace, name, "failed").inc()
        return
    BACKUPS.labels(namespace, name, "succeeded").inc()
    BACKUP_BYTES.labels(namespace, name).set(size_bytes)
    if seconds is not None:
        BACKUP_SECONDS.observe(seconds)


LEADER = Gauge(
    "lockstep_leader",
    "1 while this replica leads (holds the Lease and acts), else 0; 1 when it runs without "
    "leader election.",
)
