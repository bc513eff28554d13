"""DatabaseMigration end to end: the operator (with the RBAC of manifests/) against the real
cluster and PostgreSQL; backup Jobs really run pg_dump through the local pod executor."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from tests.e2e.conftest import Kubectl
from tests.e2e.releases import holds_for
from tests.env.cluster import EXEC, FAIL
from tests.env.executor import LocalPodExecutor, make_backup_volume
from tests.env.operator_runner import OperatorProcess

pytestmark = pytest.mark.cluster

USERS = {
    "version": "001",
    "name": "create_users",
    "up": "CREATE TABLE users "
    "(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);",
    "down": "DROP TABLE users;",
}
EMAIL = {
    "version": "002",
    "name": "add_email",
    "up": "ALTER TABLE users ADD COLUMN email text;",
    "down": "ALTER TABLE users DROP COLUMN email;",
}


def migration(
    name: str = "shop-db",
    *,
    migrations: list[dict[str, Any]],
    backup: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "database": {"urlFrom": {"secretKeyRef": {"name": "shop-db", "key": "url"}}},
        "source": {"migrations": migrations},
        **spec,
    }
    if backup is not None:
        body["backup"] = backup
    else:
        body.setdefault("policy", {})["backup"] = "never"
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": name},
        "spec": body,
    }


def secret(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-db"},
        "stringData": {"url": url},
    }


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema not in ('pg_catalog', 'information_schema')"
        ).fetchall()
    return {r[0] for r in rows}


def ledger(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        exists = conn.execute("select to_regclass('lockstep.schema_migrations')").fetchone()
        if exists is None or exists[0] is None:
            return []
        return [
            r[0]
            for r in conn.execute("select version from lockstep.schema_migrations order by version")
        ]


def phase(k: Kubectl, name: str = "shop-db") -> str | None:
    return k.status("dbm", name).get("phase")  # type: ignore[no-any-return]


def backup_spec(**extra: Any) -> dict[str, Any]:
    return {
        "destination": {"persistentVolumeClaim": {"claimName": "backups", "subPath": "shop"}},
        "podLabels": {EXEC: "true"},
        "activeDeadlineSeconds": 120,
        "retention": 3,
        **extra,
    }


def test_a_migration_with_a_backup_job_is_backed_up_then_applied_and_ready(
    k: Kubectl, operator: OperatorProcess, pod_executor: LocalPodExecutor, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE legacy AS SELECT g AS id FROM generate_series(1, 500) g")
    make_backup_volume(k.cluster, k.namespace, "backups")
    k.apply(
        secret(database_url),
        migration(migrations=[USERS, EMAIL], backup=backup_spec(), policy={"backup": "always"}),
    )
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=120s")
    status = k.status("dbm", "shop-db")
    assert status["currentVersion"] == "002" and status["phase"] == "Ready"
    assert ledger(database_url) == ["001", "002"]
    (backup,) = status["backups"]
    dump = pod_executor.volume_dir(k.namespace, "backups") / backup["path"]
    assert dump.stat().st_size == backup["sizeBytes"]
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == backup["sha256"]
    assert backup.get("databaseVersion") is None  # taken before anything was applied
    reasons = [e["reason"] for e in k.events("shop-db")]
    for expected in ("BackupStarted", "BackupCompleted", "MigrationApplied"):
        assert expected in reasons
    assert [a["version"] for a in status["applied"]] == ["001", "002"]


def test_a_failing_backup_job_means_nothing_is_applied_and_the_status_says_why(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    make_backup_volume(k.cluster, k.namespace, "backups")
    k.apply(
        secret(database_url),
        migration(
            migrations=[USERS],
            policy={"backup": "always"},
            backup={
                "destination": {"persistentVolumeClaim": {"claimName": "backups"}},
                "podLabels": {FAIL: "true"},
            },
        ),
    )
    k.wait_for("Stalled", lambda: k.condition("dbm", "shop-db", "Stalled") == "True", timeout=90)
    status = k.status("dbm", "shop-db")
    assert status["phase"] == "Failed"
    assert "backup Job" in status["message"] and "no migration was applied" in status["message"]
    assert tables(database_url) == set()
    assert any(e["reason"] == "BackupFailed" for e in k.events("shop-db"))


def test_invalid_sql_stalls_with_the_finding_and_leaves_the_database_untouched(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    broken = {"version": "001", "name": "broken", "up": "CREATE TABLE t (id bigint;\nSELECT 1;"}
    k.apply(secret(database_url), migration(migrations=[broken]))
    k.wait_for("Stalled", lambda: k.condition("dbm", "shop-db", "Stalled") == "True")
    status = k.status("dbm", "shop-db")
    assert status["phase"] == "Failed"
    assert "lint found errors" in status["message"]
    findings = status["lint"]["findings"]
    assert findings[0]["rule"] == "syntax-error" and findings[0]["line"] == 1
    assert tables(database_url) == set()  # not even the ledger


def test_a_dangerous_migration_is_refused_before_anything_runs(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    # The lint reads the live table's size: blocking writes to an empty table for an index
    # build is harmless, to this one (about 80 MB at fillfactor 10) it takes seconds.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, total bigint) WITH (fillfactor = 10)"
        )
        conn.execute("INSERT INTO orders SELECT g, g FROM generate_series(1, 150000) g")
        conn.execute("ANALYZE orders")
    index = {
        "version": "001",
        "name": "index_orders",
        "up": "CREATE INDEX orders_total ON orders (total);",
    }
    k.apply(secret(database_url), migration(migrations=[index]))
    k.wait_for("Stalled", lambda: k.condition("dbm", "shop-db", "Stalled") == "True")
    lint = k.status("dbm", "shop-db")["lint"]
    [finding] = [f for f in lint["findings"] if f["rule"] == "require-concurrent-index-creation"]
    assert finding["severity"] == "error" and "under the lock" in finding["message"]
    assert tables(database_url) == {"public.orders"}
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('orders_total')").fetchone() == (None,)


def test_a_missing_secret_gives_a_clear_condition_and_heals_when_created(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    k.apply(migration(migrations=[USERS]))

    def current() -> dict[str, dict[str, str]]:
        return {c["type"]: c for c in k.status("dbm", "shop-db").get("conditions") or []}

    k.wait_for(
        "SecretNotFound",
        lambda: current().get("Ready", {}).get("reason") == "SecretNotFound",
        timeout=30,
    )
    conditions = current()
    # lockstep retries this by itself: in progress for kstatus (Flux keeps waiting), not Stalled
    assert conditions["Reconciling"]["reason"] == "ProgressingWithRetry"
    assert conditions["Stalled"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "SecretNotFound"
    assert "Secret shop-db not found" in conditions["Ready"]["message"]
    k.apply(secret(database_url))
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=60s")
    assert ledger(database_url) == ["001"]


def test_dry_run_writes_the_plan_and_applies_nothing(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    k.apply(secret(database_url), migration(migrations=[USERS, EMAIL], dryRun=True))
    k.wait_for("DryRun", lambda: phase(k) == "DryRun")
    status = k.status("dbm", "shop-db")
    plan = status["plan"]
    assert [m["version"] for m in plan["migrations"]] == ["001", "002"]
    assert plan["migrations"][1]["statements"][0]["lock"] == "ACCESS EXCLUSIVE"
    assert plan["migrations"][0]["phase"] == "expand"
    # the analysis of the live database, as `lockstep analyze` gives it
    analysis = status["analysis"]
    assert analysis["serverVersion"] == status["serverVersion"]
    assert analysis["tables"] == [] and analysis["blockingSessions"] == []
    verdicts = {s["version"]: s["verdict"] for s in analysis["statements"]}
    assert verdicts["001"].startswith("info: [require-table-schema] users has no schema")
    assert verdicts["002"].startswith("info: [require-table-schema]")
    assert tables(database_url) == set()


def test_a_lower_target_rolls_back_with_down_migrations(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    k.apply(secret(database_url), migration(migrations=[USERS, EMAIL]))
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=60s")
    k.apply(migration(migrations=[USERS, EMAIL], targetVersion="001"))
    k.wait_for(
        "rolled back",
        lambda: k.status("dbm", "shop-db").get("currentVersion") == "001" and phase(k) == "Ready",
    )
    assert ledger(database_url) == ["001"]
    with psycopg.connect(database_url) as conn:
        columns = [
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns where table_name = 'users'"
            )
        ]
    assert "email" not in columns


def test_changing_an_applied_migration_stalls_with_a_drift_message(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    k.apply(secret(database_url), migration(migrations=[USERS]))
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=60s")
    edited = dict(USERS, up=USERS["up"].replace("name text", "full_name text"))
    k.apply(migration(migrations=[edited, EMAIL]))
    k.wait_for("Stalled", lambda: k.condition("dbm", "shop-db", "Stalled") == "True")
    assert "drifted" in k.status("dbm", "shop-db")["message"]
    assert ledger(database_url) == ["001"]  # 002 was not applied on top of a drifted history


def test_contract_migrations_wait_unless_breaking_changes_are_allowed(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    drop = {"version": "003", "name": "drop_name", "up": "ALTER TABLE users DROP COLUMN name;"}
    k.apply(secret(database_url), migration(migrations=[USERS, EMAIL, drop]))
    k.wait_for("waiting", lambda: phase(k) == "WaitingForContract")
    status = k.status("dbm", "shop-db")
    assert status["pendingContract"] == ["003"] and status["currentVersion"] == "002"
    k.apply(
        migration(
            migrations=[USERS, EMAIL, drop], policy={"backup": "never", "allowBreaking": True}
        )
    )
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=60s")
    assert ledger(database_url) == ["001", "002", "003"]


def test_the_operator_killed_mid_migration_applies_it_exactly_once_after_restart(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    slow = {
        "version": "002",
        "name": "slow",
        "up": "SELECT pg_sleep(3);\nCREATE TABLE audit (id bigint);",
    }
    k.apply(
        secret(database_url),
        migration(migrations=[USERS, slow], policy={"backup": "never", "statementTimeout": "1m"}),
    )

    def running() -> bool:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "select count(*) from pg_stat_activity where query like '%pg_sleep(3)%' "
                "and pid <> pg_backend_pid()"
            ).fetchone()
        return bool(row and row[0])

    k.wait_for("the slow migration to run", running, timeout=60, interval=0.05)
    operator.kill()
    operator.start()
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=90s")
    assert ledger(database_url) == ["001", "002"]
    with psycopg.connect(database_url) as conn:
        applied = conn.execute(
            "select version, count(*) from lockstep.migration_log "
            "where outcome = 'applied' group by version"
        ).fetchall()
    assert dict(applied) == {"001": 1, "002": 1}


def test_nothing_secret_appears_in_status_events_or_operator_logs(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    parts = urlsplit(database_url)
    password = parts.password
    assert password
    broken_url = f"postgresql://{parts.username}:{password}@127.0.0.1:1/nowhere"
    k.apply(secret(broken_url), migration(migrations=[USERS]))
    k.wait_for(
        "unreachable",
        lambda: any(
            c["type"] == "Ready" and c["reason"] == "DatabaseUnreachable"
            for c in k.status("dbm", "shop-db").get("conditions") or []
        ),
    )
    k.apply(secret(database_url))
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=60s")
    seen = json.dumps(k.get("dbm", "shop-db")) + json.dumps(k.events("shop-db")) + operator.logs()
    assert password not in seen
    assert database_url not in seen and broken_url not in seen


def test_a_change_of_the_migrations_configmap_is_seen_at_once(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    def configmap(*migrations: dict[str, Any]) -> dict[str, Any]:
        data = {f"{m['version']}_{m['name']}.up.sql": m["up"] for m in migrations}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": data}

    body = migration(migrations=[])
    body["spec"]["source"] = {"configMapRef": {"name": "m"}}
    k.apply(secret(database_url), configmap(USERS), body)
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=60s")
    k.apply(configmap(USERS, EMAIL))
    # the ConfigMap is watched: an idle DatabaseMigration wakes up, it does not poll
    k.wait_for("002 applied", lambda: ledger(database_url) == ["001", "002"], timeout=10)
    k.wait_for("Ready at 002", lambda: k.status("dbm", "shop-db").get("currentVersion") == "002")


def test_an_idle_migration_opens_no_database_connection(
    k: Kubectl, operator: OperatorProcess, database_url: str
) -> None:
    k.apply(secret(database_url), migration(migrations=[USERS]))
    k("wait", "--for=condition=Ready", "dbm/shop-db", "--timeout=60s")

    name = database_url.rsplit("/", 1)[1]

    def client_activity() -> tuple[object, ...]:
        # Client sessions only: autovacuum workers also connect to the database and commit
        # transactions there, so `numbackends` and `xact_commit` move without the operator.
        with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres") as conn:
            sessions = conn.execute(
                "select sessions from pg_stat_database where datname = %s", (name,)
            ).fetchone()
            open_sessions = conn.execute(
                "select pid, backend_start, state_change from pg_stat_activity "
                "where datname = %s and backend_type = 'client backend' order by pid",
                (name,),
            ).fetchall()
        assert sessions is not None
        return (sessions[0], *open_sessions)

    # The pass after the one that wrote Ready (woken by that write) still looks once; then the
    # migration is idle. Wait for the counters to stand still for 3 s before the 10 s watch.
    seen = [client_activity()]

    def settled() -> bool:
        seen.append(client_activity())
        return seen[-1] == seen[-2]

    k.wait_for("the last look after Ready", settled, timeout=60, interval=3)
    before = seen[-1]
    holds_for(10, "no new client session or statement", lambda: client_activity() == before)
