"""The typed protocol between a FeatureRelease and its DatabaseMigration.

Each FeatureRelease that references a DatabaseMigration publishes one `SchemaClaim` in its own
status (`status.database`): the schema its serving revisions need, the contract migrations its
promoted revision tolerates, and at most one request (roll back to a named version, with the
backup it expects, and hold the database there). The DatabaseMigration reads every claim from
the watch, decides what it may do from what every serving revision tolerates, and answers each
request in its own status (`status.requests`, one `RequestAck` per release). A slot belongs to
one release: a release never overwrites another's request, and withdrawing a request (its next
attempt) releases only its own hold.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from .base import StatusModel


class RollbackMode(StrEnum):
    """How a database rollback is done."""

    DOWN = "down"  # the down migrations, newest first
    RESTORE = "restore"  # the backup taken immediately before the apply being undone


class AckOutcome(StrEnum):
    """What the DatabaseMigration did with a request."""

    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"  # done; the database is held at the version until withdrawn
    FAILED = "Failed"  # tried and failed; the database is as the message says
    REFUSED = "Refused"  # not tried: it would break another serving revision, or is not a rollback
    PLANNED = "Planned"  # the DatabaseMigration is a dry run: nothing was executed

    @property
    def final(self) -> bool:
        return self is not AckOutcome.IN_PROGRESS


class DatabaseRequest(StatusModel):
    """A release's request: take the database down to `toVersion` and hold it there."""

    id: str = Field(description="Unique per release attempt; never reused.")
    mode: RollbackMode = Field(description="down (down migrations) or restore (a backup).")
    to_version: str = Field(description="The version to go back to (strictly downwards).")
    backup: str | None = Field(
        default=None,
        description="For restore: the backup taken immediately before the apply being undone.",
    )
    requested_at: str = Field(description="When the request was made.")


class SchemaClaim(StatusModel):
    """What one FeatureRelease tells its DatabaseMigration (`status.database`)."""

    migration: str = Field(description="Name of the DatabaseMigration.")
    needs: str | None = Field(
        default=None,
        description="The lowest schema version every revision that serves (or is about to) "
        "works with: no down migration may go below it.",
    )
    tolerates: str | None = Field(
        default=None,
        description="Contract migrations up to this version may run: set only while the "
        "release is settled on a promoted revision that declared it (migration.contractVersion).",
    )
    settled: bool = Field(
        default=False, description="Only the promoted revision runs (the other colour is gone)."
    )
    backup: str | None = Field(
        default=None,
        description="The backup that undoes this attempt's schema change (for a restore).",
    )
    request: DatabaseRequest | None = Field(
        default=None, description="The release's pending or held rollback request."
    )


class WriteWindow(StatusModel):
    """Writes committed in this window are gone after a restore."""

    start: str = Field(description="When the backup's snapshot was taken.")
    end: str = Field(description="When the restore replaced the data.")


class RequestAck(StatusModel):
    """The DatabaseMigration's answer to one release's request."""

    release: str = Field(description="The FeatureRelease that asked.")
    id: str = Field(description="Id of the request answered.")
    outcome: AckOutcome = Field(description="InProgress, Succeeded, Failed, Refused or Planned.")
    message: str = Field(default="", description="What was done, or why not.")
    at: str = Field(description="When the outcome was reached.")
    backup: str | None = Field(default=None, description="Backup restored or taken first.")
    discarded_writes: WriteWindow | None = Field(
        default=None, description="For a restore: the window of writes it discarded."
    )
    destroys: list[str] = Field(
        default_factory=list,
        description="For a down rollback: what the down migrations destroy (columns, tables).",
    )
