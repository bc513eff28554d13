"""The local environment a user works in: `make up` starts it, `make down` stops it.

`up` starts a supervisor process in the background and returns once everything answers. The
supervisor runs, until it gets SIGTERM:

- the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok),
- PostgreSQL and Prometheus (Prometheus also scrapes the targets listed in
  `prometheus/targets/*.json`, so a user can add their own),
- the pod executor (pods labelled `lockstep.dev/test-exec: "true"` run on this machine: backup
  and restore Jobs), and the default StorageClass `standard` with its provisioner,
- the CRDs, and the operator (`lockstep run`) with a token of its ServiceAccount from
  `manifests/rbac.yaml`; the supervisor starts it again if it exits.

Everything lives in one directory (`LOCKSTEP_ENV`, default /tmp/lockstep-env): `state.json`
says where each part is and which process supervises them, `env.sh` holds what to export, and
the logs sit beside the data. `down` stops the supervisor (it stops each part) and whatever
process group it left behind, then removes the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from .cluster import EXEC, Cluster
from .executor import LocalPodExecutor
from .operator_runner import (
    OPERATOR_NAMESPACE,
    REPO,
    SERVICE_ACCOUNT,
    OperatorProcess,
    install_rbac,
    service_account_kubeconfig,
)
from .postgres import SUPERUSER, PostgresServer
from .processes import PID_DIR, reap_strays, unregister_pid
from .prometheus import PrometheusServer
from .provisioner import STORAGE_CLASS, LocalPathProvisioner

DEFAULT_DIR = Path("/tmp/lockstep-env")
MARKER = ".lockstep-env"
START_TIMEOUT = 600.0
STOP_TIMEOUT = 90.0
OPERATOR_RESTART_SECONDS = 5.0
TOKEN_DURATION = "8760h"  # the environment lives for days; the token must outlive it


@dataclass(frozen=True)
class Layout:
    """Where things are in an environment directory."""

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def env_sh(self) -> Path:
        return self.root / "env.sh"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def database_url(self) -> Path:
        return self.root / "database-url"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    @property
    def operator(self) -> Path:
        return self.root / "operator"

    @property
    def executor(self) -> Path:
        return self.root / "executor"


def read_state(layout: Layout) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(layout.state.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def write_state(layout: Layout, state: dict[str, Any]) -> None:
    tmp = layout.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(layout.state)


# ------------------------------------------------------------------------------ processes


def _proc_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (Z for a zombie), or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def supervisor_running(layout: Layout, state: dict[str, Any] | None) -> bool:
    """The supervisor named in the state is alive and is this directory's (not a reused pid)."""
    if not state or not state.get("pid"):
        return False
    pid = int(state["pid"])
    if _proc_state(pid) in (None, "Z", "X"):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"tests.env" in argv and str(layout.root).encode() in argv


def process_groups_of(owner: int) -> list[int]:
    """The process groups that process `owner` started and has not stopped (tests.env records
    every group it starts in PID_DIR)."""
    groups = []
    if PID_DIR.is_dir():
        for entry in PID_DIR.iterdir():
            with contextlib.suppress(ValueError, OSError):
                if int(entry.read_text() or 0) == owner:
                    groups.append(int(entry.name))
    return sorted(groups)


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies waiting to be reaped do not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def kill_groups(groups: list[int], timeout: float = 10.0) -> None:
    """SIGKILL each process group, and wait until none of their processes runs."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        unregister_pid(pgid)
    deadline = time.monotonic() + timeout
    while any(group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _proc_state(pid) in (None, "Z", "X"):
            return True
        time.sleep(0.2)
    return False


# ------------------------------------------------------------------------------ the parts


class EnvironmentExecutor(LocalPodExecutor):
    """The pod executor, with a claim's files in the directory of its provisioned volume."""

    def __init__(self, kubeconfig: Path, work_dir: Path, path_prefix: list[Path], volumes: Path):
        super().__init__(kubeconfig, work_dir, path_prefix)
        self.volumes = volumes

    def volume_dir(self, namespace: str, claim_name: str) -> Path:
        try:
            claim = self.core.read_namespaced_persistent_volume_claim(claim_name, namespace)
            if claim.spec.volume_name:
                volume = self.core.read_persistent_volume(claim.spec.volume_name)
                if volume.spec.host_path:
                    path = Path(volume.spec.host_path.path)
                    if path.is_relative_to(self.volumes):
                        return path
        except ApiException:
            pass
        return super().volume_dir(namespace, claim_name)


