"""The local pod executor runs test Jobs for real: the Job controller sees them finish."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from kubernetes import client
from tests.env.cluster import EXEC, Cluster
from tests.env.executor import LocalPodExecutor, api_client, make_backup_volume, pods_of_job
from tests.env.processes import wait_until

from lockstep.api.base import SecretKeyRef
from lockstep.api.migration import BackupSpec
from lockstep.backup import backup_job, backup_job_name, parse_result, termination_message

pytestmark = pytest.mark.cluster


@pytest.fixture
def core(cluster: Cluster) -> Iterator[client.CoreV1Api]:
    api = api_client(cluster.kubeconfig)
    yield client.CoreV1Api(api)
    api.close()  # type: ignore[no-untyped-call]


def owner(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """A real object to own the Job (the garbage collector deletes Jobs of missing owners)."""
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = cluster.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}


def create(cluster: Cluster, job: dict[str, Any]) -> None:
    cluster.kubectl("create", "-f", "-", input=json.dumps(job))


def job_condition(cluster: Cluster, namespace: str, name: str) -> str | None:
    """ "Complete" or "Failed" once the Job controller has decided, else None."""
    job = json.loads(cluster.kubectl("get", "job", name, "-n", namespace, "-o", "json").stdout)
    for condition in job.get("status", {}).get("conditions", []):
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return str(condition["type"])
    return None


def finished_pod(core: client.CoreV1Api, namespace: str, job: str) -> dict[str, Any]:
    (pod,) = pods_of_job(core, namespace, job)
    return pod


def test_a_backup_job_runs_pg_dump_and_completes(
    cluster: Cluster,
    core: client.CoreV1Api,
    pod_executor: LocalPodExecutor,
    namespace: str,
    database_url: str,
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
    cluster.kubectl(
        "create", "secret", "generic", "db", "-n", namespace, f"--from-literal=url={database_url}"
    )
    make_backup_volume(core, namespace, "backups")
    spec = BackupSpec.model_validate(
        {
            "destination": {"persistentVolumeClaim": {"claimName": "backups", "subPath": "db"}},
            "podLabels": {EXEC: "true"},
            "activeDeadlineSeconds": 120,
        }
    )
    name = backup_job_name("shop", "1")
    create(
        cluster,
        backup_job(
            migration_name="shop",
            namespace=namespace,
            owner=owner(cluster, namespace),
            url_secret=SecretKeyRef(name="db", key="url"),
            spec=spec,
            backup_name=name,
            schema_version=None,
        ),
    )

    assert (
        wait_until(
            lambda: job_condition(cluster, namespace, name), timeout=120, what="the Job to finish"
        )
        == "Complete"
    )

    pod = finished_pod(core, namespace, name)
    assert pod["status"]["phase"] == "Succeeded"
    result = parse_result(termination_message(pod, "backup") or "")
    dump = pod_executor.volume_dir(namespace, "backups") / result.path
    assert result.path == f"db/{name}.dump"
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == result.sha256
    assert dump.stat().st_size == result.size_bytes
    assert database_url not in (pod_executor.work_dir / "executor.log").read_text()


def test_a_job_whose_command_fails_fails_with_its_termination_message(
    cluster: Cluster, core: client.CoreV1Api, pod_executor: LocalPodExecutor, namespace: str
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "broken", "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {EXEC: "true"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox",
                            "command": ["/bin/sh", "-c", 'echo "it broke" > "$LOG"; exit 1'],
                            "env": [{"name": "LOG", "value": "/dev/termination-log"}],
                        }
                    ],
                },
            },
        },
    }
    create(cluster, job)

    assert (
        wait_until(
            lambda: job_condition(cluster, namespace, "broken"),
            timeout=120,
            what="the Job to finish",
        )
        == "Failed"
    )

    pod = finished_pod(core, namespace, "broken")
    assert pod["status"]["phase"] == "Failed"
    (status,) = pod["status"]["containerStatuses"]
    terminated = status["state"]["terminated"]
    assert terminated["exitCode"] == 1
    assert terminated["reason"] == "Error"
    assert termination_message(pod, "main") == "it broke\n"
