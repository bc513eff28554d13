"""The ledger in the target database: which migrations are applied, and an audit log of runs.

It lives in its own schema, `lockstep`:
- `schema_migrations`: one row per applied migration (the checksum is never rewritten);
- `migration_log`: one row per up or down run, including failed and cancelled ones;
- `migration_progress`: how far a non-transactional migration got, while it is unfinished.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from lockstep import __version__
from lockstep.postgres import Connection
from lockstep.redact import redact

from .records import AppliedMigration, LogEntry, Outcome, Progress

SCHEMA = "lockstep"

# Serialises the first creation of the ledger by two runners; distinct from the runner lock,
# which the same runner holds on another connection while it creates the ledger.
_CREATE_LOCK_KEY = 0x6C6F636B73746570  # "lockstep"

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS lockstep",
    """
    CREATE TABLE IF NOT EXISTS lockstep.schema_migrations (
        version text PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
        phase text NOT NULL CHECK (phase IN ('expand', 'contract')),
        transactional boolean NOT NULL,
        statements integer NOT NULL,
        started_at timestamptz NOT NULL,
        finished_at timestamptz NOT NULL,
        duration_ms bigint NOT NULL,
        lock_wait_ms bigint NOT NULL,
        attempts integer NOT NULL,
        applied_by text NOT NULL,
        lockstep_version text NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS lockstep.migration_log (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        version text NOT NULL,
        name text NOT NULL,
        direction text NOT NULL CHECK (direction IN ('up', 'down')),
        outcome text NOT NULL CHECK (outcome IN ('applied', 'reverted', 'failed', 'cancelled')),
        checksum text NOT NULL,
        started_at timestamptz NOT NULL,
        finished_at timestamptz NOT NULL,
        duration_ms bigint NOT NULL,
        lock_wait_ms bigint NOT NULL,
        attempts integer NOT NULL,
        applied_by text NOT NULL,
        statement text,
        sqlstate text,
        error text
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS lockstep.migration_progress (
        version text PRIMARY KEY,
        direction text NOT NULL CHECK (direction IN ('up', 'down')),
        checksum text NOT NULL,
        statements_done integer NOT NULL,
        statements_total integer NOT NULL,
        updated_at timestamptz NOT NULL
    )
    """,
)


def exists(conn: Connection) -> bool:
    return bool(
        conn.fetch_value(
            "SELECT to_regclass('lockstep.schema_migrations') IS NOT NULL "
            "AND to_regclass('lockstep.migration_log') IS NOT NULL "
            "AND to_regclass('lockstep.migration_progress') IS NOT NULL"
        )
    )


def ensure(conn: Connection) -> None:
    """Create the ledger if it is missing; safe when several runners do it at once."""
    if exists(conn):
        return  # no DDL, no lock: the common case, and fine for a role without CREATE
    with conn.transaction():
        conn.set_local_timeouts(lock_timeout=30, statement_timeout=60)
        # a second runner waits here, then finds everything in place (IF NOT EXISTS alone
        # races: two CREATEs of the same name can both pass the check)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK_KEY,))
        for statement in _DDL:
            conn.execute(statement)


def applied(conn: Connection) -> list[AppliedMigration]:
    """The applied migrations, in version order (lexical, as the source sorts them)."""
    if not exists(conn):
        return []
    rows = conn.fetch_rows(
        "SELECT version, name, checksum, phase, transactional, statements, started_at, "
        "finished_at, duration_ms, lock_wait_ms, attempts, applied_by, lockstep_version "
        "FROM lockstep.schema_migrations",
        None,
        AppliedMigration,
    )
    return sorted(rows, key=lambda row: row.version)


def log(conn: Connection, version: str | None = None) -> list[LogEntry]:
    """The audit log, oldest first (of one version, or of all)."""
    if not exists(conn):
        return []
    return conn.fetch_rows(
        "SELECT id, version, name, direction, outcome, checksum, started_at, finished_at, "
        "duration_ms, lock_wait_ms, attempts, applied_by, statement, sqlstate, error "
        "FROM lockstep.migration_log WHERE %(version)s::text IS NULL OR version = %(version)s "
        "ORDER BY id",
        {"version": version},
        LogEntry,
    )


def progress(conn: Connection, version: str) -> Progress | None:
    rows = conn.fetch_rows(
        "SELECT version, direction, checksum, statements_done, statements_total, updated_at "
        "FROM lockstep.migration_progress WHERE version = %s",
        (version,),
        Progress,
    )
    return rows[0] if rows else None


@dataclass(frozen=True)
class Run:
    """One finished run of a migration in one direction, as the log records it."""

    version: str
    name: str
    direction: str
    checksum: str
    started_at: datetime
    duration_ms: int
    lock_wait_ms: int
    attempts: int
    applied_by: str


def record_applied(
    conn: Connection, run: Run, *, phase: str, transactional: bool, statements: int
) -> None:
    """Insert the ledger row and its log entry; call inside the migration's transaction."""
    finished_at = datetime.now(UTC)
    conn.execute(
        "INSERT INTO lockstep.schema_migrations (version, name, checksum, phase, transactional, "
        "statements, started_at, finished_at, duration_ms, lock_wait_ms, attempts, applied_by, "
        "lockstep_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            run.version,
            run.name,
            run.checksum,
            phase,
            transactional,
            statements,
            run.started_at,
            finished_at,
            run.duration_ms,
            run.lock_wait_ms,
            run.attempts,
            run.applied_by,
            __version__,
        ),
    )
    clear_progress(conn, run.version)
    _insert_log(conn, run, "applied", finished_at)


def record_reverted(conn: Connection, run: Run) -> None:
    """Delete the ledger row and log the down run; call inside the down's transaction."""
    conn.execute("DELETE FROM lockstep.schema_migrations WHERE version = %s", (run.version,))
    clear_progress(conn, run.version)
    _insert_log(conn, run, "reverted", datetime.now(UTC))


def record_failure(
    conn: Connection,
    run: Run,
    *,
    outcome: Outcome,
    statement: str | None,
    sqlstate: str | None,
    error: str,
) -> None:
    """Log a failed or cancelled run (in its own transaction, after the rollback)."""
    _insert_log(
        conn,
        run,
        outcome,
        datetime.now(UTC),
        statement=statement,
        sqlstate=sqlstate,
        error=redact(error),
    )


def save_progress(
    conn: Connection, *, version: str, direction: str, checksum: str, done: int, total: int
) -> None:
    conn.execute(
        "INSERT INTO lockstep.migration_progress (version, direction, checksum, "
        "statements_done, statements_total, updated_at) VALUES (%s, %s, %s, %s, %s, now()) "
        "ON CONFLICT (version) DO UPDATE SET direction = excluded.direction, "
        "checksum = excluded.checksum, statements_done = excluded.statements_done, "
        "statements_total = excluded.statements_total, updated_at = excluded.updated_at",
        (version, direction, checksum, done, total),
    )


def clear_progress(conn: Connection, version: str) -> None:
    conn.execute("DELETE FROM lockstep.migration_progress WHERE version = %s", (version,))


def _insert_log(
    conn: Connection,
    run: Run,
    outcome: Outcome,
    finished_at: datetime,
    *,
    statement: str | None = None,
    sqlstate: str | None = None,
    error: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO lockstep.migration_log (version, name, direction, outcome, checksum, "
        "started_at, finished_at, duration_ms, lock_wait_ms, attempts, applied_by, statement, "
        "sqlstate, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            run.version,
            run.name,
            run.direction,
            outcome,
            run.checksum,
            run.started_at,
            finished_at,
            run.duration_ms,
            run.lock_wait_ms,
            run.attempts,
            run.applied_by,
            statement,
            sqlstate,
            error,
        ),
    )