class Environment:
    """Every part of the environment, started in order and stopped in reverse."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.cluster = Cluster(layout.root / "cluster")
        self.postgres = PostgresServer(layout.root / "postgres")
        self.prometheus = PrometheusServer(layout.prometheus)
        self.provisioner: LocalPathProvisioner | None = None
        self.executor: EnvironmentExecutor | None = None
        self.operator: OperatorProcess | None = None
        self._started: list[Any] = []
        self._last_operator_start = 0.0

    def start(self, say: Any = print) -> None:
        layout = self.layout
        say(
            "starting the control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
        )
        self._started.append(self.cluster)
        self.cluster.start()
        say("starting PostgreSQL and Prometheus")
        self._started.append(self.postgres)
        self.postgres.start()
        self._started.append(self.prometheus)
        self.prometheus.start()
        say(f"installing the StorageClass {STORAGE_CLASS} and its provisioner")
        self.provisioner = LocalPathProvisioner(self.cluster.kubeconfig, layout.volumes)
        self.provisioner.install()
        self._started.append(self.provisioner)
        self.provisioner.start()
        say("starting the pod executor")
        self.executor = EnvironmentExecutor(
            self.cluster.kubeconfig, layout.executor, [self.postgres.bindir], layout.volumes
        )
        self._started.append(self.executor)
        self.executor.start()
        say("installing the CRDs and RBAC, starting the operator as its ServiceAccount")
        install_rbac(self.cluster)
        layout.operator.mkdir(exist_ok=True)
        token_kubeconfig = service_account_kubeconfig(
            self.cluster, layout.operator / "kubeconfig", duration=TOKEN_DURATION
        )
        self.operator = OperatorProcess(token_kubeconfig, layout.operator)
        self._started.append(self.operator)
        self._start_operator()
        shutil.copyfile(self.cluster.kubeconfig, layout.kubeconfig)
        layout.kubeconfig.chmod(0o600)
        write_private(layout.database_url, self.postgres.url() + "\n")
        write_private(layout.env_sh, self.env_sh())

    def _start_operator(self) -> None:
        assert self.operator is not None
        self._last_operator_start = time.monotonic()
        self.operator.start()

    def keep_operator_running(self, say: Any = print) -> bool:
        """Start the operator again if it exited, as its Deployment would (not in a tight
        loop); True when it was started again (on new ports)."""
        operator = self.operator
        if operator is None or (operator.process is not None and operator.process.alive()):
            return False
        if time.monotonic() - self._last_operator_start < OPERATOR_RESTART_SECONDS:
            return False
        if operator.process is not None:
            say(f"the operator exited; starting it again:\n{operator.process.tail(20)}")
            operator.process.stop()
        try:
            self._start_operator()
        except Exception as error:
            say(f"the operator did not start: {error}")
            return False
        return True

    def stop(self, say: Any = print) -> None:
        for part in reversed(self._started):
            try:
                part.stop()
            except Exception as error:  # keep stopping the rest
                say(f"stopping {type(part).__name__}: {error}")
        self._started.clear()

    # ------------------------------------------------------------------ what to tell the user

    def path_entries(self) -> list[Path]:
        """kubectl (and helm) of the pinned version, lockstep and kubectl-lockstep, psql."""
        return [self.cluster.bin_dir, Path(sys.executable).parent, self.postgres.bindir]

    def env_sh(self) -> str:
        path = ":".join(shlex.quote(str(p)) for p in self.path_entries())
        lines = {
            "LOCKSTEP_ENV": shlex.quote(str(self.layout.root)),
            "KUBECONFIG": shlex.quote(str(self.layout.kubeconfig)),
            "PATH": f'{path}:"$PATH"',
            "LOCKSTEP_DATABASE_URL": shlex.quote(self.postgres.url()),
            "LOCKSTEP_PROMETHEUS_URL": shlex.quote(self.prometheus.url),
        }
        return "".join(f"export {name}={value}\n" for name, value in lines.items())

    def state(self) -> dict[str, Any]:
        """What `make up` prints and `make down` needs (no password: that is in env.sh)."""
        assert self.operator is not None
        return {
            "pid": os.getpid(),
            "phase": "ready",
            "startedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dir": str(self.layout.root),
            "repo": str(REPO),
            "kubeconfig": str(self.layout.kubeconfig),
            "kubectl": str(self.cluster.bin_dir / "kubectl"),
            "path": [str(p) for p in self.path_entries()],
            "apiServer": f"https://127.0.0.1:{self.cluster.api_port}",
            "postgres": {
                "address": f"127.0.0.1:{self.postgres.port}",
                "user": SUPERUSER,
                "version": self.postgres.version,
                "urlFile": str(self.layout.database_url),
            },
            "prometheus": {
                "url": self.prometheus.url,
                "targetsDir": str(self.prometheus.targets_dir),
            },
            "storageClass": STORAGE_CLASS,
            "volumes": str(self.layout.volumes),
            "operator": {
                "serviceAccount": f"{OPERATOR_NAMESPACE}/{SERVICE_ACCOUNT}",
                "log": str(self.operator.log_path),
                "metrics": f"http://127.0.0.1:{self.operator.metrics_port}/metrics",
            },
            "executor": {"log": str(self.layout.executor / "executor.log"), "label": EXEC},
            "envFile": str(self.layout.env_sh),
        }


# ------------------------------------------------------------------------------ commands


def summary(state: dict[str, Any]) -> str:
    """What a user needs to start working, from the state of a running environment."""
    root, postgres, prometheus = state["dir"], state["postgres"], state["prometheus"]
    example_target = Path(prometheus["targetsDir"]) / "myapp.json"
    default_dir = root == str(DEFAULT_DIR)
    env_command = (
        'eval "$(make -s env)"' if default_dir else f'eval "$(make -s env LOCKSTEP_ENV={root})"'
    )
    return "\n".join(
        [
            f"The lockstep environment is up in {root} (stop it with `make down`).",
            "",
            "Use it from a shell:",
            f"  {env_command}        # or: source {state['envFile']}",
            "which sets",
            f"  KUBECONFIG={state['kubeconfig']}",
            f"  PATH={':'.join(state['path'])}:$PATH",
            "       (kubectl and helm of the cluster's version, lockstep, kubectl-lockstep, psql)",
            "  LOCKSTEP_DATABASE_URL   the PostgreSQL superuser's URL, password included",
            "  LOCKSTEP_PROMETHEUS_URL the Prometheus address",
            "",
            f"Kubernetes  {state['apiServer']}, nodes kwok-node-0 and kwok-node-1 (kwok: pods "
            "become Ready, no container runs)",
            f"PostgreSQL  {postgres['version']} on {postgres['address']}, superuser "
            f"{postgres['user']} (URL with password: $LOCKSTEP_DATABASE_URL)",
            f"Prometheus  {prometheus['url']}, scrapes every 1s",
            f"Operator    lockstep run as ServiceAccount {state['operator']['serviceAccount']}; "
            f"log {state['operator']['log']}",
            f"Storage     default StorageClass {state['storageClass']}: each claim gets a "
            f"directory under {state['volumes']}",
            f"Pods        pods labelled {state['executor']['label']}=true run their command on "
            f"this machine (backup Jobs: spec.backup.podLabels); log {state['executor']['log']}",
            "",
            "Your own metrics: Prometheus scrapes every target listed in "
            f"{prometheus['targetsDir']}/*.json, for example",
            f'  echo \'[{{"targets": ["127.0.0.1:9464"], "labels": {{"app": "myapp"}}}}]\' '
            f"> {example_target}",
            "",
            "Next: docs/tutorial.md releases an application of your own here.",
        ]
    )


def _clean(layout: Layout, state: dict[str, Any] | None) -> None:
    """Stop what an earlier supervisor of this directory left running, remove the directory."""
    if state and state.get("pid"):
        kill_groups(process_groups_of(int(state["pid"])))
    shutil.rmtree(layout.root, ignore_errors=True)


def _refuse_foreign(layout: Layout) -> str | None:
    """A reason not to touch the directory: it exists, is not empty and is not ours."""
    if layout.root.is_dir() and any(layout.root.iterdir()) and not layout.marker.exists():
        return (
            f"{layout.root} exists and is not a lockstep environment: choose another "
            "directory (LOCKSTEP_ENV=...)"
        )
    return None


def up(root: Path, timeout: float = START_TIMEOUT) -> int:
    """Start the supervisor in the background; return once the environment is ready."""
    layout = Layout(root.absolute())
    state = read_state(layout)
    if supervisor_running(layout, state) and state and state.get("phase") == "ready":
        print("The lockstep environment is already running.\n")
        print(summary(state))
        return 0
    if supervisor_running(layout, state):
        print(f"An environment is starting or stopping in {layout.root}; see {layout.log}")
        return 1
    refusal = _refuse_foreign(layout)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    _clean(layout, state)
    layout.root.mkdir(parents=True)
    layout.root.chmod(0o755)  # PostgreSQL runs as an unprivileged user and enters it
    layout.marker.touch()
    print(f"Starting the lockstep environment in {layout.root} (log: {layout.log}) ...", flush=True)
    with layout.log.open("ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "tests.env", "up", "--foreground", str(layout.root)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(layout)
        phase = (state or {}).get("phase")
        if phase == "ready" and state:
            print()
            print(summary(state))
            return 0
        if phase in ("failed", "stopped") or supervisor.poll() is not None:
            break
        time.sleep(0.5)
    else:
        print(f"the environment did not start within {timeout:.0f}s", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(supervisor.pid, signal.SIGTERM)
    supervisor.wait(STOP_TIMEOUT)
    kill_groups(process_groups_of(supervisor.pid))
    tail = layout.log.read_text(errors="replace").splitlines()[-30:]
    print("The environment did not start:\n" + "\n".join(tail), file=sys.stderr)
    return 1


def down(root: Path) -> int:
    """Stop exactly what `up` started in `root`, and remove the directory."""
    layout = Layout(root.absolute())
    if not layout.root.exists():
        print(f"No lockstep environment in {layout.root}.")
        return 0
    refusal = _refuse_foreign(layout)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    state = read_state(layout)
    if supervisor_running(layout, state):
        assert state is not None
        pid = int(state["pid"])
        print(f"Stopping the lockstep environment in {layout.root} ...", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, STOP_TIMEOUT):
            print("the supervisor did not stop in time: killing it", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 10)
    left = process_groups_of(int((state or {}).get("pid") or 0))
    if left:
        print(f"killing the process groups it left behind: {left}", file=sys.stderr)
    _clean(layout, state)
    print(f"Stopped; {layout.root} removed.")
    return 0


def env(root: Path) -> int:
    """Print the export lines of a running environment (for `eval`)."""
    layout = Layout(root.absolute())
    state = read_state(layout)
    if not supervisor_running(layout, state) or not layout.env_sh.exists():
        print(f"No running lockstep environment in {layout.root}: run `make up`", file=sys.stderr)
        return 1
    print(layout.env_sh.read_text(), end="")
    return 0


def supervise(root: Path) -> int:
    """Run the environment in this process until SIGTERM or SIGINT (`up --foreground`)."""
    layout = Layout(root.absolute())
    reap_strays()
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.root.chmod(0o755)
    layout.marker.touch()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def say(text: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        print(f"{stamp} {text}", flush=True)

    write_state(layout, {"pid": os.getpid(), "phase": "starting", "dir": str(layout.root)})
    environment = Environment(layout)
    code = 0
    try:
        environment.start(say)
        if not stop.is_set():
            state = environment.state()
            write_state(layout, state)
            say("ready\n" + summary(state))
        while not stop.wait(1.0):
            if environment.keep_operator_running(say):
                write_state(layout, {**environment.state(), "startedAt": state["startedAt"]})
    except Exception as error:
        say(f"failed: {error}\n{traceback.format_exc()}")
        write_state(layout, {"pid": os.getpid(), "phase": "failed", "error": str(error)})
        code = 1
    finally:
        say("stopping")
        environment.stop(say)
        if code == 0:
            write_state(layout, {"pid": os.getpid(), "phase": "stopped"})
        say("stopped")
    return code
