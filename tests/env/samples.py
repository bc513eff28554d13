"""The sample application of the demo and the end-to-end tests: `web` and its database `shop-db`.

`web` is released blue-green with an error-ratio analysis measured by the traffic process; its
DatabaseMigration backs up through the local executor (the `lockstep.dev/test-exec` label), so
pg_dump really runs.
"""

from __future__ import annotations

from typing import Any

from .cluster import EXEC
from .traffic import error_ratio_query

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
