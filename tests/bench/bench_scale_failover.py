"""Failover time of two replicas with the chart's election timing (15 s lease, 10 s renew
deadline, 2 s retry period): kill -9 of the leader until the standby acts.

Run: .venv/bin/python tests/bench/bench_scale_failover.py [--trials 5]

It starts its own environment (the local control plane with an audit log, Prometheus, the test
traffic process) and two operator replicas with their own tokens (tests/env/operator_runner.py).
One app is released to v2 with an error-ratio analysis that measures every second for ten
minutes, so the leader writes the release's status every second. Each trial kills the leader
with SIGKILL and measures, from the kill: the standby's `acquireTime` in the Lease, and its first
write other than the Lease (from the audit log: its first status patch). The killed replica is
then started again, as the kubelet would, and stands by for the next trial.

Target: the standby acts within the lease duration plus two retry periods and 5 s of start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for tests.env when run as a script

from kubernetes import client, config  # noqa: E402
from tests.bench.bench_release import (  # noqa: E402
    App,
    Environment,
    analysing,
    error_ratio_analysis,
    start_servers,
)
from tests.env.audit import AuditLog  # noqa: E402
from tests.env.operator_runner import (  # noqa: E402
    OPERATOR_NAMESPACE,
    SERVICE_ACCOUNT,
    ElectionTiming,
    Replicas,
    install_rbac,
)
from tests.env.processes import wait_until  # noqa: E402

OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
CHART_TIMING = ElectionTiming(lease_duration=15, renew_deadline=10, retry_period=2)
START_UP_SECONDS = 5.0


@contextlib.contextmanager
def environment(base: Path) -> Iterator[tuple[Environment, Replicas, AuditLog]]:
    with contextlib.ExitStack() as stack:
        cluster, prometheus, traffic = start_servers(stack, base)
        install_rbac(cluster)
        replicas = Replicas(cluster, base / "replicas", count=2, timing=CHART_TIMING)
        stack.callback(replicas.stop)
        replicas.start()
        api = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        stack.callback(api.close)
        env = Environment(
            cluster,
            prometheus,
            traffic,
            replicas.leader(),
            client.CoreV1Api(api),
            client.AppsV1Api(api),
            client.CustomObjectsApi(api),
        )
        yield env, replicas, AuditLog(cluster.audit_log_path)


def trial(env: Environment, replicas: Replicas, audit: AuditLog) -> tuple[float, float]:
    """Kill the leader; seconds until the standby took the Lease, and until it wrote."""
    leader = replicas.leader()
    standby = next(r for r in replicas if r is not leader)
    audit.mark()
    leader.kill()
    killed = time.time()
    replicas.wait_for_leader(standby, timeout=60)
    acquired = datetime.fromisoformat(
        replicas.lease_spec()["acquireTime"].replace("Z", "+00:00")
    ).timestamp()

    def first_write() -> float | None:
        for request in audit.requests(OPERATOR_USER):
            who = replicas.credentials.get(request.credential)
            if who == standby.name and request.write and request.resource != "leases":
                return request.received.timestamp()
        return None

    wrote = wait_until(first_write, timeout=60, interval=0.5, what="the new leader's first write")
    assert isinstance(wrote, float)
    leader.start()  # restarted as the kubelet would: the standby of the next trial
    wait_until(
        lambda: replicas.holder() == standby.name and not leader.leads(),
        timeout=60,
        interval=0.2,
        what="the restarted replica to stand by",
    )
    return acquired - killed, wrote - killed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="lockstep-bench-failover-"))
    base.chmod(0o755)
    results: list[tuple[float, float]] = []
    try:
        with environment(base) as (env, replicas, audit):
            app = App(env, "failover")
            app.create_namespace()
            app.create_service()
            env.traffic.set_app(app.namespace, app.name, service=app.name, rps=20)
            analysis = error_ratio_analysis(app.namespace, env.prometheus.url)
            analysis.update(interval="1s", duration="10m")
            app.create_release("v1", replicas=1, analysis=analysis)
            app.wait_ready("v1")
            app.release("v2")
            wait_until(
                lambda: analysing(app.status()),
                timeout=120,
                what="the analysis of v2 to measure",
            )
            for index in range(args.trials):
                taken, acting = trial(env, replicas, audit)
                print(f"  trial {index + 1}: Lease taken {taken:.2f}s, acting {acting:.2f}s")
                results.append((taken, acting))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    taken = [r[0] for r in results]
    acting = [r[1] for r in results]
    target = CHART_TIMING.lease_duration + 2 * CHART_TIMING.retry_period + START_UP_SECONDS
    print(
        f"Failover after kill -9 of the leader (lease {CHART_TIMING.lease_duration}s, renew "
        f"deadline {CHART_TIMING.renew_deadline:g}s, retry {CHART_TIMING.retry_period:g}s), "
        f"{len(results)} trials:"
    )
    print(f"  Lease taken: p50 {statistics.median(taken):.2f}s, max {max(taken):.2f}s")
    print(
        f"  first write of the new leader: p50 {statistics.median(acting):.2f}s, max "
        f"{max(acting):.2f}s (target <= {target:g}s)"
    )
    if max(acting) > target:
        print("MISSED: failover", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
