"""The DatabaseMigration API (lockstep.dev/v1alpha1): one object per database."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from .base import Condition, ConfigMapRef, Duration, Model, SecretKeyRef, StatusModel
from .declarative import DeclarativeStatus, DesiredSchemaSource
from .protocol import RequestAck

MigrationPhase = Literal["expand", "contract"]
BackupPolicy = Literal["auto", "always", "never"]

VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._-]*$"


class SecretKeySource(Model):
    """Where a secret value comes from."""

    secret_key_ref: SecretKeyRef = Field(
        description="The Secret key that holds the value; it is read by the operator and passed "
        "to Jobs by env reference, never copied into status, Events or logs."
    )


class DatabaseConnection(Model):
    """How to reach the database."""

    url_from: SecretKeySource = Field(
        description="The libpq connection URL "
        "(postgresql://<user>:<password>@<host>:5432/<db>), taken from a Secret. A plain URL "
        "in the spec is not accepted."
    )


class InlineMigration(Model):
    """One versioned migration written in the spec."""

    version: str = Field(
        pattern=VERSION_PATTERN,
        max_length=64,
        description="Version of the migration. Versions sort lexically, so use timestamps "
        "(20260101120000) or zero-padded numbers.",
    )
    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[0-9A-Za-z_.-]+$",
        description="Short name of the migration (add_users_email).",
    )
    up: str = Field(min_length=1, description="The SQL that applies the migration.")
    down: str | None = Field(
        default=None, description="The SQL that reverts it; needed for a rollback by down."
    )
    phase: MigrationPhase | None = Field(
        default=None,
        description="expand (safe while the running version is live) or contract (breaks the "
        "running version, runs after it is gone). Decided by the lint when not given.",
    )


class MigrationSource(Model):
    """Where the migrations come from: inline, or a ConfigMap."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.migrations), has(self.configMapRef), "
                    "has(self.desiredSchema)].filter(x, x).size() == 1",
                    "message": "set exactly one of source.migrations, source.configMapRef and "
                    "source.desiredSchema",
                }
            ]
        }
    }

    migrations: list[InlineMigration] | None = Field(
        default=None, max_length=500, description="Migrations written inline."
    )
    config_map_ref: ConfigMapRef | None = Field(
        default=None,
        description="A ConfigMap whose keys are <version>_<name>.up.sql and "
        "<version>_<name>.down.sql, or the Prisma layout <version>_<name>/migration.sql "
        "written as <version>_<name>__migration.sql (ConfigMap keys cannot hold a slash). "
        "A `-- lockstep:phase=contract` line in a file sets its phase.",
    )
    desired_schema: DesiredSchemaSource | None = Field(
        default=None,
        description="Declarative mode: the schema the database should have; the operator "
        "generates the migrations, shows the plan in status.declarative and applies it once "
        "the annotation lockstep.dev/approve-plan carries the plan's hash.",
    )


class LintPolicy(Model):
    """Per-rule configuration of the migration lint."""

    errors: list[str] = Field(default_factory=list, description="Rule ids raised to error level.")
    warnings: list[str] = Field(
        default_factory=list, description="Rule ids lowered to warning level."
    )
    ignore: list[str] = Field(default_factory=list, description="Rule ids switched off.")


class MigrationPolicy(Model):
    """How carefully migrations are applied."""

    lock_timeout: Duration = Field(
        default="2s",
        description="lock_timeout for every migration statement: a statement that waits longer "
        "for a lock gives up (SQLSTATE 55P03) and is retried, so it never queues traffic "
        "behind it for longer.",
    )
    statement_timeout: Duration = Field(
        default="10m", description="statement_timeout for every migration statement."
    )
    lock_timeout_retries: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="How many times a migration that hit lock_timeout is retried.",
    )
    retry_backoff: Duration = Field(
        default="500ms",
        description="First wait before a retry; it doubles on each retry, with jitter.",
    )
    max_retry_backoff: Duration = Field(
        default="30s", description="Longest wait between two retries."
    )
    runner_lock_timeout: Duration = Field(
        default="30s",
        description="How long to wait for another runner's advisory lock on the database.",
    )
    allow_breaking: bool = Field(
        default=False,
        description="Apply contract (breaking) migrations without waiting for a FeatureRelease "
        "to report the old version gone.",
    )
    backup: BackupPolicy = Field(
        default="auto",
        description="auto: back up before anything that is not purely additive; always: before "
        "every apply; never: no backup.",
    )
    lint: LintPolicy = Field(default_factory=LintPolicy, description="Lint rule configuration.")


