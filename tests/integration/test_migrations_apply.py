"""The apply engine against a real PostgreSQL: ledger, re-runs, rollback, drift, failures."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from lockstep.api.migration import MigrationPolicy
from lockstep.lint import LintConfig
from lockstep.migrations import engine, ledger
from lockstep.migrations.engine import Cancelled, MigrationFailed, RunResult
from lockstep.migrations.linting import lint_source
from lockstep.migrations.plan import DriftError, Plan, PlanError
from lockstep.migrations.records import AppliedMigration, LogEntry
from lockstep.migrations.source import Migration
from lockstep.postgres import connect

LINT = LintConfig(ignore=frozenset({"ban-drop-column", "ban-drop-table"}))
FAST = MigrationPolicy(
    lock_timeout="300ms", retry_backoff="50ms", max_retry_backoff="200ms", runner_lock_timeout="5s"
)

USERS = Migration(
    "001",
    "users",
    "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);\n",
    "DROP TABLE users;\n",
)
EMAIL = Migration(
    "002",
    "email",
    "ALTER TABLE users ADD COLUMN email text;\n",
    "ALTER TABLE users DROP COLUMN email;\n",
)
ORDERS = Migration(
    "003",
    "orders",
    "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL, total numeric);\n",
    "DROP TABLE orders;\n",
)
SOURCE = [USERS, EMAIL, ORDERS]


def apply(
    url: str,
    source: list[Migration],
    *,
    policy: MigrationPolicy = FAST,
    events: list[tuple[str, str | None, str]] | None = None,
    **options: Any,
) -> RunResult:
    linted = lint_source(source, LINT)
    return engine.apply(
        url,
        source,
        up_lint=linted.up,
        down_lint=linted.down,
        policy=policy,
        applied_by=options.pop("applied_by", "test:apply"),
        on_event=None if events is None else lambda *event: events.append(event),
        **options,
    )


def dry_run(url: str, source: list[Migration], **options: Any) -> Plan:
    linted = lint_source(source, LINT)
    return engine.plan(
        url, source, up_lint=linted.up, down_lint=linted.down, policy=FAST, **options
    )


def tables(url: str) -> set[str]:
    with connect(url) as conn:
        rows = conn.fetch_all(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
    return {row[0] for row in rows}


def columns(url: str, table: str) -> list[str]:
    with connect(url) as conn:
        rows = conn.fetch_all(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position",
            (table,),
        )
    return [row[0] for row in rows]


def schema_snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a migration could change in the catalog, plus the ledger's rows."""
    queries = {
        "relations": "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
        "columns": "SELECT table_schema, table_name, column_name, data_type, is_nullable, "
        "column_default FROM information_schema.columns "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
        "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
        "indexes": "SELECT indexrelid::regclass::text, indisvalid, pg_get_indexdef(indexrelid) "
        "FROM pg_index WHERE indrelid IN (SELECT oid FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace) ORDER BY 1",
        "types": "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace "
        "ORDER BY 1",
        "ledger": "SELECT version, name, checksum FROM lockstep.schema_migrations ORDER BY 1",
    }
    with connect(url) as conn:
        return {name: conn.fetch_all(sql) for name, sql in queries.items()}


def ledger_rows(url: str) -> list[AppliedMigration]:
    with connect(url) as conn:
        return ledger.applied(conn)


def log_rows(url: str, version: str | None = None) -> list[LogEntry]:
    with connect(url) as conn:
        return ledger.log(conn, version)


# --------------------------------------------------------------------------- applying


def test_apply_brings_an_empty_database_to_the_latest_version(database_url: str) -> None:
    result = apply(database_url, SOURCE)
    assert [r.version for r in result.results] == ["001", "002", "003"]
    assert {"public.users", "public.orders"} <= tables(database_url)
    assert columns(database_url, "users") == ["id", "name", "email"]
    assert [row.version for row in ledger_rows(database_url)] == ["001", "002", "003"]


