"""The DatabaseMigration reconciler lints with the live database's facts, against a real
PostgreSQL (the Kubernetes side in memory, as in test_migration_reconcile.py): a rewrite of a
tiny table is a warning, of a large one an error; the catalog is read again only when it
changed; and a dry run's status carries the analysis (server version, the touched tables'
sizes, the sessions that would block, each pending statement's verdict)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import psycopg
import pytest
from tests.unit.fake_kube import FakeKube

from lockstep.kube import Kube
from lockstep.migrations import reconcile
from lockstep.objects import Snapshot
from lockstep.schema import live

pytestmark = pytest.mark.postgres

# A volatile default rewrites the table and its indexes under ACCESS EXCLUSIVE.
REWRITE = "ALTER TABLE public.items ADD COLUMN token uuid DEFAULT gen_random_uuid();"


class DryRun:
    """A DatabaseMigration with dryRun, whose one pending migration rewrites public.items."""

    def __init__(self, url: str) -> None:
        self.kube = FakeKube(
            secrets={("db", "url"): url},
            configmaps={"m": {"001_add_token.up.sql": REWRITE}},
        )
        body = {
            "metadata": {"name": "db", "namespace": "prod", "uid": "5678abcd-0", "generation": 1},
            "spec": {
                "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                "source": {"configMapRef": {"name": "m"}},
                "dryRun": True,
                "policy": {"backup": "never"},
            },
        }
        self.obj = self.kube.add("databasemigrations", body)

    def look(self) -> dict[str, Any]:
        snapshot = Snapshot.of("DatabaseMigration", "databasemigrations", self.obj)
        outcome = reconcile.reconcile(
            cast(Kube, self.kube), snapshot, reconcile.MigrationWorld({}, [])
        )
        if outcome.obj is not None:  # None: nothing changed, nothing written
            self.obj = outcome.obj
        return dict(self.obj.get("status") or {})


def fill(url: str, rows: int) -> None:
    """public.items with `rows` rows; fillfactor 10 makes a few rows take many pages, so a
    table PostgreSQL sizes at tens of megabytes is written quickly."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS public.items (id bigint PRIMARY KEY, name text) "
            "WITH (fillfactor = 10)"
        )
        conn.execute(
            "INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series("
            "(SELECT coalesce(max(id), 0) + 1 FROM public.items), %s) g",
            (rows,),
        )
        conn.execute("ANALYZE public.items")


def rewrite_findings(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in status["lint"]["findings"] if f["rule"] == "adding-field-with-default"]


@pytest.fixture
def catalog_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the operator's catalog reads (the real read still runs)."""
    reads: list[int] = []
    real = live.read_live

    def counted(conn: Any, *args: Any, **kwargs: Any) -> live.LiveFacts:
        reads.append(1)
        return real(conn, *args, **kwargs)

    monkeypatch.setattr(live, "read_live", counted)
    reconcile._lint_cache.clear()
    yield reads
    reconcile._lint_cache.clear()


def test_a_rewrite_of_a_tiny_table_is_a_warning_and_of_a_large_one_an_error(
    database_url: str, catalog_reads: list[int]
) -> None:
    fill(database_url, 10)
    db = DryRun(database_url)
    status = db.look()
    [finding] = rewrite_findings(status)
    assert finding["severity"] == "warning"
    assert "On the live database public.items has about 10 rows" in finding["message"]
    assert "within the 1 s budget" in finding["message"]
    assert status["phase"] == "DryRun" and status["lint"]["errors"] == 0

    # Idle: the same catalog is not read again (a coarse fingerprint, one query, says so).
    db.look()
    assert len(catalog_reads) == 1

    fill(database_url, 150_000)  # about 80 MB at fillfactor 10: seconds under the lock
    status = db.look()
    assert len(catalog_reads) == 2
    [finding] = rewrite_findings(status)
    assert finding["severity"] == "error", finding["message"]
    assert "estimated" in finding["message"] and "under the lock" in finding["message"]
    assert status["lint"]["errors"] == 1
    assert status["phase"] == "Failed"
    assert any(c["reason"] == "LintFailed" for c in status["conditions"])


def test_a_dry_run_writes_the_analysis_of_the_live_database(database_url: str) -> None:
    fill(database_url, 500)
    with psycopg.connect(database_url) as blocker:
        # a session idle in a transaction: the rewrite's lock would wait behind it
        blocker.execute("SELECT count(*) FROM public.items")
        pid = blocker.info.backend_pid
        status = DryRun(database_url).look()
    analysis = status["analysis"]
    with psycopg.connect(database_url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
    assert version is not None
    major = int(version[0]) // 10000
    assert analysis["serverVersion"].startswith(f"{major}.")
    assert analysis["serverVersion"] == status["serverVersion"]
    [table] = analysis["tables"]
    assert table["name"] == "public.items" and table["rows"] == 500
    assert table["sizeBytes"] > 8192
    [session] = analysis["blockingSessions"]
    assert session["pid"] == pid and session["state"].startswith("idle in transaction")
    [statement] = analysis["statements"]
    assert statement == {
        "version": "001",
        "line": 1,
        "lock": "ACCESS EXCLUSIVE",
        "verdict": statement["verdict"],
    }
    assert statement["verdict"].startswith("warning: [adding-field-with-default]")
    assert "public.items has about 500 rows" in statement["verdict"]
    assert analysis["truncated"] is False
    assert "query" not in str(analysis) and database_url not in str(status)


def test_the_analysis_is_bounded(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i in range(30):
            conn.execute(f"CREATE TABLE public.t{i} (id bigint)")
    migration = "\n".join(
        f"ALTER TABLE public.t{i} ADD COLUMN c{j} text;" for i in range(30) for j in range(2)
    )
    db = DryRun(database_url)
    db.kube.configmaps["m"] = {"001_add_columns.up.sql": migration}
    analysis = db.look()["analysis"]
    assert len(analysis["tables"]) == 20
    assert len(analysis["statements"]) == 50
    assert analysis["truncated"] is True


def test_without_dry_run_the_status_has_no_analysis(database_url: str) -> None:
    fill(database_url, 10)
    db = DryRun(database_url)
    assert "analysis" in db.look()
    db.obj["spec"]["dryRun"] = False
    db.obj["metadata"]["generation"] = 2
    assert "analysis" not in db.look()
