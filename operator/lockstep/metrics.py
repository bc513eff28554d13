"""The operator's own Prometheus metrics (served on /metrics by `lockstep run`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from . import __version__

BUILD = Info("lockstep_build", "Version of the lockstep operator.")
BUILD.info({"version": __version__})

RECONCILES = Counter(
    "lockstep_reconciles_total", "Reconciliations by kind and result.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "lockstep_reconcile_duration_seconds",
    "Time spent in one reconciliation.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
ROLLBACKS = Counter("lockstep_rollbacks_total", "Releases rolled back.")
MEASUREMENTS = Counter(
    "lockstep_analysis_queries_total", "Prometheus analysis queries by outcome.", ["outcome"]
)
MIGRATIONS_APPLIED = Counter(
    "lockstep_migrations_applied_total", "Migrations applied, by direction.", ["direction"]
)
LEADER = Gauge(
    "lockstep_leader",
    "1 while this replica leads (holds the Lease and acts), else 0; 1 when it runs without "
    "leader election.",
)
