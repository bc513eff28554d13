"""A test-only stand-in for a kubelet: runs the container of labelled pods as local processes.

kwok leaves pods labelled `lockstep.dev/test-exec: "true"` alone (see `kwok_stages` in
`cluster.py`). `LocalPodExecutor` watches those pods and, once one is scheduled, does what a
kubelet would do with it, on this machine:

- resolves its container's env (plain values, `$(VAR)` references, Secret and ConfigMap keys
  through the API, a few field references), and retries while a Secret or ConfigMap is missing
  (CreateContainerConfigError);
- gives it a pod IP (from 10.245.0.0/16, which the EndpointSlice controller publishes) and maps
  each container port to a free local port: the process gets `PORT` (its first port) and
  `PORT_<containerPort>` in its environment, and the pod the annotation
  `lockstep.dev/test-ports` (`{"8080": 41234}`), which the router (`router.py`) reads to send
  a request for `<pod IP>:8080` to `127.0.0.1:41234`. Each pod has its own network namespace in
  Kubernetes; here they share one, so the process is told where to listen;
- maps its volumes to local directories: a PersistentVolumeClaim to
  `work_dir/pvc/<namespace>/<claimName>` (kept across pods), an emptyDir to a fresh directory;
  env values that start with a mount path are rewritten to the local path, and the
  termination message file (`TERMINATION_LOG`, `terminationMessagePath`) to a local file;
- runs `command` + `args` (the image is ignored; PATH starts with `path_prefix`) and reports
  the pod Running; with a `readinessProbe` (httpGet or tcpSocket) the pod is Ready only while
  the probe passes (`initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
  `successThreshold`, `failureThreshold` as a kubelet counts them; the probe keeps running
  while the pod terminates), without one as soon as it runs. liveness and startup probes are
  not run;
- restarts the container per `restartPolicy` (Always, OnFailure) with a back-off that starts
  at 1 s and doubles up to 30 s (a kubelet's starts at 10 s), counting `restartCount`;
  otherwise reports the pod Succeeded or Failed with the exit code and termination message, so
  the real Job controller completes or fails a Job; stops it at `activeDeadlineSeconds`;
- on deletion sends SIGTERM to the process group, waits the pod's grace period, then SIGKILL,
  and removes the pod object (a kubelet's final delete), so the pod stays Terminating, and its
  endpoint `terminating`, while the process shuts down;
- with `prometheus`, has each running pod annotated `prometheus.io/scrape: "true"` scraped
  (`prometheus.io/port`, default its first port; `prometheus.io/path`, default /metrics), with
  the target labels namespace, pod, app and color (from `lockstep.dev/color`).

What it runs is logged to `work_dir/executor.log` (env names, never values); the container's
output goes to `work_dir/pods/<namespace>/<pod>.log`.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .cluster import EXEC, Cluster
from .informer import Informer
from .processes import free_port, register_pid, unregister_pid, wait_until

if TYPE_CHECKING:
    from .prometheus import PrometheusServer

SELECTOR = f"{EXEC}=true"
PORTS_ANNOTATION = "lockstep.dev/test-ports"
COLOR_LABEL = "lockstep.dev/color"
POD_NETWORK = ipaddress.ip_network("10.245.0.0/16")  # kwok's pods take 10.244.0.0/16
HOST_IP = "10.0.0.1"  # kwok's --node-ip
MAX_MESSAGE_BYTES = 4096  # what a kubelet keeps of a termination message
FALLBACK_LOG_LINES = 80  # terminationMessagePolicy FallbackToLogsOnError, as a kubelet does
FALLBACK_LOG_BYTES = 2048
RETRY_SECONDS = 1.0
DEFAULT_GRACE_SECONDS = 30
RESTART_BACKOFF_SECONDS, MAX_RESTART_BACKOFF_SECONDS = 1.0, 30.0
TICK_SECONDS = 0.05
STORAGE_CLASS = "lockstep-test"

# What the client raises while the API server is down or restarting.
UNREACHABLE = (OSError, urllib3.exceptions.HTTPError)

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def api_client(kubeconfig: Path) -> client.ApiClient:
    """An API client for `kubeconfig` with a connection pool big enough for a few threads."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NotReady(Exception):
    """The container cannot start yet (a kubelet's CreateContainerConfigError): retried."""


class Unsupported(Exception):
    """The pod asks for something this executor does not do: the pod fails."""