def test_the_ledger_records_checksum_timings_and_who_applied(database_url: str) -> None:
    apply(database_url, [USERS], applied_by="cli:ana@laptop")
    (row,) = ledger_rows(database_url)
    assert row.version == "001"
    assert row.name == "users"
    assert row.checksum == hashlib.sha256(USERS.up.encode()).hexdigest()
    assert row.phase == "expand"
    assert row.transactional
    assert row.statements == 1
    assert row.started_at <= row.finished_at
    assert row.duration_ms >= 0
    assert row.lock_wait_ms == 0
    assert row.attempts == 1
    assert row.applied_by == "cli:ana@laptop"
    (entry,) = log_rows(database_url)
    assert (entry.version, entry.direction, entry.outcome) == ("001", "up", "applied")
    assert entry.applied_by == "cli:ana@laptop"


def test_apply_stops_at_the_target_version(database_url: str) -> None:
    result = apply(database_url, SOURCE, target="002")
    assert [r.version for r in result.results] == ["001", "002"]
    assert "public.orders" not in tables(database_url)
    later = apply(database_url, SOURCE)
    assert [r.version for r in later.results] == ["003"]


def test_running_apply_again_changes_nothing(database_url: str) -> None:
    apply(database_url, SOURCE)
    before = (ledger_rows(database_url), log_rows(database_url), schema_snapshot(database_url))
    again = apply(database_url, SOURCE)
    assert again.results == ()
    assert again.plan.up_to_date
    assert (ledger_rows(database_url), log_rows(database_url), schema_snapshot(database_url)) == (
        before
    )


def test_rollback_runs_down_migrations_newest_first(database_url: str) -> None:
    apply(database_url, SOURCE)
    events: list[tuple[str, str | None, str]] = []
    result = apply(database_url, SOURCE, target="001", events=events)
    assert [(r.version, r.direction) for r in result.results] == [("003", "down"), ("002", "down")]
    assert "public.orders" not in tables(database_url)
    assert columns(database_url, "users") == ["id", "name"]
    assert [row.version for row in ledger_rows(database_url)] == ["001"]
    reverted = [e for e in log_rows(database_url) if e.outcome == "reverted"]
    assert [(e.version, e.direction) for e in reverted] == [("003", "down"), ("002", "down")]
    assert [version for kind, version, _ in events if kind == "reverted"] == ["003", "002"]


def test_a_dry_run_applies_nothing_not_even_the_ledger(database_url: str) -> None:
    plan = dry_run(database_url, SOURCE)
    assert [step.version for step in plan.steps] == ["001", "002", "003"]
    assert tables(database_url) == set()
    with connect(database_url) as conn:
        assert conn.fetch_value("SELECT to_regnamespace('lockstep')") is None


def test_the_ledger_can_be_created_by_two_runners_at_once(database_url: str) -> None:
    with connect(database_url) as first, connect(database_url) as second:
        ledger.ensure(first)
        ledger.ensure(second)
        assert ledger.exists(second)


# ------------------------------------------------------------------------------- drift


def test_drift_stops_with_a_clear_message_and_changes_nothing(database_url: str) -> None:
    apply(database_url, [USERS, EMAIL])
    before = schema_snapshot(database_url)
    log_before = log_rows(database_url)
    edited = Migration("002", "email", "ALTER TABLE users ADD COLUMN email varchar(200);\n")
    with pytest.raises(DriftError) as failure:
        apply(database_url, [USERS, edited, ORDERS])
    assert "migration 002 (email) was applied with checksum" in str(failure.value)
    assert "must not change" in str(failure.value)
    assert schema_snapshot(database_url) == before
    assert log_rows(database_url) == log_before


def test_a_migration_missing_from_the_source_is_drift(database_url: str) -> None:
    apply(database_url, [USERS, EMAIL])
    with pytest.raises(
        DriftError, match=r"002 \(email\) is applied in the database but is missing"
    ):
        apply(database_url, [USERS])


# ----------------------------------------------------------------------------- failure


