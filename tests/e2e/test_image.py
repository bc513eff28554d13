"""The operator image, built from the project's Dockerfile with buildah, runs the operator like
the chart's pod would: as the image's non-root user on a read-only root, configured only by the
chart's arguments and environment and the ServiceAccount token where a pod finds it, and a
release with its schema change goes all the way through it (tests/env/image.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import Kubectl
from tests.env.cluster import Cluster
from tests.env.executor import LocalPodExecutor, make_backup_volume
from tests.env.image import (
    IMAGE_USER,
    SERVICE_ACCOUNT_DIR,
    BuiltImage,
    ImagePod,
    ServiceAccountVolume,
    build_image,
)
from tests.env.operator_runner import OPERATOR_NAMESPACE, SERVICE_ACCOUNT, OperatorProcess
from tests.env.processes import free_port, wait_until
from tests.env.prometheus import PrometheusServer
from tests.env.samples import SHOP_EMAIL, SHOP_USERS, shop_migration, web_release
from tests.env.traffic import TrafficClient

from lockstep import __version__

pytestmark = pytest.mark.cluster

CHART = Path(__file__).resolve().parents[2] / "helm" / "lockstep"


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    """The image of the current sources (built once per change of the Dockerfile, the lock or
    the sources, then taken from ~/.cache/lockstep)."""
    return build_image()


def chart_container(cluster: Cluster, metrics_port: int, health_port: int) -> dict[str, Any]:
    """The operator's pod spec as the chart renders it (ports moved off the shared defaults)."""
    out = cluster.helm(
        "template", "lockstep", str(CHART), "--namespace", OPERATOR_NAMESPACE,
        "--kube-version", "1.36.3",
        "--set", f"metrics.port={metrics_port}", "--set", f"health.port={health_port}",
    ).stdout  # fmt: skip
    deployment = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


@pytest.fixture
def pod(
    image: BuiltImage, cluster: Cluster, operator_kubeconfig: Path, tmp_path: Path
) -> Iterator[tuple[ImagePod, dict[str, Any]]]:
    """The image as the chart's pod: its args and env, the `lockstep` ServiceAccount's token."""
    metrics_port, health_port = free_port(), free_port()
    while health_port == metrics_port:
        health_port = free_port()
    spec = chart_container(cluster, metrics_port, health_port)
    container = spec["containers"][0]
    token = cluster.kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=2h"
    ).stdout.strip()
    account = ServiceAccountVolume(
        tmp_path / "serviceaccount", token, cluster.base_dir / "pki" / "ca.crt", OPERATOR_NAMESPACE
    )
    # what the kubelet resolves from the downward API, for this pod
    fields = {"metadata.name": "lockstep-0", "metadata.namespace": OPERATOR_NAMESPACE}
    env = {
        e["name"]: e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        for e in container["env"]
    }
    env["LOCKSTEP_WORKERS"] = "8"  # the test machine is small
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    running = ImagePod(image, account, "127.0.0.1", cluster.api_port, log_dir, env=env)
    yield running, spec
    running.stop()


