"""A test-only stand-in for a kubelet: runs the container command of labelled pods locally.

kwok leaves pods labelled `lockstep.dev/test-exec: "true"` alone (see `kwok_stages` in
`cluster.py`). `LocalPodExecutor` watches those pods and, once one is scheduled, does what a
kubelet would do with it, on this machine:

- reports it Running, resolves its container's env (plain values, `$(VAR)` references,
  Secret and ConfigMap keys, a few field references) from the API;
- maps its volumes to local directories: a PersistentVolumeClaim to
  `work_dir/pvc/<namespace>/<claimName>` (kept across pods), an emptyDir to a fresh directory;
  env values that start with a mount path are rewritten to the local path, and the
  termination message file (`TERMINATION_LOG`, `terminationMessagePath`) to a local file;
- runs `command` + `args` (the image is ignored; PATH starts with `path_prefix`), stopped at
  the pod's activeDeadlineSeconds or when the pod is deleted;
- reports it Succeeded or Failed with the container's exit code and termination message, so
  the real Job controller completes or fails the Job.

What it runs is logged to `work_dir/executor.log` (env names, never values); the container's
output goes to `work_dir/pods/<namespace>/<pod>.log`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from .cluster import EXEC, Cluster
from .processes import register_pid, unregister_pid, wait_until

SELECTOR = f"{EXEC}=true"
MAX_MESSAGE_BYTES = 4096  # what a kubelet keeps of a termination message
FALLBACK_LOG_LINES = 80  # terminationMessagePolicy FallbackToLogsOnError, as a kubelet does
FALLBACK_LOG_BYTES = 2048
WATCH_SECONDS = 30
RETRY_SECONDS = 1.0
STORAGE_CLASS = "lockstep-test"

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def api_client(kubeconfig: Path) -> client.ApiClient:
    """An API client for `kubeconfig` with a connection pool big enough for a few threads."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = 16
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