class PersistentVolumeClaimDestination(Model):
    """A PersistentVolumeClaim that holds the dumps."""

    claim_name: str = Field(min_length=1, description="Name of the PersistentVolumeClaim.")
    sub_path: str = Field(default="", description="Directory inside the volume.")


class BackupDestination(Model):
    """Where dumps are written."""

    persistent_volume_claim: PersistentVolumeClaimDestination = Field(
        description="A PersistentVolumeClaim in the object's namespace."
    )


class BackupSpec(Model):
    """How backups are taken: a Job running pg_dump --format=custom."""

    image: str = Field(
        default="postgres:17-alpine",
        description="Image with pg_dump and pg_restore at least as new as the server.",
    )
    destination: BackupDestination = Field(description="Where dumps go.")
    retention: int = Field(
        default=5, ge=1, le=100, description="How many dumps to keep; older ones are deleted."
    )
    active_deadline_seconds: int = Field(
        default=1800, ge=10, description="A backup Job running longer than this has failed."
    )
    pod_labels: dict[str, str] | None = Field(
        default=None, description="Extra labels for the backup and restore pods."
    )
    pod_annotations: dict[str, str] | None = Field(
        default=None, description="Extra annotations for the backup and restore pods."
    )
    service_account_name: str | None = Field(
        default=None, description="ServiceAccount of the backup and restore pods."
    )


class DatabaseMigrationSpec(Model):
    """The desired schema of one database."""

    database: DatabaseConnection = Field(description="How to reach the database.")
    source: MigrationSource = Field(description="Where the migrations come from.")
    target_version: str | None = Field(
        default=None,
        pattern=VERSION_PATTERN,
        description="Version to reach; the latest when not set. A version lower than the "
        "current one rolls back with the down migrations, in reverse order.",
    )
    dry_run: bool = Field(
        default=False,
        description="Lint and write the plan to status; apply nothing.",
    )
    policy: MigrationPolicy = Field(
        default_factory=MigrationPolicy, description="How carefully to apply."
    )
    backup: BackupSpec | None = Field(
        default=None, description="How to take backups; required unless policy.backup is never."
    )

    @model_validator(mode="after")
    def _backup_needs_destination(self) -> DatabaseMigrationSpec:
        if self.policy.backup != "never" and self.backup is None:
            raise ValueError(
                f"policy.backup is {self.policy.backup!r} but spec.backup is not set: "
                "give a backup destination or set policy.backup to never"
            )
        return self


# ---------------------------------------------------------------------------------- status


class FindingStatus(StatusModel):
    """One lint finding."""

    rule: str = Field(description="Stable rule id.")
    severity: Literal["error", "warning", "info"] = Field(description="error, warning or info.")
    version: str = Field(description="Version of the migration.")
    line: int = Field(description="Line in the migration (1-based).")
    column: int = Field(description="Column in the migration (1-based).")
    message: str = Field(description="What is wrong.")
    help: str = Field(default="", description="The safe alternative.")


class LintStatus(StatusModel):
    """Summary of the last lint."""

    errors: int = Field(default=0, description="Error-level findings.")
    warnings: int = Field(default=0, description="Warning-level findings.")
    findings: list[FindingStatus] = Field(
        default_factory=list, description="The first findings, errors first (at most 25)."
    )


class PlannedStatement(StatusModel):
    """One statement of a planned migration."""

    summary: str = Field(description="The statement, shortened.")
    lock: str = Field(description="The strongest table lock it takes.")
    transactional: bool = Field(description="Whether it runs inside the migration transaction.")
    classes: list[str] = Field(
        default_factory=list,
        description="additive, breaking, long-locking, data-losing.",
    )


