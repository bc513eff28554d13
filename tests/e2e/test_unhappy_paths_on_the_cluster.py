"""The most dangerous unhappy paths on the real cluster, database and Prometheus: no contract
after a rollback, abort after promotion, a release or its stable Deployment deleted in the
middle of the analysis, rows written between two attempts kept by the second restore, and two
operator processes at once."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import psycopg
import pytest
from tests.e2e.conftest import Kubectl
from tests.e2e.releases import Timeline, WebApp
from tests.e2e.shop import (
    ADD_EMAIL,
    CREATE_USERS,
    DROP_NAME,
    columns,
    database_migration,
    release,
    secret_and_service,
)
from tests.env.operator_runner import OperatorProcess
from tests.env.postgres import PostgresServer
from tests.env.processes import wait_until
from tests.env.prometheus import PrometheusServer
from tests.env.traffic import TrafficClient

pytestmark = pytest.mark.cluster


def selector(k: Kubectl) -> str | None:
    return k.get("service", "web")["spec"]["selector"].get("lockstep.dev/color")


def available(k: Kubectl, color: str) -> int:
    deployment = k.maybe("deployment", f"web-{color}")
    return int(((deployment or {}).get("status") or {}).get("availableReplicas") or 0)


def test_no_contract_migration_runs_after_the_release_that_declared_it_is_rolled_back(
    k: Kubectl, v1_live: str, prometheus: PrometheusServer, traffic: TrafficClient
) -> None:
    traffic.set_app(k.namespace, "web", service="web", rps=50, error_ratio={"v2": 0.5})
    k.apply(
        database_migration([CREATE_USERS, ADD_EMAIL, DROP_NAME]),
        release("v2", {"targetVersion": "002", "contractVersion": "003"}, prometheus, k.namespace),
    )
    k.wait_for(
        "RolledBack", lambda: k.status("fr", "web").get("phase") == "RolledBack", timeout=180
    )
    k.wait_for("blue scaled down", lambda: k.status("fr", "web").get("settled"), timeout=60)
    dbm = k.wait_for(
        "the migration waiting for contract",
        lambda: (s := k.status("dbm", "shop-db")).get("phase") == "WaitingForContract" and s,
        timeout=60,
    )
    assert "declares no migration.contractVersion" in dbm["message"]
    assert "name" in columns(v1_live), "the column v1 reads is still there"
    assert k.status("fr", "web")["database"].get("tolerates") is None


def test_abort_during_the_scale_down_delay_goes_back_to_the_previous_colour(
    k: Kubectl, v1_live: str, prometheus: PrometheusServer
) -> None:
    k.apply(
        database_migration([CREATE_USERS, ADD_EMAIL]),
        release("v2", {"targetVersion": "002"}, prometheus, k.namespace, scale_down_delay=600),
    )
    k.wait_for("ScaleDown", lambda: k.status("fr", "web").get("step") == "ScaleDown", timeout=180)
    assert selector(k) == "green"
    k("annotate", "fr", "web", "lockstep.dev/request=abort@after-promotion", "--overwrite")
    k.wait_for(
        "RolledBack", lambda: k.status("fr", "web").get("phase") == "RolledBack", timeout=120
    )
    status = k.status("fr", "web")
    assert status["lastRequest"]["outcome"] == "Accepted"
    assert (selector(k), status["stableRelease"], status["activeColor"]) == ("blue", "v1", "blue")
    assert available(k, "blue") == 2
    assert status["history"][0]["outcome"] == "Aborted"


def test_abort_once_contract_migrations_may_have_run_is_refused(
    k: Kubectl, v1_live: str, prometheus: PrometheusServer
) -> None:
    k.apply(
        database_migration([CREATE_USERS, ADD_EMAIL]),
        release("v2", {"targetVersion": "002"}, prometheus, k.namespace),
    )
    k("wait", "--for=condition=Ready", "fr/web", "--timeout=180s")
    k("annotate", "fr", "web", "lockstep.dev/request=abort@too-late", "--overwrite")
    k.wait_for(
        "the answer",
        lambda: (k.status("fr", "web").get("lastRequest") or {}).get("id") == "abort@too-late",
    )
    answer = k.status("fr", "web")["lastRequest"]
    assert answer["outcome"] == "Refused"
    assert selector(k) == "green"


def test_deleting_the_release_mid_analysis_keeps_the_stable_colour_serving(
    k: Kubectl, v1_live: str, prometheus: PrometheusServer
) -> None:
    k.apply(
        database_migration([CREATE_USERS, ADD_EMAIL]),
        release("v2", {"targetVersion": "002"}, prometheus, k.namespace, duration="120s"),
    )
    k.wait_for("Analysis", lambda: k.status("fr", "web").get("step") == "Analysis", timeout=180)
    k("delete", "fr", "web", "--wait=true", "--timeout=60s")
    k.wait_for("green gone", lambda: k.maybe("deployment", "web-green") is None, timeout=60)
    assert selector(k) == "blue"
    blue = k.get("deployment", "web-blue")
    assert not blue["metadata"].get("ownerReferences"), "orphaned, so it keeps running"
    assert available(k, "blue") == 2
    events = k("get", "events", "-o", "json")
    assert "StableKept" in events

    # created again, the release adopts blue and takes v2 through the whole analysis
    k.apply(release("v2", {"targetVersion": "002"}, prometheus, k.namespace))
    k("wait", "--for=condition=Ready", "fr/web", "--timeout=180s")
    status = k.status("fr", "web")
    assert (status["activeColor"], status["release"]) == ("green", "v2")
    assert status["analysis"]["cleanRounds"] >= 4
    assert k.get("deployment", "web-blue")["metadata"]["ownerReferences"][0]["kind"] == (
        "FeatureRelease"
    )


def test_the_stable_deployment_deleted_mid_analysis_is_brought_back(
    k: Kubectl, v1_live: str, prometheus: PrometheusServer, traffic: TrafficClient
) -> None:
    traffic.set_app(k.namespace, "web", service="web", rps=50, error_ratio={"v2": 0.5})
    k.apply(
        database_migration([CREATE_USERS, ADD_EMAIL]),
        release("v2", {"targetVersion": "002"}, prometheus, k.namespace, duration="30s"),
    )
    k.wait_for("Analysis", lambda: k.status("fr", "web").get("step") == "Analysis", timeout=180)
    k("delete", "deployment", "web-blue", "--wait=false")
    k.wait_for(
        "RolledBack", lambda: k.status("fr", "web").get("phase") == "RolledBack", timeout=180
    )
    assert selector(k) == "blue"
    assert available(k, "blue") == 2
    reasons = [e["reason"] for e in k.events("web")]
    assert "StableRestored" in reasons


def test_rows_written_between_two_attempts_survive_the_second_restore(
    k: Kubectl, v1_live: str, prometheus: PrometheusServer, traffic: TrafficClient
) -> None:
    traffic.set_app(k.namespace, "web", service="web", rps=50, error_ratio={"v2": 0.5})
    spec = {"rollback": {"automatic": True, "database": "restore"}}
    k.apply(
        database_migration([CREATE_USERS, ADD_EMAIL]),
        release("v2", {"targetVersion": "002"}, prometheus, k.namespace, **spec),
    )
    k.wait_for(
        "RolledBack", lambda: k.status("fr", "web").get("phase") == "RolledBack", timeout=180
    )
    k.wait_for("restored", lambda: "email" not in columns(v1_live), timeout=60)
    with psycopg.connect(v1_live, autocommit=True) as conn:
        conn.execute("INSERT INTO users (name) VALUES ('between'), ('attempts')")
    k("annotate", "fr", "web", "lockstep.dev/request=retry@second", "--overwrite")
    try:
        k.wait_for(
            "the second attempt rolled back",
            lambda: (
                (s := k.status("fr", "web")).get("phase") == "RolledBack" and s.get("attempt") == 2
            ),
            timeout=240,
        )
    except TimeoutError:
        fr, dbm = k.status("fr", "web"), k.status("dbm", "shop-db")
        raise AssertionError(f"fr: {json.dumps(fr)}\ndbm: {json.dumps(dbm)}") from None
    k.wait_for("restored again", lambda: "email" not in columns(v1_live), timeout=60)
    with psycopg.connect(v1_live) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM users ORDER BY id")]
    assert {"between", "attempts"} <= set(names), names
    acks = k.status("dbm", "shop-db")["requests"]
    backups = [b["name"] for b in k.status("dbm", "shop-db")["backups"]]
    assert acks[0]["backup"] == backups[-1], "the backup of the second attempt"
    assert len(set(backups)) == len(backups) >= 2


def test_two_operator_processes_never_fight_over_the_service(
    k: Kubectl,
    v1_live: str,
    prometheus: PrometheusServer,
    traffic: TrafficClient,
    operator: OperatorProcess,
    operator_kubeconfig: Path,
    session_dir: Path,
) -> None:
    # a second operator, unable to reach Prometheus (its requests go through a dead proxy)
    log_dir = session_dir / "second-operator"
    log_dir.mkdir(exist_ok=True)
    second = OperatorProcess(
        operator_kubeconfig,
        log_dir,
        extra_env={"HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "", "http_proxy": ""},
    )
    second.start()
    try:
        with Timeline(k.cluster.kubeconfig, k.namespace) as timeline:
            traffic.set_app(k.namespace, "web", service="web", rps=50)
            k.apply(
                database_migration([CREATE_USERS, ADD_EMAIL]),
                release("v2", {"targetVersion": "002"}, prometheus, k.namespace, duration="10s"),
            )
            generation = int(k.get("fr", "web")["metadata"]["generation"])

            def settled_at_v2() -> bool:
                # v1's Ready stands until an operator has taken up v2; and the step alone is not
                # enough (a rollback then waits for its database)
                s = k.status("fr", "web")
                return (
                    s.get("observedGeneration") == generation
                    and s.get("phase") in ("Ready", "RolledBack")
                    and bool(s.get("settled"))
                )

            wait_until(settled_at_v2, timeout=240, what="the release of v2 to settle")
            status = k.status("fr", "web")
            colors = [c for c in timeline.selector_colors("web") if c]
            flips = sum(1 for a, b in itertools.pairwise(colors) if a != b)
            assert flips <= 2, f"the selector went {colors}"
            scale_changes = [
                c.replicas for c in timeline.of("Deployment", "web-green") if c.replicas is not None
            ]
            zero_then_up = [
                i
                for i in range(1, len(scale_changes))
                if scale_changes[i - 1] == 0 and scale_changes[i] > 0
            ]
            assert not zero_then_up, f"web-green scaled {scale_changes}"
            events = json.loads(k("get", "events", "-o", "json"))["items"]
            switched = [e for e in events if e["reason"] == "Switched"]
            assert len(switched) <= 2, [e["message"] for e in switched]
            assert status["phase"] in ("Ready", "RolledBack")
    finally:
        second.stop()


def test_migrations_waiting_for_locks_never_delay_a_rollback(
    web: WebApp,
    lockstep_operator: OperatorProcess,
    operator_kubeconfig: Path,
    session_dir: Path,
    postgres: PostgresServer,
) -> None:
    # Two release workers and two migration workers; three migrations stuck behind locks a
    # long transaction holds (each waits out lock_timeout and backs off, on a worker thread).
    lockstep_operator.stop()
    log_dir = session_dir / "small-pools"
    log_dir.mkdir(exist_ok=True)
    small = OperatorProcess(
        operator_kubeconfig,
        log_dir,
        extra_env={"LOCKSTEP_WORKERS": "2", "LOCKSTEP_MIGRATION_WORKERS": "2"},
    )
    small.start()
    holders = []
    try:
        web.go_live("v1", analysis=web.analysis(interval="1s", duration="30s"))
        for n in range(3):
            url = postgres.create_database(f"{web.namespace.replace('-', '_')}_{n}")
            holder = psycopg.connect(url, autocommit=True)
            holder.execute("CREATE TABLE t (id int)")
            holder.execute("BEGIN")
            holder.execute("LOCK TABLE t IN ACCESS SHARE MODE")
            holders.append(holder)
            web.k.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": f"db-{n}"},
                    "stringData": {"url": url},
                },
                {
                    "apiVersion": "lockstep.dev/v1alpha1",
                    "kind": "DatabaseMigration",
                    "metadata": {"name": f"db-{n}"},
                    "spec": {
                        "database": {
                            "urlFrom": {"secretKeyRef": {"name": f"db-{n}", "key": "url"}}
                        },
                        "source": {
                            "migrations": [
                                {"version": "001", "name": "c", "up": "ALTER TABLE t ADD c int;"}
                            ]
                        },
                        "policy": {"backup": "never", "lockTimeout": "1s", "retryBackoff": "5s"},
                    },
                },
            )

        def migrating() -> int:
            return sum(web.k.status("dbm", f"db-{n}").get("phase") == "Migrating" for n in range(3))

        # both migration workers are taken (the third migration waits for one)
        wait_until(lambda: migrating() >= 2, timeout=60, what="migrations waiting for locks")
        web.apply("v2", analysis=web.analysis(interval="1s", duration="30s"))
        web.timeline.wait_for_release("analysis of v2", lambda s: s.get("step") == "Analysis")
        web.start_clients(error_ratio={"v2": 0.5})
        web.wait_for_phase("RolledBack", timeout=60)
        # the migrations are still waiting: the rollback did not wait for them
        assert all(web.k.status("dbm", f"db-{n}").get("currentVersion") is None for n in range(3))
    finally:
        for holder in holders:
            holder.close()
        small.stop()


def test_names_of_63_characters_work_everywhere(
    k: Kubectl,
    operator: OperatorProcess,
    pod_executor: object,
    prometheus: PrometheusServer,
    traffic: TrafficClient,
    database_url: str,
) -> None:
    from tests.env.executor import make_backup_volume
    from tests.env.samples import shop_migration, web_release

    name = "a-release-with-a-name-as-long-as-kubernetes-allows-in-a-label-x"
    db = "a-database-migration-with-a-name-as-long-as-a-label-can-be-xxxx"
    assert len(name) == len(db) == 63
    make_backup_volume(k.cluster, k.namespace, "backups")
    migration = shop_migration([CREATE_USERS])
    migration["metadata"]["name"] = db
    migration["spec"]["database"]["urlFrom"]["secretKeyRef"]["name"] = "shop-db"
    k.apply(
        *secret_and_service(database_url),
        migration,
    )
    k("wait", "--for=condition=Ready", f"dbm/{db}", "--timeout=120s")
    assert k.status("dbm", db)["backups"], "its backup Job was found by its label"

    def named(version: str) -> dict[str, object]:
        body = web_release(
            version,
            namespace=k.namespace,
            prometheus_url=prometheus.url,
            migration={"ref": db, "targetVersion": "001"},
            checks={
                "prePromotion": [
                    {
                        "name": "smoke",
                        "template": {
                            "spec": {"containers": [{"name": "smoke", "image": "example/smoke:1"}]}
                        },
                    }
                ]
            },
        )
        body["metadata"]["name"] = name
        return body

    k.apply(named("v1"))
    traffic.set_app(k.namespace, "web", service="web", rps=50)  # what the analysis measures
    k("wait", "--for=condition=Ready", f"fr/{name}", "--timeout=120s")
    k.apply(named("v2"))
    k.wait_for(
        "v2 live",
        lambda: (s := k.status("fr", name)).get("release") == "v2" and s.get("phase") == "Ready",
        timeout=180,
    )
    deployments = json.loads(k("get", "deployments", "-o", "json"))["items"]
    assert all(len(d["metadata"]["name"]) <= 63 for d in deployments)
    assert k.status("fr", name)["checks"][0]["phase"] == "Succeeded"