class LocalPodExecutor:
    """Runs the single container of each `lockstep.dev/test-exec` pod on this machine."""

    def __init__(self, kubeconfig: Path, work_dir: Path, path_prefix: list[Path]) -> None:
        self.kubeconfig = kubeconfig
        self.work_dir = work_dir
        self.path_prefix = list(path_prefix)
        self.log = logging.getLogger(f"{__name__}.{uuid.uuid4().hex[:6]}")
        self.log.propagate = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self._gone: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._watcher: threading.Thread | None = None
        self._synced = threading.Event()
        self._core: client.CoreV1Api | None = None
        self._response: Any = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.work_dir / "executor.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.log.addHandler(handler)
        self.log.setLevel(logging.INFO)
        self._core = client.CoreV1Api(api_client(self.kubeconfig))
        self._watcher = threading.Thread(target=self._watch_loop, name="pod-executor", daemon=True)
        self._watcher.start()
        wait_until(self._synced.is_set, timeout=60, what="the executor's first pod list")

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            if self._response is not None:
                self._response.shutdown()
        with self._lock:
            running = list(self._running.values())
        for process in running:
            _kill(process)
        for thread in [self._watcher, *self._threads]:
            if thread is not None:
                thread.join(timeout=10)
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)

    def volume_dir(self, namespace: str, claim_name: str) -> Path:
        """The local directory that stands for a PersistentVolumeClaim."""
        return self.work_dir / "pvc" / namespace / claim_name

    @property
    def core(self) -> client.CoreV1Api:
        assert self._core is not None, "start() the executor first"
        return self._core

    # ---------------------------------------------------------------------- watch

    def _watch_loop(self) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                    self._synced.set()
                resource_version = self._watch(resource_version)
            except ApiException as error:
                if error.status == 410:  # the resource version expired: list again
                    resource_version = None
                    continue
                self.log.warning("pod watch failed: %s", error.reason)
                resource_version = None
                self._stop.wait(RETRY_SECONDS)
            except Exception as error:
                if self._stop.is_set():
                    return
                self.log.warning("pod watch failed: %r", error)
                resource_version = None
                self._stop.wait(RETRY_SECONDS)

    def _list(self) -> str:
        response: Any = self.core.list_pod_for_all_namespaces(
            label_selector=SELECTOR, _preload_content=False, _request_timeout=30
        )
        pods = json.loads(response.data)
        for pod in pods["items"]:
            self._consider("ADDED", pod)
        # Pods deleted while the watch was down still have their command running.
        present = {pod["metadata"]["uid"] for pod in pods["items"]}
        with self._lock:
            missing = [uid for uid in self._running if uid not in present]
        for uid in missing:
            self._forget(uid, None)
        return str(pods["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str) -> str:
        response: Any = self.core.list_pod_for_all_namespaces(
            label_selector=SELECTOR,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=(10, WATCH_SECONDS + 15),
        )
        self._response = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    break
                if not line:
                    continue
                event = json.loads(line)
                kind, pod = event["type"], event["object"]
                if kind == "ERROR":
                    raise ApiException(status=pod.get("code"), reason=pod.get("message"))
                resource_version = pod["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    self._consider(kind, pod)
        finally:
            self._response = None
            response.release_conn()
        return resource_version

    def _consider(self, kind: str, pod: dict[str, Any]) -> None:
        metadata, spec = pod["metadata"], pod.get("spec") or {}
        uid = metadata["uid"]
        if kind == "DELETED" or metadata.get("deletionTimestamp"):
            self._forget(uid, pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase != "Pending" or not spec.get("nodeName"):
            return
        with self._lock:
            if uid in self._claimed:
                return
            self._claimed.add(uid)
            thread = threading.Thread(
                target=self._run_pod, args=(pod,), name=f"pod-{metadata['name']}", daemon=True
            )
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _forget(self, uid: str, pod: dict[str, Any] | None) -> None:
        with self._lock:
            self._gone.add(uid)
            process = self._running.get(uid)
        if process is not None:
            self.log.info("%s: deleted, stopping its container", _name(pod) if pod else uid)
            _kill(process)

    # ------------------------------------------------------------------------ run

    def _run_pod(self, pod: dict[str, Any]) -> None:
        name = _name(pod)
        try:
            plan = self._plan_until_ready(pod)
            if plan is None:
                return
            self._report_running(pod)
            exit_code, started, timed_out = self._execute(pod, plan)
            if self._is_gone(pod):
                return
            self._report_terminated(pod, plan, exit_code, started, timed_out)
        except Unsupported as error:
            self.log.error("%s: %s", name, error)
            self._report_unsupported(pod, str(error))
        except Exception:
            if not self._stop.is_set():
                self.log.exception("%s: the executor failed", name)

    def _is_gone(self, pod: dict[str, Any]) -> bool:
        with self._lock:
            return pod["metadata"]["uid"] in self._gone or self._stop.is_set()

    def _plan_until_ready(self, pod: dict[str, Any]) -> Plan | None:
        """Resolve the pod's env and volumes, retrying while a Secret or ConfigMap is missing."""
        reported = ""
        while not self._is_gone(pod):
            try:
                return self._plan(pod)
            except NotReady as error:
                if str(error) != reported:
                    reported = str(error)
                    self.log.info("%s: waiting: %s", _name(pod), reported)
                    self._report_waiting(pod, reported)
            self._stop.wait(RETRY_SECONDS)
        return None

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

    def _execute(self, pod: dict[str, Any], plan: Plan) -> tuple[int, str, bool]:
        name, uid = _name(pod), pod["metadata"]["uid"]
        output = plan.termination_log.parent.with_suffix(".log")
        self.log.info(
            "%s: running %s (env: %s; cwd %s; timeout %s)",
            name,
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
                self.log.info("%s: cannot start %s: %s", name, plan.argv[0], error.strerror)
                return 128, started, False
        register_pid(process.pid)
        with self._lock:
            self._running[uid] = process
            deleted_meanwhile = uid in self._gone
        if deleted_meanwhile:
            _kill(process)
        timed_out = False
        try:
            process.wait(plan.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(process)
            process.wait()
        finally:
            with self._lock:
                self._running.pop(uid, None)
            unregister_pid(process.pid)
        code = process.returncode
        exit_code = code if code >= 0 else 128 - code
        self.log.info(
            "%s: exited %d after %.1fs%s",
            name,
            exit_code,
            time.monotonic() - began,
            " (deadline exceeded)" if timed_out else "",
        )
        return exit_code, started, timed_out

    # --------------------------------------------------------------------- status

    def _patch_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
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

    def _report_waiting(self, pod: dict[str, Any], message: str) -> None:
        container = pod["spec"]["containers"][0]
        self._patch_status(
            pod,
            {
                "containerStatuses": [
                    _container_status(
                        container,
                        {"waiting": {"reason": "CreateContainerConfigError", "message": message}},
                    )
                ],
            },
        )

    def _report_running(self, pod: dict[str, Any]) -> None:
        container, moment = pod["spec"]["containers"][0], now()
        self._patch_status(
            pod,
            {
                "phase": "Running",
                "startTime": moment,
                "conditions": [
                    _condition(kind, "True", moment)
                    for kind in (
                        "PodReadyToStartContainers",
                        "Initialized",
                        "ContainersReady",
                        "Ready",
                    )
                ],
                "containerStatuses": [
                    _container_status(container, {"running": {"startedAt": moment}}, ready=True)
                ],
            },
        )

    def _report_terminated(
        self, pod: dict[str, Any], plan: Plan, exit_code: int, started: str, timed_out: bool
    ) -> None:
        container, moment = pod["spec"]["containers"][0], now()
        message = _termination_message(plan, exit_code)
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": started,
            "finishedAt": moment,
        }
        if message:
            terminated["message"] = message
        status: dict[str, Any] = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": [
                _condition(kind, "False", moment, "PodCompleted")
                for kind in ("ContainersReady", "Ready")
            ],
            "containerStatuses": [_container_status(container, {"terminated": terminated})],
        }
        if timed_out:
            status["reason"] = "DeadlineExceeded"
            status["message"] = "Pod was active on the node longer than the specified deadline"
        self._patch_status(pod, status)

    def _report_unsupported(self, pod: dict[str, Any], message: str) -> None:
        moment = now()
        containers = pod["spec"].get("containers") or []
        self._patch_status(
            pod,
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


# ------------------------------------------------------------------------------ helpers


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
    container: dict[str, Any], state: dict[str, Any], ready: bool = False
) -> dict[str, Any]:
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "started": "running" in state,
        "restartCount": 0,
        "state": state,
    }


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
