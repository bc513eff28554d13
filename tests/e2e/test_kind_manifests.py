"""The objects hack/kind/up.sh applies are accepted by a real API server with lockstep's CRDs
(a server-side dry run; the PodMonitor needs the Prometheus Operator's CRD, absent here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from tests.e2e.conftest import Kubectl

pytestmark = pytest.mark.cluster

KIND = Path(__file__).resolve().parents[2] / "hack" / "kind"


def test_the_kind_sample_passes_a_server_side_dry_run(
    k: Kubectl, operator_kubeconfig: Path
) -> None:
    printed = subprocess.run(
        [str(KIND / "up.sh"), "manifests"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    documents = [d for d in yaml.safe_load_all(printed) if d]
    for name in ("postgres.yaml", "shop.yaml"):
        documents += [d for d in yaml.safe_load_all((KIND / name).read_text()) if d]
    checked = [d for d in documents if d["kind"] != "PodMonitor"]
    for document in checked:
        document["metadata"]["namespace"] = k.namespace
        k("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(document))
    assert {d["kind"] for d in checked} >= {
        "FeatureRelease",
        "DatabaseMigration",
        "StatefulSet",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
    }
