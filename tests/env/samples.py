"""The sample application of the demo and the end-to-end tests: `web` and its database `shop-db`.

Two forms of it:
- the real program, `examples/shop/shop.py` (`shop_release`, `shop_database_migration`): its
  pods run as local processes through the executor, read and write the database whose URL the
  Secret `shop-db` holds, report readiness from `/ready`, and are analysed on their own
  Prometheus metrics; `ShopVersion` says how a version behaves (schema, bug, slowness,
  never ready);
- the earlier stand-in (`web_release`, `shop_migration`): kwok pods and an error ratio dialled
  into the traffic process.
Both DatabaseMigrations back up through the local executor (the `lockstep.dev/test-exec`
label), so pg_dump really runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cluster import EXEC
from .traffic import error_ratio_query

REPO_ROOT = Path(__file__).resolve().parents[2]
SHOP_DIR = REPO_ROOT / "examples" / "shop"
SHOP_PROGRAM = SHOP_DIR / "shop.py"
APP = "web"
SECRET = "shop-db"
DATABASE_MIGRATION = "shop-db"

SHOP_USERS = {
    "version": "001",
    "name": "create_users",
    "up": "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);",
    "down": "DROP TABLE users;",
}
SHOP_EMAIL = {
    "version": "002",
    "name": "add_email",
    "up": "ALTER TABLE users ADD COLUMN email text;",
    "down": "ALTER TABLE users DROP COLUMN email;",
}
SHOP_DROP_NAME = {
    "version": "003",
    "name": "drop_name",
    "up": "ALTER TABLE users DROP COLUMN name;",
}


def shop_migration(
    migrations: list[dict[str, Any]], *, backup: dict[str, Any] | None = None, **policy: Any
) -> dict[str, Any]:
    """The DatabaseMigration `shop-db`: URL from the Secret `shop-db`, dumps to PVC `backups`."""
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": "shop-db"},
        "spec": {
            "database": {"urlFrom": {"secretKeyRef": {"name": "shop-db", "key": "url"}}},
            "source": {"migrations": migrations},
            "policy": {"backup": "always", **policy},
            "backup": {
                "destination": {"persistentVolumeClaim": {"claimName": "backups"}},
                "podLabels": {EXEC: "true"},
                "activeDeadlineSeconds": 120,
                **(backup or {}),
            },
        },
    }


def web_release(
    version: str,
    *,
    namespace: str,
    prometheus_url: str,
    migration: dict[str, Any],
    replicas: int = 2,
    scale_down_delay: int = 2,
    interval: str = "1s",
    duration: str = "4s",
    **spec: Any,
) -> dict[str, Any]:
    """The FeatureRelease `web` at `version`, gated on `shop-db` and analysed on its errors."""
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "FeatureRelease",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "replicas": replicas,
            "release": version,
            "template": {
                "metadata": {"labels": {"app": "web", "app.kubernetes.io/version": version}},
                "spec": {"containers": [{"name": "web", "image": f"example/web:{version}"}]},
            },
            "service": "web",
            "migration": {"ref": "shop-db", **migration},
            "strategy": {"blueGreen": {"scaleDownDelaySeconds": scale_down_delay}},
            "analysis": {
                "prometheus": {"address": prometheus_url},
                "interval": interval,
                "duration": duration,
                "failureLimit": 2,
                "metrics": [
                    {"name": "error-ratio", "query": error_ratio_query(namespace), "max": 0.05}
                ],
            },
            **spec,
        },
    }


# ------------------------------------------------------------------------ the real program


def shop_migrations() -> dict[str, dict[str, Any]]:
    """examples/shop/migrations as inline migrations, by version ("001", "002", "003")."""
    found: dict[str, dict[str, Any]] = {}
    for up in sorted((SHOP_DIR / "migrations").glob("*.up.sql")):
        version, name = up.name.removesuffix(".up.sql").split("_", 1)
        migration = {"version": version, "name": name, "up": up.read_text()}
        down = up.with_name(up.name.replace(".up.sql", ".down.sql"))
        if down.exists():
            migration["down"] = down.read_text()
        found[version] = migration
    return found


@dataclass(frozen=True)
class ShopVersion:
    """How one version of the shop behaves (see examples/shop/shop.py)."""

    name: str
    schema: int = 1
    bug: bool = False
    slow_seconds: float = 0.0
    never_ready: bool = False

    def args(self) -> list[str]:
        args = ["--version", self.name, "--schema", str(self.schema)]
        if self.bug:
            args.append("--bug")
        if self.slow_seconds:
            args += ["--slow", f"{self.slow_seconds:g}"]
        if self.never_ready:
            args.append("--never-ready")
        return args


def shop_template(
    version: ShopVersion, *, drain_seconds: float = 1.0, grace_seconds: int = 15
) -> dict[str, Any]:
    """The pod template of `version`: the program runs as a local process (the executor's
    label), listens on its `http` port, is Ready while /ready passes, and is scraped."""
    return {
        "metadata": {
            "labels": {"app": APP, "app.kubernetes.io/version": version.name, EXEC: "true"},
            "annotations": {"prometheus.io/scrape": "true"},
        },
        "spec": {
            "terminationGracePeriodSeconds": grace_seconds,
            "containers": [
                {
                    "name": "shop",
                    "image": f"example/shop:{version.name}",
                    "command": [sys.executable, str(SHOP_PROGRAM)],
                    "args": [*version.args(), "--drain-seconds", f"{drain_seconds:g}"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [
                        {
                            "name": "DATABASE_URL",
                            "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "url"}},
                        }
                    ],
                    "readinessProbe": {
                        "httpGet": {"path": "/ready", "port": "http"},
                        "periodSeconds": 1,
                        "timeoutSeconds": 1,
                        "successThreshold": 1,
                        "failureThreshold": 2,
                    },
                }
            ],
        },
    }


def shop_objects(database_url: str) -> list[dict[str, Any]]:
    """The Secret with the database URL and the Service `web` (port 80 to the pods' http)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET},
            "stringData": {"url": database_url},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": APP},
            "spec": {"selector": {"app": APP}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    ]


def shop_error_ratio_query(namespace: str) -> str:
    """The share of the colour's requests answered 5xx over the last 5 s (its own metrics)."""
    selected = f'namespace="{namespace}",app="{APP}",color="{{{{color}}}}"'
    errors = f'sum(rate(shop_http_requests_total{{{selected},code=~"5.."}}[5s]))'
    return f"{errors} / sum(rate(shop_http_requests_total{{{selected}}}[5s]))"


def shop_latency_query(namespace: str, quantile: float = 0.9) -> str:
    """The colour's request latency at `quantile` over the last 5 s, in seconds."""
    selected = f'namespace="{namespace}",app="{APP}",color="{{{{color}}}}"'
    buckets = f"sum by (le) (rate(shop_http_request_duration_seconds_bucket{{{selected}}}[5s]))"
    return f"histogram_quantile({quantile:g}, {buckets})"


def shop_analysis(
    namespace: str,
    prometheus_url: str,
    *,
    interval: str = "2s",
    duration: str = "8s",
    failure_limit: int = 2,
    max_error_ratio: float = 0.05,
    max_latency_seconds: float = 0.25,
) -> dict[str, Any]:
    """Analysis on the colour's own metrics: error ratio and p90 latency."""
    return {
        "prometheus": {"address": prometheus_url, "timeout": "2s"},
        "interval": interval,
        "duration": duration,
        "failureLimit": failure_limit,
        "consecutiveErrorLimit": 3,
        "metrics": [
            {
                "name": "error-ratio",
                "query": shop_error_ratio_query(namespace),
                "max": max_error_ratio,
            },
            {
                "name": "latency-p90",
                "query": shop_latency_query(namespace),
                "max": max_latency_seconds,
            },
        ],
    }


def shop_database_migration(
    versions: list[str], extra: list[dict[str, Any]] | None = None, **policy: Any
) -> dict[str, Any]:
    """The DatabaseMigration `shop-db` with the migrations `versions` of examples/shop (and
    `extra` inline ones after them), backed up to the PVC `backups` by the executor."""
    migrations = shop_migrations()
    chosen = [migrations[v] for v in versions] + list(extra or [])
    return shop_migration(chosen, **{"lockTimeout": "2s", **policy})


def shop_release(
    version: ShopVersion,
    *,
    migration: dict[str, Any],
    replicas: int = 2,
    scale_down_delay: int = 2,
    analysis: dict[str, Any] | None = None,
    drain_seconds: float = 1.0,
    **spec: Any,
) -> dict[str, Any]:
    """The FeatureRelease `web` running `version` of the shop program (without `analysis`, it
    is promoted as soon as it is available)."""
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "FeatureRelease",
        "metadata": {"name": APP},
        "spec": {
            "selector": {"matchLabels": {"app": APP}},
            "replicas": replicas,
            "release": version.name,
            "template": shop_template(version, drain_seconds=drain_seconds),
            "service": APP,
            "migration": {"ref": DATABASE_MIGRATION, **migration},
            "strategy": {"blueGreen": {"scaleDownDelaySeconds": scale_down_delay}},
            **({"analysis": analysis} if analysis else {}),
            **spec,
        },
    }
