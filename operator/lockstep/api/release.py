"""The FeatureRelease API (lockstep.dev/v1alpha1): one object per application, blue-green."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from .base import (
    Condition,
    Duration,
    LabelSelector,
    Model,
    ObjectDict,
    RequestRecord,
    StatusModel,
    seconds,
)
from .protocol import SchemaClaim

Color = Literal["blue", "green"]
NoDataPolicy = Literal["error", "failure"]


class DatabaseRollback(StrEnum):
    """What happens to the database when a release is rolled back."""

    NONE = "none"
    DOWN = "down"
    RESTORE = "restore"


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class MigrationGate(Model):
    """The DatabaseMigration this release needs, and at which version."""

    ref: str = Field(
        pattern=DNS_LABEL,
        max_length=253,
        description="Name of a DatabaseMigration in the same namespace.",
    )
    target_version: str | None = Field(
        default=None,
        description="Schema version this release needs; the new colour takes no traffic until "
        "the DatabaseMigration is Ready at it (expand migrations only). The latest when not set.",
    )
    contract_version: str | None = Field(
        default=None,
        description="Contract (breaking) migrations this release tolerates: once it is promoted "
        "and the old colour is gone, the DatabaseMigration may apply contract migrations up to "
        "this version. Without it, contract migrations wait.",
    )
    timeout_seconds: int = Field(
        default=1800,
        ge=10,
        le=86400,
        description="How long the release waits for the DatabaseMigration (to reach the target, "
        "or to answer a rollback) before it reports Stalled; it goes on waiting after that.",
    )


class BlueGreenStrategy(Model):
    """How the new colour replaces the old one."""

    auto_promote: bool = Field(
        default=True,
        description="Switch traffic as soon as the new colour is available and the "
        "pre-promotion checks pass; when false, wait for `kubectl lockstep promote`.",
    )
    scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        le=86400,
        description="How long the old colour keeps running after promotion, so that clients "
        "and kube-proxy catch up and an instant rollback stays possible.",
    )
    abort_scale_down_delay_seconds: int = Field(
        default=0,
        ge=0,
        le=86400,
        description="How long the new colour keeps running after an abort (for debugging).",
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=1,
        le=86400,
        description="The new colour must be available within this time; otherwise the release "
        "rolls back and no traffic is moved.",
    )


class Strategy(Model):
    """The release strategy."""

    blue_green: BlueGreenStrategy = Field(
        default_factory=BlueGreenStrategy, description="Blue-green settings."
    )


class CheckJob(Model):
    """A Job that tests the release (smoke, integration, performance)."""

    name: str = Field(pattern=DNS_LABEL, max_length=40, description="Name of the check.")
    template: ObjectDict = Field(
        description="Pod template of the Job (a PodTemplateSpec). Its containers get "
        "LOCKSTEP_SERVICE (host name of the Service under test), LOCKSTEP_COLOR, "
        "LOCKSTEP_RELEASE and LOCKSTEP_REVISION in their environment."
    )
    backoff_limit: int = Field(default=0, ge=0, le=10, description="Retries of the Job's pod.")
    active_deadline_seconds: int = Field(
        default=600, ge=1, le=86400, description="A check running longer than this has failed."
    )


class Checks(Model):
    """Jobs run before and after the traffic switch; a failed check aborts the release."""

    pre_promotion: list[CheckJob] = Field(
        default_factory=list,
        max_length=10,
        description="Run against the preview Service before traffic moves.",
    )
    post_promotion: list[CheckJob] = Field(
        default_factory=list,
        max_length=10,
        description="Run against the active Service after traffic moved and analysis passed.",
    )


class PrometheusSource(Model):
    """Where metrics come from."""

    address: str = Field(
        pattern=r"^https?://", description="Base URL of Prometheus (http://prometheus:9090)."
    )
    timeout: Duration = Field(default="5s", description="Timeout of one query.")


class AnalysisMetric(Model):
    """A PromQL query evaluated on every analysis interval, with its bounds."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "has(self.max) || has(self.min)", "message": "set max, min or both"},
                {
                    "rule": "!has(self.max) || !has(self.min) || self.min <= self.max",
                    "message": "min must not be greater than max",
                },
            ]
        }
    }

    name: str = Field(pattern=DNS_LABEL, max_length=63, description="Name of the metric.")
    query: str = Field(
        min_length=1,
        description="PromQL returning one number. {{color}}, {{revision}}, {{release}}, "
        "{{name}} and {{namespace}} are replaced before the query is sent.",
    )
    max: float | None = Field(
        default=None, description="The measurement fails when the value is above this."
    )
    min: float | None = Field(
        default=None, description="The measurement fails when the value is below this."
    )


