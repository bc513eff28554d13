"""Shared fixtures: the real servers of the local test environment (see tests/env)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.env.cluster import Cluster
from tests.env.executor import LocalPodExecutor
from tests.env.postgres import PostgresServer
from tests.env.processes import reap_strays, wait_until
from tests.env.prometheus import PrometheusServer
from tests.env.traffic import TrafficClient, TrafficProcess


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    """A temporary directory that the unprivileged server user can enter too."""
    reap_strays()
    path = Path(tempfile.mkdtemp(prefix="lockstep-env-"))
    path.chmod(0o755)
    yield path
    if os.environ.get("LOCKSTEP_KEEP_ENV"):
        print(f"\nthe environment's files are kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(session_dir: Path) -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session."""
    server = PostgresServer(session_dir / "postgres")
    server.start()
    yield server
    server.remove()


@pytest.fixture
def database_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for one test; its URL (with the password)."""
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def cluster(session_dir: Path) -> Iterator[Cluster]:
    """The real control plane (etcd, apiserver, controller-manager, scheduler, kwok), with an
    audit log of every request (tests/env/audit.py reads it: who wrote what, when)."""
    control_plane = Cluster(session_dir / "cluster", audit_log=True)
    control_plane.start()
    yield control_plane
    control_plane.stop()


@pytest.fixture(scope="session")
def prometheus(session_dir: Path) -> Iterator[PrometheusServer]:
    """One real Prometheus for the whole session, scraping test targets every second."""
    server = PrometheusServer(session_dir / "prometheus")
    server.start()
    yield server
    server.remove()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = "t-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{name}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def pod_executor(
    cluster: Cluster, postgres: PostgresServer, prometheus: PrometheusServer, session_dir: Path
) -> Iterator[LocalPodExecutor]:
    """Runs the command of pods labelled lockstep.dev/test-exec on this machine, with the
    PostgreSQL client binaries first on PATH, and has Prometheus scrape the pods that ask for
    it (see tests/env/executor.py)."""
    executor = LocalPodExecutor(
        cluster.kubeconfig, session_dir / "executor", [postgres.bindir], prometheus
    )
    executor.start()
    yield executor
    executor.stop()


@pytest.fixture(scope="session")
def traffic(
    cluster: Cluster, prometheus: PrometheusServer, session_dir: Path
) -> Iterator[TrafficClient]:
    """The test traffic process, scraped by Prometheus as the target group "traffic"; tests
    register their apps with `traffic.set_app(...)` (see tests/env/traffic.py)."""
    process = TrafficProcess(cluster.kubeconfig, session_dir / "traffic")
    process.start()
    prometheus.set_targets("traffic", [process.address])
    wait_until(
        lambda: prometheus.target_up(process.address), timeout=60, what="traffic to be scraped"
    )
    traffic_client = TrafficClient(process.address)
    yield traffic_client
    traffic_client.close()
    prometheus.set_targets("traffic", [])
    process.stop()
