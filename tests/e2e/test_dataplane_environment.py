"""The data plane of the test cluster behaves like a kubelet and kube-proxy: the application's
pods run as processes, are Ready only while their readiness probe passes, stop gracefully on
deletion, restart per their policy and are scraped by Prometheus; the router sends each request
to a Ready endpoint of the EndpointSlices the real kube-controller-manager computes."""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import Kubectl
from tests.e2e.releases import holds_for
from tests.env.cluster import EXEC, Cluster
from tests.env.executor import LocalPodExecutor
from tests.env.prometheus import PrometheusServer
from tests.env.router import Router
from tests.env.samples import APP, ShopVersion, shop_migrations, shop_objects, shop_template

pytestmark = pytest.mark.cluster

COLOR = "lockstep.dev/color"


def migrate(url: str, *versions: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for version in versions:
            conn.execute(shop_migrations()[version]["up"])


def deployment(
    version: ShopVersion, color: str = "blue", replicas: int = 2, **template: Any
) -> dict[str, Any]:
    pod = shop_template(version, **template)
    pod["metadata"]["labels"][COLOR] = color
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{APP}-{color}"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": APP, COLOR: color}},
            "template": pod,
        },
    }


def pods(k: Kubectl, selector: str = f"app={APP}") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(k("get", "pods", "-l", selector, "-o", "json"))[
        "items"
    ]
    return items


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def slice_conditions(k: Kubectl, service: str = APP) -> list[dict[str, Any]]:
    out = k("get", "endpointslices", "-l", f"kubernetes.io/service-name={service}", "-o", "json")
    return [
        {"pod": e["targetRef"]["name"], **(e.get("conditions") or {})}
        for s in json.loads(out)["items"]
        for e in s.get("endpoints") or []
    ]


@pytest.fixture
def router(cluster: Cluster, k: Kubectl) -> Iterator[Router]:
    routing = Router(cluster.kubeconfig, k.namespace, sync_period=0.2, seed=3)
    routing.start()
    yield routing
    routing.stop()


@pytest.fixture
def app_objects(k: Kubectl, database_url: str, pod_executor: LocalPodExecutor) -> str:
    k.apply(*shop_objects(database_url))
    return database_url


def test_pods_run_as_processes_and_are_ready_only_once_their_probe_passes(
    k: Kubectl, app_objects: str, pod_executor: LocalPodExecutor, router: Router
) -> None:
    migrate(app_objects, "001")
    k.apply(deployment(ShopVersion("v2", schema=2)))  # needs the note column of 002
    k.wait_for(
        "two pods running with a pod IP",
        lambda: (
            [p["status"].get("podIP", "").startswith("10.245.") for p in pods(k)] == [True, True]
        ),
    )
    running = {n for n in pod_executor.running() if n.startswith(f"{k.namespace}/")}
    assert running == {f"{k.namespace}/{p['metadata']['name']}" for p in pods(k)}
    # the probe keeps failing, period after period: the pods stay unready, nothing is routed
    holds_for(
        3,
        "two unready pods and nothing to route to",
        lambda: [is_ready(p) for p in pods(k)] == [False, False] and router.pick(APP) is None,
    )

    migrate(app_objects, "002")
    k.wait_for("both pods Ready", lambda: [is_ready(p) for p in pods(k)] == [True, True])
    k.wait_for(
        "both endpoints ready in the EndpointSlice",
        lambda: [c["ready"] for c in slice_conditions(k)] == [True, True],
    )
    k.wait_for("the router to send to them", lambda: router.pick(APP) is not None)
    assert {router.pick(APP).version for _ in range(20)} == {"v2"}  # type: ignore[union-attr]


def test_a_failing_probe_withdraws_readiness_and_the_router_stops_sending(
    k: Kubectl, app_objects: str, router: Router
) -> None:
    migrate(app_objects, "001")
    k.apply(deployment(ShopVersion("v1", schema=1)))
    k.wait_for("the router to send to v1", lambda: router.pick(APP) is not None, timeout=60)
    migrate(app_objects, "003")  # drops the coupon v1 uses: its /ready fails from now on
    dropped = time.monotonic()
    k.wait_for("both pods unready", lambda: [is_ready(p) for p in pods(k)] == [False, False])
    # failureThreshold 2 at periodSeconds 1: unready after two failed probes, not one
    assert time.monotonic() - dropped >= 1.0
    k.wait_for("the router to have nowhere to send", lambda: router.pick(APP) is None)
    assert [c["ready"] for c in slice_conditions(k)] == [False, False]


