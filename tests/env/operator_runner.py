"""Running the lockstep operator under test, with the ServiceAccount and RBAC of manifests/.

The operator runs as a separate process (`python -m lockstep run`) whose kubeconfig holds a
token of the `lockstep` ServiceAccount, so a permission missing from manifests/rbac.yaml makes
the tests fail. It can be killed with SIGKILL and started again, as a crash would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from .cluster import Cluster
from .processes import Process, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
CRDS = REPO / "crds"
OPERATOR_NAMESPACE = "lockstep-system"
SERVICE_ACCOUNT = "lockstep"


def install_rbac(cluster: Cluster) -> None:
    """The CRDs, the operator namespace, its ServiceAccount and RBAC, from the repository."""
    cluster.kubectl(
        "apply",
        "-f",
        str(CRDS / "lockstep.dev_featurereleases.yaml"),
        "-f",
        str(CRDS / "lockstep.dev_databasemigrations.yaml"),
    )
    cluster.kubectl("apply", "-f", str(MANIFESTS / "namespace.yaml"))
    cluster.kubectl("apply", "-f", str(MANIFESTS / "rbac.yaml"))
    for crd in ("featurereleases.lockstep.dev", "databasemigrations.lockstep.dev"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


def service_account_kubeconfig(cluster: Cluster, path: Path, duration: str = "24h") -> Path:
    token = cluster.kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE, f"--duration={duration}"
    ).stdout.strip()
    return cluster.kubeconfig_for_token(token, path, namespace=OPERATOR_NAMESPACE)


class OperatorProcess:
    """`python -m lockstep run` with the ServiceAccount's kubeconfig; logs to a file."""

    def __init__(
        self, kubeconfig: Path, log_dir: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        self.process: Process | None = None
        self.metrics_port = 0
        self.health_port = 0
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / "lockstep-operator.log"

    def start(self) -> None:
        self.metrics_port = free_port()
        self.health_port = free_port()
        while self.health_port == self.metrics_port:  # the kernel may hand out the same one
            self.health_port = free_port()
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            "LOCKSTEP_WORKERS": os.environ.get("LOCKSTEP_WORKERS", "32"),
            **self.extra_env,
        }
        self.process = Process(
            "lockstep-operator",
            [
                sys.executable,
                "-m",
                "lockstep",
                "run",
                f"--metrics-port={self.metrics_port}",
                f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                "--log-format=plain",
            ],
            self.log_dir,
            env=env,
            cwd=REPO,
        )
        self.starts += 1
        wait_until(self._healthy, timeout=60, what="the operator's liveness endpoint")

    def _healthy(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            raise RuntimeError(f"operator exited:\n{self.process.tail(40)}")
        return (
            httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).status_code == 200
        )

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def kill(self) -> None:
        """SIGKILL, as a node failure or OOM kill would."""
        assert self.process is not None
        os.killpg(self.process.popen.pid, signal.SIGKILL)
        self.process.popen.wait(10)
        self.process.stop()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)
            self.process = None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def pid(self) -> int | None:
        return self.process.popen.pid if self.process else None


def can_i(cluster: Cluster, kubeconfig: Path, *args: str) -> bool:
    """`kubectl auth can-i` as the identity of `kubeconfig`."""
    result = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", "auth", "can-i", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return result.stdout.strip() == "yes"
