"""The blue-green release state machine: a pure function of (spec, status, world, controls).

`decide` looks at what is (the colours' Deployments, the Services, the check Jobs, the
DatabaseMigration) and returns the next status and the actions that move the world towards it.
Every action is idempotent and every step checks the world before acting, so the machine can be
stopped and restarted before or after any action and still reach the same outcome.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api.base import RequestRecord, parse_timestamp, timestamp
from ..api.release import (
    AnalysisStatus,
    CheckJob,
    CheckStatus,
    Color,
    FeatureRelease,
    FeatureReleaseSpec,
    FeatureReleaseStatus,
    HistoryEntry,
)
from ..conditions import Health, conditions_for
from . import analysis as analysis_rules
from .world import (
    Action,
    ApplyColor,
    Controls,
    Emit,
    Measure,
    PointService,
    ReleaseMigrationHold,
    RequestMigrationRollback,
    RunCheck,
    ScaleColor,
    World,
    other,
)

# Steps of a release, in order.
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
# Steps off the happy path.
ROLL_BACK = "RollBack"
ROLLED_BACK = "RolledBack"
AWAIT_ABORT = "AwaitAbort"

SETTLED_STEPS = (DONE, ROLLED_BACK)
HISTORY_KEPT = 10
IDLE_RECHECK_SECONDS = 30.0
BUSY_RECHECK_SECONDS = 1.0


def revision_of(spec: FeatureReleaseSpec) -> str:
    """A release revision: what makes a new release (the template and the schema it needs)."""
    target = spec.migration.target_version if spec.migration else None
    payload = json.dumps({"template": spec.template, "schema": target}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def check_job_name(release: str, stage: str, check: str, revision: str, attempt: int) -> str:
    """A Job name unique per release, check, revision and attempt, at most 63 characters."""
    short = "pre" if stage == "prePromotion" else "post"
    suffix = f"-{short}-{check}-{revision[:7]}-{attempt}"
    head = release[: 63 - len(suffix)].rstrip("-")
    return head + suffix


@dataclass
class Decision:
    status: FeatureReleaseStatus
    actions: list[Action] = field(default_factory=list)
    requeue: float = IDLE_RECHECK_SECONDS
    health: Health = Health.PROGRESSING
    reason: str = "Progressing"

    def wait(self, seconds: float) -> None:
        self.requeue = min(self.requeue, max(seconds, 0.1))

    def emit(self, type_: str, reason: str, message: str) -> None:
        self.actions.append(Emit(type_, reason, message))  # type: ignore[arg-type]


class Machine:
    """One evaluation of one FeatureRelease. Use `decide`; the class only carries context."""

    def __init__(
        self,
        release: FeatureRelease,
        name: str,
        namespace: str,
        generation: int,
        world: World,
        controls: Controls,
    ) -> None:
        self.spec = release.spec
        self.st = release.status.model_copy(deep=True)
        self.name = name
        self.namespace = namespace
        self.generation = generation
        self.world = world
        self.controls = controls
        self.now = world.now
        self.revision = revision_of(self.spec)
        self.d = Decision(status=self.st)
        self.request: str | None = None
        if controls.request_id and (
            self.st.last_request is None or self.st.last_request.id != controls.request_id
        ):
            self.request = controls.request_action

    # ------------------------------------------------------------------ bookkeeping

    def ts(self) -> str:
        return timestamp(self.now)

    def elapsed(self, since: str | None) -> float:
        if not since:
            return 0.0
        return (self.now - parse_timestamp(since)).total_seconds()

    def enter(self, step: str) -> None:
        self.st.step = step
        self.st.step_started_at = self.ts()

    def handled(self, outcome: str) -> None:
        assert self.controls.request_id
        assert self.request
        self.st.last_request = RequestRecord(
            id=self.controls.request_id, action=self.request, outcome=outcome, at=self.ts()
        )
        self.request = None

    def say(self, message: str) -> None:
        self.st.message = message

    def add_history(self, outcome: str, reason: str) -> None:
        entry = HistoryEntry(
            release=self.st.release,
            revision=self.st.updated_revision or self.revision,
            color=self.st.preview_color,
            outcome=outcome,
            reason=reason,
            started_at=self.st.revision_started_at or self.ts(),
            finished_at=self.ts(),
        )
        self.st.history = [entry, *self.st.history][:HISTORY_KEPT]

    @property
    def new_color(self) -> Color:
        return self.st.preview_color or "blue"

    @property
    def stable_color(self) -> Color:
        return other(self.new_color)

    @property
    def initial(self) -> bool:
        return self.st.stable_revision is None

    def schema_target(self) -> str | None:
        if self.spec.migration is None:
            return None
        if self.spec.migration.target_version:
            return self.spec.migration.target_version
        mig = self.world.migration
        return mig.target_version if mig else None

    # ------------------------------------------------------------------ entry point

    def decide(self) -> Decision:
        self.st.observed_generation = self.generation
        if not self.services_exist():
            return self.finish()
        if self.st.step is None or (self.initial and self.st.updated_revision is None):
            self.start_initial()
        elif self.revision != self.st.updated_revision:
            self.desired_changed()

        if self.controls.paused and self.st.step not in SETTLED_STEPS:
            self.d.health, self.d.reason = Health.PAUSED, "Paused"
            self.say(f"Paused at step {self.st.step}: remove the annotation lockstep.dev/paused")
            return self.finish()
        if self.resumed():
            # time spent paused does not count against the step (its progress deadline)
            self.st.step_started_at = self.ts()

        self.handle_request()
        # Steps advance through several states in one evaluation when nothing needs waiting.
        for _ in range(12):
            step = self.st.step
            getattr(self, "step_" + (step or DONE).lower())()
            if self.st.step == step:
                break
        return self.finish()

    def resumed(self) -> bool:
        """The last evaluation was held by the pause annotation, this one is not."""
        return any(
            c.type == "Reconciling" and c.status == "True" and c.reason == "Paused"
            for c in self.st.conditions
        )

    def finish(self) -> Decision:
        health, reason = self.d.health, self.d.reason
        if self.st.step == DONE and health is Health.PROGRESSING:
            health, reason = Health.READY, "Released"
        elif self.st.step == ROLLED_BACK and health is Health.PROGRESSING:
            health, reason = Health.DEGRADED, "RolledBack"
        self.d.health, self.d.reason = health, reason
        self.st.phase = {
            Health.READY: "Ready",
            Health.PROGRESSING: "Progressing",
            Health.PAUSED: "Paused",
            Health.STALLED: "Blocked",
            Health.DEGRADED: "RolledBack",
        }[health]
        if reason == "InvalidSpec":
            self.st.phase = "Invalid"
        self.st.conditions = conditions_for(
            health,
            reason,
            self.st.message or "",
            self.generation,
            self.st.conditions,
            at=self.ts(),
        )
        if health is Health.READY or self.st.step == ROLLED_BACK:
            self.d.wait(IDLE_RECHECK_SECONDS)
        else:
            self.d.wait(BUSY_RECHECK_SECONDS)
        return self.d

    def blocked(self, reason: str, message: str) -> None:
        self.d.health, self.d.reason = Health.STALLED, reason
        self.say(message)

    # ------------------------------------------------------------------ transitions

    def services_exist(self) -> bool:
        missing = [] if self.world.service.exists else [self.spec.service]
        if self.spec.preview_service and not (
            self.world.preview_service and self.world.preview_service.exists
        ):
            missing.append(self.spec.preview_service)
        if missing:
            self.blocked(
                "ServiceNotFound",
                f"Service {', '.join(missing)} not found in namespace {self.namespace}; "
                "create it (lockstep manages only its selector)",
            )
            self.d.wait(5)
            return False
        return True

    def start_initial(self) -> None:
        """The first release: adopt what already serves, or deploy blue."""
        for color, view in self.world.deployments.items():
            if (
                view.serving(self.spec.replicas, self.revision)
                and self.world.service.color == color
            ):
                self.st.stable_revision = self.st.updated_revision = self.revision
                self.st.active_color = self.st.preview_color = color
                self.st.release = self.st.stable_release = self.spec.release
                self.st.stable_schema_version = self.schema_target()
                self.st.settled = True
                self.enter(DONE)
                return
        self.begin(self.revision, preview="blue", attempt=1)

    def begin(self, revision: str, preview: Color, attempt: int) -> None:
        self.st.updated_revision = revision
        self.st.preview_color = preview
        self.st.release = self.spec.release
        self.st.attempt = attempt
        self.st.analysis = None
        self.st.checks = []
        self.st.abort_reason = None
        self.st.scale_down_at = None
        if self.st.migration_request and self.spec.migration:
            # the database was held back for the previous attempt; let it move again
            self.d.actions.append(ReleaseMigrationHold(self.spec.migration.ref))
        self.st.migration_request = None
        self.st.revision_started_at = self.ts()
        self.st.updated_schema_version = self.schema_target()
        self.st.settled = False
        self.enter(WAIT_FOR_MIGRATION if self.spec.migration else DEPLOY)
        label = f"{self.spec.release} " if self.spec.release else ""
        self.d.emit(
            "Normal",
            "ReleaseStarted",
            f"Release {label}(revision {revision}, attempt {attempt}) started in {preview}",
        )
        self.say(f"Releasing revision {revision} in {preview}")

    def desired_changed(self) -> None:
        """The spec now asks for another revision than the one in progress or settled."""
        step = self.st.step
        if step in (DONE, ROLLED_BACK) or (step == AWAIT_ABORT and not self.traffic_moved()):
            if step == AWAIT_ABORT:
                self.add_history("Superseded", "a newer revision was applied")
            if self.revision == self.st.stable_revision:
                # back to what already serves: tidy up, nothing to release
                self.st.updated_revision = self.revision
                self.st.preview_color = self.st.active_color
                self.st.release = self.st.stable_release
                self.enter(DONE)
                return
            self.begin(self.revision, preview=other(self.st.active_color or "green"), attempt=1)
            return
        if step == ROLL_BACK:
            return  # finish rolling back first; the new revision starts afterwards
        if self.traffic_moved():
            self.abort("Superseded", "a newer revision was applied during the release")
            return
        if self.revision == self.st.stable_revision:
            # back to what serves: scale the new colour down (the rollback step records it)
            self.st.abort_reason = "Superseded: the spec went back to the stable revision"
            self.rollback_started()
            return
        self.add_history("Superseded", "a newer revision was applied before traffic moved")
        self.begin(self.revision, preview=self.new_color, attempt=1)

    def traffic_moved(self) -> bool:
        return self.world.service.color == self.new_color and not self.initial

    def handle_request(self) -> None:
        action = self.request
        if action is None:
            return
        step = self.st.step
        in_flight = step not in SETTLED_STEPS and step not in (ROLL_BACK,)
        if action == "abort":
            if in_flight:
                self.handled("aborting")
                self.abort("Aborted", f"requested ({self.controls.request_id})", manual=True)
            else:
                self.handled(f"ignored: nothing to abort in step {step}")
        elif action == "promote":
            if step in (AWAIT_PROMOTION, ANALYSIS, AWAIT_ABORT):
                self.handled(f"promoting from step {step}")
                self.d.emit("Normal", "PromoteRequested", f"Promotion requested at step {step}")
                self.enter(SWITCH if step == AWAIT_PROMOTION else POST_PROMOTION_CHECKS)
            else:
                self.handled(f"ignored: nothing to promote in step {step}")
        elif action == "retry":
            if step in (ROLLED_BACK, AWAIT_ABORT) and not self.traffic_moved():
                self.handled("retrying")
                if step == AWAIT_ABORT:
                    self.add_history("Aborted", "retried")
                self.begin(self.revision, preview=self.new_color, attempt=self.st.attempt + 1)
            else:
                self.handled(f"ignored: nothing to retry in step {step}")
        else:
            self.handled(f"ignored: unknown action {action!r}")

    def abort(self, reason: str, message: str, manual: bool = False) -> None:
        """Stop the release; roll back unless automatic rollback is off (then wait)."""
        if not manual and not self.spec.rollback.automatic and reason != "Superseded":
            self.st.abort_reason = f"{reason}: {message}"
            self.enter(AWAIT_ABORT)
            self.d.emit("Warning", reason, f"{message}; automatic rollback is off")
            return
        self.st.abort_reason = f"{reason}: {message}"
        self.d.emit("Warning", "RollingBack", f"{reason}: {message}")
        self.rollback_started()

    def rollback_started(self) -> None:
        self.enter(ROLL_BACK)
        self.st.scale_down_at = timestamp(
            self.now
            + timedelta(seconds=self.spec.strategy.blue_green.abort_scale_down_delay_seconds)
        )

    # ------------------------------------------------------------------ steps

    def step_waitformigration(self) -> None:
        gate = self.spec.migration
        if gate is None:
            self.enter(DEPLOY)
            return
        mig = self.world.migration
        if mig is None or not mig.exists:
            self.say(f"Waiting for DatabaseMigration {gate.ref} to exist")
            self.d.wait(2)
            return
        target = self.schema_target()
        self.st.updated_schema_version = target
        if target is None:
            self.say(f"Waiting for DatabaseMigration {gate.ref} to report its target version")
            return
        blocking = [v for v in mig.pending_contract if v <= target]
        if blocking:
            self.blocked(
                "BreakingMigration",
                f"DatabaseMigration {gate.ref} must apply {', '.join(blocking)} before this "
                f"release can run, but {'it is' if len(blocking) == 1 else 'they are'} "
                "breaking (contract) and would break the running release: move the breaking "
                "part to a migration after this release, or target an earlier version",
            )
            return
        if mig.stalled:
            self.blocked(
                "MigrationFailed", f"DatabaseMigration {gate.ref} is stalled: {mig.message}"
            )
            return
        if (
            mig.observed_current
            and mig.current_version is not None
            and mig.current_version >= target
        ):
            self.d.emit("Normal", "SchemaReady", f"Schema is at {mig.current_version}")
            self.enter(DEPLOY)
            return
        self.say(
            f"Waiting for DatabaseMigration {gate.ref} to reach {target} "
            f"(now at {mig.current_version or 'nothing applied'})"
        )

    def step_deploy(self) -> None:
        color, replicas = self.new_color, self.spec.replicas
        view = self.world.deployments.get(color)
        if view is not None and view.serving(replicas, self.revision):
            self.d.emit("Normal", "ColorAvailable", f"{self.name}-{color} is available")
            if self.initial:
                self.enter(SWITCH)
            elif self.spec.checks.pre_promotion or self.spec.preview_service:
                self.enter(PRE_PROMOTION_CHECKS)
            else:
                self.enter(AWAIT_PROMOTION)
            return
        if view is None or view.revision != self.revision or view.replicas != replicas:
            self.d.actions.append(ApplyColor(color, self.revision, replicas))
        deadline = self.spec.strategy.blue_green.progress_deadline_seconds
        available = view.available if view and view.revision == self.revision else 0
        if self.elapsed(self.st.step_started_at) > deadline:
            self.abort(
                "ProgressDeadlineExceeded",
                f"{self.name}-{color} did not become available within {deadline}s "
                f"({available}/{replicas} pods available); no traffic was moved",
            )
            return
        self.say(f"Waiting for {self.name}-{color}: {available}/{replicas} pods available")

    def run_checks(
        self, stage: str, checks: list[CheckJob], color: Color, service: str
    ) -> bool | None:
        """Run the checks of a stage; True when all passed, False when one failed."""
        records = {c.name: c for c in self.st.checks if c.stage == stage}
        all_passed = True
        for check in checks:
            job = check_job_name(self.name, stage, check.name, self.revision, self.st.attempt)
            view = self.world.jobs.get(job)
            record = records.get(check.name)
            if view is None:
                # creating an existing Job is a no-op, so ask again until the Job is seen
                self.d.actions.append(RunCheck(check.name, stage, job, color, service))  # type: ignore[arg-type]
                if record is None:
                    record = CheckStatus(name=check.name, stage=stage, job=job, phase="Running")
                    self.st.checks = [*self.st.checks, record]
                all_passed = False
                continue
            if record is None or record.phase != view.phase:
                record = CheckStatus(
                    name=check.name,
                    stage=stage,
                    job=job,
                    phase=view.phase,
                    message=view.message,
                )
                self.st.checks = [
                    c for c in self.st.checks if not (c.stage == stage and c.name == check.name)
                ] + [record]
            if view.phase == "Failed":
                self.d.emit(
                    "Warning", "CheckFailed", f"{stage} check {check.name} failed: {view.message}"
                )
                self.abort(
                    "CheckFailed", f"{stage} check {check.name} (Job {job}) failed: {view.message}"
                )
                return False
            if view.phase != "Succeeded":
                all_passed = False
        return True if all_passed else None

    def step_prepromotionchecks(self) -> None:
        color = self.new_color
        preview = self.spec.preview_service
        if preview and self.world.preview_service and self.world.preview_service.color != color:
            self.d.actions.append(PointService(preview, color))
            self.say(f"Pointing preview Service {preview} at {color}")
            return
        result = self.run_checks(
            "prePromotion", self.spec.checks.pre_promotion, color, preview or self.spec.service
        )
        if result is True:
            self.enter(AWAIT_PROMOTION)
        elif result is None:
            self.say("Running pre-promotion checks")

    def step_awaitpromotion(self) -> None:
        if self.spec.strategy.blue_green.auto_promote:
            self.enter(SWITCH)
            return
        self.d.health, self.d.reason = Health.PAUSED, "AwaitingPromotion"
        self.say(
            f"{self.name}-{self.new_color} is ready; waiting for promotion "
            f"(kubectl lockstep promote {self.name})"
        )

    def step_switch(self) -> None:
        color = self.new_color
        if self.world.service.color != color:
            self.d.actions.append(PointService(self.spec.service, color))
            self.say(f"Switching Service {self.spec.service} to {color}")
            self.d.wait(0.2)
            return
        previous = self.st.active_color
        self.st.active_color = color
        self.d.emit(
            "Normal",
            "Switched",
            f"Service {self.spec.service} now selects {color} (revision {self.revision})"
            + (f", was {previous}" if previous else ""),
        )
        if self.initial:
            self.promote()
            return
        self.st.analysis = AnalysisStatus(started_at=self.ts())
        self.enter(ANALYSIS)

    def step_analysis(self) -> None:
        spec = self.spec.analysis
        if spec is None:
            self.enter(POST_PROMOTION_CHECKS)
            return
        status = self.st.analysis or AnalysisStatus(started_at=self.ts())
        self.st.analysis = status
        verdict = analysis_rules.verdict(status, spec, self.now)
        if verdict in {"failed", "errored"}:
            details = analysis_rules.describe_failure(status)
            what = (
                f"{status.failed} failed measurements (limit {spec.failure_limit})"
                if verdict == "failed"
                else f"{status.consecutive_errors} erroring rounds in a row "
                f"(limit {spec.consecutive_error_limit})"
            )
            self.abort(
                "AnalysisFailed" if verdict == "failed" else "AnalysisErrored", f"{what}: {details}"
            )
        elif verdict == "passed":
            self.d.emit(
                "Normal",
                "AnalysisPassed",
                f"Analysis passed: {status.successful} successful, "
                f"{status.failed} failed measurements",
            )
            self.enter(POST_PROMOTION_CHECKS)
        elif verdict == "measure":
            self.d.actions.append(Measure(self.new_color))
            self.say(
                f"Analysing {self.new_color}: {status.successful} ok, {status.failed} failed, "
                f"{status.errors} errors"
            )
        else:
            self.d.wait(analysis_rules.seconds_until_next_round(status, spec, self.now))
            self.say(
                f"Analysing {self.new_color}: {status.successful} ok, {status.failed} failed, "
                f"{status.errors} errors"
            )

    def step_postpromotionchecks(self) -> None:
        result = self.run_checks(
            "postPromotion", self.spec.checks.post_promotion, self.new_color, self.spec.service
        )
        if result is True:
            self.promote()
        elif result is None:
            self.say("Running post-promotion checks")

    def promote(self) -> None:
        first = self.initial
        self.st.stable_revision = self.st.updated_revision = self.revision
        self.st.stable_release = self.st.release
        self.st.stable_schema_version = self.st.updated_schema_version
        self.st.active_color = self.new_color
        delay = self.spec.strategy.blue_green.scale_down_delay_seconds
        self.st.scale_down_at = timestamp(self.now + timedelta(seconds=delay))
        self.add_history(
            "Promoted",
            "first release" if first else "analysis passed" if self.spec.analysis else "released",
        )
        self.d.emit(
            "Normal",
            "Promoted",
            f"Revision {self.revision} promoted in {self.new_color}"
            + ("" if first else f"; {other(self.new_color)} scales down in {delay}s"),
        )
        self.enter(SCALE_DOWN)

    def step_scaledown(self) -> None:
        old = other(self.new_color)
        view = self.world.deployments.get(old)
        wait = -self.elapsed(self.st.scale_down_at)
        if view is not None and not view.scaled_down:
            if wait > 0:
                self.say(f"Promoted; {self.name}-{old} scales down in {wait:.0f}s")
                self.d.wait(wait)
                return
            if view.replicas != 0:
                self.d.actions.append(ScaleColor(old, 0))
            self.say(f"Scaling {self.name}-{old} down")
            return
        self.st.settled = True
        self.st.scale_down_at = None
        if view is not None:
            self.d.emit("Normal", "ScaledDown", f"{self.name}-{old} scaled to zero")
        self.enter(CONTRACT if self.spec.migration else DONE)

    def step_contract(self) -> None:
        """Wait for the contract migrations this release tolerates (migration.contractVersion)."""
        mig = self.world.migration
        gate = self.spec.migration
        if gate is None or gate.contract_version is None or mig is None or not mig.exists:
            self.enter(DONE)
            return
        through = gate.contract_version
        if mig.stalled:
            self.blocked(
                "MigrationFailed", f"Contract migrations of {gate.ref} are stalled: {mig.message}"
            )
            return
        reached = mig.observed_current and (mig.current_version or "") >= min(
            through, mig.target_version or through
        )
        if not reached:
            self.say(
                f"Waiting for DatabaseMigration {gate.ref} to run contract migrations up to "
                f"{through} (now at {mig.current_version})"
            )
            self.d.wait(2)
            return
        self.d.emit(
            "Normal", "Contracted", f"DatabaseMigration {gate.ref} is at {mig.current_version}"
        )
        self.enter(DONE)

    def step_done(self) -> None:
        """Steady state: keep the world as promoted (replica changes, drift of the selector)."""
        color: Color = self.st.active_color or "blue"
        view = self.world.deployments.get(color)
        if view is None or view.revision != self.revision or view.replicas != self.spec.replicas:
            self.d.actions.append(ApplyColor(color, self.revision, self.spec.replicas))
        if self.world.service.color != color:
            self.d.actions.append(PointService(self.spec.service, color))
            self.d.emit(
                "Warning",
                "SelectorRestored",
                f"Service {self.spec.service} selector pointed elsewhere; restored to {color}",
            )
        idle = self.world.deployments.get(other(color))
        if idle is not None and idle.replicas != 0 and self.elapsed(self.st.scale_down_at) >= 0:
            self.d.actions.append(ScaleColor(other(color), 0))
        label = f"{self.st.release} " if self.st.release else ""
        self.say(f"Release {label}(revision {self.revision}) is live in {color}")

    def step_awaitabort(self) -> None:
        self.blocked(
            "AwaitingAbort",
            f"{self.st.abort_reason}; automatic rollback is off: run `kubectl lockstep abort "
            f"{self.name}` to roll back or `kubectl lockstep promote {self.name}` to go on",
        )

    def step_rollback(self) -> None:
        stable, new = self.stable_color, self.new_color
        if not self.initial and self.world.service.color != stable:
            self.d.actions.append(PointService(self.spec.service, stable))
            self.say(f"Rolling back: switching Service {self.spec.service} to {stable}")
            self.d.wait(0.2)
            return
        preview = self.spec.preview_service
        if (
            preview
            and not self.initial
            and self.world.preview_service
            and self.world.preview_service.color != stable
        ):
            self.d.actions.append(PointService(preview, stable))
        if not self.database_rolled_back():
            return
        view = self.world.deployments.get(new)
        if self.elapsed(self.st.scale_down_at) >= 0 and view is not None and view.replicas != 0:
            self.d.actions.append(ScaleColor(new, 0))
        if not self.initial:
            self.st.active_color = stable
        superseded = self.revision != self.st.updated_revision
        manual = (self.st.abort_reason or "").startswith("Aborted")
        outcome = "Superseded" if superseded else "Aborted" if manual else "RolledBack"
        self.add_history(outcome, self.st.abort_reason or "")
        if superseded:
            self.d.emit(
                "Normal", "Superseded", f"Traffic stays on {stable}: {self.st.abort_reason}"
            )
        else:
            self.d.emit(
                "Warning",
                "RolledBack",
                f"Rolled back to {stable} (revision {self.st.stable_revision}): "
                f"{self.st.abort_reason}",
            )
        if superseded:
            if self.revision == self.st.stable_revision:
                self.st.updated_revision = self.revision
                self.st.preview_color = stable
                self.st.release = self.st.stable_release
                self.enter(DONE)
            else:
                self.begin(self.revision, preview=new, attempt=1)
            return
        self.say(f"Rolled back to {stable}: {self.st.abort_reason}")
        self.enter(ROLLED_BACK)

    def database_rolled_back(self) -> bool:
        """Ask the DatabaseMigration to roll back when the policy says so; True when done."""
        gate, mode = self.spec.migration, self.spec.rollback.database
        if (
            gate is None
            or mode == "none"
            or self.initial
            or self.st.updated_schema_version == self.st.stable_schema_version
        ):
            return True
        request_id = f"{self.name}-{self.st.updated_revision}-{self.st.attempt}"
        mig = self.world.migration
        if mig is not None and mig.last_request_id == request_id and mig.last_request_outcome:
            if not mig.last_request_outcome.startswith("Succeeded"):
                self.st.abort_reason = (
                    f"{self.st.abort_reason}; database rollback: {mig.last_request_outcome}"
                )
            return True
        if self.st.migration_request != request_id:
            self.st.migration_request = request_id
            self.d.emit(
                "Warning",
                "DatabaseRollbackRequested",
                f"Asked {gate.ref} to roll back ({mode}) to {self.st.stable_schema_version}",
            )
        # writing the same request annotation again is a no-op, so repeat it until answered
        self.d.actions.append(
            RequestMigrationRollback(gate.ref, request_id, mode, self.st.stable_schema_version)
        )
        self.say(f"Rolling back: waiting for DatabaseMigration {gate.ref} to roll back ({mode})")
        self.d.wait(1)
        return False

    def step_rolledback(self) -> None:
        stable = self.stable_color
        if self.world.service.color != stable and not self.initial:
            self.d.actions.append(PointService(self.spec.service, stable))
        view = self.world.deployments.get(self.new_color)
        if view is not None and view.replicas != 0:
            wait = -self.elapsed(self.st.scale_down_at)
            if wait > 0:
                self.d.wait(wait)
            else:
                self.d.actions.append(ScaleColor(self.new_color, 0))
        elif view is None or view.scaled_down:
            self.st.settled = True


Measurer = Callable[[FeatureRelease, Measure], list[analysis_rules.QueryResult]]
"""Takes one round of analysis measurements (the caller's Prometheus I/O)."""


def decide(
    release: FeatureRelease,
    name: str,
    namespace: str,
    generation: int,
    world: World,
    controls: Controls,
    measure: Measurer | None = None,
) -> Decision:
    """The next status and actions for one FeatureRelease.

    When the machine asks for a measurement and `measure` is given, the round is taken, folded
    into the status, and the machine decides again on it; the first decision's Events stay.
    """
    decision = Machine(release, name, namespace, generation, world, controls).decide()
    request = next((a for a in decision.actions if isinstance(a, Measure)), None)
    if request is None or measure is None:
        return decision
    results = measure(release, request)
    measured = after_measurement(
        release.model_copy(update={"status": decision.status}), results, world.now
    )
    emitted: list[Action] = [a for a in decision.actions if isinstance(a, Emit)]
    again = Machine(measured, name, namespace, generation, world, controls).decide()
    again.actions = emitted + [a for a in again.actions if not isinstance(a, Measure)]
    return again


def after_measurement(
    release: FeatureRelease, results: list[analysis_rules.QueryResult], now: datetime
) -> FeatureRelease:
    """Fold a round of analysis measurements into the release's status."""
    assert release.spec.analysis is not None
    status = release.status.analysis or AnalysisStatus(started_at=timestamp(now))
    updated = analysis_rules.record_round(status, release.spec.analysis, results, now)
    return release.model_copy(
        update={"status": release.status.model_copy(update={"analysis": updated})}
    )
