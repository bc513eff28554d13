"""The shop database and the "web" release gated on it, as the end-to-end tests of releases
with migrations write them; `v1_live` (tests/e2e/conftest.py) puts v1 live at schema 001."""

from __future__ import annotations

from typing import Any

import psycopg
from tests.env.prometheus import PrometheusServer
from tests.env.samples import SHOP_DROP_NAME, SHOP_EMAIL, SHOP_USERS, shop_migration, web_release

CREATE_USERS, ADD_EMAIL, DROP_NAME = SHOP_USERS, SHOP_EMAIL, SHOP_DROP_NAME


def secret_and_service(database_url: str) -> list[dict[str, Any]]:
    """The Secret `shop-db` with the database URL, and the Service `web` the releases switch."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "shop-db"},
            "stringData": {"url": database_url},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}]},
        },
    ]


def database_migration(migrations: list[dict[str, Any]], **policy: Any) -> dict[str, Any]:
    return shop_migration(migrations, **policy)


def release(
    version: str,
    migration: dict[str, Any],
    prometheus: PrometheusServer,
    namespace: str,
    **spec: Any,
) -> dict[str, Any]:
    return web_release(
        version, namespace=namespace, prometheus_url=prometheus.url, migration=migration, **spec
    )


def versions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            r[0] for r in conn.execute("select version from lockstep.schema_migrations order by 1")
        ]


def columns(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns "
                "where table_name = 'users' order by 1"
            )
        ]
