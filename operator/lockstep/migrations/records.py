"""What the ledger holds, as plain data (no database access here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Outcome = Literal["applied", "reverted", "failed", "cancelled"]


@dataclass(frozen=True)
class AppliedMigration:
    """A row of lockstep.schema_migrations: one migration that is in the database."""

    version: str
    name: str
    checksum: str
    phase: str
    transactional: bool
    statements: int
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    lock_wait_ms: int
    attempts: int
    applied_by: str
    lockstep_version: str


@dataclass(frozen=True)
class LogEntry:
    """A row of lockstep.migration_log: one up or down run, whatever its outcome."""

    id: int
    version: str
    name: str
    direction: str
    outcome: str
    checksum: str
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    lock_wait_ms: int
    attempts: int
    applied_by: str
    statement: str | None
    sqlstate: str | None
    error: str | None


@dataclass(frozen=True)
class Progress:
    """A row of lockstep.migration_progress: how far a non-transactional migration got.

    Statements outside a transaction commit one by one; the row lets a later run continue
    after the last one that finished instead of repeating it.
    """

    version: str
    direction: str
    checksum: str
    statements_done: int
    statements_total: int
    updated_at: datetime
