"""The local test environment is real: a control plane, PostgreSQL and Prometheus that behave."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server
from tests.e2e.conftest import Kubectl
from tests.env.cluster import FAIL, NEVER_READY, Cluster
from tests.env.operator_runner import MANIFESTS, OperatorProcess, can_i
from tests.env.postgres import PostgresServer
from tests.env.processes import free_port, wait_until
from tests.env.prometheus import PrometheusServer

pytestmark = pytest.mark.cluster


def test_the_api_server_is_the_pinned_kubernetes_version(cluster: Cluster) -> None:
    versions = (Path(__file__).parents[1] / "env/controlplane/versions.env").read_text()
    pinned = next(line.split("=")[1] for line in versions.splitlines() if line.startswith("K8S="))
    info = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert info["serverVersion"]["gitVersion"] == f"v{pinned}"


def test_a_deployment_with_two_replicas_becomes_available(k: Kubectl) -> None:
    k("create", "deployment", "web", "--image=example/web:1", "--replicas=2")
    k("rollout", "status", "deployment/web", "--timeout=60s")
    status = k.status("deployment", "web")
    assert status["availableReplicas"] == 2
    pods = json.loads(k("get", "pods", "-l", "app=web", "-o", "json"))["items"]
    assert {p["status"]["phase"] for p in pods} == {"Running"}
    assert all(p["spec"]["nodeName"].startswith("kwok-node-") for p in pods)


def job(name: str, labels: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "example/job:1"}],
                },
            },
        },
    }


def test_a_job_completes(k: Kubectl) -> None:
    k.apply(job("ok"))
    k("wait", "--for=condition=Complete", "job/ok", "--timeout=60s")


def test_a_job_marked_to_fail_fails(k: Kubectl) -> None:
    k.apply(job("broken", {FAIL: "true"}))
    k("wait", "--for=condition=Failed", "job/broken", "--timeout=60s")
    assert not k.status("job", "broken").get("succeeded")


def test_a_pod_marked_never_ready_stays_unready(k: Kubectl) -> None:
    k("create", "deployment", "ok", "--image=example/web:1")
    k.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "stuck"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "stuck"}},
                "template": {
                    "metadata": {"labels": {"app": "stuck", NEVER_READY: "true"}},
                    "spec": {"containers": [{"name": "main", "image": "example/web:1"}]},
                },
            },
        }
    )
    # a Deployment created after it becomes Available: kwok has seen both pods by then
    k("rollout", "status", "deployment/ok", "--timeout=60s")
    k("wait", "--for=jsonpath={.status.replicas}=1", "deployment/stuck", "--timeout=60s")
    assert not k.status("deployment", "stuck").get("availableReplicas")


def test_crds_install_and_get_shows_printer_columns(k: Kubectl, operator_kubeconfig: Path) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}]},
        }
    )
    k.apply(minimal_release("web"))
    header = k("get", "fr").splitlines()[0].split()
    assert header == ["NAME", "PHASE", "ACTIVE", "RELEASE", "READY", "AGE"]
    wide = k("get", "featurereleases.lockstep.dev", "-o", "wide").splitlines()[0].split()
    assert wide[-2:] == ["MESSAGE", "AGE"] or "STEP" in wide
    assert "dbm" in k("api-resources", "--api-group=lockstep.dev", check=False)


def test_kubectl_explain_shows_the_model_descriptions(
    cluster: Cluster, operator_kubeconfig: Path
) -> None:
    out = cluster.kubectl("explain", "featurerelease.spec.analysis").stdout
    assert "Prometheus analysis after the switch" in out
    assert "failureLimit" in out and "Failed measurements (of any metric)" in out


def minimal_release(name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "FeatureRelease",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            },
            "service": name,
            **spec,
        },
    }


@pytest.mark.parametrize(
    ("patch", "complaint"),
    [
        ({"replicas": -1}, "should be greater than or equal to 0"),
        ({"previewService": "same"}, "previewService must differ from service"),
        (
            {
                "analysis": {
                    "prometheus": {"address": "http://p:9090"},
                    "interval": "soon",
                    "metrics": [{"name": "e", "query": "up", "max": 1}],
                }
            },
            "interval",
        ),
        (
            {
                "analysis": {
                    "prometheus": {"address": "http://p:9090"},
                    "metrics": [{"name": "e", "query": "up", "min": 2, "max": 1}],
                }
            },
            "min must not be greater than max",
        ),
        (
            {
                "analysis": {
                    "prometheus": {"address": "http://p:9090"},
                    "metrics": [{"name": "e", "query": "up"}],
                }
            },
            "set max, min or both",
        ),
        ({"rollback": {"database": "yes"}}, "Unsupported value"),
    ],
)
def test_the_api_server_rejects_objects_that_break_the_schema_or_a_cel_rule(
    k: Kubectl, operator_kubeconfig: Path, patch: dict[str, object], complaint: str
) -> None:
    release = minimal_release("same")
    release["spec"].update(patch)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match=complaint):
        k.apply(release)
    assert k.maybe("featurerelease", "same") is None


def test_the_operator_marks_a_semantically_invalid_release_stalled_with_an_event(
    k: Kubectl, operator: OperatorProcess
) -> None:
    # CEL cannot compare two durations; the operator's models can.
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}]},
        }
    )
    k.apply(
        minimal_release(
            "web",
            analysis={
                "prometheus": {"address": "http://p:9090"},
                "interval": "1m",
                "duration": "30s",
                "metrics": [{"name": "errors", "query": "up", "max": 1}],
            },
        )
    )
    k.wait_for("Stalled=True", lambda: k.condition("fr", "web", "Stalled") == "True")
    status = k.status("fr", "web")
    assert status["phase"] == "Invalid"
    assert "shorter than analysis.interval" in status["message"]
    assert status["observedGeneration"] == 1
    events = k.events("web")
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in events)
    # and nothing else happened
    assert k.maybe("deployment", "web-blue") is None
    assert "lockstep.dev/color" not in json.dumps(k.get("service", "web")["spec"])


def test_a_valid_release_gets_observed_generation_and_goes_live(
    k: Kubectl, operator: OperatorProcess
) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        }
    )
    k.apply(minimal_release("web", replicas=2, release="v1"))
    k("wait", "--for=condition=Ready", "fr/web", "--timeout=60s")
    status = k.status("fr", "web")
    assert status["observedGeneration"] == 1
    assert status["activeColor"] == "blue"
    assert k.get("service", "web")["spec"]["selector"] == {
        "app": "web",
        "lockstep.dev/color": "blue",
    }


def test_the_operator_rbac_is_enough_and_no_more(
    cluster: Cluster, operator_kubeconfig: Path
) -> None:
    allowed = [
        ("patch", "featurereleases.lockstep.dev/status"),
        ("watch", "databasemigrations.lockstep.dev"),
        ("create", "deployments.apps"),
        ("patch", "services"),
        ("create", "jobs.batch"),
        ("get", "secrets"),
        ("create", "events"),
    ]
    forbidden = [
        ("delete", "services"),
        ("delete", "deployments.apps"),
        ("create", "secrets"),
        ("list", "secrets"),
        ("get", "nodes"),
        ("create", "pods"),
        ("delete", "featurereleases.lockstep.dev"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
    ]
    for verb, resource in allowed:
        assert can_i(cluster, operator_kubeconfig, verb, resource, "-A"), (verb, resource)
    for verb, resource in forbidden:
        assert not can_i(cluster, operator_kubeconfig, verb, resource, "-A"), (verb, resource)
    # a real request outside the role is refused by the API server
    refused = cluster.kubectl(f"--kubeconfig={operator_kubeconfig}", "get", "nodes", check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()


def test_the_manifests_install_the_operator_deployment(cluster: Cluster, k: Kubectl) -> None:
    cluster.kubectl("apply", "-k", str(MANIFESTS))
    cluster.kubectl(
        "-n", "lockstep-system", "rollout", "status", "deployment/lockstep", "--timeout=60s"
    )
    deployment = json.loads(
        cluster.kubectl(
            "-n", "lockstep-system", "get", "deployment", "lockstep", "-o", "json"
        ).stdout
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == "lockstep"
    cluster.kubectl("-n", "lockstep-system", "scale", "deployment/lockstep", "--replicas=0")


def test_prometheus_scrapes_a_prometheus_client_target(prometheus: PrometheusServer) -> None:
    registry = CollectorRegistry()
    counter = Counter("lockstep_env_probe", "A probe counter.", registry=registry)
    counter.inc(42)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus.set_targets("probe", [f"127.0.0.1:{port}"])
        result = wait_until(
            lambda: prometheus.query("lockstep_env_probe_total"), timeout=30, what="the probe"
        )
        assert float(result[0]["value"][1]) == 42  # type: ignore[index]
    finally:
        prometheus.set_targets("probe", [])
        server.shutdown()
        thread.join()


def test_psycopg_connects_to_postgresql(database_url: str, postgres: PostgresServer) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select current_setting('server_version_num')::int").fetchone()
    assert row is not None and row[0] // 10000 == postgres.version


def test_prometheus_answers_promql(prometheus: PrometheusServer) -> None:
    response = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": "vector(1) + 1"})
    assert response.json()["data"]["result"][0]["value"][1] == "2"
