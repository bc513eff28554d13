"""Fixtures for end-to-end tests: the operator under test, run with the RBAC of manifests/."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.dataplane import ShopApp
from tests.e2e.releases import APP, Timeline, WebApp
from tests.e2e.shop import CREATE_USERS, database_migration, release, secret_and_service
from tests.env.cluster import Cluster
from tests.env.executor import LocalPodExecutor, make_backup_volume
from tests.env.operator_runner import OperatorProcess, install_rbac, service_account_kubeconfig
from tests.env.processes import wait_until
from tests.env.prometheus import PrometheusServer
from tests.env.traffic import TrafficClient


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster, session_dir: Path) -> Path:
    """A kubeconfig holding a token of the operator's ServiceAccount (manifests/rbac.yaml)."""
    install_rbac(cluster)
    return service_account_kubeconfig(cluster, session_dir / "operator.kubeconfig")


@pytest.fixture(scope="session")
def lockstep_operator(operator_kubeconfig: Path, session_dir: Path) -> Iterator[OperatorProcess]:
    """One operator process for the session, watching all namespaces."""
    log_dir = session_dir / "operator"
    log_dir.mkdir(exist_ok=True)
    process = OperatorProcess(operator_kubeconfig, log_dir)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def operator(lockstep_operator: OperatorProcess) -> OperatorProcess:
    """The session's operator, restarted first if an earlier test stopped or killed it."""
    if lockstep_operator.process is None or not lockstep_operator.process.alive():
        lockstep_operator.start()
    return lockstep_operator


class Kubectl:
    """kubectl as the cluster admin, bound to one namespace, with JSON helpers."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def __call__(self, *args: str, check: bool = True, input: str | None = None) -> str:
        return self.cluster.kubectl("-n", self.namespace, *args, check=check, input=input).stdout

    def apply(self, *documents: dict[str, Any] | str) -> None:
        text = "\n---\n".join(d if isinstance(d, str) else yaml.safe_dump(d) for d in documents)
        self("apply", "-f", "-", input=text)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self("get", kind, name, "-o", "json"))  # type: ignore[no-any-return]

    def maybe(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self("get", kind, name, "-o", "json", "--ignore-not-found", check=False)
        return json.loads(out) if out.strip() else None

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return self.get(kind, name).get("status") or {}

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def wait_for(
        self, what: str, condition: Callable[[], Any], timeout: float = 60, interval: float = 0.25
    ) -> Any:
        return wait_until(condition, timeout=timeout, interval=interval, what=what)

    def condition(self, kind: str, name: str, kind_of_condition: str) -> str | None:
        for condition in self.status(kind, name).get("conditions") or []:
            if condition["type"] == kind_of_condition:
                return str(condition["status"])
        return None


@pytest.fixture
def k(cluster: Cluster, namespace: str) -> Kubectl:
    return Kubectl(cluster, namespace)


@pytest.fixture
def web(
    cluster: Cluster,
    k: Kubectl,
    traffic: TrafficClient,
    prometheus: PrometheusServer,
    operator: OperatorProcess,
) -> Iterator[WebApp]:
    """The app "web" in the test namespace, released by a FeatureRelease (tests/e2e/releases.py),
    with simulated clients and a timeline of the namespace recorded for the whole test."""
    with Timeline(cluster.kubeconfig, k.namespace) as timeline:
        try:
            yield WebApp(cluster, k, traffic, prometheus.url, timeline)
        finally:
            traffic.remove_app(k.namespace, APP)
    timeline.check()


@pytest.fixture
def v1_live(
    k: Kubectl,
    operator: OperatorProcess,
    pod_executor: LocalPodExecutor,
    traffic: TrafficClient,
    prometheus: PrometheusServer,
    database_url: str,
) -> str:
    """Release v1 at schema 001, with traffic flowing; returns the database URL."""
    make_backup_volume(k.cluster, k.namespace, "backups")
    k.apply(
        *secret_and_service(database_url),
        database_migration([CREATE_USERS]),
        release("v1", {"targetVersion": "001"}, prometheus, k.namespace),
    )
    traffic.set_app(k.namespace, "web", service="web", rps=50)
    k("wait", "--for=condition=Ready", "fr/web", "--timeout=120s")
    return database_url


@pytest.fixture
def shop(
    cluster: Cluster,
    k: Kubectl,
    prometheus: PrometheusServer,
    operator: OperatorProcess,
    pod_executor: LocalPodExecutor,
    database_url: str,
    tmp_path: Path,
) -> Iterator[ShopApp]:
    """The sample application (examples/shop) as the FeatureRelease "web": real pods, real
    requests from the load generator, and its own database (tests/e2e/dataplane.py)."""
    with Timeline(cluster.kubeconfig, k.namespace) as timeline:
        app = ShopApp(
            cluster,
            k,
            None,
            prometheus.url,
            timeline,
            database_url=database_url,
            out_dir=tmp_path,
        )
        try:
            yield app
        finally:
            app.stop()
    timeline.check()
