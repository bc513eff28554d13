"""How fast does lockstep roll a bad release back, what does it add to a switch, how does it scale?

Run: .venv/bin/python tests/bench/bench_release.py [--trials 10] [--releases 200]

It starts its own environment (the local control plane with an audit log, Prometheus scraping
every second, the test traffic process, and the operator as a process with the ServiceAccount
and RBAC of manifests/), in a temporary directory, and stops all of it at the end.

1. Rollback reaction (--trials): an app at v1, v2 released into green with an error-ratio
   analysis (interval 2s, failureLimit 2). Once green has a successful measurement, and after a
   random part of an interval, the traffic process makes half of v2's requests fail. Measured:
   from that moment to the Service selecting blue again (the Service is polled every 20 ms).
   Target: p50 <= 10 s. The peer figure is Flagger's documented rollback time, interval x
   threshold, with its defaults (60 s x 1).
2. Operator overhead (--trials): v2 released without checks or analysis. Measured: from green's
   Deployment being available (all replicas updated and available, polled every 20 ms) to the
   Service selecting green. Target: p50 <= 1 s.
3. Scale (--releases): N FeatureReleases, each with its own Service, created at once in one
   namespace and then all released to v2 at once, through one (fresh) operator process.
   Measured: the time until all are Ready at v1 and at v2, the operator's peak RSS (VmHWM), and
   its Kubernetes API requests per second once idle (from 10 s after the last one is Ready, over
   --idle-window seconds), counted from the API server's audit log (one event per request at
   stage ResponseComplete; watches apart, counted when they start).

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for tests.env when run as a script

from kubernetes import client, config  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402
from tests.env.audit import AuditLog  # noqa: E402
from tests.env.cluster import Cluster  # noqa: E402
from tests.env.operator_runner import (  # noqa: E402
    OPERATOR_NAMESPACE,
    SERVICE_ACCOUNT,
    OperatorProcess,
    install_rbac,
    service_account_kubeconfig,
)
from tests.env.processes import wait_until  # noqa: E402
from tests.env.prometheus import PrometheusServer  # noqa: E402
from tests.env.traffic import TrafficClient, TrafficProcess, error_ratio_query  # noqa: E402

GROUP, VERSION, PLURAL = "lockstep.dev", "v1alpha1", "featurereleases"
COLOR_LABEL = "lockstep.dev/color"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
POLL_SECONDS = 0.02
ANALYSIS_INTERVAL_SECONDS = 2.0
QUIET_SECONDS = 10.0  # no write for this long, before an idle window starts
ROLLBACK_TARGET_P50 = 10.0
OVERHEAD_TARGET_P50 = 1.0
FLAGGER_INTERVAL_SECONDS, FLAGGER_THRESHOLD = (
    60,
    1,
)  # Flagger's defaults (analysis.interval, threshold)


# ---------------------------------------------------------------------------- environment


@dataclass
class Environment:
    cluster: Cluster
    prometheus: PrometheusServer
    traffic: TrafficClient
    operator: OperatorProcess
    core: client.CoreV1Api
    apps: client.AppsV1Api
    custom: client.CustomObjectsApi


def start_servers(
    stack: contextlib.ExitStack, base: Path
) -> tuple[Cluster, PrometheusServer, TrafficClient]:
    """The control plane (with an audit log), Prometheus and the simulated clients it scrapes,
    each stopped by `stack` on the way out."""
    cluster = Cluster(base / "cluster", audit_log=True)
    stack.callback(cluster.stop)
    cluster.start()
    prometheus = PrometheusServer(base / "prometheus")
    stack.callback(prometheus.stop)
    prometheus.start()
    traffic_process = TrafficProcess(cluster.kubeconfig, base / "traffic")
    stack.callback(traffic_process.stop)
    traffic_process.start()
    prometheus.set_targets("traffic", [traffic_process.address])
    wait_until(
        lambda: prometheus.target_up(traffic_process.address),
        timeout=60,
        what="the traffic process to be scraped",
    )
    traffic = TrafficClient(traffic_process.address)
    stack.callback(traffic.close)
    return cluster, prometheus, traffic


@contextlib.contextmanager
def environment(base: Path) -> Iterator[Environment]:
    """Everything the benchmarks need, stopped in reverse order on the way out (also on error)."""
    with contextlib.ExitStack() as stack:
        cluster, prometheus, traffic = start_servers(stack, base)
        install_rbac(cluster)
        log_dir = base / "operator"
        log_dir.mkdir()
        operator = OperatorProcess(
            service_account_kubeconfig(cluster, base / "sa.kubeconfig"), log_dir
        )
        stack.callback(operator.stop)
        start_operator(operator)
        api = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        stack.callback(api.close)
        yield Environment(
            cluster,
            prometheus,
            traffic,
            operator,
            client.CoreV1Api(api),
            client.AppsV1Api(api),
            client.CustomObjectsApi(api),
        )


def start_operator(operator: OperatorProcess) -> None:
    """Start the operator; again if its metrics and health ports happen to be the same free
    port (two free_port() calls in a row may return one port, and the second bind fails)."""
    operator.start()
    while operator.metrics_port == operator.health_port:
        operator.stop()
        operator.start()


# ---------------------------------------------------------------------------- objects


def pod_template(app: str, version: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app, "app.kubernetes.io/version": version}},
        "spec": {"containers": [{"name": app, "image": f"example/{app}:{version}"}]},
    }


def release_body(app: str, version: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FeatureRelease",
        "metadata": {"name": app},
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "replicas": replicas,
            "template": pod_template(app, version),
            "service": app,
            "release": version,
            **spec,
        },
    }


def analysing(status: dict[str, Any]) -> bool:
    """The analysis has measured the new colour once with traffic on it (the check of the
    queries before the switch also measures, but with no traffic moved yet)."""
    analysis = status.get("analysis") or {}
    return bool(
        status.get("step") == "Analysis"
        and analysis.get("startedAt")
        and analysis.get("successful", 0) >= 1
    )


def error_ratio_analysis(namespace: str, prometheus_url: str) -> dict[str, Any]:
    query = error_ratio_query(namespace)
    return {
        "prometheus": {"address": prometheus_url, "timeout": "2s"},
        "interval": f"{ANALYSIS_INTERVAL_SECONDS:g}s",
        "duration": "10m",
        "failureLimit": 2,
        "metrics": [{"name": "error-ratio", "query": query, "max": 0.05}],
    }


class App:
    """One app in its own namespace: its Service and its FeatureRelease."""

    def __init__(self, env: Environment, namespace: str, name: str = "web") -> None:
        self.env, self.namespace, self.name = env, namespace, name

    def create_namespace(self) -> None:
        self.env.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace))
        )

    def delete_namespace(self) -> None:
        with contextlib.suppress(ApiException):
            self.env.core.delete_namespace(self.namespace)

    def create_service(self) -> None:
        self.env.core.create_namespaced_service(
            self.namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name=self.name),
                spec=client.V1ServiceSpec(
                    selector={"app": self.name}, ports=[client.V1ServicePort(port=80)]
                ),
            ),
        )

    def create_release(self, version: str, replicas: int, **spec: Any) -> None:
        self.env.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            release_body(self.name, version, replicas, **spec),
        )

    def release(self, version: str) -> None:
        """A new version: a new pod template and release name (a merge patch of the spec)."""
        patch = {"spec": {"template": pod_template(self.name, version), "release": version}}
        self.env.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, patch
        )

    def status(self) -> dict[str, Any]:
        obj = raw(
            self.env.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            self.name,
        )
        return dict(obj.get("status") or {})

    def selected_color(self) -> str | None:
        service = raw(self.env.core.read_namespaced_service, self.name, self.namespace)
        return (service["spec"].get("selector") or {}).get(COLOR_LABEL)

    def available(self, color: str) -> bool:
        """All replicas of the colour's Deployment updated and available, for its latest spec."""
        try:
            deployment = raw(
                self.env.apps.read_namespaced_deployment, f"{self.name}-{color}", self.namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        replicas, status = deployment["spec"]["replicas"], deployment.get("status") or {}
        return bool(
            status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
            and status.get("updatedReplicas", 0) >= replicas
            and status.get("availableReplicas", 0) >= replicas
        )

    def wait_ready(self, release: str, timeout: float = 120) -> None:
        def ready() -> bool:
            status = self.status()
            return (
                status.get("phase") == "Ready"
                and status.get("stableRelease") == release
                and bool(status.get("settled"))
            )

        wait_until(
            ready,
            timeout=timeout,
            interval=0.1,
            what=f"{self.namespace}/{self.name} Ready at {release}",
        )


def raw(call: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """The object as the API server sent it (JSON), without the client's models."""
    response = call(*args, _preload_content=False)
    body: dict[str, Any] = json.loads(response.data)
    return body


def poll(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll every POLL_SECONDS; the monotonic time at which `condition` was first seen true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{what} did not happen within {timeout}s")


# ---------------------------------------------------------------------------- 1. rollback


def rollback_trial(env: Environment, index: int) -> float:
    """Seconds from v2's error ratio rising to the Service selecting blue again."""
    app = App(env, f"bench-rollback-{index}")
    app.create_namespace()
    try:
        app.create_service()
        env.traffic.set_app(app.namespace, app.name, service=app.name, rps=50)
        spec = {
            "analysis": error_ratio_analysis(app.namespace, env.prometheus.url),
            "strategy": {"blueGreen": {"scaleDownDelaySeconds": 0}},
        }
        app.create_release("v1", replicas=2, **spec)
        app.wait_ready("v1")
        app.release("v2")
        wait_until(
            lambda: analysing(app.status()),
            timeout=120,
            interval=0.1,
            what="a first successful measurement of v2",
        )
        assert app.selected_color() == "green"
        # a spike comes at any moment of an analysis interval, not just after a round
        time.sleep(random.Random(index).uniform(0, ANALYSIS_INTERVAL_SECONDS))
        raised = time.monotonic()
        env.traffic.set_app(
            app.namespace, app.name, service=app.name, rps=50, error_ratio={"v2": 0.5}
        )
        back = poll(lambda: app.selected_color() == "blue", 120, "the switch back to blue")
        return back - raised
    finally:
        env.traffic.remove_app(app.namespace, app.name)
        app.delete_namespace()


# ---------------------------------------------------------------------------- 2. overhead


def overhead_trial(env: Environment, index: int) -> float:
    """Seconds from green's Deployment being available to the Service selecting green."""
    app = App(env, f"bench-overhead-{index}")
    app.create_namespace()
    try:
        app.create_service()
        app.create_release("v1", replicas=2, strategy={"blueGreen": {"scaleDownDelaySeconds": 0}})
        app.wait_ready("v1")
        app.release("v2")
        seen: dict[str, float] = {}

        def both_seen() -> bool:
            # the Deployment first, so that a switch seen in the same round comes after it
            if "available" not in seen and app.available("green"):
                seen["available"] = time.monotonic()
            if "switched" not in seen and app.selected_color() == "green":
                seen["switched"] = time.monotonic()
            return len(seen) == 2

        poll(both_seen, 120, "green to become available and take the traffic")
        return seen["switched"] - seen["available"]
    finally:
        app.delete_namespace()


# ---------------------------------------------------------------------------- 3. scale


@dataclass
class ScaleFigures:
    releases: int
    create_seconds: float
    initial_seconds: float
    release_seconds: float
    started_rss_mib: float
    peak_rss_mib: float
    idle_window: float
    idle_requests: int
    idle_watches: int
    idle_by_kind: Counter[str]
    release_requests: int


def wait_for_quiet(audit_log: Path, timeout: float = 900) -> None:
    """Until the operator has sent no write to the API server (its Lease renewals apart) for
    QUIET_SECONDS: the last Events and status writes have landed."""
    log = AuditLog(audit_log)
    last_write = time.time()

    def quiet() -> bool:
        nonlocal last_write
        for request in log.take(OPERATOR_USER):
            if request.write and request.resource != "leases":
                last_write = max(last_write, request.received.timestamp())
        return time.time() - last_write >= QUIET_SECONDS

    wait_until(quiet, timeout=timeout, interval=1.0, what="the operator to stop writing")


def memory_mib(pid: int, field: str) -> float:
    """VmHWM (peak resident set) or VmRSS (resident now) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def operator_pid(env: Environment) -> int:
    pid = env.operator.pid()
    assert pid is not None, "the operator is not running"
    return pid


def all_ready(env: Environment, namespace: str, release: str, expected: int) -> bool:
    listed = raw(env.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)
    items = listed["items"]
    ready = sum(
        1
        for item in items
        if (item.get("status") or {}).get("phase") == "Ready"
        and item["status"].get("stableRelease") == release
        and item["status"].get("settled")
        and item["status"].get("observedGeneration") == item["metadata"]["generation"]
    )
    return ready == expected


def operator_requests(
    audit_log: Path, start: datetime, end: datetime
) -> tuple[int, int, Counter[str]]:
    """The operator's API requests in [start, end): (requests, watches started, by verb+kind).

    A request is one audit event at stage ResponseComplete; a watch is counted once, when it
    starts (stage ResponseStarted), not for how long it stays open."""
    requests, watches, by_kind = 0, 0, Counter[str]()
    with audit_log.open() as lines:
        for line in lines:
            event = json.loads(line)
            if event.get("user", {}).get("username") != OPERATOR_USER:
                continue
            at = datetime.fromisoformat(event["stageTimestamp"].replace("Z", "+00:00"))
            if not start <= at < end:
                continue
            verb = event.get("verb")
            if verb == "watch":
                watches += event.get("stage") == "ResponseStarted"
            elif event.get("stage") == "ResponseComplete":
                requests += 1
                resource = (event.get("objectRef") or {}).get("resource", "?")
                subresource = (event.get("objectRef") or {}).get("subresource")
                by_kind[f"{verb} {resource}{'/' + subresource if subresource else ''}"] += 1
    return requests, watches, by_kind


def scale_run(env: Environment, count: int, idle_window: float) -> ScaleFigures:
    # A fresh operator process: its peak RSS is that of this run.
    env.operator.stop()
    start_operator(env.operator)
    started_rss = memory_mib(operator_pid(env), "VmRSS")
    namespace = "bench-scale"
    apps = [App(env, namespace, f"app-{i:04d}") for i in range(count)]
    apps[0].create_namespace()
    strategy = {"blueGreen": {"scaleDownDelaySeconds": 0}}
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda a: a.create_service(), apps))
        began = time.monotonic()
        list(pool.map(lambda a: a.create_release("v1", replicas=1, strategy=strategy), apps))
        create_seconds = time.monotonic() - began
        wait_until(
            lambda: all_ready(env, namespace, "v1", count),
            timeout=1800,
            interval=0.5,
            what=f"{count} releases Ready at v1",
        )
        initial = time.monotonic() - began
        release_start = datetime.now(UTC)
        began = time.monotonic()
        list(pool.map(lambda a: a.release("v2"), apps))
        wait_until(
            lambda: all_ready(env, namespace, "v2", count),
            timeout=1800,
            interval=0.5,
            what=f"{count} releases Ready at v2",
        )
        released = time.monotonic() - began
        release_end = datetime.now(UTC)
    wait_for_quiet(env.cluster.audit_log_path)
    idle_start = datetime.now(UTC)
    time.sleep(idle_window)  # the measurement window itself
    idle_end = datetime.now(UTC)
    rss = memory_mib(operator_pid(env), "VmHWM")
    audit = env.cluster.audit_log_path
    idle_requests, idle_watches, idle_by_kind = operator_requests(audit, idle_start, idle_end)
    release_requests, _, _ = operator_requests(audit, release_start, release_end)
    return ScaleFigures(
        releases=count,
        create_seconds=create_seconds,
        initial_seconds=initial,
        release_seconds=released,
        started_rss_mib=started_rss,
        peak_rss_mib=rss,
        idle_window=(idle_end - idle_start).total_seconds(),
        idle_requests=idle_requests,
        idle_watches=idle_watches,
        idle_by_kind=idle_by_kind,
        release_requests=release_requests,
    )


# ---------------------------------------------------------------------------- report


def trials(
    name: str, count: int, trial: Callable[[Environment, int], float], env: Environment
) -> list[float]:
    results = []
    for index in range(count):
        seconds = trial(env, index)
        print(f"  {name} {index + 1}/{count}: {seconds:.3f}s", flush=True)
        results.append(seconds)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials of 1. and 2. (default 10)")
    parser.add_argument("--releases", type=int, default=200, help="FeatureReleases in 3. (200)")
    parser.add_argument("--idle-window", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="lockstep-bench-release-"))
    base.chmod(0o755)  # the servers may run as an unprivileged user
    started = time.monotonic()
    try:
        with environment(base) as env:
            print(f"1. rollback reaction, {args.trials} trials", flush=True)
            rollback = trials("rollback", args.trials, rollback_trial, env)
            print(f"2. operator overhead, {args.trials} trials", flush=True)
            overhead = trials("overhead", args.trials, overhead_trial, env)
            print(f"3. scale, {args.releases} FeatureReleases", flush=True)
            scale = scale_run(env, args.releases, args.idle_window)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    flagger = FLAGGER_INTERVAL_SECONDS * FLAGGER_THRESHOLD
    rollback_p50, overhead_p50 = statistics.median(rollback), statistics.median(overhead)
    print()
    print(
        f"Rollback reaction (error ratio raised -> Service back on the stable colour), "
        f"{len(rollback)} trials:"
    )
    print(
        f"  p50 {rollback_p50:.2f}s  max {max(rollback):.2f}s  (target p50 <= "
        f"{ROLLBACK_TARGET_P50:g}s)"
    )
    print(
        f"  Flagger with its defaults (interval {FLAGGER_INTERVAL_SECONDS}s x threshold "
        f"{FLAGGER_THRESHOLD}): {flagger}s; lockstep p50 is {flagger / rollback_p50:.1f}x faster"
    )
    print(f"Operator overhead (new colour Available -> Service switched), {len(overhead)} trials:")
    print(
        f"  p50 {overhead_p50 * 1000:.0f}ms  max {max(overhead) * 1000:.0f}ms  (target p50 <= "
        f"{OVERHEAD_TARGET_P50 * 1000:.0f}ms; polling every {POLL_SECONDS * 1000:.0f}ms)"
    )
    print(f"Scale, {scale.releases} FeatureReleases through one operator process:")
    print(
        f"  created in {scale.create_seconds:.1f}s; all Ready at v1 after "
        f"{scale.initial_seconds:.1f}s, all Ready at v2 after {scale.release_seconds:.1f}s"
    )
    print(
        f"  operator peak RSS (VmHWM) {scale.peak_rss_mib:.0f} MiB "
        f"(RSS {scale.started_rss_mib:.0f} MiB when started, with no release)"
    )
    print(f"  operator API requests during the v2 release: {scale.release_requests}")
    print(
        f"  idle: {scale.idle_requests} requests in {scale.idle_window:.0f}s = "
        f"{scale.idle_requests / scale.idle_window:.2f}/s; {scale.idle_watches} watches started"
    )
    for kind, number in scale.idle_by_kind.most_common(8):
        print(f"    {number:6d}  {kind}")
    print(f"(total {time.monotonic() - started:.0f}s)")

    missed = []
    if rollback_p50 > ROLLBACK_TARGET_P50:
        missed.append("rollback reaction")
    if overhead_p50 > OVERHEAD_TARGET_P50:
        missed.append("operator overhead")
    if missed:
        print(f"MISSED: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