def test_the_image_runs_its_non_root_user_on_a_read_only_root(
    image: BuiltImage, pod: tuple[ImagePod, dict[str, Any]]
) -> None:
    sandbox, spec = pod
    facts = image.facts
    assert facts["user"] == "10001:10001"
    assert (facts["entrypoint"], facts["cmd"]) == (["lockstep"], ["run"])
    # what the chart asks of the pod is what the image gives
    assert spec["securityContext"]["runAsUser"] == IMAGE_USER[0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert [m["mountPath"] for m in spec["containers"][0]["volumeMounts"]] == ["/tmp"]

    version = sandbox.run(["--version"])
    assert version.returncode == 0, version.stderr
    assert __version__ in version.stdout

    probe = sandbox.run(
        [
            "-c",
            "id -u; id -g; "
            f"test -s {SERVICE_ACCOUNT_DIR}/token && echo token; "
            "touch /opt/lockstep/x 2>&1; touch /tmp/x && echo tmp-writable; "
            "python3 -m pip --version 2>&1 | tail -1",
        ],
        command=["/bin/sh"],
    )
    lines = probe.stdout.splitlines()
    assert lines[:3] == ["10001", "10001", "token"], probe.stdout + probe.stderr
    assert "Read-only file system" in lines[3]
    assert lines[4] == "tmp-writable"
    assert "No module named pip" in lines[5]  # nothing can be installed at run time


def test_a_release_and_its_migration_go_through_the_operator_run_from_the_image(
    pod: tuple[ImagePod, dict[str, Any]],
    lockstep_operator: OperatorProcess,
    k: Kubectl,
    pod_executor: LocalPodExecutor,
    traffic: TrafficClient,
    prometheus: PrometheusServer,
    database_url: str,
) -> None:
    lockstep_operator.stop()  # the image's operator is the only one (the next test restarts it)
    sandbox, spec = pod
    container = spec["containers"][0]
    process = sandbox.start(container["args"])
    health_port = container["ports"][1]["containerPort"]
    metrics_port = container["ports"][0]["containerPort"]

    def healthy() -> bool:
        process.check_alive()
        return httpx.get(f"http://127.0.0.1:{health_port}/healthz", timeout=1).status_code == 200

    wait_until(healthy, timeout=90, what="the liveness endpoint of the operator in the image")
    status = Path(f"/proc/{sandbox.container_pid()}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert fields["Uid"].split() == ["10001"] * 4
    assert int(fields["CapEff"], 16) == 0 and fields["NoNewPrivs"].strip() == "1"
    assert fields["Name"].strip().startswith("lockstep")

    make_backup_volume(k.cluster, k.namespace, "backups")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-db"},
        "stringData": {"url": database_url},
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    service["spec"] = {"ports": [{"port": 80}]}

    def release(version: str, target: str) -> dict[str, Any]:
        return web_release(
            version,
            namespace=k.namespace,
            prometheus_url=prometheus.url,
            migration={"targetVersion": target},
        )

    k.apply(secret, service, shop_migration([SHOP_USERS]), release("v1", "001"))
    traffic.set_app(k.namespace, "web", service="web", rps=50)
    k("wait", "--for=condition=Ready", "fr/web", "--timeout=120s")
    k.apply(shop_migration([SHOP_USERS, SHOP_EMAIL]), release("v2", "002"))
    k.wait_for(
        "v2 promoted",
        lambda: (
            [h["outcome"] for h in k.status("fr", "web").get("history", [])]
            == ["Promoted", "Promoted"]
        ),
        timeout=180,
    )
    k("wait", "--for=condition=Ready", "fr/web", "dbm/shop-db", "--timeout=120s")
    fr, dbm = k.status("fr", "web"), k.status("dbm", "shop-db")
    assert (fr["phase"], fr["activeColor"], fr["release"]) == ("Ready", "green", "v2")
    assert dbm["currentVersion"] == "002"
    assert "001" in [b.get("databaseVersion") for b in dbm["backups"]]  # dumped before 002

    # The operator in the image measured what it did (its own /metrics endpoint).
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
    }

    def sample(metric: str, **labels: str) -> float | None:
        return samples.get((metric, frozenset(labels.items())))

    ns = k.namespace
    assert sample("lockstep_promotions_total", namespace=ns, name="web") == 2
    assert (
        sample(
            "lockstep_release_phase",
            namespace=ns,
            name="web",
            phase="Ready",
            health="Ready",
            reason="Ready",
        )
        == 1
    )
    backups = sample("lockstep_backups_total", namespace=ns, name="shop-db", result="succeeded")
    assert backups == len(dbm["backups"])
    assert sample("lockstep_migrations_applied_total", direction="up") == 2
