"""The Helm chart installs the operator with the same permissions as the plain manifests, as
two replicas electing a leader, spread over nodes, with a PodDisruptionBudget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.env.cluster import Cluster
from tests.env.operator_runner import MANIFESTS, REPO
from tests.env.processes import wait_until

CHART = REPO / "helm" / "lockstep"
pytestmark = pytest.mark.cluster


def rendered(cluster: Cluster, *args: str) -> list[dict[str, object]]:
    out = cluster.helm(
        "template",
        "lockstep",
        str(CHART),
        "--namespace",
        "lockstep-system",
        "--kube-version",
        "1.36.3",
        *args,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_chart_lints(cluster: Cluster) -> None:
    cluster.helm("lint", str(CHART), "--strict")


def test_values_outside_the_schema_are_refused(cluster: Cluster) -> None:
    result = cluster.helm(
        "template",
        "x",
        str(CHART),
        "--kube-version",
        "1.36.3",
        "--set",
        "logFormat=yaml",
        check=False,
    )
    assert result.returncode != 0
    assert "logFormat" in result.stderr


def manifest_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind]
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["ClusterRole", "Role"])
def test_chart_rbac_equals_the_manifests_rbac(cluster: Cluster, kind: str) -> None:
    assert one(rendered(cluster), kind)["rules"] == one(manifest_documents(), kind)["rules"]


def test_the_lease_permissions_are_namespaced_to_the_operator_and_its_lease(
    cluster: Cluster,
) -> None:
    documents = rendered(cluster)
    role, binding = one(documents, "Role"), one(documents, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "lockstep-system"
    assert all(rule["apiGroups"] == ["coordination.k8s.io"] for rule in role["rules"])
    named = [rule for rule in role["rules"] if "resourceNames" in rule]
    assert named == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["lockstep"],
            "verbs": ["get", "update"],
        }
    ]
    cluster_rules = one(documents, "ClusterRole")["rules"]
    assert not [r for r in cluster_rules if "coordination.k8s.io" in r["apiGroups"]]


def test_two_replicas_elect_a_leader_spread_over_nodes_with_a_disruption_budget(
    cluster: Cluster,
) -> None:
    documents = rendered(cluster)
    deployment = one(documents, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert {
        "--leader-elect",
        "--instance=lockstep",
        "--lease-duration=15",
        "--renew-deadline=10",
        "--retry-period=2",
    } <= set(container(deployment)["args"])
    env = {e["name"]: e for e in container(deployment)["env"]}
    assert env["LOCKSTEP_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    budget = one(documents, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    # and the plain manifests the same
    manifests = manifest_documents()
    assert one(manifests, "Deployment")["spec"]["replicas"] == 2
    assert "--leader-elect" in container(one(manifests, "Deployment"))["args"]
    assert one(manifests, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_hard_anti_affinity_requires_other_nodes(cluster: Cluster) -> None:
    deployment = one(rendered(cluster, "--set", "podAntiAffinity=hard"), "Deployment")
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_one_replica_without_election_is_recreated_and_has_no_budget(cluster: Cluster) -> None:
    documents = rendered(cluster, "--set", "replicas=1", "--set", "leaderElection.enabled=false")
    deployment = one(documents, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "--leader-elect" not in container(deployment)["args"]
    assert not [d for d in documents if d["kind"] in ("PodDisruptionBudget", "Role")]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["replicas=3", "leaderElection.enabled=false"], "needs leaderElection.enabled"),
        (["leaderElection.renewDeadline=20"], "renewDeadline must be shorter"),
        (["replicas=0"], "replicas"),
        (["podAntiAffinity=always"], "podAntiAffinity"),
        (["instanceName=Shard_A"], "instanceName"),
    ],
)
def test_inconsistent_values_are_refused_with_the_reason(
    cluster: Cluster, values: list[str], message: str
) -> None:
    args = [arg for value in values for arg in ("--set", value)]
    result = cluster.helm(
        "template", "x", str(CHART), "--kube-version", "1.36.3", *args, check=False
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_a_shard_gets_its_selector_and_its_own_lease(cluster: Cluster) -> None:
    documents = rendered(
        cluster, "--set", "labelSelector=lockstep.dev/shard in (a)", "--set", "instanceName=shard-a"
    )
    args = container(one(documents, "Deployment"))["args"]
    assert "--selector=lockstep.dev/shard in (a)" in args and "--instance=shard-a" in args
    named = [r for r in one(documents, "Role")["rules"] if "resourceNames" in r]
    assert named[0]["resourceNames"] == ["shard-a"]


def test_watch_namespaces_become_operator_arguments(cluster: Cluster) -> None:
    deployment = one(rendered(cluster, "--set", "watchNamespaces={team-a,team-b}"), "Deployment")
    args = container(deployment)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_the_chart_installs_into_the_cluster(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.helm(
        "install",
        "lockstep",
        str(CHART),
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        "120s",
        "--set",
        "image.tag=test",
    )
    try:
        deployment = json.loads(
            cluster.kubectl("-n", namespace, "get", "deployment", "lockstep", "-o", "json").stdout
        )
        assert deployment["status"]["availableReplicas"] == 2
        assert (
            deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            == "lockstep/operator:test"
        )

        def budget_status() -> dict[str, Any]:
            out = cluster.kubectl("-n", namespace, "get", "pdb", "lockstep", "-o", "json").stdout
            return json.loads(out).get("status") or {}  # type: ignore[no-any-return]

        wait_until(
            lambda: budget_status().get("currentHealthy") == 2,
            timeout=30,
            what="the disruption budget to count both replicas",
        )
        assert budget_status()["disruptionsAllowed"] == 1
        crds = cluster.kubectl("get", "crd", "-o", "name").stdout
        assert "featurereleases.lockstep.dev" in crds and "databasemigrations.lockstep.dev" in crds
        status = json.loads(
            cluster.helm("status", "lockstep", "-n", namespace, "-o", "json").stdout
        )
        assert status["info"]["status"] == "deployed"
    finally:
        cluster.helm("uninstall", "lockstep", "-n", namespace, check=False)
