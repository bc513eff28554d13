"""Declarative mode end to end: a DatabaseMigration names a desired schema; the operator shows
the plan, applies it through its engine only when the annotation carries the plan's hash, and
a changed plan needs a new approval."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from tests.e2e.conftest import Kubectl
from tests.e2e.test_migration import secret
from tests.env.operator_runner import OperatorProcess

pytestmark = pytest.mark.cluster

USERS = "CREATE TABLE public.users (id bigint PRIMARY KEY, name text NOT NULL);\n"
EMAIL = (
    "CREATE TABLE public.users (id bigint PRIMARY KEY, name text NOT NULL, email text);\n"
    "CREATE INDEX users_email_idx ON public.users (email);\n"
)


def desired(schema: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shop-schema"},
        "data": {"schema.sql": schema},
    }


def declarative(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": "shop-db"},
        "spec": {
            "database": {"urlFrom": {"secretKeyRef": {"name": "shop-db", "key": "url"}}},
            "source": {"desiredSchema": {"configMapRef": {"name": "shop-schema"}}},
            "policy": {"backup": "never"},
            **spec,
        },
    }


def columns(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'users' ORDER BY ordinal_position"
            )
        ]


def plan(k: Kubectl) -> dict[str, Any]:
    return k.status("dbm", "shop-db").get("declarative") or {}


def test_a_plan_is_applied_only_with_its_hash_and_a_changed_plan_needs_a_new_one(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    k.apply(secret(database_url), desired(USERS), declarative())
    first = k.wait_for("a plan in status", lambda: plan(k).get("planHash"), timeout=90)
    status = k.status("dbm", "shop-db")
    assert status["phase"] == "WaitingForApproval"
    assert f"lockstep.dev/approve-plan={first}" in status["message"]
    assert [m["name"] for m in plan(k)["migrations"]] == ["expand"]
    assert "CREATE TABLE public.users" in plan(k)["migrations"][0]["up"]
    assert columns(database_url) == []  # nothing applied without the approval

    k("annotate", "dbm/shop-db", f"lockstep.dev/approve-plan={first}", "--overwrite")
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=90s")
    assert columns(database_url) == ["id", "name"]

    k.apply(desired(EMAIL))
    second = k.wait_for(
        "a new plan",
        lambda: (h := plan(k).get("planHash")) not in ("", None, first) and h,
        timeout=90,
    )
    status = k.status("dbm", "shop-db")
    assert status["phase"] == "WaitingForApproval"
    assert f"the approved {first} is not the current plan" in status["message"]
    assert [m["name"] for m in plan(k)["migrations"]] == ["expand", "expand_indexes"]
    assert columns(database_url) == ["id", "name"]

    k("annotate", "dbm/shop-db", f"lockstep.dev/approve-plan={second}", "--overwrite")
    k.wait_for("the email column", lambda: columns(database_url) == ["id", "name", "email"])
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=90s")
    try:
        k.wait_for("the plan to be empty", lambda: plan(k).get("planHash") == "", timeout=90)
    except TimeoutError:
        raise AssertionError(k.status("dbm", "shop-db")) from None
    assert plan(k)["message"] == "the database matches the desired schema"
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM lockstep.schema_migrations")]
    assert len(versions) == 3


def test_a_plan_with_a_hazard_not_allowed_stalls(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.users (id bigint PRIMARY KEY, legacy text)")
    k.apply(
        secret(database_url),
        desired(USERS.replace("name text NOT NULL", "name text")),
        declarative(),
    )
    k.wait_for("Stalled", lambda: k.condition("dbm", "shop-db", "Stalled") == "True", timeout=90)
    status = k.status("dbm", "shop-db")
    assert "--allow-hazard drop-column" in status["message"]
    assert columns(database_url) == ["id", "legacy"]
