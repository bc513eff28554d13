"""Real FeatureReleases and DatabaseMigrations, taken at every phase the GitOps tools must tell
apart, read as docs/gitops.md says by kstatus, Flux's healthCheckExprs, kubectl wait and the
Argo CD health script (tests/env/health_check.py).

With LOCKSTEP_UPDATE_GITOPS_FIXTURES=1 the objects are also written to gitops/argocd/testdata,
where tests/unit/test_gitops_health_fixtures.py checks them on every run without a cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from tests.e2e.conftest import Kubectl
from tests.e2e.releases import APP, WebApp, blue_green, check, release_manifest
from tests.env.health_check import check as health
from tests.env.health_check import documented_case, fixture_of
from tests.env.operator_runner import OperatorProcess
from tests.env.postgres import PostgresServer
from tests.env.processes import wait_until

pytestmark = pytest.mark.cluster

UPDATE = os.environ.get("LOCKSTEP_UPDATE_GITOPS_FIXTURES") == "1"
Object = dict[str, Any]


def reads_as_documented(obj: Object, fixture: str, namespace: str) -> None:
    case = documented_case(fixture)
    (verdict,) = health([obj])
    assert verdict.observed() == case.expected(), (
        f"{fixture} ({case.case}): {verdict} for status {obj.get('status')}"
    )
    if UPDATE:
        case.path.write_text(fixture_of(obj, namespace))


def first(changes: list[Object], what: str, condition: Callable[[Object], bool]) -> Object:
    found = next((body for body in changes if condition(body)), None)
    assert found is not None, f"no version of the object was {what}"
    return found


def conditions(obj: Object) -> dict[str, Object]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def test_a_release_reads_as_documented_at_every_step(web: WebApp, k: Kubectl) -> None:
    ns = k.namespace
    web.go_live("v1")
    versions = [c.body for c in web.timeline.of("FeatureRelease", APP)]
    reads_as_documented(versions[0], "featurerelease-created.yaml", ns)
    progressing = first(
        versions, "progressing", lambda o: (o.get("status") or {}).get("phase") == "Progressing"
    )
    reads_as_documented(progressing, "featurerelease-progressing.yaml", ns)

    manual = {"analysis": web.analysis(), "strategy": blue_green(autoPromote=False)}
    generation = web.apply("v2", **manual)
    web.wait_for_step("AwaitPromotion", "v2")
    versions = [c.body for c in web.timeline.of("FeatureRelease", APP)]
    not_observed = first(
        versions,
        "changed and not yet observed",
        lambda o: (
            o["metadata"]["generation"] == generation
            and o["status"]["observedGeneration"] < generation
        ),
    )
    reads_as_documented(not_observed, "featurerelease-spec-change-not-observed.yaml", ns)
    reads_as_documented(k.get("fr", APP), "featurerelease-awaiting-promotion.yaml", ns)

    web.plugin("pause", APP)
    paused = wait_until(
        lambda: (
            (obj := k.get("fr", APP))
            and conditions(obj).get("Reconciling", {}).get("reason") == "Paused"
            and obj
        ),
        timeout=30,
        what="the release paused",
    )
    reads_as_documented(paused, "featurerelease-paused.yaml", ns)  # type: ignore[arg-type]

    web.plugin("resume", APP)
    web.plugin("promote", APP)
    web.wait_for_phase("Ready", generation, release="v2")
    reads_as_documented(k.get("fr", APP), "featurerelease-promoted.yaml", ns)

    web.start_clients(error_ratio={"v3": 0.5})
    generation = web.apply("v3", analysis=web.analysis())
    web.wait_for_phase("RolledBack", generation, release="v3")
    reads_as_documented(k.get("fr", APP), "featurerelease-rolled-back.yaml", ns)


def test_a_blocked_release_is_stalled_and_a_missing_service_is_retried(
    web: WebApp, k: Kubectl
) -> None:
    ns = k.namespace
    web.go_live("v1")
    failing = {
        "checks": {"prePromotion": [check("smoke", fail=True)]},
        "rollback": {"automatic": False},
    }
    generation = web.apply("v2", **failing)
    blocked = web.timeline.wait_for_release(
        "blocked",
        lambda s: s.get("observedGeneration") == generation and s.get("step") == "AwaitAbort",
        timeout=90,
    )
    assert blocked["phase"] == "Blocked"
    reads_as_documented(k.get("fr", APP), "featurerelease-stalled.yaml", ns)

    orphan = release_manifest("v1")
    orphan["metadata"]["name"] = "orphan"
    orphan["spec"]["service"] = "orphan"
    k.apply(orphan)
    retrying = wait_until(
        lambda: (
            (obj := k.get("fr", "orphan"))
            and conditions(obj).get("Ready", {}).get("reason") == "ServiceNotFound"
            and obj
        ),
        timeout=30,
        what="the release without its Service",
    )
    reads_as_documented(retrying, "featurerelease-retrying.yaml", ns)  # type: ignore[arg-type]


def migration(name: str, migrations: list[Object], **spec: Any) -> Object:
    """A DatabaseMigration whose URL is in the Secret of the same name."""
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": name},
        "spec": {
            "database": {"urlFrom": {"secretKeyRef": {"name": name, "key": "url"}}},
            "source": {"migrations": migrations},
            "policy": {"backup": "never"},
            **spec,
        },
    }


USERS = {
    "version": "001",
    "name": "create_users",
    "up": "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);",
    "down": "DROP TABLE users;",
}
EMAIL = {"version": "002", "name": "add_email", "up": "ALTER TABLE users ADD COLUMN email text;"}
BROKEN = {"version": "001", "name": "broken", "up": "CREATE TABLE (;"}


def secret(name: str, url: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"url": url},
    }


def test_a_migration_reads_as_documented_in_every_state(
    k: Kubectl, operator: OperatorProcess, postgres: PostgresServer, database_url: str
) -> None:
    ns = k.namespace

    def state(name: str, what: str, condition: Callable[[Object], bool]) -> Object:
        return wait_until(  # type: ignore[return-value]
            lambda: (obj := k.get("dbm", name)) and condition(obj) and obj,
            timeout=60,
            what=f"{name} {what}",
        )

    created = json.loads(
        k("create", "-o", "json", "-f", "-", input=json.dumps(migration("shop-db", [USERS])))
    )
    reads_as_documented(created, "databasemigration-created.yaml", ns)
    retrying = state(
        "shop-db",
        "retrying",
        lambda o: conditions(o).get("Ready", {}).get("reason") == "SecretNotFound",
    )
    reads_as_documented(retrying, "databasemigration-retrying.yaml", ns)

    k.apply(secret("shop-db", database_url))
    ready = state("shop-db", "ready", lambda o: o["status"].get("phase") == "Ready")
    reads_as_documented(ready, "databasemigration-ready.yaml", ns)

    empty = f"{ns.replace('-', '_')}_empty"
    k.apply(secret("broken-db", postgres.create_database(empty)), migration("broken-db", [BROKEN]))
    try:
        failed = state("broken-db", "failed", lambda o: o["status"].get("phase") == "Failed")
    finally:
        k("delete", "dbm", "broken-db", "--wait=false")
    assert conditions(failed)["Stalled"]["reason"] == "LintFailed"
    reads_as_documented(failed, "databasemigration-failed.yaml", ns)
    postgres.drop_database(empty)

    k.apply(secret("plan-db", database_url), migration("plan-db", [USERS, EMAIL], dryRun=True))
    planned = state("plan-db", "planned", lambda o: o["status"].get("phase") == "DryRun")
    reads_as_documented(planned, "databasemigration-dry-run.yaml", ns)