# --------------------------------------------------------------------------- the container


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def local_value(value: str, mounts: dict[str, Path]) -> str:
    """`value` with a leading container mount path replaced by its local directory."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        base = mount_path.rstrip("/")
        if value == base or value.startswith(base + "/"):
            return str(mounts[mount_path]) + value[len(base) :]
    return value


def restarts_after(policy: str, exit_code: int, timed_out: bool) -> bool:
    """Whether a kubelet starts the container again after it exited (`restartPolicy`)."""
    if timed_out or policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True  # Always, the default


def restart_backoff(restarts: int) -> float:
    """Seconds to wait before restart number `restarts` (1, 2, ...): doubling, capped."""
    return float(
        min(RESTART_BACKOFF_SECONDS * 2 ** max(restarts - 1, 0), MAX_RESTART_BACKOFF_SECONDS)
    )


@dataclass
class Network:
    """A pod's IP and where its container ports listen on this machine."""

    ip: str
    ports: dict[int, int]  # containerPort -> local port
    names: dict[str, int]  # port name -> containerPort

    def local_port(self, port: int | str) -> int:
        """The local port of a container port given by number or by name (a probe's port)."""
        number = self.names.get(port) if isinstance(port, str) else port
        if isinstance(port, str) and number is None and port.isdigit():
            number = int(port)
        if number is None or number not in self.ports:
            raise Unsupported(f"port {port!r} is not a containerPort of the pod")
        return self.ports[number]


@dataclass(frozen=True)
class Probe:
    """A readinessProbe with its timings, pointed at the local port."""

    kind: str  # "http" or "tcp"
    port: int
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def readiness(cls, container: dict[str, Any], network: Network) -> Probe | None:
        spec = container.get("readinessProbe")
        if not spec:
            return None
        if "httpGet" in spec:
            get = spec["httpGet"]
            if get.get("scheme", "HTTP") != "HTTP":
                raise Unsupported("the local executor probes httpGet over plain HTTP only")
            kind, port = "http", network.local_port(get["port"])
            path = get.get("path", "/")
            headers = tuple((h["name"], h["value"]) for h in get.get("httpHeaders") or [])
        elif "tcpSocket" in spec:
            kind, port = "tcp", network.local_port(spec["tcpSocket"]["port"])
            path, headers = "", ()
        else:
            raise Unsupported("the local executor runs httpGet and tcpSocket readiness probes only")
        return cls(
            kind,
            port,
            path,
            headers,
            initial_delay=float(spec.get("initialDelaySeconds", 0)),
            period=float(spec.get("periodSeconds", 10)),
            timeout=float(spec.get("timeoutSeconds", 1)),
            success_threshold=int(spec.get("successThreshold", 1)),
            failure_threshold=int(spec.get("failureThreshold", 3)),
        )

    def passes(self) -> bool:
        """One probe, as a kubelet runs it: HTTP 200-399, or a TCP connection accepted."""
        try:
            if self.kind == "tcp":
                with socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout):
                    return True
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                headers = {"User-Agent": "kube-probe/1.36", **dict(self.headers)}
                connection.request("GET", self.path, headers={**headers, "Connection": "close"})
                return 200 <= connection.getresponse().status < 400
            finally:
                connection.close()
        except (OSError, http.client.HTTPException):
            return False


@dataclass
class Readiness:
    """Consecutive probe results to Ready, as a kubelet counts them: not Ready until
    `successThreshold` passes in a row, then not Ready after `failureThreshold` failures."""

    success_threshold: int = 1
    failure_threshold: int = 3
    ready: bool = False
    successes: int = 0
    failures: int = 0

    def record(self, passed: bool) -> bool:
        """Count one result; True when Ready changed."""
        if passed:
            self.successes, self.failures = self.successes + 1, 0
            if not self.ready and self.successes >= self.success_threshold:
                self.ready = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.ready and self.failures >= self.failure_threshold:
                self.ready = False
                return True
        return False


@dataclass
class Plan:
    """What to run for one pod, with local paths."""

    argv: list[str]
    command: list[str]  # before $(VAR) expansion, for the log: values may be secret
    env: dict[str, str]
    cwd: Path
    termination_log: Path
    fallback_to_logs: bool
    timeout: float | None
    env_names: list[str] = field(default_factory=list)


@dataclass
class Exit:
    """How one run of the container ended."""

    code: int
    started: str
    finished: str
    timed_out: bool = False