class PlannedMigration(StatusModel):
    """One pending migration in the plan."""

    version: str = Field(description="Version.")
    name: str = Field(description="Name.")
    phase: MigrationPhase = Field(description="expand or contract.")
    direction: Literal["up", "down"] = Field(default="up", description="up or down.")
    statements: list[PlannedStatement] = Field(default_factory=list, description="Its statements.")


class PlanStatus(StatusModel):
    """What an apply would do."""

    current_version: str | None = Field(default=None, description="Version in the ledger.")
    target_version: str | None = Field(default=None, description="Version to reach.")
    backup_needed: bool = Field(default=False, description="Whether a backup is taken first.")
    migrations: list[PlannedMigration] = Field(
        default_factory=list, description="Pending migrations in order."
    )


class BackupRecord(StatusModel):
    """A backup taken by a Job, immediately before one apply (never shared by two)."""

    name: str = Field(description="Name of the backup (and of its Job).")
    path: str = Field(default="", description="Path of the dump inside the volume.")
    size_bytes: int = Field(default=0, description="Size of the dump.")
    sha256: str = Field(default="", description="SHA-256 of the dump.")
    database_version: str | None = Field(default=None, description="Schema version the dump holds.")
    taken_for: str | None = Field(
        default=None, description="The version the apply it protects went to."
    )
    snapshot_at: str | None = Field(
        default=None,
        description="When the dump's snapshot was taken: writes committed later are not in it.",
    )
    completed_at: str | None = Field(default=None, description="When it finished.")
    seconds: int | None = Field(default=None, description="How long the dump took.")


class OperationKind(StrEnum):
    """What a DatabaseMigration is doing that takes more than one look."""

    APPLY = "Apply"  # migrations up (or down to a lowered targetVersion)
    ROLL_BACK = "RollBack"  # down migrations a release asked for
    RESTORE = "Restore"  # a backup a release asked for


class Operation(StatusModel):
    """The operation in flight, recorded before anything is done so that a restarted operator
    finishes the same operation (with the same backup) instead of starting another."""

    kind: OperationKind = Field(description="Apply, RollBack or Restore.")
    serial: int = Field(description="Its number (status.serial when it started).")
    from_version: str | None = Field(default=None, description="Version when it started.")
    to_version: str | None = Field(default=None, description="Version it goes to.")
    direction: Literal["up", "down"] = Field(default="up", description="up or down.")
    allow_contract: bool = Field(default=False, description="Whether contract migrations run.")
    backup: str | None = Field(default=None, description="The backup it takes (or restores).")
    backup_done: bool = Field(default=False, description="The backup is complete.")
    release: str | None = Field(default=None, description="The FeatureRelease that asked.")
    request: str | None = Field(default=None, description="Id of the request it serves.")
    destroys: list[str] = Field(
        default_factory=list, description="What the down migrations destroy."
    )
    started_at: str = Field(description="When it started.")


class HoldStatus(StatusModel):
    """A release holding the database at a version after its rollback."""

    release: str = Field(description="The FeatureRelease.")
    version: str = Field(description="The version the database stays at.")


class GateStatus(StatusModel):
    """What the releases using this database allow, as last seen."""

    needs: str | None = Field(
        default=None, description="No down migration goes below this version."
    )
    needed_by: list[str] = Field(
        default_factory=list, description="The releases whose serving revisions need it."
    )
    contract_through: str | None = Field(
        default=None, description="Contract migrations may run up to this version."
    )
    holds: list[HoldStatus] = Field(default_factory=list, description="Holds after rollbacks.")


class MigrationError(StatusModel):
    """The statement that failed."""

    version: str = Field(description="Version of the failing migration.")
    statement: str = Field(default="", description="The statement, shortened.")
    sqlstate: str = Field(default="", description="PostgreSQL SQLSTATE.")
    message: str = Field(description="The error message.")


class AppliedRecord(StatusModel):
    """A migration applied by the operator."""

    version: str = Field(description="Version.")
    name: str = Field(description="Name.")
    direction: Literal["up", "down"] = Field(default="up", description="up or down.")
    finished_at: str = Field(description="When it finished.")
    duration_ms: int = Field(description="How long it ran.")
    lock_wait_ms: int = Field(default=0, description="Time lost waiting for locks.")
    attempts: int = Field(default=1, description="Tries, counting lock-timeout retries.")


