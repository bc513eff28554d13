"""A bad version is rolled back on its own: by its error rate, by pods that never become Ready,
and by an analysis that cannot measure (Prometheus down). The stable version keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.releases import FIRST_RELEASE_STEPS, ROLLED_BACK, Status, WebApp, blue_green
from tests.env.cluster import NEVER_READY
from tests.env.processes import wait_until
from tests.env.prometheus import PrometheusServer
from tests.env.traffic import TrafficClient

pytestmark = pytest.mark.cluster


def conditions(status: Status) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def measurements(status: Status, phase: str) -> list[dict[str, Any]]:
    return [m for m in status["analysis"]["measurements"] if m["phase"] == phase]


def test_an_error_spike_during_analysis_rolls_traffic_back_to_blue(web: WebApp) -> None:
    settings = {
        "analysis": web.analysis(interval="1s", duration="60s", failure_limit=2),
        "strategy": blue_green(scaleDownDelaySeconds=2),
    }
    web.go_live("v1", **settings)
    web.apply("v2", **settings)
    web.timeline.wait_for_release(
        "a first successful measurement of green",
        lambda s: (
            s.get("step") == "Analysis" and (s.get("analysis") or {}).get("successful", 0) > 0
        ),
    )

    web.start_clients(error_ratio={"v2": 0.5})

    status = web.wait_for_phase("RolledBack")
    assert web.outcome() == ROLLED_BACK
    assert web.timeline.selector_colors() == [None, "blue", "green", "blue"]
    wait_until(lambda: web.served_by() == ("blue", "v1"), timeout=10, what="clients on blue v1")
    assert conditions(status)["Degraded"] == "True"
    assert conditions(status)["Ready"] == "False"
    assert status["abortReason"].startswith("AnalysisFailed")
    assert status["analysis"]["failed"] == 2

    # The Warning Event names the measurements that caused the rollback, with their values.
    failed = measurements(status, "Failed")
    assert len(failed) == 2
    values = [f"error-ratio={m['value']:g}" for m in failed]
    assert all(m["value"] > 0.05 for m in failed)
    wait_until(
        lambda: any(
            e["reason"] == "RolledBack" and all(v in e["message"] for v in values)
            for e in web.warnings()
        ),
        timeout=10,
        what=f"a Warning Event RolledBack naming {values}",
    )


def test_pods_that_never_become_ready_roll_back_at_the_deadline_without_moving_traffic(
    web: WebApp, prometheus: PrometheusServer
) -> None:
    settings = {
        "analysis": web.analysis(),
        "strategy": blue_green(progressDeadlineSeconds=4, scaleDownDelaySeconds=2),
    }
    web.go_live("v1", **settings)
    web.apply("v2", pod_labels={NEVER_READY: "true"}, **settings)

    status = web.wait_for_phase("RolledBack")
    assert status["abortReason"].startswith("ProgressDeadlineExceeded")
    assert "no traffic was moved" in status["abortReason"]
    assert web.outcome() == ROLLED_BACK
    assert web.timeline.steps() == [*FIRST_RELEASE_STEPS, "Deploy", "RolledBack"]

    # Every version of the Service, from the start of the test, selected blue (or no colour).
    web.timeline.check()
    assert web.timeline.selector_colors() == [None, "blue"]
    # and no simulated client ever reached v2
    served_by_v2 = f'http_requests_total{{namespace="{web.namespace}",version="v2"}}'
    assert prometheus.query(served_by_v2) == []


@pytest.fixture
def restart_prometheus_afterwards(
    prometheus: PrometheusServer, traffic: TrafficClient
) -> Iterator[PrometheusServer]:
    """Whatever the test does to Prometheus, it runs again afterwards and scrapes the traffic."""
    try:
        yield prometheus
    finally:
        if not prometheus.running():
            prometheus.start()
        wait_until(
            lambda: prometheus.target_up(traffic.address), timeout=60, what="traffic scraped again"
        )


def test_prometheus_down_during_analysis_never_promotes_and_aborts_after_the_error_limit(
    web: WebApp, restart_prometheus_afterwards: PrometheusServer
) -> None:
    prometheus = restart_prometheus_afterwards
    settings = {
        "analysis": web.analysis(interval="1s", duration="60s", consecutive_error_limit=3),
        "strategy": blue_green(scaleDownDelaySeconds=2),
    }
    web.go_live("v1", **settings)
    web.apply("v2", **settings)
    web.timeline.wait_for_release(
        "a first successful measurement of green",
        lambda s: (s.get("analysis") or {}).get("successful", 0) > 0,
    )

    prometheus.stop()

    status = web.wait_for_phase("RolledBack")
    assert web.outcome() == ROLLED_BACK
    assert status["abortReason"].startswith("AnalysisErrored")
    analysis = status["analysis"]
    assert analysis["consecutiveErrors"] == 3
    last_round = analysis["measurements"][-3:]
    assert [m["phase"] for m in last_round] == ["Error"] * 3
    assert all("Prometheus unreachable" in m["message"] for m in last_round)
    assert all(h["outcome"] != "Promoted" for h in status["history"] if h["release"] == "v2")


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ('sum(rate(http_requests_total{color="{{color}}"}[1m])', "parse error"),
        ('sum(rate(no_such_requests_total{color="{{color}}"}[1m]))', "no metric named"),
    ],
)
def test_an_analysis_query_that_cannot_run_stops_the_release_before_the_switch(
    web: WebApp, query: str, error: str
) -> None:
    web.go_live("v1")
    analysis = web.analysis(interval="1s", duration="4s")
    analysis["metrics"][0]["query"] = query
    web.apply("v2", analysis=analysis)
    status = web.timeline.wait_for_release(
        "the release blocked before the switch", lambda s: s.get("phase") == "Blocked"
    )
    assert status["step"] == "PrePromotionChecks"
    assert error in status["message"] and query in status["message"]
    assert web.selector_color() == "blue"
    assert web.timeline.selector_colors() == [None, "blue"]

    # fixed in the spec, the same release goes on
    web.apply("v2", analysis=web.analysis(interval="1s", duration="4s"))
    web.wait_for_phase("Ready", release="v2")
    assert web.selector_color() == "green"
