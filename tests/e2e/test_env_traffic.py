"""The test traffic process, seen through the real Prometheus: requests follow the Service."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.env.cluster import Cluster
from tests.env.processes import wait_until
from tests.env.prometheus import PrometheusServer
from tests.env.traffic import COLOR_LABEL, TrafficClient

pytestmark = pytest.mark.cluster


def deployment(namespace: str, color: str, version: str) -> dict[str, object]:
    labels = {"app": "web", COLOR_LABEL: color}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"web-{color}", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, "app.kubernetes.io/version": version}},
                "spec": {"containers": [{"name": "web", "image": f"web:{version}"}]},
            },
        },
    }


def service(namespace: str, color: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "selector": {"app": "web", COLOR_LABEL: color},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }


@pytest.fixture
def web(cluster: Cluster, traffic: TrafficClient, namespace: str) -> Iterator[str]:
    """The app "web": blue runs v1, green runs v2, the Service selects blue; 50 requests/s."""
    for manifest in (deployment(namespace, "blue", "v1"), deployment(namespace, "green", "v2")):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(service(namespace, "blue")))
    traffic.set_app(namespace, "web", service="web", rps=50)
    yield namespace
    traffic.remove_app(namespace, "web")


def value(prometheus: PrometheusServer, promql: str) -> float | None:
    """The single value of an instant query, or None when it has no data."""
    result = prometheus.query(promql)
    if not result:
        return None
    sample = result[0]["value"]
    assert isinstance(sample, list)
    return float(sample[1])


def test_requests_follow_the_service_and_fail_by_the_error_ratio_of_the_version(
    cluster: Cluster, prometheus: PrometheusServer, traffic: TrafficClient, web: str
) -> None:
    selected = f'namespace="{web}",app="web"'
    rate_of = f"sum(rate(http_requests_total{{{selected},color=%r,version=%r}}[5s]))"
    errors = f'sum(rate(http_requests_total{{{selected},code="500"}}[5s]))'
    error_ratio = f"{errors} / sum(rate(http_requests_total{{{selected}}}[5s]))"

    # Blue (v1) serves everything, without errors.
    wait_until(
        lambda: (value(prometheus, rate_of % ("blue", "v1")) or 0) > 20,
        timeout=60,
        what="requests to blue v1 in Prometheus",
    )
    assert value(prometheus, errors) == 0

    # Half of v1's requests fail.
    traffic.set_app(web, "web", service="web", rps=50, error_ratio={"v1": 0.5})
    wait_until(
        lambda: abs((value(prometheus, error_ratio) or 0) - 0.5) < 0.03,
        timeout=60,
        what="an error ratio of 0.5",
    )

    # The Service switches to green: the requests go to v2, which has no errors.
    patch = {"spec": {"selector": {COLOR_LABEL: "green"}}}
    cluster.kubectl("patch", "service", "web", "-n", web, "--type=merge", "-p", json.dumps(patch))
    wait_until(
        lambda: (value(prometheus, rate_of % ("green", "v2")) or 0) > 20,
        timeout=60,
        what="requests to green v2 in Prometheus",
    )
    assert [(a["color"], a["version"]) for a in traffic.apps() if a["namespace"] == web] == [
        ("green", "v2")
    ]
    wait_until(lambda: value(prometheus, error_ratio) == 0, timeout=60, what="the errors to stop")


def test_a_service_without_a_colour_is_counted_as_none(
    cluster: Cluster, prometheus: PrometheusServer, traffic: TrafficClient, namespace: str
) -> None:
    plain = service(namespace, "blue")
    plain["spec"] = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(plain))
    traffic.set_app(namespace, "web", service="web", rps=20, default_error_ratio=1.0)
    try:
        query = (
            f'sum(rate(http_requests_total{{namespace="{namespace}",color="none",'
            f'version="none",code="500"}}[5s]))'
        )
        wait_until(lambda: (value(prometheus, query) or 0) > 5, timeout=60, what="requests to none")
    finally:
        traffic.remove_app(namespace, "web")


def counts(traffic: TrafficClient, namespace: str) -> dict[str, float]:
    """Requests per code for one namespace, read from the traffic process itself."""
    text = httpx.get(f"http://{traffic.address}/metrics", timeout=5).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels["namespace"] == namespace:
                code = sample.labels["code"]
                totals[code] = totals.get(code, 0) + sample.value
    return totals


def test_an_error_ratio_fails_an_exact_share_of_requests(
    cluster: Cluster, traffic: TrafficClient, web: str
) -> None:
    traffic.set_app(web, "web", service="web", rps=200, error_ratio={"v1": 0.5})
    wait_until(lambda: counts(traffic, web).get("500", 0) > 100, timeout=60, what="failed requests")
    # Requests sent before the ratio was set all succeeded; count from here on.
    before = counts(traffic, web)
    wait_until(
        lambda: counts(traffic, web)["500"] > before["500"] + 100,
        timeout=60,
        what="more failed requests",
    )
    after = counts(traffic, web)
    failed = after["500"] - before["500"]
    total = failed + after["200"] - before["200"]
    assert abs(total - 2 * failed) <= 1, (failed, total)


def test_a_bad_app_is_refused(traffic: TrafficClient) -> None:
    with pytest.raises(ValueError, match="errorRatio"):
        traffic.set_app("ns", "web", service="web", error_ratio={"v1": 1.5})
    with pytest.raises(ValueError, match="service"):
        traffic.set_app("ns", "web", service="")