class Analysis(Model):
    """Prometheus analysis of the new colour after the switch."""

    prometheus: PrometheusSource = Field(description="The Prometheus server to query.")
    interval: Duration = Field(default="30s", description="Time between two measurements.")
    duration: Duration = Field(
        default="5m", description="How long the analysis runs before the release is promoted."
    )
    failure_limit: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Failed measurements (of any metric) that abort the release.",
    )
    consecutive_error_limit: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Consecutive errors (Prometheus unreachable, a query error, no data) that "
        "abort the release. An error never counts as a success.",
    )
    no_data: NoDataPolicy = Field(
        default="error",
        description="What an empty query result is: an error (counts towards "
        "consecutiveErrorLimit) or a failure (counts towards failureLimit).",
    )
    min_successful_rounds: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description="Clean rounds (every metric successful) needed to pass. Defaults to one "
        "per interval of the duration: an outage of the operator or of Prometheus extends the "
        "analysis instead of letting it pass on fewer measurements.",
    )
    metrics: list[AnalysisMetric] = Field(
        min_length=1, max_length=20, description="The metrics to measure."
    )

    @property
    def required_rounds(self) -> int:
        if self.min_successful_rounds is not None:
            return self.min_successful_rounds
        return max(1, int(seconds(self.duration) // seconds(self.interval)))

    @model_validator(mode="after")
    def _interval_fits(self) -> Analysis:
        if seconds(self.interval) <= 0:
            raise ValueError("analysis.interval must be positive")
        if seconds(self.duration) < seconds(self.interval):
            raise ValueError(
                f"analysis.duration ({self.duration}) is shorter than analysis.interval "
                f"({self.interval}): no measurement would be taken"
            )
        return self


class Rollback(Model):
    """What happens when the release fails."""

    automatic: bool = Field(
        default=True,
        description="Switch traffic back and scale the new colour down on its own when "
        "analysis or a check fails; when false, stop and wait for `kubectl lockstep abort`.",
    )
    database: DatabaseRollback = Field(
        default=DatabaseRollback.NONE,
        description="none: keep the expanded schema (the old version runs on it); down: run "
        "the down migrations of this release; restore: restore the pre-release backup (loses "
        "writes made since the backup; only when asked for).",
    )


class FeatureReleaseSpec(Model):
    """The desired release of one application."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.previewService) || self.previewService != self.service",
                    "message": "previewService must differ from service",
                }
            ]
        }
    }

    selector: LabelSelector = Field(
        description="Labels of the application's pods; both colours carry them. The colour "
        "label lockstep.dev/color is added by lockstep."
    )
    replicas: int | None = Field(
        default=None,
        ge=0,
        le=10000,
        description="Pods per colour. When not set, lockstep leaves the count to whoever owns "
        "it (a HorizontalPodAutoscaler, a person): the new colour starts with as many pods as "
        "the stable colour runs (1 for the first release) and the active colour is never "
        "scaled by lockstep.",
    )
    template: ObjectDict = Field(
        description="Pod template of the application (a PodTemplateSpec). A change starts a "
        "new release in the idle colour."
    )
    service: str = Field(
        pattern=DNS_LABEL,
        max_length=63,
        description="The active Service; lockstep owns only its selector.",
    )
    preview_service: str | None = Field(
        default=None,
        pattern=DNS_LABEL,
        max_length=63,
        description="A Service that points at the new colour before promotion.",
    )
    release: str | None = Field(
        default=None, max_length=128, description="A human name for this release (v2.3.0)."
    )
    migration: MigrationGate | None = Field(
        default=None, description="The schema change this release needs."
    )
    strategy: Strategy = Field(default_factory=Strategy, description="Release strategy.")
    checks: Checks = Field(default_factory=Checks, description="Test Jobs.")
    analysis: Analysis | None = Field(
        default=None, description="Prometheus analysis after the switch; none: promote at once."
    )
    rollback: Rollback = Field(default_factory=Rollback, description="Rollback behaviour.")


# ---------------------------------------------------------------------------------- status


class Step(StrEnum):
    """Steps of a release, in order, then the steps off the happy path."""

    WAIT_FOR_MIGRATION = "WaitForMigration"
    DEPLOY = "Deploy"
    PRE_PROMOTION_CHECKS = "PrePromotionChecks"
    AWAIT_PROMOTION = "AwaitPromotion"
    SWITCH = "Switch"
    ANALYSIS = "Analysis"
    POST_PROMOTION_CHECKS = "PostPromotionChecks"
    SCALE_DOWN = "ScaleDown"
    CONTRACT = "Contract"
    DONE = "Done"
    ROLL_BACK = "RollBack"
    ROLLED_BACK = "RolledBack"
    AWAIT_ABORT = "AwaitAbort"


MeasurementPhase = Literal["Successful", "Failed", "Error"]


class Measurement(StatusModel):
    """One evaluation of one metric."""

    metric: str = Field(description="Metric name.")
    phase: MeasurementPhase = Field(description="Successful, Failed or Error.")
    value: float | None = Field(default=None, description="The value returned.")
    message: str = Field(default="", description="Why it failed or errored.")
    at: str = Field(description="When it was taken.")


class AnalysisStatus(StatusModel):
    """Progress of the analysis of the current release."""

    started_at: str | None = Field(
        default=None,
        description="When the analysis started (moved forward by the time spent paused).",
    )
    successful: int = Field(default=0, description="Successful measurements.")
    failed: int = Field(default=0, description="Failed measurements.")
    errors: int = Field(default=0, description="Errored measurements.")
    rounds: int = Field(default=0, description="Rounds of measurements taken.")
    clean_rounds: int = Field(default=0, description="Rounds in which every metric was successful.")
    consecutive_errors: int = Field(default=0, description="Errors in a row.")
    last_measured_at: str | None = Field(default=None, description="Time of the last round.")
    measurements: list[Measurement] = Field(
        default_factory=list, description="The latest measurements (at most 10 per metric)."
    )


class CheckStatus(StatusModel):
    """Outcome of a check Job."""

    name: str = Field(description="Name of the check.")
    stage: Literal["prePromotion", "postPromotion"] = Field(description="When it ran.")
    job: str = Field(description="Name of its Job.")
    phase: Literal["Running", "Succeeded", "Failed"] = Field(description="Running or done.")
    message: str = Field(default="", description="Why it failed.")


class HistoryEntry(StatusModel):
    """One release in the history."""

    release: str | None = Field(default=None, description="Human release name.")
    revision: str = Field(description="Revision (hash of the template and migration target).")
    color: Color | None = Field(default=None, description="Colour it ran in.")
    outcome: str = Field(description="Promoted, RolledBack, Aborted or Superseded.")
    reason: str = Field(default="", description="Why.")
    started_at: str = Field(description="When it started.")
    finished_at: str | None = Field(default=None, description="When it finished.")


class RevisionRecord(StatusModel):
    """A promoted revision, kept so that it can be served again."""

    revision: str = Field(description="Revision.")
    release: str | None = Field(default=None, description="Human release name.")
    color: Color = Field(description="Colour it runs in.")
    schema_version: str | None = Field(default=None, description="Schema version it needs.")
    contract_version: str | None = Field(
        default=None, description="Contract migrations it tolerates (declared when released)."
    )
    replicas: int | None = Field(default=None, description="Pods it ran with.")
    template: ObjectDict | None = Field(
        default=None, description="Its pod template, to bring its Deployment back if lost."
    )


class FeatureReleaseStatus(StatusModel):
    """Observed state of a FeatureRelease."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation last acted on."
    )
    phase: str | None = Field(
        default=None,
        description="Progressing, Paused, Ready, RolledBack, Blocked or Invalid.",
    )
    message: str | None = Field(default=None, description="What is happening, for a human.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled and Degraded.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    step: Step | None = Field(default=None, description="Current step of the release.")
    step_started_at: str | None = Field(default=None, description="When the step started.")
    failed_step: Step | None = Field(
        default=None, description="The step at which the release failed (AwaitAbort, RollBack)."
    )
    active_color: Color | None = Field(default=None, description="Colour serving traffic.")
    preview_color: Color | None = Field(default=None, description="Colour of the new release.")
    stable_revision: str | None = Field(default=None, description="Revision serving traffic.")
    updated_revision: str | None = Field(default=None, description="Revision being released.")
    release: str | None = Field(default=None, description="Human name of the current release.")
    stable_release: str | None = Field(default=None, description="Human name of the stable one.")
    stable: RevisionRecord | None = Field(
        default=None, description="The promoted revision that serves (or served last)."
    )
    previous_stable: RevisionRecord | None = Field(
        default=None,
        description="The revision promoted before it, while its colour still runs "
        "(an abort during scale-down goes back to it).",
    )
    revision_started_at: str | None = Field(
        default=None, description="When the current release started."
    )
    attempt_serial: int = Field(
        default=0,
        description="Counts release attempts and only increases: it names each attempt's check "
        "Jobs and database requests, so that no attempt reuses another's.",
    )
    scale_down_at: str | None = Field(
        default=None, description="When the old colour is scaled down."
    )
    paused_at: str | None = Field(default=None, description="When the release was paused.")
    analysis: AnalysisStatus | None = Field(default=None, description="Analysis progress.")
    checks: list[CheckStatus] = Field(default_factory=list, description="Check Jobs.")
    history: list[HistoryEntry] = Field(
        default_factory=list, description="Past releases, newest first (at most 10)."
    )
    abort_reason: str | None = Field(default=None, description="Why the release was aborted.")
    attempt: int = Field(default=1, description="Attempt of the current release (retries).")
    stable_schema_version: str | None = Field(
        default=None, description="Schema version the stable release needs at least."
    )
    updated_schema_version: str | None = Field(
        default=None, description="Schema version the release in progress needs."
    )
    settled: bool = Field(
        default=False,
        description="Only the stable colour runs: contract migrations may remove what older "
        "releases needed.",
    )
    database: SchemaClaim | None = Field(
        default=None,
        description="What this release tells its DatabaseMigration: the schema its serving "
        "revisions need and tolerate, and its rollback request.",
    )
    last_request: RequestRecord | None = Field(
        default=None, description="The last manual request handled."
    )


class FeatureRelease(Model):
    """A FeatureRelease object (spec and status)."""

    model_config = Model.model_config | {"extra": "ignore"}

    spec: FeatureReleaseSpec
    status: FeatureReleaseStatus = Field(default_factory=FeatureReleaseStatus)
