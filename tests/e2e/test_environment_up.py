"""`make up` gives a working environment that keeps running after the command returns, and
`make down` stops exactly what it started. (The tutorial test uses both commands too.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server
from tests.env.environment import (
    Layout,
    group_alive,
    process_groups_of,
    read_state,
    supervisor_running,
)
from tests.env.operator_runner import REPO
from tests.env.processes import free_port, wait_until

pytestmark = pytest.mark.cluster


def make(target: str, env_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", target],
        cwd=REPO,
        env={**os.environ, "LOCKSTEP_ENV": str(env_dir)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Environment:
    """A running environment, seen from a shell that evaluated `make env`."""

    dir: Path
    up_output: str
    exports: dict[str, str]

    @property
    def layout(self) -> Layout:
        return Layout(self.dir)

    def state(self) -> dict[str, Any]:
        state = read_state(self.layout)
        assert state is not None
        return state

    def sh(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`command` in bash after `source env.sh`, as a user would run it."""
        result = subprocess.run(
            ["bash", "-c", f"source {self.layout.env_sh} && {command}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{command} exited {result.returncode}:\n{result.stderr}")
        return result

    def kubectl(self, *args: str, input: str | None = None) -> str:
        result = subprocess.run(
            ["kubectl", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            input=input,
            env={**os.environ, **self.exports},
        )
        if result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result.stdout


def exports_of(env_sh: str) -> dict[str, str]:
    """The variables `env.sh` sets, as bash evaluates them."""
    out = subprocess.run(
        ["bash", "-c", f"{env_sh}\nenv -0"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout
    names = {
        "LOCKSTEP_ENV",
        "KUBECONFIG",
        "PATH",
        "LOCKSTEP_DATABASE_URL",
        "LOCKSTEP_PROMETHEUS_URL",
    }
    pairs = (item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {name: value for name, value in pairs if name in names}


@pytest.fixture(scope="module")
def environment() -> Iterator[Environment]:
    base = Path(tempfile.mkdtemp(prefix="lockstep-up-"))
    base.chmod(0o755)
    env_dir = base / "env"
    up = make("up", env_dir)
    assert up.returncode == 0, up.stdout + up.stderr
    env_sh = make("env", env_dir)
    assert env_sh.returncode == 0, env_sh.stderr
    try:
        yield Environment(env_dir, up.stdout, exports_of(env_sh.stdout))
    finally:
        make("down", env_dir, timeout=180)
        shutil.rmtree(base, ignore_errors=True)


def test_up_prints_what_to_export_and_where_everything_is(environment: Environment) -> None:
    out, root = environment.up_output, environment.dir
    assert f"The lockstep environment is up in {root} (stop it with `make down`)." in out
    assert f'eval "$(make -s env LOCKSTEP_ENV={root})"' in out
    assert f"KUBECONFIG={root}/kubeconfig" in out
    postgres = environment.state()["postgres"]["address"]
    prometheus = environment.exports["LOCKSTEP_PROMETHEUS_URL"]
    assert f"on {postgres}, superuser lockstep" in out
    assert f"Prometheus  {prometheus}, scrapes every 1s" in out
    assert f"target listed in {root}/prometheus/targets/*.json" in out
    assert "lockstep run as ServiceAccount lockstep-system/lockstep" in out
    # the password is in env.sh (readable by its owner only), not on the terminal
    password = environment.exports["LOCKSTEP_DATABASE_URL"].split(":")[2].split("@")[0]
    assert password and password not in out
    assert environment.layout.env_sh.stat().st_mode & 0o077 == 0


def test_the_environment_keeps_running_after_up_returns(environment: Environment) -> None:
    state = environment.state()
    assert state["phase"] == "ready"
    assert supervisor_running(environment.layout, state)
    assert "kwok-node-0" in environment.kubectl("get", "nodes")


def test_the_exported_path_has_the_clusters_kubectl_the_plugin_and_psql(
    environment: Environment,
) -> None:
    found = environment.sh("command -v kubectl kubectl-lockstep lockstep psql").stdout.split()
    assert found[0] == environment.state()["kubectl"]
    assert found[1] == str(REPO / ".venv" / "bin" / "kubectl-lockstep")
    versions = json.loads(environment.sh("kubectl version -o json").stdout)
    client_minor = versions["clientVersion"]["minor"]
    assert versions["serverVersion"]["minor"] == client_minor
    assert "promote" in environment.sh("kubectl lockstep --help").stdout
    database = environment.sh('psql "$LOCKSTEP_DATABASE_URL" -tAc "select 1"').stdout
    assert database.strip() == "1"


def test_up_again_says_it_is_running_and_starts_nothing(environment: Environment) -> None:
    before = environment.state()["pid"]
    again = make("up", environment.dir)
    assert again.returncode == 0, again.stderr
    assert "The lockstep environment is already running." in again.stdout
    assert environment.state()["pid"] == before


def test_the_operator_runs_as_its_service_account(environment: Environment) -> None:
    operator_kubeconfig = environment.layout.operator / "kubeconfig"
    whoami = environment.kubectl("auth", "whoami", f"--kubeconfig={operator_kubeconfig}")
    assert "system:serviceaccount:lockstep-system:lockstep" in whoami
    metrics = httpx.get(environment.state()["operator"]["metrics"], timeout=5)
    assert metrics.status_code == 200


def test_the_supervisor_starts_the_operator_again_when_it_dies(environment: Environment) -> None:
    before = set(process_groups_of(environment.state()["pid"]))
    log = environment.state()["operator"]["log"]
    operator_group = next(g for g in before if OPERATOR in _cmdline(g))
    os.killpg(operator_group, signal.SIGKILL)

    def restarted() -> bool:
        groups = set(process_groups_of(environment.state()["pid"])) - before
        return any(OPERATOR in _cmdline(g) for g in groups)

    wait_until(restarted, timeout=60, interval=0.5, what="a new operator process")
    wait_until(
        lambda: httpx.get(environment.state()["operator"]["metrics"], timeout=2).status_code == 200,
        timeout=60,
        what="the new operator's metrics",
    )
    assert Path(log).exists()


OPERATOR = "-m lockstep run "


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


CLAIM_AND_JOB = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: write}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {lockstep.dev/test-exec: "true"}}
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox
          command: [sh, -c, 'echo kept > "$DATA/file.txt"']
          env: [{name: DATA, value: /data}]
          volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
"""


def test_a_claim_of_the_default_class_gets_a_local_volume_like_kinds(
    environment: Environment,
) -> None:
    k = environment.kubectl
    k("create", "namespace", "volumes")
    k("-n", "volumes", "apply", "-f", "-", input=CLAIM_AND_JOB)
    k("-n", "volumes", "wait", "--for=condition=Complete", "job/write", "--timeout=60s")

    claim = json.loads(k("-n", "volumes", "get", "pvc", "data", "-o", "json"))
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == "standard"
    volume = json.loads(k("get", "pv", claim["spec"]["volumeName"], "-o", "json"))
    assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    pod = json.loads(k("-n", "volumes", "get", "pods", "-l", "job-name=write", "-o", "json"))
    node = pod["items"][0]["spec"]["nodeName"]
    term = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == [node]
    host_path = Path(volume["spec"]["hostPath"]["path"])
    assert host_path.parent == environment.layout.volumes
    assert (host_path / "file.txt").read_text() == "kept\n"

    # reclaim policy Delete: the claim's namespace goes, so do the volume and its directory
    k("delete", "namespace", "volumes", "--wait=false")
    wait_until(lambda: not host_path.exists(), timeout=120, interval=0.5, what="the directory")
    gone = environment.kubectl("get", "pv", "-o", "name")
    assert volume["metadata"]["name"] not in gone


def test_prometheus_scrapes_a_target_registered_as_up_says(environment: Environment) -> None:
    registry = CollectorRegistry()
    Counter("myapp_probe", "A probe counter.", registry=registry).inc(7)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        targets = Path(environment.state()["prometheus"]["targetsDir"]) / "myapp.json"
        targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"app": "m"}}]))
        url = environment.exports["LOCKSTEP_PROMETHEUS_URL"]

        def scraped() -> list[Any]:
            query = {"query": 'myapp_probe_total{app="m"}'}
            result: list[Any] = httpx.get(f"{url}/api/v1/query", params=query).json()["data"][
                "result"
            ]
            return result

        result = wait_until(scraped, timeout=60, interval=0.5, what="the target scraped")
        assert float(result[0]["value"][1]) == 7  # type: ignore[index]
    finally:
        server.shutdown()
        thread.join()


def test_down_stops_exactly_what_up_started_even_after_a_crash(environment: Environment) -> None:
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        supervisor = environment.state()["pid"]
        started = process_groups_of(supervisor)
        assert len(started) >= 8
        # the supervisor dies without stopping anything: down still finds what it started
        os.kill(supervisor, signal.SIGKILL)
        wait_until(
            lambda: not supervisor_running(environment.layout, environment.state()),
            timeout=30,
            what="the supervisor gone",
        )
        down = make("down", environment.dir, timeout=180)
        assert down.returncode == 0, down.stderr
        assert f"{environment.dir} removed" in down.stdout
        assert not environment.dir.exists()
        assert [g for g in started if group_alive(g)] == []
        assert process_groups_of(supervisor) == []
        assert bystander.poll() is None  # not ours to stop
        again = make("down", environment.dir)
        assert again.returncode == 0
        assert "No lockstep environment" in again.stdout
    finally:
        bystander.kill()
        bystander.wait()


def test_up_refuses_a_directory_that_is_not_an_environment(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    refused = make("up", tmp_path)
    assert refused.returncode != 0
    assert "is not a lockstep environment" in refused.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    down = make("down", tmp_path)
    assert down.returncode != 0
    assert (tmp_path / "notes.txt").exists()
