"""The Helm chart installs the operator with the same permissions as the plain manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests.env.cluster import Cluster
from tests.env.operator_runner import MANIFESTS, REPO

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


def test_chart_rbac_equals_the_manifests_rbac(cluster: Cluster) -> None:
    chart_role = next(d for d in rendered(cluster) if d["kind"] == "ClusterRole")
    manifest_role = next(
        d
        for d in yaml.safe_load_all((MANIFESTS / "rbac.yaml").read_text())
        if d and d["kind"] == "ClusterRole"
    )
    assert chart_role["rules"] == manifest_role["rules"]


def test_watch_namespaces_become_operator_arguments(cluster: Cluster) -> None:
    deployment = next(
        d
        for d in rendered(cluster, "--set", "watchNamespaces={team-a,team-b}")
        if d["kind"] == "Deployment"
    )
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]  # type: ignore[index]
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
        assert deployment["status"]["availableReplicas"] == 1
        assert (
            deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            == "lockstep/operator:test"
        )
        crds = cluster.kubectl("get", "crd", "-o", "name").stdout
        assert "featurereleases.lockstep.dev" in crds and "databasemigrations.lockstep.dev" in crds
        status = json.loads(
            cluster.helm("status", "lockstep", "-n", namespace, "-o", "json").stdout
        )
        assert status["info"]["status"] == "deployed"
    finally:
        cluster.helm("uninstall", "lockstep", "-n", namespace, check=False)
