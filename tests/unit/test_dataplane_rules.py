"""The rules the test data plane follows, as a kubelet and kube-proxy follow them: readiness
thresholds, restart policy, which endpoints take new connections, and what counts as a failed
request."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from tests.env.executor import (
    PORTS_ANNOTATION,
    Network,
    Readiness,
    _scrape_target,
    port_env,
    restart_backoff,
    restarts_after,
)
from tests.env.loadgen import LoadReport, is_success
from tests.env.router import Backend, Endpoint, endpoints_of_slice, pick_weighted, usable

# ------------------------------------------------------------------------------ kubelet


def test_a_pod_is_not_ready_until_success_threshold_probes_pass_in_a_row() -> None:
    readiness = Readiness(success_threshold=2, failure_threshold=3)
    assert [readiness.record(p) for p in (True, False, True)] == [False, False, False]
    assert not readiness.ready
    assert readiness.record(True) is True
    assert readiness.ready


def test_a_ready_pod_turns_unready_only_after_failure_threshold_failures_in_a_row() -> None:
    readiness = Readiness(success_threshold=1, failure_threshold=2)
    readiness.record(True)
    assert [readiness.record(p) for p in (False, True, False)] == [False, False, False]
    assert readiness.ready
    assert readiness.record(False) is True
    assert not readiness.ready


@pytest.mark.parametrize(
    ("policy", "exit_code", "timed_out", "restarts"),
    [
        ("Always", 0, False, True),
        ("Always", 1, False, True),
        ("OnFailure", 0, False, False),
        ("OnFailure", 2, False, True),
        ("Never", 1, False, False),
        ("Always", 137, True, False),  # activeDeadlineSeconds ends the pod
    ],
)
def test_the_restart_policy_decides_whether_a_container_runs_again(
    policy: str, exit_code: int, timed_out: bool, restarts: bool
) -> None:
    assert restarts_after(policy, exit_code, timed_out) is restarts


def test_the_restart_back_off_doubles_and_is_capped() -> None:
    assert [restart_backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert restart_backoff(20) == 30.0


def test_the_process_learns_its_local_ports_and_a_named_port_resolves() -> None:
    network = Network("10.245.0.7", {8080: 41001, 9090: 41002}, {"http": 8080})
    assert port_env(network) == {"PORT": "41001", "PORT_8080": "41001", "PORT_9090": "41002"}
    assert network.local_port("http") == 41001
    assert network.local_port(9090) == 41002


def pod(**annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "web-blue-abc",
            "labels": {"app": "web", "lockstep.dev/color": "blue"},
            "annotations": annotations,
        }
    }


def test_a_pod_asking_to_be_scraped_gets_a_target_with_its_colour() -> None:
    network = Network("10.245.0.7", {8080: 41001}, {"http": 8080})
    target = _scrape_target(pod(**{"prometheus.io/scrape": "true"}), network)
    assert target == {
        "targets": ["127.0.0.1:41001"],
        "labels": {
            "namespace": "ns",
            "pod": "web-blue-abc",
            "app": "web",
            "color": "blue",
            "__metrics_path__": "/metrics",
        },
    }
    assert _scrape_target(pod(), network) is None


# ------------------------------------------------------------------------------ kube-proxy


def endpoint(name: str, *, ready: bool, serving: bool, terminating: bool) -> Endpoint:
    return Endpoint(name, "10.245.0.1", 1, "v1", ready, serving, terminating)


def test_new_connections_go_to_ready_endpoints_only_while_there_are_any() -> None:
    ready = endpoint("a", ready=True, serving=True, terminating=False)
    stopping = endpoint("b", ready=False, serving=True, terminating=True)
    unready = endpoint("c", ready=False, serving=False, terminating=False)
    assert usable([ready, stopping, unready]) == [ready]


def test_without_a_ready_endpoint_serving_terminating_ones_take_the_traffic() -> None:
    stopping = endpoint("b", ready=False, serving=True, terminating=True)
    gone = endpoint("d", ready=False, serving=False, terminating=True)
    unready = endpoint("c", ready=False, serving=False, terminating=False)
    assert usable([stopping, gone, unready]) == [stopping]
    assert usable([gone, unready]) == []


def slice_with(*endpoints: dict[str, Any], port: int = 8080) -> dict[str, Any]:
    return {
        "addressType": "IPv4",
        "ports": [{"name": "", "port": port, "protocol": "TCP"}],
        "endpoints": list(endpoints),
    }


def slice_endpoint(name: str, ip: str, **conditions: bool) -> dict[str, Any]:
    return {
        "addresses": [ip],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "name": name, "namespace": "ns"},
    }


def running_pod(name: str, ip: str, ports: dict[int, int], version: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/version": version},
            "annotations": {PORTS_ANNOTATION: json.dumps(ports)},
        },
        "status": {"podIP": ip},
    }


def test_an_endpoint_slice_maps_pod_ips_to_the_local_ports_of_their_processes() -> None:
    pods = {
        "a": running_pod("a", "10.245.0.1", {8080: 41001}, "v1"),
        "b": running_pod("b", "10.245.0.2", {8080: 41002}, "v2"),
        "stale": running_pod("stale", "10.245.0.9", {8080: 41009}, "v1"),
    }
    found = endpoints_of_slice(
        slice_with(
            slice_endpoint("a", "10.245.0.1", ready=True, serving=True, terminating=False),
            slice_endpoint("b", "10.245.0.2", ready=False, serving=True, terminating=True),
            slice_endpoint("stale", "10.245.0.3", ready=True),  # the pod has another IP now
            slice_endpoint("unknown", "10.245.0.4", ready=True),
        ),
        pods,
    )
    assert found == [
        Endpoint("a", "10.245.0.1", 41001, "v1", True, True, False),
        Endpoint("b", "10.245.0.2", 41002, "v2", False, True, True),
    ]
    assert endpoints_of_slice(slice_with(port=9999), pods) == []


def test_weights_choose_the_backend_and_an_empty_backend_fails_the_request() -> None:
    table = {"blue": [endpoint("a", ready=True, serving=True, terminating=False)], "green": []}
    rng = random.Random(7)
    picks = [
        pick_weighted([Backend("blue", 80), Backend("green", 20)], table, rng) for _ in range(1000)
    ]
    to_green = [p for p in picks if p[0] == "green"]
    assert 150 < len(to_green) < 250
    assert all(e is None for _, e in to_green)
    assert all(e is not None for s, e in picks if s == "blue")
    assert pick_weighted([Backend("blue", 0)], table, rng) == ("", None)


# ------------------------------------------------------------------------------ load generator


def test_a_request_fails_on_5xx_no_answer_or_a_missing_acknowledged_order() -> None:
    assert is_success({"op": "write", "code": 201})
    assert is_success({"op": "list", "code": 200})
    assert not is_success({"op": "write", "code": 500})
    assert not is_success({"op": "read", "code": 0, "error": "ConnectionRefusedError"})
    assert not is_success({"op": "read", "code": 404})  # an acknowledged order went missing


def test_the_report_attributes_failures_to_the_version_that_answered() -> None:
    report = LoadReport(
        [
            {"t": 1.0, "op": "read", "code": 200, "version": "v1", "ms": 3},
            {"t": 2.0, "op": "read", "code": 500, "version": "v3", "ms": 4},
            {"t": 3.0, "op": "write", "code": 201, "version": "v3", "ms": 5, "ref": "r"},
            {"t": 4.0, "op": "read", "code": 500, "version": "v3", "ms": 4},
        ],
        outages=[(10.0, 10.5), (20.0, 21.0)],
    )
    assert report.failed_by_version() == {"v3": 2}
    assert report.first_failure() == 2.0
    assert [r["ref"] for r in report.acknowledged] == ["r"]
    assert report.downtime_seconds() == pytest.approx(1.5)
