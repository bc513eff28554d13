"""Running the lockstep operator under test, with the ServiceAccount and RBAC of manifests/.

The operator runs as a separate process (`python -m lockstep run`) whose kubeconfig holds a
token of the `lockstep` ServiceAccount, so a permission missing from manifests/rbac.yaml makes
the tests fail. It can be killed with SIGKILL and started again, as a crash would.

Several replicas (`Replicas`) run like the pods of the operator's Deployment: each with a token
of its own (as each pod gets one; the API server's audit log names the token of every request,
so writes can be counted per replica), a stable identity (a pod's name survives a container
restart) and leader election on one Lease in the operator's namespace.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

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


def credential_id(kubeconfig: Path) -> str:
    """How the audit log names the token of `kubeconfig` (user.extra's credential-id)."""
    token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"JTI={claims['jti']}"


class OperatorProcess:
    """`python -m lockstep run` with the ServiceAccount's kubeconfig; logs to a file."""

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        *,
        name: str = "lockstep-operator",
        args: Sequence[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        self.name = name
        self.args = list(args)
        self.process: Process | None = None
        self.metrics_port = 0
        self.health_port = 0
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self, wait: bool = True) -> None:
        """Start the process; with `wait`, until its liveness endpoint answers."""
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
            self.name,
            [
                sys.executable,
                "-m",
                "lockstep",
                "run",
                f"--metrics-port={self.metrics_port}",
                f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                "--log-format=plain",
                *self.args,
            ],
            self.log_dir,
            env=env,
            cwd=REPO,
        )
        self.starts += 1
        if wait:
            self.wait_healthy()

    def wait_healthy(self) -> None:
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

    def health(self) -> dict[str, Any]:
        """The liveness endpoint's answer: identity, whether it leads."""
        answer: dict[str, Any] = httpx.get(
            f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
        ).json()
        return answer

    def leads(self) -> bool:
        """What the replica says of itself (its lockstep_leader gauge)."""
        for line in self.metrics().splitlines():
            if line.startswith("lockstep_leader "):
                return float(line.split()[1]) == 1
        raise AssertionError("no lockstep_leader gauge in the metrics")

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def exit_code(self) -> int | None:
        return self.process.popen.poll() if self.process is not None else None

    def signal(self, signum: int) -> None:
        """Send `signum` to the process (SIGSTOP freezes it as a stalled node would)."""
        assert self.process is not None
        os.killpg(self.process.popen.pid, signum)

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


# ------------------------------------------------------------------------------ replicas


@dataclass(frozen=True)
class ElectionTiming:
    """Shorter than the defaults (15 s, 10 s, 2 s) so that a failover test takes seconds."""

    lease_duration: int = 4
    renew_deadline: float = 3.0
    retry_period: float = 0.5

    def args(self) -> list[str]:
        return [
            f"--lease-duration={self.lease_duration}",
            f"--renew-deadline={self.renew_deadline:g}",
            f"--retry-period={self.retry_period:g}",
        ]


class Replicas:
    """Operator replicas electing a leader on the Lease `lease` of the operator's namespace."""

    def __init__(
        self,
        cluster: Cluster,
        base_dir: Path,
        count: int = 2,
        *,
        lease: str = "lockstep",
        timing: ElectionTiming = ElectionTiming(),
        args: Sequence[str] = (),
    ) -> None:
        self.cluster = cluster
        self.lease = lease
        self.timing = timing
        base_dir.mkdir(parents=True, exist_ok=True)
        self.replicas: dict[str, OperatorProcess] = {}
        self.started_at = datetime.now(UTC)
        self.credentials: dict[str, str] = {}  # audit credential-id -> identity
        for index in range(count):
            identity = f"lockstep-{chr(ord('a') + index)}"
            kubeconfig = service_account_kubeconfig(cluster, base_dir / f"{identity}.kubeconfig")
            self.credentials[credential_id(kubeconfig)] = identity
            self.replicas[identity] = OperatorProcess(
                kubeconfig,
                base_dir,
                name=identity,
                args=[
                    "--leader-elect",
                    f"--instance={lease}",
                    f"--identity={identity}",
                    *timing.args(),
                    *args,
                ],
            )

    def __getitem__(self, identity: str) -> OperatorProcess:
        return self.replicas[identity]

    def __iter__(self) -> Any:
        return iter(self.replicas.values())

    def start(self) -> None:
        self.started_at = datetime.now(UTC)
        for replica in self:  # all at once, as a Deployment's pods start
            replica.start(wait=False)
        for replica in self:
            replica.wait_healthy()

    def stop(self) -> None:
        for replica in self:
            if replica.process is not None and not replica.process.alive():
                replica.process.stop()  # exited on its own: only unregister it
                replica.process = None
            replica.stop()

    def lease_spec(self) -> dict[str, Any]:
        out = self.cluster.kubectl(
            "-n", OPERATOR_NAMESPACE, "get", "lease", self.lease, "-o", "json", check=False
        )
        spec: dict[str, Any] = json.loads(out.stdout).get("spec", {}) if out.returncode == 0 else {}
        return spec

    def holder(self) -> str | None:
        return self.lease_spec().get("holderIdentity")

    def leader(self, timeout: float = 30) -> OperatorProcess:
        """The replica that holds the Lease and says it leads (waits for one)."""

        def leading() -> OperatorProcess | None:
            holder = self.holder()
            replica = self.replicas.get(holder or "")
            return replica if replica is not None and replica.alive() and replica.leads() else None

        found = wait_until(leading, timeout=timeout, interval=0.1, what="a leading replica")
        assert isinstance(found, OperatorProcess)
        return found

    def wait_for_leader(self, replica: OperatorProcess, timeout: float) -> None:
        """Until `replica` holds the Lease and says it leads."""
        wait_until(
            lambda: self.holder() == replica.name and replica.leads(),
            timeout=timeout,
            interval=0.1,
            what=f"{replica.name} to lead",
        )

    def standbys(self) -> list[OperatorProcess]:
        holder = self.holder()
        return [r for r in self if r.name != holder]

    def delete_lease(self) -> None:
        self.cluster.kubectl(
            "-n", OPERATOR_NAMESPACE, "delete", "lease", self.lease, "--ignore-not-found"
        )