class LiveTableFacts(StatusModel):
    """A table a pending migration touches, as the live database has it."""

    name: str = Field(description="Qualified name.")
    rows: int = Field(description="Estimated rows (from the planner's statistics).")
    size_bytes: int = Field(description="Size of the table itself.")


class BlockingSession(StatusModel):
    """A session whose open transaction would make a migration's locks wait."""

    pid: int = Field(description="Backend process id.")
    application: str = Field(default="", description="Its application_name.")
    state: str = Field(default="", description="active, idle in transaction, ...")
    transaction_seconds: float = Field(description="How long its transaction has been open.")


class StatementVerdict(StatusModel):
    """One pending statement judged in the light of the live facts."""

    version: str = Field(description="Version of the migration.")
    line: int = Field(description="Line in the migration (1-based).")
    lock: str = Field(description="The strongest table lock it takes.")
    verdict: str = Field(description="ok, or the worst severity and the findings.")


class AnalysisStatus(StatusModel):
    """What `lockstep analyze` says of the pending migrations (dry runs only), bounded."""

    server_version: str = Field(description="PostgreSQL server version.")
    tables: list[LiveTableFacts] = Field(
        default_factory=list, description="The tables the pending migrations touch (at most 20)."
    )
    blocking_sessions: list[BlockingSession] = Field(
        default_factory=list,
        description="Long transactions and idle-in-transaction sessions (at most 10).",
    )
    statements: list[StatementVerdict] = Field(
        default_factory=list, description="Each pending statement's verdict (at most 50)."
    )
    truncated: bool = Field(default=False, description="Whether a list was cut at its bound.")


class DatabaseMigrationStatus(StatusModel):
    """Observed state of a DatabaseMigration."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation last acted on."
    )
    phase: str | None = Field(default=None, description="Coarse state, for kubectl get.")
    message: str | None = Field(default=None, description="What is happening, for a human.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled and Degraded.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    current_version: str | None = Field(
        default=None, description="Latest version applied, from the ledger."
    )
    target_version: str | None = Field(default=None, description="Version being reached.")
    pending_contract: list[str] = Field(
        default_factory=list,
        description="Contract migrations waiting for the old application version to be gone.",
    )
    lint: LintStatus | None = Field(default=None, description="Last lint summary.")
    plan: PlanStatus | None = Field(default=None, description="Last plan.")
    backups: list[BackupRecord] = Field(
        default_factory=list, description="Backups kept, newest last."
    )
    applied: list[AppliedRecord] = Field(
        default_factory=list, description="Recent migrations applied (at most 20)."
    )
    last_error: MigrationError | None = Field(
        default=None, description="The last failure of a migration."
    )
    source_hash: str | None = Field(
        default=None, description="Hash of the migration source last acted on."
    )
    serial: int = Field(
        default=0,
        description="Counts operations and only increases: each backup and restore is named "
        "by it, so no two applies share a backup.",
    )
    operation: Operation | None = Field(default=None, description="The operation in flight.")
    requests: list[RequestAck] = Field(
        default_factory=list,
        description="The answer to each release's last request, one per release.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["release"],
        },
    )
    gate: GateStatus | None = Field(
        default=None, description="What the releases using this database allow."
    )
    applied_contract: list[str] = Field(
        default_factory=list,
        description="Contract migrations in the ledger (newest last, at most 50).",
    )
    retry_request: str | None = Field(
        default=None, description="The last lockstep.dev/request=retry@ID handled."
    )
    server_version: str | None = Field(default=None, description="PostgreSQL server version.")
    declarative: DeclarativeStatus | None = Field(
        default=None, description="Declarative mode: the generated plan and its approval."
    )
    analysis: AnalysisStatus | None = Field(
        default=None,
        description="Dry runs: the live facts and each pending statement's verdict in them.",
    )


class DatabaseMigration(Model):
    """A DatabaseMigration object (spec and status)."""

    model_config = Model.model_config | {"extra": "ignore"}

    spec: DatabaseMigrationSpec
    status: DatabaseMigrationStatus = Field(default_factory=DatabaseMigrationStatus)
