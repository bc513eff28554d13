"""The local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, built from the published Go modules by controlplane/build.sh.

kwok stands in for kubelets: pods on its nodes become Ready and Job pods complete. Tests steer
it with pod labels:
- `lockstep.dev/test-never-ready: "true"`: the pod never becomes Ready;
- `lockstep.dev/test-fail: "true"`: a Job's pod fails (exit code 1);
- `lockstep.dev/test-exec: "true"`: kwok leaves the pod alone, from start to deletion;
  `tests.env.executor` runs its container command on this machine instead (backup and restore
  Jobs, and the sample application's pods).
"""

from __future__ import annotations

import base64
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import pki as pki_mod
from .processes import Process, free_port, wait_until

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "controlplane" / "build.sh"

NEVER_READY = "lockstep.dev/test-never-ready"
FAIL = "lockstep.dev/test-fail"
EXEC = "lockstep.dev/test-exec"


def build_controlplane() -> Path:
    """Build (or find in the cache) the binaries; returns the directory holding bin/."""
    result = subprocess.run(
        [str(BUILD_SCRIPT)],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"control plane build failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def _label_absent(label: str) -> dict[str, str]:
    return {"key": f'.metadata.labels["{label}"]', "operator": "DoesNotExist"}


def kwok_stages(base_stages: Path) -> list[dict[str, Any]]:
    """kwok's standard fast stages, narrowed by the test labels, plus a failing-Job stage."""
    stages = [s for s in yaml.safe_load_all(base_stages.read_text()) if s]
    for stage in stages:
        name = stage["metadata"]["name"]
        expressions = stage["spec"].setdefault("selector", {}).setdefault("matchExpressions", [])
        if name == "pod-ready":
            expressions += [_label_absent(NEVER_READY), _label_absent(EXEC)]
        elif name == "pod-complete":
            expressions += [_label_absent(FAIL), _label_absent(EXEC)]
        elif name == "pod-delete":  # the executor stops the process, then removes the pod
            expressions += [_label_absent(EXEC)]
    stages.append(
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Stage",
            "metadata": {"name": "lockstep-test-pod-fail"},
            "spec": {
                "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                "selector": {
                    "matchExpressions": [
                        {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                        {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                        {
                            "key": f'.metadata.labels["{FAIL}"]',
                            "operator": "In",
                            "values": ["true"],
                        },
                    ]
                },
                "next": {
                    "statusTemplate": (
                        "{{ $now := Now }}\n"
                        "containerStatuses:\n"
                        "{{ range .spec.containers }}\n"
                        "- name: {{ .name | Quote }}\n"
                        "  image: {{ .image | Quote }}\n"
                        "  ready: false\n"
                        "  restartCount: 0\n"
                        "  started: false\n"
                        "  state:\n"
                        "    terminated:\n"
                        "      exitCode: 1\n"
                        "      reason: Error\n"
                        "      message: failed on purpose (lockstep.dev/test-fail)\n"
                        "      startedAt: {{ $now | Quote }}\n"
                        "      finishedAt: {{ $now | Quote }}\n"
                        "{{ end }}\n"
                        "phase: Failed\n"
                    )
                },
            },
        }
    )
    return stages


AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


@dataclass
class Cluster:
    """A running control plane; `kubeconfig` is the admin kubeconfig.

    With `audit_log`, kube-apiserver writes a Metadata-level audit event of every request, as
    JSON lines, to `audit_log_path` (stages ResponseStarted, for watches, and ResponseComplete).
    """

    base_dir: Path
    nodes: int = 2
    audit_log: bool = False
    bin_dir: Path = field(init=False)
    kubeconfig: Path = field(init=False)
    api_port: int = field(init=False)
    processes: list[Process] = field(default_factory=list, init=False)

    def start(self) -> None:
        build_dir = build_controlplane()
        self.bin_dir = build_dir / "bin"
        logs = self.base_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        certs = pki_mod.generate(self.base_dir / "pki")
        self.api_port = free_port()
        etcd_port, etcd_peer = free_port(), free_port()
        self.kubeconfig = self.base_dir / "admin.kubeconfig"
        self.kubeconfig.write_text(self._kubeconfig_text(certs))

        try:
            etcd = self._start(
                "etcd",
                [
                    "--name=node0",
                    f"--data-dir={self.base_dir / 'etcd'}",
                    f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                    f"--initial-cluster=node0=http://127.0.0.1:{etcd_peer}",
                    "--unsafe-no-fsync=true",
                    "--quota-backend-bytes=4294967296",
                    "--log-level=warn",
                ],
                logs,
            )
            wait_until(
                lambda: self._http_ok(etcd, f"http://127.0.0.1:{etcd_port}/health"),
                timeout=60,
                what="etcd health",
            )

            apiserver = self._start(
                "kube-apiserver",
                [
                    f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                    "--advertise-address=127.0.0.1",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={self.api_port}",
                    f"--cert-dir={self.base_dir / 'pki'}",
                    f"--tls-cert-file={certs.admin_cert}",
                    f"--tls-private-key-file={certs.admin_key}",
                    f"--client-ca-file={certs.ca_cert}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={certs.sa_pub}",
                    f"--service-account-signing-key-file={certs.sa_key}",
                    "--service-cluster-ip-range=10.96.0.0/16",
                    "--authorization-mode=Node,RBAC",
                    "--allow-privileged=true",
                    "--endpoint-reconciler-type=none",
                    "--disable-admission-plugins=ServiceAccount",
                    "--enable-priority-and-fairness=false",
                    "--max-requests-inflight=2000",
                    "--max-mutating-requests-inflight=1000",
                    "--event-ttl=1h",
                    *self._audit_flags(),
                ],
                logs,
            )
            wait_until(
                lambda: self._api_ready(apiserver), timeout=120, what="kube-apiserver /readyz"
            )

            common = [
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            ]
            self._start(
                "kube-controller-manager",
                [
                    *common,
                    f"--secure-port={free_port()}",
                    "--controllers=*",
                    f"--root-ca-file={certs.ca_cert}",
                    f"--service-account-private-key-file={certs.sa_key}",
                    "--use-service-account-credentials=false",
                    "--kube-api-qps=200",
                    "--kube-api-burst=400",
                    "--concurrent-deployment-syncs=20",
                    "--concurrent-replicaset-syncs=20",
                    "--concurrent-job-syncs=20",
                ],
                logs,
            )
            self._start(
                "kube-scheduler",
                [
                    *common,
                    f"--secure-port={free_port()}",
                    "--kube-api-qps=200",
                    "--kube-api-burst=400",
                ],
                logs,
            )
            stages = self.base_dir / "kwok-stages.yaml"
            stages.write_text(yaml.safe_dump_all(kwok_stages(build_dir / "kwok-stages.yaml")))
            self._start(
                "kwok",
                [
                    f"--kubeconfig={self.kubeconfig}",
                    f"--config={stages}",
                    "--manage-all-nodes=true",
                    "--node-lease-duration-seconds=40",
                    "--cidr=10.244.0.0/16",
                    "--node-ip=10.0.0.1",
                ],
                logs,
            )
            for index in range(self.nodes):
                self.kubectl("apply", "-f", "-", input=yaml.safe_dump(self._node(index)))
            wait_until(self._nodes_ready, timeout=60, interval=0.3, what="kwok nodes Ready")
            wait_until(
                lambda: (
                    self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0
                ),
                timeout=60,
                what="the default ServiceAccount",
            )
        except BaseException:
            self.stop()
            raise

    # ------------------------------------------------------------------ helpers

    @property
    def audit_log_path(self) -> Path:
        return self.base_dir / "logs" / "audit.log"

    def _audit_flags(self) -> list[str]:
        if not self.audit_log:
            return []
        policy = self.base_dir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log_path}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
        ]

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop kube-apiserver (SIGTERM, as a rolling upgrade of the control plane would),
        stay down `down_seconds`, and start it again with the same flags."""
        index, old = next(
            (i, p) for i, p in enumerate(self.processes) if p.name == "kube-apiserver"
        )
        old.stop()
        time.sleep(down_seconds)  # the outage itself
        new = Process(old.name, old.argv, self.base_dir / "logs")
        self.processes[index] = new
        wait_until(lambda: self._api_ready(new), timeout=120, what="kube-apiserver back")

    def _start(self, name: str, args: list[str], logs: Path) -> Process:
        process = Process(name, [str(self.bin_dir / name), *args], logs)
        self.processes.append(process)
        return process

    def _kubeconfig_text(self, certs: pki_mod.Pki) -> str:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "lockstep-test",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.api_port}",
                        "certificate-authority-data": b64(certs.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64(certs.admin_cert),
                        "client-key-data": b64(certs.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": "lockstep-test", "context": {"cluster": "lockstep-test", "user": "admin"}}
            ],
            "current-context": "lockstep-test",
        }
        return yaml.safe_dump(config)

    def kubeconfig_for_token(self, token: str, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig that authenticates with a bearer token (a ServiceAccount's)."""
        admin = yaml.safe_load(self.kubeconfig.read_text())
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": admin["clusters"],
            "users": [{"name": "token", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "token",
                    "context": {
                        "cluster": "lockstep-test",
                        "user": "token",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "token",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    @staticmethod
    def _http_ok(process: Process, url: str) -> bool:
        import urllib.request

        process.check_alive()
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    def _api_ready(self, process: Process) -> bool:
        process.check_alive()
        return self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0

    def _nodes_ready(self) -> bool:
        for process in self.processes:
            process.check_alive()
        out = self.kubectl(
            "get",
            "nodes",
            "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}',
        ).stdout.split()
        return len(out) == self.nodes and all(s == "True" for s in out)

    @staticmethod
    def _node(index: int) -> dict[str, Any]:
        name = f"kwok-node-{index}"
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                },
            },
            "status": {
                "allocatable": {"cpu": "1000", "memory": "1Ti", "pods": "10000"},
                "capacity": {"cpu": "1000", "memory": "1Ti", "pods": "10000"},
            },
        }

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / "helm"), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
