"""Two operator replicas with leader election on a Lease: only the leader acts, a standby takes
over when the leader dies, stalls or is cut off, and the two never act at the same time.

Each replica holds a token of its own, so the API server's audit log tells their requests apart
(as it tells pods apart). "Acting" is any write; a standby may only read its Lease."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import Kubectl
from tests.e2e.releases import APP, PROMOTED, Timeline, WebApp, at_step, blue_green, check
from tests.env.audit import AuditLog, Request
from tests.env.cluster import Cluster
from tests.env.operator_runner import (
    OPERATOR_NAMESPACE,
    SERVICE_ACCOUNT,
    ElectionTiming,
    OperatorProcess,
    Replicas,
)
from tests.env.processes import wait_until
from tests.env.prometheus import PrometheusServer
from tests.env.proxy import TcpProxy
from tests.env.traffic import TrafficClient

pytestmark = pytest.mark.cluster

OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
TIMING = ElectionTiming(lease_duration=5, renew_deadline=3.5, retry_period=0.5)
FAILOVER_SLACK = 10  # seconds beyond the lease duration: the new leader starts kopf and lists


@pytest.fixture
def audit(cluster: Cluster) -> AuditLog:
    return AuditLog(cluster.audit_log_path)


@pytest.fixture
def web(
    cluster: Cluster, k: Kubectl, traffic: TrafficClient, prometheus: PrometheusServer
) -> Iterator[WebApp]:
    """The app "web" as in conftest.py, but without the session's operator: replicas act here."""
    with Timeline(cluster.kubeconfig, k.namespace) as timeline:
        try:
            yield WebApp(cluster, k, traffic, prometheus.url, timeline)
        finally:
            traffic.remove_app(k.namespace, APP)
    timeline.check()


@pytest.fixture
def replicas(
    web: WebApp, lockstep_operator: OperatorProcess, cluster: Cluster, tmp_path: Path
) -> Iterator[Replicas]:
    """Two replicas, lockstep-a and lockstep-b, in place of the session's single operator."""
    lockstep_operator.stop()  # the next test's `operator` fixture starts it again
    group = Replicas(cluster, tmp_path / "replicas", count=2, timing=TIMING)
    group.delete_lease()
    group.start()
    yield group
    group.stop()
    group.delete_lease()


def release_settings(web: WebApp, duration: str = "6s") -> dict[str, Any]:
    """A release through a check, analysis and a scale-down delay: long enough to kill in."""
    return {
        "checks": {"prePromotion": [check("smoke")]},
        "analysis": web.analysis(interval="1s", duration=duration),
        "strategy": blue_green(scaleDownDelaySeconds=2),
    }


def other(replicas: Replicas, replica: OperatorProcess) -> OperatorProcess:
    return next(r for r in replicas if r is not replica)


def writes_by_replica(audit: AuditLog, replicas: Replicas) -> dict[str, list[Request]]:
    """Every write of the operator's ServiceAccount since the mark, by replica identity."""
    found: dict[str, list[Request]] = {identity: [] for identity in replicas.replicas}
    for request in audit.requests(OPERATOR_USER):
        if request.write:
            identity = replicas.credentials.get(request.credential)
            assert identity is not None, f"a write with an unknown token: {request}"
            found[identity].append(request)
    return found


def assert_one_writer_at_a_time(writes: dict[str, list[Request]], order: list[str]) -> None:
    """The replicas in `order` wrote one after the other, never interleaved: each one's first
    write (taking the Lease) reached the API server after the previous one's last write did.
    (When a request completes is etcd's latency, seconds on a starved machine; like client-go,
    the election has no fencing token for a request already in the API server.)"""
    for before, after in itertools.pairwise(order):
        assert writes[before], f"{before} never wrote"
        assert writes[after], f"{after} never wrote"
        last = max(r.received for r in writes[before])
        first = min(writes[after], key=lambda r: r.received)
        assert first.received > last, f"{after} wrote at {first} while {before} still wrote"
        assert first.resource == "leases", f"{after} acted before taking the Lease: {first}"


