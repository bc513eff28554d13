"""Bounded locks: lock_timeout retries, the runner lock, and a runner killed mid-migration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.env.processes import wait_until

from lockstep.api.migration import MigrationPolicy
from lockstep.lint import LintConfig
from lockstep.migrations import engine, ledger
from lockstep.migrations.engine import MigrationFailed, RunnerLockTimeout, RunResult
from lockstep.migrations.linting import lint_source
from lockstep.migrations.records import AppliedMigration, LogEntry
from lockstep.migrations.source import Migration
from lockstep.postgres import Connection, connect

REPO = Path(__file__).resolve().parents[2]
LINT = LintConfig()
LOCK_TIMEOUT = 0.3
# Scheduling on a busy two-core machine: how much later than lock_timeout an attempt may end.
SLACK = 0.4

WIDGETS = Migration("001", "widgets", "CREATE TABLE widgets (id bigint PRIMARY KEY, label text);\n")
COLOUR = Migration("002", "colour", "ALTER TABLE widgets ADD COLUMN colour text;\n")


def policy(**changes: Any) -> MigrationPolicy:
    settings = {
        "lock_timeout": f"{int(LOCK_TIMEOUT * 1000)}ms",
        "lock_timeout_retries": 30,
        "retry_backoff": "100ms",
        "max_retry_backoff": "300ms",
        "runner_lock_timeout": "20s",
    }
    return MigrationPolicy(**(settings | changes))


Events = list[tuple[str, str | None, str]]


def apply(
    url: str,
    source: list[Migration],
    *,
    migration_policy: MigrationPolicy | None = None,
    events: Events | None = None,
    on_event: Callable[[str, str | None, str], None] | None = None,
    applied_by: str = "test:locks",
) -> RunResult:
    linted = lint_source(source, LINT)

    def record(kind: str, version: str | None, detail: str) -> None:
        if events is not None:
            events.append((kind, version, detail))
        if on_event is not None:
            on_event(kind, version, detail)

    return engine.apply(
        url,
        source,
        up_lint=linted.up,
        down_lint=linted.down,
        policy=migration_policy or policy(),
        applied_by=applied_by,
        on_event=record,
    )


@contextmanager
def holding(url: str, statement: str) -> Iterator[Connection]:
    """A session with an open transaction that ran `statement` (and so holds its locks)."""
    conn = connect(url, application_name="test-lock-holder")
    conn.execute("BEGIN")
    conn.execute_text(statement)
    try:
        yield conn
    finally:
        if not conn.closed and conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def release_after(conn: Connection, seconds: float) -> threading.Thread:
    def release() -> None:
        time.sleep(seconds)  # the holder's part of the scenario, not a wait for a condition
        conn.execute("ROLLBACK")

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


def columns(url: str, table: str) -> list[str]:
    with connect(url) as conn:
        rows = conn.fetch_all(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position",
            (table,),
        )
    return [row[0] for row in rows]


def ledger_rows(url: str) -> list[AppliedMigration]:
    with connect(url) as conn:
        return ledger.applied(conn)


def log_rows(url: str) -> list[LogEntry]:
    with connect(url) as conn:
        return ledger.log(conn)


# ------------------------------------------------------------------------- lock_timeout


def test_a_busy_table_is_retried_with_bounded_waits_until_the_lock_is_free(
    database_url: str,
) -> None:
    apply(database_url, [WIDGETS])
    events: Events = []
    with holding(database_url, "LOCK TABLE widgets IN ACCESS SHARE MODE") as holder:
        releaser = release_after(holder, 1.5)
        result = apply(database_url, [WIDGETS, COLOUR], events=events)
        releaser.join(timeout=10)
    (step,) = result.results
    assert step.attempts > 1
    failed_attempts = step.attempt_seconds[:-1]
    assert failed_attempts, "the first attempts must have hit the lock"
    for seconds in failed_attempts:
        assert LOCK_TIMEOUT * 0.9 <= seconds <= LOCK_TIMEOUT + SLACK
    assert step.lock_wait_ms >= 1000  # the lock was held for 1.5 s
    assert columns(database_url, "widgets") == ["id", "label", "colour"]
    (row,) = [r for r in ledger_rows(database_url) if r.version == "002"]
    assert row.attempts == step.attempts
    assert row.lock_wait_ms == step.lock_wait_ms
    retries = [detail for kind, version, detail in events if kind == "retrying"]
    assert len(retries) == step.attempts - 1
    assert "canceling statement due to lock timeout" in retries[0]


def test_other_sessions_queue_behind_a_waiting_migration_for_at_most_lock_timeout(
    database_url: str,
) -> None:
    apply(database_url, [WIDGETS])
    write_times: list[float] = []
    with holding(database_url, "LOCK TABLE widgets IN ACCESS SHARE MODE") as holder:
        stop = threading.Event()

        def writer() -> None:
            with connect(database_url) as conn:
                for n in range(10**6):
                    if stop.is_set():
                        return
                    started = time.monotonic()
                    conn.execute("INSERT INTO widgets (id) VALUES (%s)", (n,))
                    write_times.append(time.monotonic() - started)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        releaser = release_after(holder, 1.5)
        apply(database_url, [WIDGETS, COLOUR])
        releaser.join(timeout=10)
        stop.set()
        thread.join(timeout=10)
    assert write_times
    # writes did queue behind the waiting ALTER TABLE, but never for longer than lock_timeout
    assert max(write_times) >= LOCK_TIMEOUT * 0.5
    assert max(write_times) <= LOCK_TIMEOUT + SLACK


def test_a_lock_that_is_never_released_fails_after_the_retry_limit(database_url: str) -> None:
    apply(database_url, [WIDGETS])
    with (
        holding(database_url, "LOCK TABLE widgets IN ACCESS SHARE MODE"),
        pytest.raises(MigrationFailed) as failure,
    ):
        apply(database_url, [WIDGETS, COLOUR], migration_policy=policy(lock_timeout_retries=3))
    error = failure.value
    assert error.lock_timeout
    assert error.sqlstate == "55P03"
    assert error.attempts == 4
    assert "002 (colour) gave up after 4 attempt(s)" in str(error)
    assert "lock_timeout (0.3s)" in str(error)
    assert "nothing of it was applied" in str(error)
    assert columns(database_url, "widgets") == ["id", "label"]
    assert [row.version for row in ledger_rows(database_url)] == ["001"]
    failed = [e for e in log_rows(database_url) if e.outcome == "failed"]
    assert [(e.version, e.sqlstate, e.attempts) for e in failed] == [("002", "55P03", 4)]


# ---------------------------------------------------------------------------- runner lock

SLOW = Migration(
    "001", "slow_widgets", "CREATE TABLE widgets (id bigint PRIMARY KEY);\nSELECT pg_sleep(1.5);\n"
)
GADGETS = Migration("002", "gadgets", "CREATE TABLE gadgets (id bigint PRIMARY KEY);\n")


def test_two_runners_at_once_apply_each_migration_exactly_once(database_url: str) -> None:
    outcomes: dict[str, RunResult | BaseException] = {}
    start = threading.Barrier(2)

    def runner(name: str) -> None:
        start.wait()
        try:
            outcomes[name] = apply(database_url, [SLOW, GADGETS], applied_by=name)
        except BaseException as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=runner, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    results = [outcome for outcome in outcomes.values() if isinstance(outcome, RunResult)]
    assert len(results) == 2, outcomes
    applied_versions = sorted(r.version for result in results for r in result.results)
    assert applied_versions == ["001", "002"]
    assert sorted(len(result.results) for result in results) == [0, 2]
    assert [row.version for row in ledger_rows(database_url)] == ["001", "002"]
    assert [e.version for e in log_rows(database_url) if e.outcome == "applied"] == ["001", "002"]


def test_a_second_runner_gives_up_when_the_lock_stays_taken(database_url: str) -> None:
    holding_lock = threading.Event()
    first_outcome: list[RunResult | BaseException] = []

    def first() -> None:
        def signal_lock(kind: str, version: str | None, detail: str) -> None:
            if kind == "runner-lock-acquired":
                holding_lock.set()

        try:
            first_outcome.append(apply(database_url, [SLOW], on_event=signal_lock))
        except BaseException as exc:
            first_outcome.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert holding_lock.wait(timeout=20), "the first runner never took the lock"
    events: Events = []
    with pytest.raises(RunnerLockTimeout) as failure:
        apply(
            database_url,
            [SLOW],
            migration_policy=policy(runner_lock_timeout="300ms"),
            events=events,
        )
    thread.join(timeout=30)
    message = str(failure.value)
    assert "another runner holds the migration lock on this database" in message
    assert "lockstep:lock" in message  # who holds it: the first runner's lock session
    assert "gave up after waiting 0.3s" in message
    assert [kind for kind, _, _ in events] == ["runner-lock-waiting"]
    assert isinstance(first_outcome[0], RunResult)
    assert [row.version for row in ledger_rows(database_url)] == ["001"]


# ----------------------------------------------------------------------- a killed runner


def test_a_runner_killed_mid_migration_leaves_no_lock_and_nothing_half_applied(
    database_url: str, tmp_path: Path
) -> None:
    with connect(database_url) as conn:
        # lets the test make the slow migration fast for the re-run without editing it
        conn.execute("CREATE TABLE sleep_control (sleepy boolean NOT NULL)")
        conn.execute("INSERT INTO sleep_control VALUES (true)")
    (tmp_path / "001_widgets.up.sql").write_text(WIDGETS.up)
    (tmp_path / "002_slow_colour.up.sql").write_text(
        "ALTER TABLE widgets ADD COLUMN colour text;\n"
        "SELECT pg_sleep(30) FROM sleep_control WHERE sleepy;\n"
    )
    command = [sys.executable, "-m", "lockstep", "apply", "--database-url-env", "TEST_DB_URL"]
    command.append(str(tmp_path))
    env = {**os.environ, "TEST_DB_URL": database_url}
    runner = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        with connect(database_url) as observer:

            def sleeping_backend() -> Any:
                return observer.fetch_value(
                    "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'SELECT pg_sleep(30)%%'"
                )

            wait_until(sleeping_backend, timeout=60, what="the migration to be running")
            assert (
                observer.fetch_value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
                == 1
            )
            runner.send_signal(signal.SIGKILL)
            runner.wait(timeout=10)

            def cleaned_up() -> bool:
                advisory = observer.fetch_value(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                )
                return advisory == 0 and sleeping_backend() is None

            wait_until(
                cleaned_up, timeout=15, what="PostgreSQL to end the killed runner's sessions"
            )
            assert columns(database_url, "widgets") == ["id", "label"]  # 002 was rolled back
            assert [row.version for row in ledger_rows(database_url)] == ["001"]
            observer.execute("UPDATE sleep_control SET sleepy = false")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(timeout=10)
    rerun = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "applied  002 (slow_colour)" in rerun.stdout or "002 (slow_colour)" in rerun.stdout
    assert columns(database_url, "widgets") == ["id", "label", "colour"]
    assert [row.version for row in ledger_rows(database_url)] == ["001", "002"]
    assert [e.version for e in log_rows(database_url) if e.outcome == "applied"] == ["001", "002"]
