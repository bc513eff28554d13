"""Two operator instances on disjoint selections share one cluster: each reconciles its own
FeatureReleases and DatabaseMigrations and never writes to the other's (counted per instance in
the API server's audit log), and objects that no instance selects are left alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import Kubectl
from tests.env.audit import AuditLog, Request
from tests.env.cluster import Cluster
from tests.env.operator_runner import (
    OPERATOR_NAMESPACE,
    SERVICE_ACCOUNT,
    OperatorProcess,
    credential_id,
    service_account_kubeconfig,
)
from tests.env.postgres import PostgresServer

pytestmark = pytest.mark.cluster

OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
SHARD_LABEL = "lockstep.dev/shard"
USERS = {
    "version": "001",
    "name": "create_users",
    "up": "CREATE TABLE users (id bigint PRIMARY KEY);",
    "down": "DROP TABLE users;",
}


class Instances:
    """Operator instances started with their own arguments and tokens."""

    def __init__(self, cluster: Cluster, base_dir: Path) -> None:
        self.cluster = cluster
        self.base_dir = base_dir
        self.running: dict[str, OperatorProcess] = {}
        self.credentials: dict[str, str] = {}

    def start(self, name: str, *args: str) -> OperatorProcess:
        kubeconfig = service_account_kubeconfig(self.cluster, self.base_dir / f"{name}.kubeconfig")
        self.credentials[credential_id(kubeconfig)] = name
        instance = OperatorProcess(kubeconfig, self.base_dir, name=name, args=args)
        instance.start()
        self.running[name] = instance
        return instance

    def stop(self) -> None:
        for instance in self.running.values():
            instance.stop()

    def writes(self, audit: AuditLog) -> list[tuple[str, Request]]:
        return [
            (self.credentials.get(r.credential, "?"), r)
            for r in audit.requests(OPERATOR_USER)
            if r.write
        ]


@pytest.fixture
def instances(
    cluster: Cluster, lockstep_operator: OperatorProcess, tmp_path: Path
) -> Iterator[Instances]:
    """In place of the session's single operator (the next test's fixture starts it again)."""
    lockstep_operator.stop()
    group = Instances(cluster, tmp_path)
    yield group
    group.stop()


@pytest.fixture
def audit(cluster: Cluster) -> AuditLog:
    return AuditLog(cluster.audit_log_path)


def app(k: Kubectl, name: str, labels: dict[str, str]) -> None:
    """A Service and a FeatureRelease of `name`, labelled `labels`."""
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
        },
        {
            "apiVersion": "lockstep.dev/v1alpha1",
            "kind": "FeatureRelease",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "replicas": 1,
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": name, "image": f"example/{name}:1"}]},
                },
                "service": name,
                "release": "v1",
            },
        },
    )


def database(k: Kubectl, name: str, url: str, labels: dict[str, str]) -> None:
    """A DatabaseMigration of `name` (its Secret too), labelled `labels`."""
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"url": url},
        },
        {
            "apiVersion": "lockstep.dev/v1alpha1",
            "kind": "DatabaseMigration",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "database": {"urlFrom": {"secretKeyRef": {"name": name, "key": "url"}}},
                "source": {"migrations": [USERS]},
                "policy": {"backup": "never"},
            },
        },
    )


def belongs_to(request: Request, name: str) -> bool:
    """A write about the object `name` or one of its children or Events."""
    return request.name == name or request.name.startswith((f"{name}-", f"{name}."))


def owner_of_writes(
    writes: list[tuple[str, Request]], namespace: str, names: list[str]
) -> dict[str, set[str]]:
    return {
        name: {who for who, r in writes if r.namespace == namespace and belongs_to(r, name)}
        for name in names
    }


def test_label_shards_reconcile_only_their_own_objects(
    k: Kubectl,
    instances: Instances,
    audit: AuditLog,
    postgres: PostgresServer,
    database_url: str,
) -> None:
    other_db = f"shard_b_{uuid.uuid4().hex[:8]}"
    other_url = postgres.create_database(other_db)
    try:
        instances.start("shard-a", "--instance=shard-a", f"--selector={SHARD_LABEL}=a")
        instances.start("shard-b", "--instance=shard-b", f"--selector={SHARD_LABEL} in (b)")
        app(k, "alpha", {SHARD_LABEL: "a"})
        app(k, "beta", {SHARD_LABEL: "b"})
        app(k, "gamma", {})  # selected by neither
        database(k, "ledger-a", database_url, {SHARD_LABEL: "a"})
        database(k, "ledger-b", other_url, {SHARD_LABEL: "b"})
        for name in ("alpha", "beta"):
            k("wait", "--for=condition=Ready", f"fr/{name}", "--timeout=90s")
        for name in ("ledger-a", "ledger-b"):
            k("wait", "--for=condition=Ready", f"dbm/{name}", "--timeout=90s")

        def finalizers(kind: str, name: str) -> list[str]:
            return k.get(kind, name)["metadata"].get("finalizers") or []

        assert finalizers("fr", "alpha") == ["lockstep.dev/finalizer-shard-a"]
        assert finalizers("fr", "beta") == ["lockstep.dev/finalizer-shard-b"]
        assert finalizers("dbm", "ledger-b") == ["lockstep.dev/finalizer-shard-b"]
        gamma = k.get("fr", "gamma")
        # untouched: the API server's default status only (kstatus reads it as InProgress)
        assert gamma.get("status") == {"observedGeneration": 0}
        assert not gamma["metadata"].get("finalizers")

        owners = owner_of_writes(
            instances.writes(audit), k.namespace, ["alpha", "beta", "gamma", "ledger-a", "ledger-b"]
        )
        assert owners == {
            "alpha": {"shard-a"},
            "beta": {"shard-b"},
            "gamma": set(),
            "ledger-a": {"shard-a"},
            "ledger-b": {"shard-b"},
        }
    finally:
        postgres.drop_database(other_db)


def test_namespace_shards_reconcile_only_their_namespaces(
    k: Kubectl, cluster: Cluster, instances: Instances, audit: AuditLog
) -> None:
    second = Kubectl(cluster, f"{k.namespace}-2")
    cluster.kubectl("create", "namespace", second.namespace)
    try:
        instances.start("team-1", "--instance=team-1", f"--namespace={k.namespace}")
        instances.start("team-2", "--instance=team-2", f"--namespace={second.namespace}")
        app(k, "alpha", {})
        app(second, "alpha", {})
        for kubectl in (k, second):
            kubectl("wait", "--for=condition=Ready", "fr/alpha", "--timeout=90s")
            # namespaces are disjoint: the shared finalizer is safe
            assert kubectl.get("fr", "alpha")["metadata"]["finalizers"] == [
                "lockstep.dev/finalizer"
            ]
        writes = instances.writes(audit)
        assert owner_of_writes(writes, k.namespace, ["alpha"]) == {"alpha": {"team-1"}}
        assert owner_of_writes(writes, second.namespace, ["alpha"]) == {"alpha": {"team-2"}}
    finally:
        cluster.kubectl("delete", "namespace", second.namespace, "--wait=false", check=False)
