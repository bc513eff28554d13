"""The DatabaseMigration reconciler's looks against a real PostgreSQL (the Kubernetes side kept
in memory by tests/unit/fake_kube.py; the end-to-end tests run it against the API server):
backups before applies, outcomes written after the run, requests answered, dry runs, and the
claims read again before anything that removes schema."""

from __future__ import annotations

import json
from typing import Any, cast

import psycopg
import pytest
from tests.unit.fake_kube import FakeKube

from lockstep.kube import Kube
from lockstep.migrations import reconcile
from lockstep.objects import Snapshot
from lockstep.release.world import JobView

pytestmark = pytest.mark.postgres

MIGRATIONS = {
    "001_create_items.up.sql": "CREATE TABLE items (id bigint PRIMARY KEY, name text);",
    "001_create_items.down.sql": "DROP TABLE items;",
    "002_add_email.up.sql": "ALTER TABLE items ADD COLUMN email text;",
    "002_add_email.down.sql": "ALTER TABLE items DROP COLUMN email;",
}


def release(name: str, needs: str | None, request: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "generation": 1},
        "spec": {"migration": {"ref": "db"}},
        "status": {
            "observedGeneration": 1,
            "database": {"migration": "db", "needs": needs, "request": request},
        },
    }


class Database:
    def __init__(self, url: str, **spec: Any) -> None:
        self.url = url
        self.kube = FakeKube(secrets={("db", "url"): url}, configmaps={"m": dict(MIGRATIONS)})
        body = {
            "metadata": {"name": "db", "namespace": "prod", "uid": "1234abcd-0", "generation": 1},
            "spec": {
                "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                "source": {"configMapRef": {"name": "m"}},
                "backup": {"destination": {"persistentVolumeClaim": {"claimName": "b"}}},
                **spec,
            },
        }
        self.obj = self.kube.add("databasemigrations", body)
        self.jobs: dict[str, JobView] = {}

    def look(self, releases: list[dict[str, Any]] | None = None) -> reconcile.Outcome:
        for item in releases or []:
            self.kube.add("featurereleases", item)
        claims = reconcile.claims_of(releases or [], "db")
        snapshot = Snapshot.of("DatabaseMigration", "databasemigrations", self.obj)
        outcome = reconcile.reconcile(
            cast(Kube, self.kube), snapshot, reconcile.MigrationWorld(self.jobs, claims)
        )
        if outcome.obj is not None:
            self.obj = outcome.obj
        return outcome

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})

    def finish(self, job: str, result: dict[str, Any]) -> None:
        self.jobs[job] = JobView(job, "Succeeded")
        self.kube.termination[job] = json.dumps(result)

    def versions(self) -> list[str]:
        with psycopg.connect(self.url) as conn:
            return [
                r[0]
                for r in conn.execute("SELECT version FROM lockstep.schema_migrations ORDER BY 1")
            ]


DUMP = {"path": "db.dump", "sizeBytes": 1, "sha256": "a" * 64, "at": "2026-01-01T00:00:00.000000Z"}


def test_a_backup_is_taken_then_the_migrations_applied_and_recorded(database_url: str) -> None:
    db = Database(database_url, policy={"backup": "always"})
    db.look()
    [job] = db.kube.jobs
    assert db.status["phase"] == "BackingUp" and db.status["operation"]["backup"] == job
    assert db.versions() == [] if _ledger_exists(database_url) else True
    db.finish(job, DUMP)
    db.look()
    assert db.versions() == ["001", "002"]
    status = db.status
    assert status["currentVersion"] == "002" and "operation" not in status
    assert [a["version"] for a in status["applied"]] == ["001", "002"]
    assert status["backups"][0]["snapshotAt"] == DUMP["at"]
    outcome = db.look()
    assert db.status["phase"] == "Ready" and outcome.quiet


def test_a_dry_run_writes_the_plan_and_applies_nothing(database_url: str) -> None:
    db = Database(database_url, dryRun=True, policy={"backup": "never"})
    outcome = db.look()
    assert db.status["phase"] == "DryRun" and outcome.quiet
    assert [m["version"] for m in db.status["plan"]["migrations"]] == ["001", "002"]
    assert not _ledger_exists(database_url)


def test_a_rollback_request_is_answered_with_down_migrations(database_url: str) -> None:
    db = Database(database_url, policy={"backup": "never"})
    db.look()
    assert db.versions() == ["001", "002"]
    request = {"id": "web/2", "mode": "down", "toVersion": "001", "requestedAt": "t"}
    db.look([release("web", "001", request)])
    [ack] = db.status["requests"]
    assert (ack["outcome"], ack["id"]) == ("Succeeded", "web/2")
    assert ack["destroys"] == ["002: ALTER TABLE items DROP COLUMN email"]
    assert db.versions() == ["001"]
    assert db.status["gate"]["holds"] == [{"release": "web", "version": "001"}]
    db.look([release("web", "001", request)])
    assert db.versions() == ["001"], "held while the request stands"


def test_a_rollback_that_another_release_needs_is_refused(database_url: str) -> None:
    db = Database(database_url, policy={"backup": "never"})
    db.look()
    request = {"id": "web/2", "mode": "down", "toVersion": "001", "requestedAt": "t"}
    db.look([release("web", "001", request), release("api", "002")])
    [ack] = db.status["requests"]
    assert ack["outcome"] == "Refused" and "api (needs 002)" in ack["message"]
    assert db.versions() == ["001", "002"]


def test_a_lowered_target_is_checked_against_the_releases_as_they_are_now(
    database_url: str,
) -> None:
    db = Database(database_url, policy={"backup": "never"})
    db.look()
    db.obj["spec"]["targetVersion"] = "001"
    db.obj["metadata"]["generation"] = 2
    # the watch says nobody needs 002; the API says "web" does
    db.kube.add("featurereleases", release("web", "002"))
    snapshot = Snapshot.of("DatabaseMigration", "databasemigrations", db.obj)
    reconcile.reconcile(cast(Kube, db.kube), snapshot, reconcile.MigrationWorld({}, []))
    assert "list_custom" in db.kube.calls
    assert db.versions() == ["001", "002"]


def test_a_failed_migration_stops_until_a_retry(database_url: str) -> None:
    db = Database(database_url, policy={"backup": "never"})
    db.kube.configmaps["m"]["003_broken.up.sql"] = "ALTER TABLE missing ADD COLUMN n int;"
    db.look()
    assert db.status["phase"] == "Failed", db.status["message"]
    assert db.status["lastError"]["version"] == "003"
    outcome = db.look()
    assert outcome.quiet and db.status["phase"] == "Failed"
    assert db.versions() == ["001", "002"]


def _ledger_exists(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('lockstep.schema_migrations')").fetchone()
    return row is not None and row[0] is not None
