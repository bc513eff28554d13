"""Statements that cannot run in a transaction: CREATE INDEX CONCURRENTLY and its failures."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from lockstep.api.migration import MigrationPolicy
from lockstep.lint import LintConfig
from lockstep.migrations import engine, ledger
from lockstep.migrations.engine import MigrationFailed, RunResult
from lockstep.migrations.linting import lint_source
from lockstep.migrations.records import AppliedMigration, LogEntry
from lockstep.migrations.source import Migration
from lockstep.postgres import DatabaseError, IndexState, connect

LINT = LintConfig()
POLICY = MigrationPolicy(
    lock_timeout="300ms",
    lock_timeout_retries=30,
    retry_backoff="100ms",
    max_retry_backoff="300ms",
    runner_lock_timeout="5s",
)
UNIQUE_EMAIL = Migration(
    "001",
    "unique_email",
    "CREATE UNIQUE INDEX CONCURRENTLY accounts_email_key ON accounts (email);\n",
    "DROP INDEX CONCURRENTLY IF EXISTS accounts_email_key;\n",
)

Events = list[tuple[str, str | None, str]]


@pytest.fixture
def accounts(database_url: str) -> str:
    """A table with two accounts sharing an e-mail address."""
    with connect(database_url) as conn:
        conn.execute("CREATE TABLE accounts (id bigint PRIMARY KEY, email text, owner text)")
        conn.execute(
            "INSERT INTO accounts VALUES (1, 'a@example.com', 'ann'), (2, 'a@example.com', 'bo'),"
            " (3, 'c@example.com', 'cy')"
        )
    return database_url


def apply(
    url: str, source: list[Migration], *, events: Events | None = None, **options: Any
) -> RunResult:
    linted = lint_source(source, LINT)
    return engine.apply(
        url,
        source,
        up_lint=linted.up,
        down_lint=linted.down,
        policy=POLICY,
        applied_by="test:cic",
        on_event=None if events is None else lambda *event: events.append(event),
        **options,
    )


def index(url: str, name: str) -> IndexState | None:
    with connect(url) as conn:
        return conn.index_state(name)


def index_oid(url: str, name: str) -> int:
    with connect(url) as conn:
        return int(conn.fetch_value("SELECT %s::regclass::oid", (name,)))


def ledger_rows(url: str) -> list[AppliedMigration]:
    with connect(url) as conn:
        return ledger.applied(conn)


def log_rows(url: str, version: str) -> list[LogEntry]:
    with connect(url) as conn:
        return ledger.log(conn, version)


def fix_duplicates(url: str) -> None:
    with connect(url) as conn:
        conn.execute("UPDATE accounts SET email = 'b@example.com' WHERE id = 2")


def test_a_concurrent_index_is_built_outside_a_transaction_and_recorded(accounts: str) -> None:
    fix_duplicates(accounts)
    result = apply(accounts, [UNIQUE_EMAIL])
    assert [r.version for r in result.results] == ["001"]
    state = index(accounts, "accounts_email_key")
    assert state is not None
    assert state.valid
    (row,) = ledger_rows(accounts)
    assert not row.transactional
    assert row.checksum == UNIQUE_EMAIL.checksum


def test_a_failed_build_is_reported_and_leaves_no_invalid_index_behind(accounts: str) -> None:
    events: Events = []
    with pytest.raises(MigrationFailed) as failure:
        apply(accounts, [UNIQUE_EMAIL], events=events)
    error = failure.value
    assert error.sqlstate == "23505"
    assert error.message == 'could not create unique index "accounts_email_key"'
    assert "runs outside a transaction" in str(error)
    assert ledger_rows(accounts) == []
    # the INVALID index the failed build left would slow every write: it is dropped at once
    assert index(accounts, "accounts_email_key") is None
    assert any(kind == "invalid-index-dropped" for kind, _, _ in events)


def test_an_invalid_index_left_by_an_earlier_try_is_dropped_before_building_again(
    accounts: str,
) -> None:
    # an earlier runner died after its build failed: the INVALID index is still there
    with connect(accounts) as conn, pytest.raises(DatabaseError):
        conn.execute_text(UNIQUE_EMAIL.up)
    left_behind = index(accounts, "accounts_email_key")
    assert left_behind is not None
    assert not left_behind.valid
    fix_duplicates(accounts)
    events: Events = []
    apply(accounts, [UNIQUE_EMAIL], events=events)
    state = index(accounts, "accounts_email_key")
    assert state is not None
    assert state.valid
    dropped = [detail for kind, _, detail in events if kind == "invalid-index-dropped"]
    assert dropped == [
        "dropped the INVALID index public.accounts_email_key left by a failed build; "
        "building it again"
    ]
    assert [row.version for row in ledger_rows(accounts)] == ["001"]
    assert [e.outcome for e in log_rows(accounts, "001")] == ["applied"]


def test_a_build_that_hits_lock_timeout_is_retried_and_ends_valid(accounts: str) -> None:
    fix_duplicates(accounts)
    holder = connect(accounts, application_name="test-old-transaction")
    try:
        # an open transaction that read the table: the build must wait for it to end
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM accounts")

        def finish_transaction() -> None:
            time.sleep(1.5)  # the old transaction's part of the scenario
            holder.execute("COMMIT")

        thread = threading.Thread(target=finish_transaction, daemon=True)
        thread.start()
        result = apply(accounts, [UNIQUE_EMAIL])
        thread.join(timeout=10)
    finally:
        holder.close()
    (step,) = result.results
    assert step.attempts > 1
    state = index(accounts, "accounts_email_key")
    assert state is not None
    assert state.valid
    assert [row.version for row in ledger_rows(accounts)] == ["001"]


def test_a_later_statement_failing_resumes_after_the_finished_ones(accounts: str) -> None:
    two_indexes = Migration(
        "001",
        "indexes",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_owner_idx ON accounts (owner);\n"
        "CREATE UNIQUE INDEX CONCURRENTLY accounts_email_key ON accounts (email);\n",
    )
    with pytest.raises(MigrationFailed, match="the next run continues from this statement"):
        apply(accounts, [two_indexes])
    first_build = index_oid(accounts, "accounts_owner_idx")
    fix_duplicates(accounts)
    events: Events = []
    apply(accounts, [two_indexes], events=events)
    assert index_oid(accounts, "accounts_owner_idx") == first_build  # not built twice
    email = index(accounts, "accounts_email_key")
    assert email is not None
    assert email.valid
    assert any(
        kind == "resumed" and "after statement 1 of 2" in detail for kind, _, detail in events
    )
    (row,) = ledger_rows(accounts)
    assert row.statements == 2


def test_a_down_migration_drops_the_index_concurrently(accounts: str) -> None:
    fix_duplicates(accounts)
    base = Migration("000", "base", "CREATE TABLE IF NOT EXISTS marker (id bigint);\n")
    apply(accounts, [base, UNIQUE_EMAIL])
    result = apply(accounts, [base, UNIQUE_EMAIL], target="000")
    assert [(r.version, r.direction) for r in result.results] == [("001", "down")]
    assert index(accounts, "accounts_email_key") is None
    assert [row.version for row in ledger_rows(accounts)] == ["000"]