class PodWorker:
    """What a kubelet's pod worker does for one pod, on its own thread."""

    def __init__(self, executor: LocalPodExecutor, pod: dict[str, Any]) -> None:
        self.executor = executor
        self.pod = pod
        self.name = _name(pod)
        self.uid: str = pod["metadata"]["uid"]
        self.deleting = threading.Event()
        self.grace_seconds = float(
            pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        )
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"pod-{self.name}", daemon=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.network: Network | None = None
        self.started_at: str | None = None
        # The status not yet written: a kubelet's status manager keeps retrying while the API
        # server is unreachable, with the newest status (merged over what was not sent).
        self._unsent: dict[str, Any] | None = None
        self._last_try = 0.0

    @property
    def log(self) -> logging.Logger:
        return self.executor.log

    @property
    def stopping(self) -> bool:
        return self.deleting.is_set() or self.executor.stopped

    def delete(self, grace_seconds: float | None) -> None:
        """The pod is being deleted: stop the container within `grace_seconds`."""
        if grace_seconds is not None:
            self.grace_seconds = grace_seconds
        if not self.deleting.is_set():
            self.log.info("%s: deleted, stopping (grace %.0fs)", self.name, self.grace_seconds)
        self.deleting.set()
        if self.finished.is_set():
            self.executor.finalize(self.pod)

    def set_status(self, status: dict[str, Any]) -> None:
        self._unsent = {**(self._unsent or {}), **status}
        self.sync_status()

    def sync_status(self) -> bool:
        """Write the unsent status; False while the API server does not take it."""
        if self._unsent is None:
            return True
        self._last_try = time.monotonic()
        try:
            self.executor.patch_status(self.pod, self._unsent)
        except ApiException as error:
            if not _transient(error):
                self.log.error("%s: status refused: %s", self.name, error.reason)
                self._unsent = None
                return True
            return False
        except UNREACHABLE:
            return False
        self._unsent = None
        return True

    def sync_status_until_written(self) -> None:
        while not self.sync_status() and not self.stopping:
            self.deleting.wait(RETRY_SECONDS / 2)

    def run(self) -> None:
        try:
            self._run()
        except Unsupported as error:
            self.log.error("%s: %s", self.name, error)
            self.executor.report_unsupported(self, str(error))
            self.sync_status_until_written()
        except Exception:
            if not self.executor.stopped:
                self.log.exception("%s: the executor failed", self.name)
        finally:
            self.finished.set()
            if self.deleting.is_set() and not self.executor.stopped:
                self.executor.finalize(self.pod)

    def _run(self) -> None:
        plan = self.executor.plan_until_ready(self)
        if plan is None:
            return
        container = self.pod["spec"]["containers"][0]
        self.network = self.executor.attach_network(self.pod)
        plan.env.update(port_env(self.network))
        probe = Probe.readiness(container, self.network)
        policy = self.pod["spec"].get("restartPolicy", "Always")
        restarts, last = 0, None
        while True:
            readiness = Readiness(
                probe.success_threshold if probe else 1, probe.failure_threshold if probe else 1
            )
            exit_ = self._execute(plan, probe, readiness, restarts, last)
            if self.stopping:
                return
            if not restarts_after(policy, exit_.code, exit_.timed_out):
                self.executor.report_terminated(self, plan, exit_, restarts)
                self.sync_status_until_written()
                return
            restarts += 1
            last = exit_
            backoff = restart_backoff(restarts)
            self.log.info("%s: restarting in %.0fs (restart %d)", self.name, backoff, restarts)
            self.executor.report_back_off(self, plan, exit_, restarts)
            if self.deleting.wait(backoff) or self.executor.stopped:
                return

    def _execute(
        self,
        plan: Plan,
        probe: Probe | None,
        readiness: Readiness,
        restarts: int,
        last: Exit | None,
    ) -> Exit:
        output = plan.termination_log.parent.with_suffix(".log")
        plan.termination_log.write_bytes(b"")
        self.log.info(
            "%s: running %s (env: %s; cwd %s; timeout %s)",
            self.name,
            _describe(plan.command),
            ", ".join(plan.env_names) or "-",
            plan.cwd,
            f"{plan.timeout:.0f}s" if plan.timeout else "none",
        )
        started, began = now(), time.monotonic()
        with output.open("ab") as log:
            try:
                process = subprocess.Popen(
                    plan.argv,
                    env=plan.env,
                    cwd=plan.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                # What a container runtime reports for a command it cannot start.
                plan.termination_log.write_text(f"cannot start the command: {error.strerror}")
                self.log.info("%s: cannot start %s: %s", self.name, plan.argv[0], error.strerror)
                return Exit(128, started, now())
        register_pid(process.pid)
        self.process = process
        try:
            self.executor.report_running(
                self, started, ready=probe is None, restarts=restarts, last=last
            )
            self.executor.scrape(self)
            timed_out = self._supervise(
                process, plan, probe, readiness, began, started, restarts, last
            )
        finally:
            if process.poll() is None:
                _kill(process)
            process.wait()
            self.process = None
            unregister_pid(process.pid)
            self.executor.unscrape(self)
        code = process.returncode
        exit_code = code if code >= 0 else 128 - code
        self.log.info(
            "%s: exited %d after %.1fs%s",
            self.name,
            exit_code,
            time.monotonic() - began,
            " (deadline exceeded)" if timed_out else "",
        )
        return Exit(exit_code, started, now(), timed_out)

    def _supervise(
        self,
        process: subprocess.Popen[bytes],
        plan: Plan,
        probe: Probe | None,
        readiness: Readiness,
        began: float,
        started: str,
        restarts: int,
        last: Exit | None,
    ) -> bool:
        """Wait for the process to exit, probing it, and stop it on deletion or at its
        deadline. True when the deadline stopped it."""
        next_probe = began + (probe.initial_delay if probe else 0.0)
        kill_at: float | None = None
        while process.poll() is None:
            moment = time.monotonic()
            if self.executor.stopped:
                _kill(process)
                break
            if self.deleting.is_set() and kill_at is None:
                _signal(process, signal.SIGTERM)
                kill_at = moment + self.grace_seconds
            if kill_at is not None and moment >= kill_at:
                self.log.info("%s: grace period over, SIGKILL", self.name)
                _kill(process)
            if self._unsent is not None and moment - self._last_try >= RETRY_SECONDS / 2:
                self.sync_status()
            if plan.timeout is not None and moment - began >= plan.timeout:
                _kill(process)
                process.wait()
                return True
            if probe is not None and moment >= next_probe:
                if readiness.record(probe.passes()) and process.poll() is None:
                    self.log.info("%s: ready %s", self.name, readiness.ready)
                    self.executor.report_running(
                        self, started, ready=readiness.ready, restarts=restarts, last=last
                    )
                next_probe = max(next_probe + probe.period, time.monotonic())
                continue
            wait = TICK_SECONDS if probe is None else min(TICK_SECONDS, next_probe - moment)
            if kill_at is None:
                self.deleting.wait(max(wait, 0.005))  # wakes at once on deletion
            else:
                time.sleep(TICK_SECONDS)
        return False


class LocalPodExecutor:
    """Runs the single container of each `lockstep.dev/test-exec` pod on this machine."""

    def __init__(
        self,
        kubeconfig: Path,
        work_dir: Path,
        path_prefix: list[Path],
        prometheus: PrometheusServer | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.work_dir = work_dir
        self.path_prefix = list(path_prefix)
        self.prometheus = prometheus
        self.log = logging.getLogger(f"{__name__}.{uuid.uuid4().hex[:6]}")
        self.log.propagate = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: dict[str, PodWorker] = {}
        self._addresses = iter(POD_NETWORK.hosts())
        self._core: client.CoreV1Api | None = None
        self._informer: Informer | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.work_dir / "executor.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.log.addHandler(handler)
        self.log.setLevel(logging.INFO)
        self._core = client.CoreV1Api(api_client(self.kubeconfig))
        self._informer = Informer(
            "pods",
            self.core.list_pod_for_all_namespaces,
            self._consider,
            self.log,
            label_selector=SELECTOR,
        )
        self._informer.start()

    def stop(self) -> None:
        self._stop.set()
        if self._informer is not None:
            self._informer.stop()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            if worker.process is not None:
                _kill(worker.process)
        for worker in workers:
            worker.thread.join(timeout=10)
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def volume_dir(self, namespace: str, claim_name: str) -> Path:
        """The local directory that stands for a PersistentVolumeClaim."""
        return self.work_dir / "pvc" / namespace / claim_name

    @property
    def core(self) -> client.CoreV1Api:
        assert self._core is not None, "start() the executor first"
        return self._core

    def running(self) -> dict[str, int]:
        """The pods whose container runs now ("namespace/name"), with their process ids."""
        with self._lock:
            workers = list(self._workers.values())
        return {w.name: w.process.pid for w in workers if w.process is not None}

    # ---------------------------------------------------------------------- watch

    def _consider(self, kind: str, pod: dict[str, Any]) -> None:
        metadata, spec = pod["metadata"], pod.get("spec") or {}
        uid = metadata["uid"]
        with self._lock:
            worker = self._workers.get(uid)
        if kind == "DELETED":
            with self._lock:
                self._workers.pop(uid, None)
            if worker is not None and not worker.finished.is_set():
                worker.delete(0)  # removed without a grace period (a force delete)
            return
        if metadata.get("deletionTimestamp"):
            grace = metadata.get("deletionGracePeriodSeconds")
            if worker is not None:
                worker.pod = pod
                worker.delete(None if grace is None else float(grace))
            else:  # never started here: nothing to stop
                self.finalize(pod)
            return
        if worker is not None:
            worker.pod = pod
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase != "Pending" or not spec.get("nodeName"):
            return
        worker = PodWorker(self, pod)
        with self._lock:
            self._workers[uid] = worker
        worker.thread.start()

    def finalize(self, pod: dict[str, Any]) -> None:
        """Remove the pod object once its container is gone, as a kubelet does."""

        def delete() -> None:
            while not self.stopped:
                try:
                    self.core.delete_namespaced_pod(
                        pod["metadata"]["name"],
                        pod["metadata"]["namespace"],
                        grace_period_seconds=0,
                        body=client.V1DeleteOptions(
                            grace_period_seconds=0,
                            preconditions=client.V1Preconditions(uid=pod["metadata"]["uid"]),
                        ),
                    )
                    return
                except ApiException as error:
                    if error.status in (404, 409):  # gone already, or another pod by now
                        return
                    self.log.warning("%s: final delete failed: %s", _name(pod), error.reason)
                except UNREACHABLE as error:  # the API server is unreachable: try again
                    self.log.warning("%s: final delete failed: %r", _name(pod), error)
                self._stop.wait(RETRY_SECONDS)

        threading.Thread(target=delete, name=f"finalize-{_name(pod)}", daemon=True).start()

    # ------------------------------------------------------------------------ run

    def plan_until_ready(self, worker: PodWorker) -> Plan | None:
        """Resolve the pod's env and volumes, retrying while a Secret or ConfigMap is missing."""
        reported = ""
        while not worker.stopping:
            try:
                return self._plan(worker.pod)
            except NotReady as error:
                if str(error) != reported:
                    reported = str(error)
                    self.log.info("%s: waiting: %s", worker.name, reported)
                    self._report_waiting(worker, reported)
            worker.deleting.wait(RETRY_SECONDS)
        return None

    def attach_network(self, pod: dict[str, Any]) -> Network:
        """A pod IP and a free local port for each container port, recorded on the pod."""
        container = pod["spec"]["containers"][0]
        ports: dict[int, int] = {}
        names: dict[str, int] = {}
        for port in container.get("ports") or []:
            number = int(port["containerPort"])
            ports[number] = free_port()
            if port.get("name"):
                names[port["name"]] = number
        with self._lock:
            ip = str(next(self._addresses))
        while ports:
            try:
                self.core.patch_namespaced_pod(
                    pod["metadata"]["name"],
                    pod["metadata"]["namespace"],
                    {"metadata": {"annotations": {PORTS_ANNOTATION: json.dumps(ports)}}},
                )
                break
            except (ApiException, *UNREACHABLE) as error:
                if isinstance(error, ApiException) and not _transient(error):
                    raise
                self.log.warning("%s: cannot record its ports: %r", _name(pod), error)
                if self._stop.wait(RETRY_SECONDS):
                    break
        return Network(ip, ports, names)

    def _plan(self, pod: dict[str, Any]) -> Plan:
        spec = pod["spec"]
        containers = spec.get("containers") or []
        if len(containers) != 1 or spec.get("initContainers"):
            raise Unsupported("the local executor runs pods with exactly one container")
        container = containers[0]
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if not container.get("command"):
            raise Unsupported("the local executor needs an explicit command (it ignores images)")
        pod_dir = self.work_dir / "pods" / pod["metadata"]["namespace"] / pod["metadata"]["name"]
        shutil.rmtree(pod_dir, ignore_errors=True)
        pod_dir.mkdir(parents=True)
        mounts = self._mounts(pod, container, pod_dir)
        termination_log = pod_dir / "termination-log"
        termination_log.touch()
        message_path = container.get("terminationMessagePath") or "/dev/termination-log"

        env = self._env(pod, container)
        local = {}
        for key, value in env.items():
            if key == "TERMINATION_LOG" or value == message_path:
                local[key] = str(termination_log)
            else:
                local[key] = local_value(value, mounts)
        path = os.pathsep.join([*map(str, self.path_prefix), os.environ.get("PATH", "")])
        process_env = {
            "HOME": str(pod_dir),
            "HOSTNAME": pod["metadata"]["name"],
            **local,
            "PATH": path,
        }
        working_dir = container.get("workingDir")
        cwd = Path(local_value(working_dir, mounts)) if working_dir else pod_dir
        if not cwd.is_absolute() or not cwd.is_dir():
            cwd = pod_dir
        deadline = spec.get("activeDeadlineSeconds")
        return Plan(
            argv=[expand(arg, local) for arg in argv],
            command=argv,
            env=process_env,
            cwd=cwd,
            termination_log=termination_log,
            fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
            timeout=float(deadline) if deadline else None,
            env_names=sorted(env),
        )

    def _mounts(
        self, pod: dict[str, Any], container: dict[str, Any], pod_dir: Path
    ) -> dict[str, Path]:
        namespace = pod["metadata"]["namespace"]
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise Unsupported(f"volume {mount['name']!r} is mounted but not defined")
            if "persistentVolumeClaim" in volume:
                base = self.volume_dir(namespace, volume["persistentVolumeClaim"]["claimName"])
            elif "emptyDir" in volume:
                base = pod_dir / "volumes" / mount["name"]
            else:
                raise Unsupported(
                    f"volume {mount['name']!r}: the local executor maps only "
                    "persistentVolumeClaim and emptyDir volumes"
                )
            local = base / mount["subPath"] if mount.get("subPath") else base
            local.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = local
        return mounts

    def _env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                data = self._secret(namespace, source["secretRef"])
            elif "configMapRef" in source:
                data = self._config_map(namespace, source["configMapRef"])
            else:
                raise Unsupported(f"envFrom {source}: only secretRef and configMapRef")
            env.update({prefix + key: value for key, value in (data or {}).items()})
        for item in container.get("env") or []:
            name = item["name"]
            if "valueFrom" not in item:
                env[name] = expand(item.get("value", ""), env)
                continue
            value = self._value_from(pod, name, item["valueFrom"])
            if value is not None:
                env[name] = value
        return env

    def _value_from(self, pod: dict[str, Any], name: str, source: dict[str, Any]) -> str | None:
        namespace = pod["metadata"]["namespace"]
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            is_secret = "secretKeyRef" in source
            ref = source["secretKeyRef" if is_secret else "configMapKeyRef"]
            data = (self._secret if is_secret else self._config_map)(namespace, ref)
            kind = "Secret" if is_secret else "ConfigMap"
            if data is None:
                return None
            if ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise NotReady(
                    f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}"
                )
            return data[ref["key"]]
        if "fieldRef" in source:
            return _field(pod, source["fieldRef"]["fieldPath"])
        raise Unsupported(
            f"env {name}: the local executor resolves value, secretKeyRef, "
            "configMapKeyRef and fieldRef only"
        )

    def _secret(self, namespace: str, ref: dict[str, Any]) -> dict[str, str] | None:
        try:
            secret = self.core.read_namespaced_secret(ref["name"], namespace)
        except ApiException as error:
            if error.status == 404 and ref.get("optional"):
                return None
            if error.status == 404:
                raise NotReady(f'secret "{ref["name"]}" not found') from None
            raise
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        return {**data, **(secret.string_data or {})}

    def _config_map(self, namespace: str, ref: dict[str, Any]) -> dict[str, str] | None:
        try:
            config_map = self.core.read_namespaced_config_map(ref["name"], namespace)
        except ApiException as error:
            if error.status == 404 and ref.get("optional"):
                return None
            if error.status == 404:
                raise NotReady(f'configmap "{ref["name"]}" not found') from None
            raise
        return dict(config_map.data or {})

    # --------------------------------------------------------------------- status

    def patch_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(
                pod["metadata"]["name"],
                pod["metadata"]["namespace"],
                {"status": status},
                _content_type="application/strategic-merge-patch+json",
            )
        except ApiException as error:
            if error.status == 404:  # deleted meanwhile: nobody is waiting for it
                return
            raise

    def _report_waiting(self, worker: PodWorker, message: str) -> None:
        container = worker.pod["spec"]["containers"][0]
        worker.set_status(
            {
                "containerStatuses": [
                    _container_status(
                        container,
                        {"waiting": {"reason": "CreateContainerConfigError", "message": message}},
                    )
                ],
            },
        )

    def report_running(
        self, worker: PodWorker, started: str, *, ready: bool, restarts: int, last: Exit | None
    ) -> None:
        pod, moment = worker.pod, now()
        container = pod["spec"]["containers"][0]
        flag = "True" if ready else "False"
        status: dict[str, Any] = {
            "phase": "Running",
            "conditions": [
                _condition("PodReadyToStartContainers", "True", moment),
                _condition("Initialized", "True", moment),
                _condition("ContainersReady", flag, moment),
                _condition("Ready", flag, moment),
            ],
            "containerStatuses": [
                _container_status(
                    container,
                    {"running": {"startedAt": started}},
                    ready=ready,
                    restarts=restarts,
                    last=last,
                )
            ],
        }
        if worker.started_at is None:
            worker.started_at = moment
            status["startTime"] = moment
        if worker.network is not None:
            status |= {
                "podIP": worker.network.ip,
                "podIPs": [{"ip": worker.network.ip}],
                "hostIP": HOST_IP,
                "hostIPs": [{"ip": HOST_IP}],
            }
        worker.set_status(status)

    def report_back_off(self, worker: PodWorker, plan: Plan, exit_: Exit, restarts: int) -> None:
        container, moment = worker.pod["spec"]["containers"][0], now()
        message = f"back-off restarting failed container {container['name']}"
        worker.set_status(
            {
                "conditions": [
                    _condition(kind, "False", moment, "ContainersNotReady")
                    for kind in ("ContainersReady", "Ready")
                ],
                "containerStatuses": [
                    _container_status(
                        container,
                        {"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                        restarts=restarts,
                        last=exit_,
                        message=_termination_message(plan, exit_.code),
                    )
                ],
            },
        )

    def report_terminated(self, worker: PodWorker, plan: Plan, exit_: Exit, restarts: int) -> None:
        container, moment = worker.pod["spec"]["containers"][0], now()
        status: dict[str, Any] = {
            "phase": "Succeeded" if exit_.code == 0 else "Failed",
            "conditions": [
                _condition(kind, "False", moment, "PodCompleted")
                for kind in ("ContainersReady", "Ready")
            ],
            "containerStatuses": [
                _container_status(
                    container,
                    {"terminated": _terminated(exit_, _termination_message(plan, exit_.code))},
                    restarts=restarts,
                )
            ],
        }
        if exit_.timed_out:
            status["reason"] = "DeadlineExceeded"
            status["message"] = "Pod was active on the node longer than the specified deadline"
        worker.set_status(status)

    def report_unsupported(self, worker: PodWorker, message: str) -> None:
        moment = now()
        containers = worker.pod["spec"].get("containers") or []
        worker.set_status(
            {
                "phase": "Failed",
                "reason": "UnsupportedByLocalExecutor",
                "message": message,
                "containerStatuses": [
                    _container_status(
                        c,
                        {
                            "terminated": {
                                "exitCode": 128,
                                "reason": "StartError",
                                "message": message,
                                "startedAt": moment,
                                "finishedAt": moment,
                            }
                        },
                    )
                    for c in containers
                ],
            },
        )

    # ----------------------------------------------------------------- Prometheus

    def scrape(self, worker: PodWorker) -> None:
        """Have Prometheus scrape the pod's container, if the pod asks for it."""
        target = _scrape_target(worker.pod, worker.network)
        if self.prometheus is not None and target is not None:
            self.prometheus.set_target_groups(f"pod/{worker.name}", [target])

    def unscrape(self, worker: PodWorker) -> None:
        if self.prometheus is not None:
            self.prometheus.set_target_groups(f"pod/{worker.name}", [])


# ------------------------------------------------------------------------------ helpers


def port_env(network: Network) -> dict[str, str]:
    """Where the process listens: PORT (its first container port) and PORT_<containerPort>."""
    env = {f"PORT_{number}": str(local) for number, local in network.ports.items()}
    if network.ports:
        env["PORT"] = str(next(iter(network.ports.values())))
    return env


def _scrape_target(pod: dict[str, Any], network: Network | None) -> dict[str, Any] | None:
    """A Prometheus file_sd target group for the pod, with the labels a kubernetes_sd
    relabelling would give it; None when the pod does not ask to be scraped."""
    metadata = pod["metadata"]
    annotations = metadata.get("annotations") or {}
    if network is None or annotations.get("prometheus.io/scrape") != "true" or not network.ports:
        return None
    wanted = annotations.get("prometheus.io/port")
    port = network.local_port(int(wanted)) if wanted else next(iter(network.ports.values()))
    labels = metadata.get("labels") or {}
    return {
        "targets": [f"127.0.0.1:{port}"],
        "labels": {
            "namespace": metadata["namespace"],
            "pod": metadata["name"],
            "app": labels.get("app") or labels.get("app.kubernetes.io/name", ""),
            "color": labels.get(COLOR_LABEL, ""),
            "__metrics_path__": annotations.get("prometheus.io/path", "/metrics"),
        },
    }


def _terminated(exit_: Exit, message: str) -> dict[str, Any]:
    terminated: dict[str, Any] = {
        "exitCode": exit_.code,
        "reason": "Completed" if exit_.code == 0 else "Error",
        "startedAt": exit_.started,
        "finishedAt": exit_.finished,
    }
    if message:
        terminated["message"] = message
    return terminated


def _transient(error: ApiException) -> bool:
    """An API error worth trying again: the server is starting, overloaded or throttling."""
    return error.status is None or error.status >= 500 or error.status == 429


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _name(pod: dict[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _describe(argv: list[str]) -> str:
    """The command for the log: each argument on one line and shortened."""

    def short(arg: str) -> str:
        flat = " ".join(arg.split())
        return flat if len(flat) <= 80 else flat[:77] + "..."

    return shlex.join(short(arg) for arg in argv)


def _field(pod: dict[str, Any], path: str) -> str:
    metadata, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    raise Unsupported(f"fieldRef {path!r} is not resolved by the local executor")


def _condition(kind: str, status: str, moment: str, reason: str = "") -> dict[str, Any]:
    condition = {"type": kind, "status": status, "lastTransitionTime": moment}
    if reason:
        condition["reason"] = reason
    return condition


def _container_status(
    container: dict[str, Any],
    state: dict[str, Any],
    ready: bool = False,
    restarts: int = 0,
    last: Exit | None = None,
    message: str = "",
) -> dict[str, Any]:
    status = {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "started": "running" in state,
        "restartCount": restarts,
        "state": state,
    }
    if last is not None:
        status["lastState"] = {"terminated": _terminated(last, message)}
    return status


def _termination_message(plan: Plan, exit_code: int) -> str:
    with plan.termination_log.open("rb") as file:
        message = file.read(MAX_MESSAGE_BYTES)
    if not message.strip() and exit_code != 0 and plan.fallback_to_logs:
        output = plan.termination_log.parent.with_suffix(".log")
        lines = output.read_bytes().splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
        message = b"".join(lines)[-FALLBACK_LOG_BYTES:]
    return message.decode(errors="replace")


# ------------------------------------------------------------------------------ volumes


def make_backup_volume(
    target: Cluster | client.CoreV1Api, namespace: str, claim_name: str, timeout: float = 60
) -> str:
    """Create a PersistentVolumeClaim bound to a new hostPath PersistentVolume; its PV name.

    The volume is pre-bound to the claim, so no other claim can take it; the real
    kube-controller-manager binds the two. The executor keeps the data in `volume_dir`, not
    at the hostPath. The PersistentVolume outlives the namespace (Retain).
    """
    core = (
        target
        if isinstance(target, client.CoreV1Api)
        else client.CoreV1Api(api_client(target.kubeconfig))
    )
    volume_name = f"lockstep-test-{uuid.uuid4().hex[:12]}"
    # Plain dicts, as the API takes them (the client's models would accept them too).
    volume: Any = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume_name, "labels": {"lockstep.dev/test-volume": "true"}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "hostPath": {"path": f"/var/lib/lockstep-test/{volume_name}"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": namespace,
                "name": claim_name,
            },
        },
    }
    claim: Any = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim_name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "volumeName": volume_name,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    core.create_persistent_volume(volume)
    core.create_namespaced_persistent_volume_claim(namespace, claim)

    def bound() -> bool:
        found = core.read_namespaced_persistent_volume_claim(claim_name, namespace)
        return bool(found.status and found.status.phase == "Bound")

    wait_until(bound, timeout=timeout, interval=0.2, what=f"PVC {namespace}/{claim_name} Bound")
    return volume_name


def pods_of_job(core: client.CoreV1Api, namespace: str, job_name: str) -> Iterator[dict[str, Any]]:
    """The pods of a Job, as plain dicts (camelCase, as the API writes them)."""
    response: Any = core.list_namespaced_pod(
        namespace,
        label_selector=f"batch.kubernetes.io/job-name={job_name}",
        _preload_content=False,
    )
    yield from json.loads(response.data)["items"]