def test_deleting_a_pod_stops_it_gracefully_and_removes_it_only_once_it_has_exited(
    k: Kubectl, app_objects: str, router: Router, pod_executor: LocalPodExecutor
) -> None:
    migrate(app_objects, "001")
    slow = ShopVersion("v1", schema=1, slow_seconds=1.5)
    k.apply(deployment(slow, replicas=1, drain_seconds=0.5))
    k.wait_for("the router to send to the pod", lambda: router.pick(APP) is not None, timeout=60)
    endpoint = router.pick(APP)
    assert endpoint is not None
    name = endpoint.pod

    def write(i: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", endpoint.local_port, timeout=10)
        body = json.dumps({"ref": f"in-flight-{i}", "item": "kettle"})
        connection.request("POST", "/orders", body=body, headers={"Connection": "close"})
        return connection.getresponse().status

    def requests_in_flight() -> float:
        connection = http.client.HTTPConnection("127.0.0.1", endpoint.local_port, timeout=10)
        connection.request("GET", "/metrics")
        families = text_string_to_metric_families(connection.getresponse().read().decode())
        return sum(
            sample.value
            for family in families
            for sample in family.samples
            if sample.name == "shop_http_requests_in_flight"
        )

    with ThreadPoolExecutor(4) as pool:
        in_flight = [pool.submit(write, i) for i in range(4)]
        k.wait_for(
            "the writes inside their handler", lambda: requests_in_flight() == 4, interval=0.1
        )
        k("delete", "pod", name, "--wait=false")
        k.wait_for(
            "the endpoint to be terminating",
            lambda: (
                [c.get("terminating") for c in slice_conditions(k) if c["pod"] == name] == [True]
            ),
        )
        assert k.maybe("pod", name) is not None  # Terminating while the process drains
        assert [f.result() for f in in_flight] == [201] * 4
    k.wait_for("the pod object to be removed", lambda: k.maybe("pod", name) is None)
    assert f"{k.namespace}/{name}" not in pod_executor.running()
    with psycopg.connect(app_objects) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (4,)


def bare_pod(name: str, code: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {EXEC: "true"}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "example/python:3",
                    "command": [sys.executable, "-c", code],
                }
            ],
            **spec,
        },
    }


def test_a_process_that_ignores_sigterm_is_killed_when_the_grace_period_ends(
    k: Kubectl, pod_executor: LocalPodExecutor
) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    k.apply(bare_pod("stubborn", code, terminationGracePeriodSeconds=2))
    k.wait_for("the pod running", lambda: k.status("pod", "stubborn").get("phase") == "Running")
    deleted = time.monotonic()
    k("delete", "pod", "stubborn", "--wait=false")
    k.wait_for("the pod removed", lambda: k.maybe("pod", "stubborn") is None, timeout=30)
    assert 2.0 <= time.monotonic() - deleted < 10
    log = (pod_executor.work_dir / "executor.log").read_text()
    assert f"{k.namespace}/stubborn: grace period over, SIGKILL" in log


def test_containers_restart_per_restart_policy(k: Kubectl, pod_executor: LocalPodExecutor) -> None:
    k.apply(
        bare_pod("crashing", "import sys; sys.exit(3)", restartPolicy="Always"),
        bare_pod("done", "print('ok')", restartPolicy="OnFailure"),
    )

    def restarts() -> int:
        statuses = k.status("pod", "crashing").get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0))

    k.wait_for("two restarts", lambda: restarts() >= 2, timeout=30)
    status = k.status("pod", "crashing")
    assert status["phase"] == "Running"
    assert status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 3
    k.wait_for(
        "the OnFailure pod to succeed", lambda: k.status("pod", "done").get("phase") == "Succeeded"
    )
    assert k.status("pod", "done")["containerStatuses"][0]["restartCount"] == 0


def test_prometheus_scrapes_each_pod_with_its_namespace_and_colour(
    k: Kubectl, app_objects: str, prometheus: PrometheusServer
) -> None:
    migrate(app_objects, "001")
    k.apply(deployment(ShopVersion("v1", schema=1), color="green"))
    query = f'shop_info{{namespace="{k.namespace}",app="{APP}",color="green",version="v1"}}'
    found = k.wait_for(
        "both pods scraped", lambda: len(prometheus.query(query)) == 2 and prometheus.query(query)
    )
    assert {s["metric"]["pod"] for s in found} == {p["metadata"]["name"] for p in pods(k)}


def test_the_router_follows_the_service_selector_from_one_colour_to_the_other(
    k: Kubectl, app_objects: str, router: Router
) -> None:
    migrate(app_objects, "001", "002")
    k.apply(
        deployment(ShopVersion("v1", schema=1), color="blue"),
        deployment(ShopVersion("v2", schema=2), color="green"),
    )
    k.wait_for("four Ready pods", lambda: [is_ready(p) for p in pods(k)] == [True] * 4, timeout=60)
    k("patch", "service", APP, "-p", json.dumps({"spec": {"selector": {COLOR: "blue"}}}))
    k.wait_for("only v1 endpoints", lambda: {e.version for e in router.endpoints(APP)} == {"v1"})
    assert {router.pick(APP).version for _ in range(20)} == {"v1"}  # type: ignore[union-attr]
    k("patch", "service", APP, "-p", json.dumps({"spec": {"selector": {COLOR: "green"}}}))
    k.wait_for("only v2 endpoints", lambda: {e.version for e in router.endpoints(APP)} == {"v2"})
    assert router.outages(APP) == []  # never without an endpoint during the switch


def test_nothing_of_a_pod_is_left_running_after_its_namespace_is_gone(
    cluster: Cluster, pod_executor: LocalPodExecutor, database_url: str
) -> None:
    namespace = f"t-gone-{os.getpid()}-{int(time.time()) % 100000}"
    cluster.kubectl("create", "namespace", namespace)
    ns = Kubectl(cluster, namespace)
    ns.apply(*shop_objects(database_url))
    migrate(database_url, "001")
    ns.apply(deployment(ShopVersion("v1", schema=1)))
    ns.wait_for(
        "two pods running", lambda: len([p for p in pods(ns) if is_ready(p)]) == 2, timeout=60
    )
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    ns.wait_for(
        "every process of the namespace stopped",
        lambda: not [n for n in pod_executor.running() if n.startswith(f"{namespace}/")],
        timeout=60,
    )