BROKEN = Migration(
    "002",
    "accounts",
    "CREATE TABLE accounts (id bigint, owner text);\n"
    "ALTER TABLE users ADD COLUMN nickname text;\n"
    "INSERT INTO accounts VALUES (1, 'a'), (1, 'b');\n"
    "CREATE UNIQUE INDEX accounts_id_key ON accounts (id);\n"
    "ALTER TABLE users ADD COLUMN plan text;\n",
)


def test_a_failing_statement_leaves_schema_and_ledger_exactly_as_before(database_url: str) -> None:
    apply(database_url, [USERS])
    before = schema_snapshot(database_url)
    with pytest.raises(MigrationFailed) as failure:
        apply(database_url, [USERS, BROKEN, ORDERS])
    error = failure.value
    assert error.version == "002"
    assert error.statement == "CREATE UNIQUE INDEX accounts_id_key ON accounts (id)"
    assert error.sqlstate == "23505"
    assert error.message == 'could not create unique index "accounts_id_key"'
    assert "002 (accounts) failed at statement line 4: CREATE UNIQUE INDEX" in str(error)
    assert "rolled back: nothing of it was applied" in str(error)
    assert schema_snapshot(database_url) == before
    (failed,) = [e for e in log_rows(database_url) if e.outcome == "failed"]
    assert (failed.version, failed.sqlstate) == ("002", "23505")
    assert failed.statement == "CREATE UNIQUE INDEX accounts_id_key ON accounts (id)"


def test_a_statement_timeout_is_not_retried(database_url: str) -> None:
    slow = Migration("002", "slow", "SELECT pg_sleep(3);\n")
    policy = FAST.model_copy(update={"statement_timeout": "300ms"})
    with pytest.raises(MigrationFailed) as failure:
        apply(database_url, [USERS, slow], policy=policy)
    assert failure.value.sqlstate == "57014"
    assert failure.value.attempts == 1
    assert "canceling statement due to statement timeout" in failure.value.message


def test_every_migration_starts_from_a_clean_session(database_url: str) -> None:
    with connect(database_url) as conn:
        conn.execute("CREATE SCHEMA elsewhere")
    moves = Migration("002", "moves", "SET search_path = elsewhere;\nCREATE TABLE a (id bigint);\n")
    stays = Migration("003", "stays", "CREATE TABLE b (id bigint);\n")
    apply(database_url, [USERS, moves, stays])
    assert {"elsewhere.a", "public.b"} <= tables(database_url)


def test_lint_errors_in_a_pending_migration_block_the_apply(database_url: str) -> None:
    apply(database_url, [USERS])
    unsafe = Migration("002", "name_index", "CREATE INDEX users_name_idx ON users (name);\n")
    with pytest.raises(PlanError, match=r"the lint found errors in 002 \(name_index\)"):
        apply(database_url, [USERS, unsafe])
    assert [row.version for row in ledger_rows(database_url)] == ["001"]


def test_contract_migrations_are_held_back_unless_allowed(database_url: str) -> None:
    drop = Migration("004", "drop_name", "ALTER TABLE users DROP COLUMN name;\n")
    events: list[tuple[str, str | None, str]] = []
    result = apply(database_url, [*SOURCE, drop], events=events)
    assert [r.version for r in result.results] == ["001", "002", "003"]
    assert result.plan.blocked_contract == ("004",)
    assert any(kind == "held-back" and version == "004" for kind, version, _ in events)
    assert "name" in columns(database_url, "users")
    allowed = apply(database_url, [*SOURCE, drop], allow_contract=True)
    assert [r.version for r in allowed.results] == ["004"]
    assert ledger_rows(database_url)[-1].phase == "contract"


def test_a_cancel_during_the_retry_wait_stops_with_nothing_applied(database_url: str) -> None:
    apply(database_url, [USERS])
    with connect(database_url) as holder, holder.transaction():
        holder.execute("LOCK TABLE users IN ACCESS SHARE MODE")
        with pytest.raises(Cancelled, match="nothing of it was applied"):
            apply(database_url, [USERS, EMAIL], wait=lambda seconds: True)
    assert columns(database_url, "users") == ["id", "name"]
    assert [e.outcome for e in log_rows(database_url, "002")] == ["cancelled"]
