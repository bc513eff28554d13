"""A FeatureRelease gated on its DatabaseMigration: expand before the switch, contract after
the old colour is gone, breaking changes refused, and the schema rolled back when asked."""

from __future__ import annotations

import psycopg
import pytest
from tests.e2e.conftest import Kubectl
from tests.e2e.shop import (
    ADD_EMAIL,
    CREATE_USERS,
    DROP_NAME,
    columns,
    database_migration,
    release,
    versions,
)
from tests.env.prometheus import PrometheusServer
from tests.env.traffic import TrafficClient

pytestmark = pytest.mark.cluster


def test_happy_path_backup_expand_switch_analysis_scale_down_contract_ready(
    k: Kubectl, v1_live: str, prometheus: PrometheusServer
) -> None:
    k.apply(
        database_migration([CREATE_USERS, ADD_EMAIL, DROP_NAME]),
        release("v2", {"targetVersion": "002", "contractVersion": "003"}, prometheus, k.namespace),
    )
    k.wait_for(
        "the switch to green",
        lambda: k.status("fr", "web").get("activeColor") == "green",
        timeout=120,
    )
    # expand applied before the switch; contract not yet: blue (v1) may still run and use `name`
    assert versions(v1_live) == ["001", "002"]
    assert "name" in columns(v1_live)
    try:
        k("wait", "--for=condition=Ready", "fr/web", "--timeout=180s")
    except RuntimeError:
        raise AssertionError(
            f"fr: {k.status('fr', 'web').get('message')} / dbm: {k.status('dbm', 'shop-db')}"
        ) from None
    fr = k.status("fr", "web")
    assert (fr["phase"], fr["activeColor"], fr["release"]) == ("Ready", "green", "v2")
    assert k.status("deployment", "web-blue").get("replicas", 0) == 0
    assert versions(v1_live) == ["001", "002", "003"]
    assert columns(v1_live) == ["email", "id"]
    dbm = k.status("dbm", "shop-db")
    assert dbm["phase"] == "Ready" and dbm["currentVersion"] == "003"
    backups = [b.get("databaseVersion") for b in dbm["backups"]]
    assert "001" in backups and "002" in backups  # before the expand, and again before the contract
    assert [h["outcome"] for h in fr["history"]] == ["Promoted", "Promoted"]


def test_a_breaking_migration_referenced_by_a_release_is_blocked_and_nothing_changes(
    k: Kubectl, v1_live: str, prometheus: PrometheusServer
) -> None:
    before = k.get("deployment", "web-blue")["spec"]
    k.apply(
        database_migration([CREATE_USERS, DROP_NAME]),
        release("v2", {"targetVersion": "003"}, prometheus, k.namespace),
    )
    k.wait_for("Blocked", lambda: k.status("fr", "web").get("phase") == "Blocked", timeout=60)
    fr = k.status("fr", "web")
    assert "003" in fr["message"] and "breaking" in fr["message"]
    assert k.condition("fr", "web", "Stalled") == "True"
    assert k.maybe("deployment", "web-green") is None
    assert k.get("deployment", "web-blue")["spec"] == before
    assert k.get("service", "web")["spec"]["selector"]["lockstep.dev/color"] == "blue"
    assert versions(v1_live) == ["001"] and "name" in columns(v1_live)


def test_an_error_spike_rolls_the_schema_back_with_down_migrations_when_asked(
    k: Kubectl, v1_live: str, prometheus: PrometheusServer, traffic: TrafficClient
) -> None:
    traffic.set_app(k.namespace, "web", service="web", rps=50, error_ratio={"v2": 0.5})
    k.apply(
        database_migration([CREATE_USERS, ADD_EMAIL]),
        release(
            "v2",
            {"targetVersion": "002"},
            prometheus,
            k.namespace,
            rollback={"automatic": True, "database": "down"},
        ),
    )
    k.wait_for(
        "RolledBack", lambda: k.status("fr", "web").get("phase") == "RolledBack", timeout=180
    )
    assert k.get("service", "web")["spec"]["selector"]["lockstep.dev/color"] == "blue"
    k.wait_for("the schema back at 001", lambda: versions(v1_live) == ["001"], timeout=60)
    assert "email" not in columns(v1_live)
    dbm = k.status("dbm", "shop-db")
    request = k.status("fr", "web")["database"]["request"]
    assert (request["mode"], request["toVersion"]) == ("down", "001")
    [ack] = dbm["requests"]
    assert (ack["release"], ack["id"], ack["outcome"]) == ("web", request["id"], "Succeeded")
    assert dbm["gate"]["holds"] == [{"release": "web", "version": "001"}]
    assert ack["destroys"] == ["002: ALTER TABLE users DROP COLUMN email"]
    assert ack["backup"] in [b["name"] for b in dbm["backups"]], "a backup before the down"
    assert k.condition("fr", "web", "Degraded") == "True"


def test_an_error_spike_restores_the_pre_release_backup_when_the_policy_says_restore(
    k: Kubectl, v1_live: str, prometheus: PrometheusServer, traffic: TrafficClient
) -> None:
    with psycopg.connect(v1_live, autocommit=True) as conn:
        conn.execute("INSERT INTO users (name) VALUES ('ada'), ('grace')")
    traffic.set_app(k.namespace, "web", service="web", rps=50, error_ratio={"v2": 0.5})
    k.apply(
        database_migration([CREATE_USERS, ADD_EMAIL]),
        release(
            "v2",
            {"targetVersion": "002"},
            prometheus,
            k.namespace,
            rollback={"automatic": True, "database": "restore"},
        ),
    )
    k.wait_for(
        "RolledBack", lambda: k.status("fr", "web").get("phase") == "RolledBack", timeout=180
    )
    k.wait_for("the backup restored", lambda: versions(v1_live) == ["001"], timeout=60)
    assert "email" not in columns(v1_live)
    with psycopg.connect(v1_live) as conn:
        assert [r[0] for r in conn.execute("select name from users order by id")] == [
            "ada",
            "grace",
        ]
    dbm = k.status("dbm", "shop-db")
    [ack] = dbm["requests"]
    assert ack["outcome"] == "Succeeded" and ack["backup"] == dbm["backups"][-1]["name"]
    window = ack["discardedWrites"]
    assert window["start"] == dbm["backups"][-1]["snapshotAt"] < window["end"]
    assert "were discarded" in ack["message"]
    assert any(
        e["reason"] == "RequestSucceeded" and "discarded" in e["message"]
        for e in k.events("shop-db")
    )
