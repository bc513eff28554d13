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
from tests.e2e.releases import Timeline
from tests.e2e.shop import ADD_EMAIL, CREATE_USERS, DROP_NAME, columns, database_migration, release
from tests.env.operator_runner import OperatorProcess
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
            wait_until(
                lambda: k.status("fr", "web").get("step") in ("Done", "RolledBack"),
                timeout=240,
                what="the release to settle",
            )
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