def leader_events(cluster: Cluster, since: datetime) -> list[str]:
    """client-go's LeaderElection Events on the Lease since `since`, oldest first."""
    out = cluster.kubectl(
        "-n",
        OPERATOR_NAMESPACE,
        "get",
        "events",
        "--field-selector",
        "reason=LeaderElection",
        "-o",
        "json",
    ).stdout
    events = [
        (datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00")), e["message"])
        for e in json.loads(out)["items"]
    ]
    return [message for at, message in sorted(events) if at >= since]


def lease_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_a_standby_finishes_the_release_after_a_kill_9_of_the_leader(
    web: WebApp, replicas: Replicas, audit: AuditLog
) -> None:
    spec = release_settings(web)
    first = replicas.leader()
    second = other(replicas, first)
    web.go_live("v1", **spec)
    lease = replicas.lease_spec()
    assert lease["holderIdentity"] == first.name
    assert lease["leaseDurationSeconds"] == TIMING.lease_duration
    assert {"acquireTime", "renewTime", "leaseTransitions"} <= set(lease)
    assert first.leads() and first.health()["leader"] is True
    assert not second.leads()
    assert second.health() == {"identity": second.name, "leader": False, "ok": True}
    killed_at: list[float] = []

    def kill() -> None:
        first.kill()
        killed_at.append(time.time())

    killing = web.timeline.when(at_step("Analysis", release="v2"), kill)
    web.apply("v2", **spec)
    killing.wait()

    replicas.wait_for_leader(second, timeout=TIMING.lease_duration + FAILOVER_SLACK)
    lease = replicas.lease_spec()
    assert lease["leaseTransitions"] == 1
    first.start()  # restarted, as the kubelet would: a standby now
    web.wait_for_phase("Ready", release="v2")

    assert web.outcome() == PROMOTED
    assert web.timeline.selector_colors() == [None, "blue", "green"]  # one switch to green
    # Exactly two Service writes over both replicas: blue for v1, green for v2. (The Events are
    # posted after the status write they report, so a kill between the two may lose one: the
    # status and the API server's record are what count.)
    service_writes = [
        r
        for r in audit.requests(OPERATOR_USER)
        if r.resource == "services" and r.name == APP and r.write and r.succeeded
    ]
    assert len(service_writes) == 2, [str(r) for r in service_writes]
    assert web.event_reasons().count("Promoted") == 2  # v1, then v2
    assert [h["release"] for h in web.status()["history"]] == ["v2", "v1"]
    assert len(web.check_jobs()) == 1
    assert not first.leads()

    writes = writes_by_replica(audit, replicas)
    assert_one_writer_at_a_time(writes, [first.name, second.name])
    # Until it took the Lease, the standby read its Lease and nothing else: no status, Events,
    # children, no Secret (without the database URL it cannot reach a database either).
    took_over = min(r.received for r in writes[second.name])
    standing_by = {
        (r.verb, r.resource, r.name)
        for r in audit.requests(OPERATOR_USER)
        if replicas.credentials.get(r.credential) == second.name and r.received < took_over
    }
    assert standing_by == {("get", "leases", replicas.lease)}
    assert leader_events(web.k.cluster, since=replicas.started_at) == [
        f"{first.name} became leader",
        f"{second.name} became leader",
    ]
    first_act = min(
        (r for r in writes[second.name] if r.resource != "leases"), key=lambda r: r.received
    )
    acquired = lease_time(lease["acquireTime"]) - killed_at[0]
    acting = first_act.received.timestamp() - killed_at[0]
    print(
        f"\nfailover after kill -9 (lease {TIMING.lease_duration}s, renew deadline "
        f"{TIMING.renew_deadline:g}s, retry {TIMING.retry_period:g}s): Lease taken after "
        f"{acquired:.2f}s, first write of the new leader after {acting:.2f}s"
    )
    assert acquired <= TIMING.lease_duration + 2 * TIMING.retry_period + 1


def test_a_stalled_leader_that_lost_the_lease_stops_before_writing_again(
    web: WebApp, replicas: Replicas, audit: AuditLog
) -> None:
    spec = release_settings(web, duration="20s")
    first = replicas.leader()
    second = other(replicas, first)
    web.go_live("v1", **spec)
    stalled = web.timeline.when(
        at_step("Analysis", release="v2"), lambda: first.signal(signal.SIGSTOP)
    )
    web.apply("v2", **spec)
    stalled.wait()

    # Frozen (a stopped VM, a long pause): the other replica takes over after the lease duration.
    replicas.wait_for_leader(second, timeout=TIMING.lease_duration + FAILOVER_SLACK)
    taken_over = datetime.now(UTC)
    first.signal(signal.SIGCONT)
    # Its daemons wake up in the middle of their passes, past its renew deadline: it exits
    # (lost the Lease) without a single write.
    wait_until(lambda: first.exit_code() == 1, timeout=30, what="the stalled leader to exit")
    assert "stops leading" in first.logs()

    web.wait_for_phase("Ready", release="v2", timeout=120)
    assert web.outcome() == PROMOTED
    writes = writes_by_replica(audit, replicas)
    assert not [r for r in writes[first.name] if r.received > taken_over]
    assert_one_writer_at_a_time(writes, [first.name, second.name])


def test_a_leader_cut_off_from_the_api_server_stops_before_a_standby_takes_over(
    web: WebApp, replicas: Replicas, cluster: Cluster, audit: AuditLog
) -> None:
    # Replica a talks to the API server through a proxy that the test can cut.
    a, b = replicas["lockstep-a"], replicas["lockstep-b"]
    b.stop()
    a.stop()
    replicas.delete_lease()
    audit.mark()  # the writes from here on
    proxy = TcpProxy(cluster.api_port)
    try:
        config = yaml.safe_load(a.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        a.kubeconfig.write_text(yaml.safe_dump(config))
        a.start()
        assert replicas.leader() is a
        b.start()
        web.go_live("v1", **release_settings(web))

        exited_at: list[float] = []
        assert a.process is not None
        popen = a.process.popen
        watcher = threading.Thread(
            target=lambda: (popen.wait(), exited_at.append(time.time())), daemon=True
        )
        watcher.start()
        cut_at = time.time()
        proxy.cut()
        replicas.wait_for_leader(b, timeout=TIMING.lease_duration + FAILOVER_SLACK)
        acquired = lease_time(replicas.lease_spec()["acquireTime"])
        watcher.join(timeout=10)
        assert popen.returncode == 1 and "stops leading" in a.logs()
        # a stopped at its renew deadline, b took the Lease only after the lease duration.
        assert exited_at[0] < acquired
        print(
            f"\npartition: the leader stopped {exited_at[0] - cut_at:.2f}s after the cut, the "
            f"standby took the Lease {acquired - cut_at:.2f}s after it"
        )
        proxy.heal()
        web.apply("v2", **release_settings(web, duration="2s"))
        web.wait_for_phase("Ready", release="v2")
        assert web.outcome() == PROMOTED
        assert_one_writer_at_a_time(writes_by_replica(audit, replicas), [a.name, b.name])
    finally:
        proxy.close()


def test_a_leader_stopped_gracefully_hands_the_lease_over_at_once(
    web: WebApp, replicas: Replicas
) -> None:
    first = replicas.leader()
    second = other(replicas, first)
    web.go_live("v1", **release_settings(web))
    stopped_at = time.time()
    first.stop()  # SIGTERM: kopf stops, then the Lease is released
    replicas.wait_for_leader(second, timeout=TIMING.lease_duration)
    handover = lease_time(replicas.lease_spec()["acquireTime"]) - stopped_at
    print(f"\nhandover after SIGTERM: {handover:.2f}s")
    assert handover < TIMING.lease_duration  # released: nobody waited for it to expire
    web.apply("v2", **release_settings(web, duration="2s"))
    web.wait_for_phase("Ready", release="v2")
    assert web.outcome() == PROMOTED
