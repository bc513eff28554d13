"""The backup and restore Jobs as the operator creates them, and how their results are read."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.api.base import SecretKeyRef
from lockstep.api.migration import BackupRecord, BackupSpec
from lockstep.backup import (
    BackupError,
    BackupResult,
    backup_job,
    backup_job_name,
    dump_prefix,
    parse_result,
    restore_job,
    restore_job_name,
    termination_message,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SHA = "3f" * 32
OWNER = {
    "apiVersion": "lockstep.dev/v1alpha1",
    "kind": "DatabaseMigration",
    "name": "shop",
    "uid": "0b5c1a36-0000-4000-8000-000000000001",
    "controller": True,
    "blockOwnerDeletion": True,
}
SECRET = SecretKeyRef(name="shop-db", key="url")


def make_spec(**overrides: Any) -> BackupSpec:
    fields: dict[str, Any] = {
        "destination": {"persistentVolumeClaim": {"claimName": "backups", "subPath": "shop"}},
        "retention": 3,
        "activeDeadlineSeconds": 600,
    }
    return BackupSpec.model_validate(fields | overrides)


def make_backup(spec: BackupSpec | None = None, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "migration_name": "shop",
        "namespace": "prod",
        "owner": OWNER,
        "url_secret": SECRET,
        "spec": spec or make_spec(),
        "backup_name": backup_job_name("shop", "20260101120000"),
        "schema_version": "20251231000000",
    }
    return backup_job(**(arguments | overrides))


def make_restore(**overrides: Any) -> dict[str, Any]:
    record = BackupRecord(
        name="shop-backup-20260101120000",
        path="shop/shop-backup-20260101120000.dump",
        size_bytes=1234,
        sha256=SHA,
    )
    arguments: dict[str, Any] = {
        "migration_name": "shop",
        "namespace": "prod",
        "owner": OWNER,
        "url_secret": SECRET,
        "spec": make_spec(),
        "backup": record,
        "job_name": restore_job_name("shop", "1"),
    }
    return restore_job(**(arguments | overrides))


def container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def plain_env(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(job)["env"] if "value" in e}


# ------------------------------------------------------------------------------- names


def test_job_names_are_deterministic_dns_labels() -> None:
    assert backup_job_name("shop", "20260101120000") == "shop-backup-20260101120000"
    assert backup_job_name("shop", "2026-01-01T12:00") == "shop-backup-20260101t1200"
    assert restore_job_name("shop", "7") == "shop-restore-7"
    assert backup_job_name("shop", "x") == backup_job_name("shop", "x")


def test_long_or_dotted_migration_names_are_shortened_with_a_hash() -> None:
    long = "a" * 200
    name = backup_job_name(long, "t" * 40)
    assert len(name) <= 63
    assert DNS_LABEL.match(name)
    assert backup_job_name("db.shop", "1") != backup_job_name("db-shop", "1")
    assert backup_job_name(long + "x", "1") != backup_job_name(long + "y", "1")


def test_a_token_without_letters_or_digits_is_refused() -> None:
    with pytest.raises(ValueError, match="token"):
        backup_job_name("shop", "--")


@given(
    migration=st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", fullmatch=True),
    token=st.text(min_size=1, max_size=80).filter(lambda t: re.search(r"[A-Za-z0-9]", t)),
)
def test_every_job_name_is_a_dns_label_that_starts_with_the_dump_prefix(
    migration: str, token: str
) -> None:
    for name in (backup_job_name(migration, token), restore_job_name(migration, token)):
        assert len(name) <= 63
        assert DNS_LABEL.match(name), name
    assert backup_job_name(migration, token).startswith(dump_prefix(migration))


# ------------------------------------------------------------------------------ backup


def test_the_backup_job_as_a_whole() -> None:
    job = make_backup(
        make_spec(
            podLabels={"team": "shop", "app.kubernetes.io/component": "mine"},
            podAnnotations={"sidecar.istio.io/inject": "false"},
            serviceAccountName="backup",
            image="postgres:17.2-alpine",
        )
    )
    script = container(job)["command"][2]
    container(job)["command"][2] = "<script>"

    assert job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "shop-backup-20260101120000",
            "namespace": "prod",
            "labels": {
                "app.kubernetes.io/name": "lockstep",
                "app.kubernetes.io/managed-by": "lockstep",
                "app.kubernetes.io/component": "backup",
                "lockstep.dev/migration": "shop",
            },
            "annotations": {
                "lockstep.dev/backup": "shop-backup-20260101120000",
                "lockstep.dev/schema-version": "20251231000000",
            },
            "ownerReferences": [OWNER],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {
                    "labels": {
                        "team": "shop",
                        "app.kubernetes.io/name": "lockstep",
                        "app.kubernetes.io/managed-by": "lockstep",
                        "app.kubernetes.io/component": "backup",
                        "lockstep.dev/migration": "shop",
                    },
                    "annotations": {"sidecar.istio.io/inject": "false"},
                },
                "spec": {
                    "restartPolicy": "Never",
                    "activeDeadlineSeconds": 600,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "serviceAccountName": "backup",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 70,
                        "runAsGroup": 70,
                        "fsGroup": 70,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "backup",
                            "image": "postgres:17.2-alpine",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["/bin/sh", "-c", "<script>"],
                            "env": [
                                {
                                    "name": "DATABASE_URL",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": "shop-db", "key": "url"}
                                    },
                                },
                                {"name": "BACKUP_ROOT", "value": "/backups"},
                                {"name": "TMPDIR", "value": "/tmp"},
                                {"name": "TERMINATION_LOG", "value": "/dev/termination-log"},
                                {"name": "PGCONNECT_TIMEOUT", "value": "30"},
                                {"name": "PGAPPNAME", "value": "lockstep-backup"},
                                {"name": "BACKUP_DIR", "value": "/backups/shop"},
                                {"name": "BACKUP_NAME", "value": "shop-backup-20260101120000"},
                                {"name": "DUMP_PREFIX", "value": "shop-backup-"},
                                {"name": "RETENTION", "value": "3"},
                            ],
                            "volumeMounts": [
                                {"name": "backups", "mountPath": "/backups"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": 70,
                                "runAsGroup": 70,
                                "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                        }
                    ],
                    "volumes": [
                        {"name": "backups", "persistentVolumeClaim": {"claimName": "backups"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    assert "pg_dump --format=custom --no-password" in script


def test_the_database_url_is_only_referenced_never_written_into_the_job() -> None:
    for job in (make_backup(), make_restore()):
        serialized = json.dumps(job)
        assert not re.search(r"postgres(ql)?://", serialized)
        assert not re.search(r"[a-z]+://[^\s\"/]*@", serialized), "no URL with credentials"
        (url,) = [e for e in container(job)["env"] if e["name"] == "DATABASE_URL"]
        assert url == {
            "name": "DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        }


def test_the_scripts_take_every_path_from_the_environment() -> None:
    for job in (make_backup(), make_restore()):
        script = container(job)["command"][2]
        for literal in ("/backups", "/tmp", "/dev/", "/var/"):
            assert literal not in script
        for name, value in plain_env(job).items():
            if value.startswith("/"):
                assert f"${name}" in script, f"{name} is set but the script does not use it"


def test_the_scripts_pass_through_kubernetes_variable_expansion_unchanged() -> None:
    # Kubernetes expands $(NAME) for the container's env names in command and args, and
    # turns $$ into $.
    for job in (make_backup(), make_restore()):
        script = container(job)["command"][2]
        names = {e["name"] for e in container(job)["env"]}
        assert "$$" not in script
        assert not names & set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", script))


def test_without_a_sub_path_dumps_go_to_the_volume_root() -> None:
    env = plain_env(
        make_backup(make_spec(destination={"persistentVolumeClaim": {"claimName": "b"}}))
    )
    assert env["BACKUP_DIR"] == "/backups"


def test_a_sub_path_is_normalised_and_must_stay_inside_the_volume() -> None:
    spec = make_spec(destination={"persistentVolumeClaim": {"claimName": "b", "subPath": "/a/b/"}})
    assert plain_env(make_backup(spec))["BACKUP_DIR"] == "/backups/a/b"
    for bad in ("../other", "a/../../b", "a b", "a;rm"):
        spec = make_spec(destination={"persistentVolumeClaim": {"claimName": "b", "subPath": bad}})
        with pytest.raises(BackupError, match="subPath"):
            make_backup(spec)


def test_a_backup_name_must_come_from_backup_job_name() -> None:
    # Otherwise the retention would not recognise the dump as this migration's.
    with pytest.raises(BackupError, match="backup_job_name"):
        make_backup(backup_name="nightly")
    with pytest.raises(BackupError, match="backup_job_name"):
        make_backup(backup_name="shop-backup-a-b")


def test_no_schema_version_means_no_annotation() -> None:
    job = make_backup(schema_version=None)
    assert "lockstep.dev/schema-version" not in job["metadata"]["annotations"]


def test_pod_labels_cannot_replace_the_labels_lockstep_selects_on() -> None:
    job = make_backup(make_spec(podLabels={"lockstep.dev/migration": "other"}))
    assert job["spec"]["template"]["metadata"]["labels"]["lockstep.dev/migration"] == "shop"


def test_a_long_migration_name_gives_a_valid_label_value() -> None:
    name = "x" * 100
    job = make_backup(migration_name=name, backup_name=backup_job_name(name, "1"))
    value = job["metadata"]["labels"]["lockstep.dev/migration"]
    assert len(value) <= 63
    assert value.startswith("x" * 40)


# ----------------------------------------------------------------------------- restore


def test_the_restore_job_checks_the_recorded_dump() -> None:
    job = make_restore()
    assert job["metadata"]["name"] == "shop-restore-1"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "restore"
    assert job["metadata"]["annotations"] == {
        "lockstep.dev/backup": "shop-backup-20260101120000",
        "lockstep.dev/backup-sha256": SHA,
    }
    assert container(job)["name"] == "restore"
    env = plain_env(job)
    assert env["BACKUP_FILE"] == "/backups/shop/shop-backup-20260101120000.dump"
    assert env["EXPECTED_SHA256"] == SHA
    script = container(job)["command"][2]
    assert "pg_restore --clean --if-exists --no-owner --file=" in script
    assert "psql --no-psqlrc --quiet --single-transaction" in script
    assert "--set=ON_ERROR_STOP=1" in script
    assert "DROP SCHEMA %I CASCADE" in script
    assert script.index("EXPECTED_SHA256") < script.index("pg_restore --clean")
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 70


@pytest.mark.parametrize(
    ("path", "sha256"),
    [
        ("", SHA),
        ("../etc/passwd", SHA),
        ("a/../../b.dump", SHA),
        ("a.dump", ""),
        ("a.dump", "XYZ"),
        ("a.dump", SHA.upper()),
    ],
)
def test_a_backup_without_a_safe_path_or_a_sha256_is_not_restored(path: str, sha256: str) -> None:
    record = BackupRecord(name="b", path=path, sha256=sha256)
    with pytest.raises(BackupError):
        make_restore(backup=record)


# ----------------------------------------------------------------------------- results


def test_a_result_is_read_from_the_termination_message() -> None:
    message = f'{{"path":"shop/shop-backup-1.dump","sizeBytes":5120,"sha256":"{SHA}"}}\n'
    assert parse_result(message) == BackupResult("shop/shop-backup-1.dump", 5120, SHA)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("", "no termination message"),
        ("   \n", "no termination message"),
        ("backup failed: pg_dump failed: connection refused", "pg_dump failed: connection refused"),
        ("[1, 2]", "not a JSON object"),
        (f'{{"sizeBytes": 1, "sha256": "{SHA}"}}', "no path"),
        (f'{{"path": "a", "sizeBytes": -1, "sha256": "{SHA}"}}', "sizeBytes"),
        (f'{{"path": "a", "sizeBytes": true, "sha256": "{SHA}"}}', "sizeBytes"),
        (f'{{"path": "a", "sizeBytes": "12", "sha256": "{SHA}"}}', "sizeBytes"),
        ('{"path": "a", "sizeBytes": 1, "sha256": "abc"}', "sha256"),
        ('{"path": "a", "sizeBytes": 1', "did not report a result"),
    ],
)
def test_anything_else_is_a_clear_error(message: str, reason: str) -> None:
    with pytest.raises(BackupError, match=re.escape(reason)):
        parse_result(message)


def test_an_error_never_repeats_a_password_and_stays_short() -> None:
    message = "pg_dump: error: bad URI postgresql://app:hunter22@db:5432/shop " + "x" * 1000
    with pytest.raises(BackupError) as error:
        parse_result(message)
    assert "hunter22" not in str(error.value)
    assert len(str(error.value)) < 300


def test_the_termination_message_is_taken_from_the_named_container() -> None:
    pod = {
        "status": {
            "containerStatuses": [
                {"name": "other", "state": {"terminated": {"message": "no"}}},
                {"name": "backup", "state": {"terminated": {"exitCode": 0, "message": "yes"}}},
            ]
        }
    }
    assert termination_message(pod, "backup") == "yes"
    assert termination_message(pod, "restore") is None
    assert termination_message({"status": {}}, "backup") is None
    running = {"status": {"containerStatuses": [{"name": "backup", "state": {"running": {}}}]}}
    assert termination_message(running, "backup") is None


def test_a_result_says_how_long_the_job_took_when_it_knows() -> None:
    message = f'{{"path":"a.dump","sizeBytes":5,"sha256":"{SHA}","seconds":42}}'
    assert parse_result(message).seconds == 42
    assert parse_result(f'{{"path":"a.dump","sizeBytes":5,"sha256":"{SHA}"}}').seconds is None
