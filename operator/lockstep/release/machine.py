"""The blue-green release state machine: a pure function of (spec, status, world, controls).

`decide` looks at what is (the colours' Deployments, the Services, the check Jobs, the
DatabaseMigration) and returns the next status and the actions that move the world towards it.
Every action is idempotent and every step checks the world before acting, so the machine can be
stopped and restarted before or after any action and still reach the same outcome.

Safety rules the steps keep, whatever the controls and the world do:
- the active Service is pointed only at a colour with available pods (and the actions that
  switch or scale down check that again at the last moment, against the live objects);
- the stable colour is protected while anything else happens: deleted or scaled away by hand,
  it is brought back from the template recorded when it was promoted;
- what the release tells its DatabaseMigration (`status.database`) names only what its serving
  revisions need and what its *promoted* revision tolerates, so no contract or down migration
  can remove what serves traffic;
- every attempt has its own number (`attemptSerial`), which names its Jobs and requests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api.base import RequestOutcome, RequestRecord, parse_timestamp, timestamp
from ..api.protocol import AckOutcome, DatabaseRequest, RollbackMode, SchemaClaim
from ..api.release import (
    AnalysisStatus,
    CheckJob,
    CheckStatus,
    Color,
    DatabaseRollback,
    FeatureRelease,
    FeatureReleaseSpec,
    FeatureReleaseStatus,
    HistoryEntry,
    RevisionRecord,
    Step,
)
from ..conditions import Health, conditions_for
from . import analysis as analysis_rules
from .world import (
    Action,
    ApplyColor,
    Controls,
    DeploymentView,
    Emit,
    Measure,
    PointService,
    RunCheck,
    ScaleColor,
    World,
    other,
    pod_template_of,
)

# Kept for callers that name steps by their old constants.
WAIT_FOR_MIGRATION = Step.WAIT_FOR_MIGRATION
DEPLOY = Step.DEPLOY
PRE_PROMOTION_CHECKS = Step.PRE_PROMOTION_CHECKS
AWAIT_PROMOTION = Step.AWAIT_PROMOTION
SWITCH = Step.SWITCH
ANALYSIS = Step.ANALYSIS
POST_PROMOTION_CHECKS = Step.POST_PROMOTION_CHECKS
SCALE_DOWN = Step.SCALE_DOWN
CONTRACT = Step.CONTRACT
DONE = Step.DONE
ROLL_BACK = Step.ROLL_BACK
ROLLED_BACK = Step.ROLLED_BACK
AWAIT_ABORT = Step.AWAIT_ABORT

SETTLED_STEPS = (Step.DONE, Step.ROLLED_BACK)
# Steps in which traffic may already be on the new colour (the switch may have happened).
TRAFFIC_STEPS = (Step.SWITCH, Step.ANALYSIS, Step.POST_PROMOTION_CHECKS)
# Steps before the switch: the new colour takes no production traffic.
BEFORE_SWITCH = (
    Step.WAIT_FOR_MIGRATION,
    Step.DEPLOY,
    Step.PRE_PROMOTION_CHECKS,
    Step.AWAIT_PROMOTION,
)
HISTORY_KEPT = 10
IDLE_RECHECK_SECONDS = 30.0
BUSY_RECHECK_SECONDS = 1.0
BLOCKED_RECHECK_SECONDS = 30.0
MISSING_MIGRATION_GRACE_SECONDS = 10.0
# A rollback switches back at once when the stable colour is whole; when it is not (it was
# being scaled down), it waits this long for it to become whole before switching to it with
# the pods it has, so that a failing version does not keep serving.
ROLLBACK_FULL_AVAILABILITY_WAIT_SECONDS = 30.0


def revision_of(spec: FeatureReleaseSpec) -> str:
    """A release revision: what makes a new release (the template and the schema it needs)."""
    target = spec.migration.target_version if spec.migration else None
    payload = json.dumps({"template": spec.template, "schema": target}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def check_job_name(release: str, stage: str, check: str, serial: int) -> str:
    """A Job name unique per release, check and attempt (the attempt serial never repeats),
    at most 63 characters; a shortened name carries a hash of the full one."""
    short = "pre" if stage == "prePromotion" else "post"
    full = f"{release}-{short}-{check}-{serial}"
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    suffix = f"-{short}-{digest}-{serial}"
    return release[: 63 - len(suffix)].rstrip("-") + suffix


def request_id(release: str, serial: int) -> str:
    """The id of an attempt's database request: unique per release and attempt."""
    return f"{release}/{serial}"


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
        self.previous = release.status
        # fields are replaced, never changed in place: a shallow copy keeps the input intact
        self.st = release.status.model_copy()
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
            self.request = controls.request_action or ""

    # ------------------------------------------------------------------ bookkeeping

    def ts(self) -> str:
        return timestamp(self.now)

    def elapsed(self, since: str | None) -> float:
        if not since:
            return 0.0
        return (self.now - parse_timestamp(since)).total_seconds()

    def enter(self, step: Step) -> None:
        self.st.step = step
        self.st.step_started_at = self.ts()

    def answer(self, outcome: RequestOutcome, message: str) -> None:
        assert self.controls.request_id is not None
        self.st.last_request = RequestRecord(
            id=self.controls.request_id,
            action=self.request or "",
            outcome=outcome,
            message=message,
            at=self.ts(),
        )
        self.request = None

    def refuse(self, message: str) -> None:
        self.answer(RequestOutcome.REFUSED, message)
        self.d.emit("Warning", "RequestRefused", message)

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
        if self.st.stable is not None:
            return self.st.stable.color
        return other(self.new_color)

    @property
    def initial(self) -> bool:
        return self.st.stable_revision is None

    def view(self, color: Color) -> DeploymentView | None:
        return self.world.deployments.get(color)

    def schema_target(self) -> str | None:
        if self.spec.migration is None:
            return None
        if self.spec.migration.target_version:
            return self.spec.migration.target_version
        mig = self.world.migration
        return mig.target_version if mig else None

    def new_replicas(self) -> int:
        """Pods for the new colour: the spec's count, else as many as the stable colour runs."""
        if self.spec.replicas is not None:
            return self.spec.replicas
        stable = self.view(self.stable_color) if not self.initial else None
        if stable is not None and stable.replicas > 0:
            return stable.replicas
        if self.st.stable is not None and self.st.stable.replicas:
            return self.st.stable.replicas
        return 1

    def stable_replicas(self) -> int:
        if self.spec.replicas is not None:
            return self.spec.replicas
        if self.st.stable is not None and self.st.stable.replicas:
            return self.st.stable.replicas
        return 1

    # ------------------------------------------------------------------ entry point

    def decide(self) -> Decision:
        self.st.observed_generation = self.generation
        if not self.services_exist():
            return self.finish()
        if self.st.step is None or (self.initial and self.st.updated_revision is None):
            self.start_initial()
        elif self.revision != self.st.updated_revision:
            self.desired_changed()

        held = self.controls.paused and self.st.step not in (*SETTLED_STEPS, Step.ROLL_BACK)
        if held:
            self.handle_request(paused=True)
            if self.st.step not in (*SETTLED_STEPS, Step.ROLL_BACK):
                if self.st.paused_at is None:
                    self.st.paused_at = self.ts()
                self.protect_stable()
                self.d.health, self.d.reason = Health.PAUSED, "Paused"
                self.say(
                    f"Paused at step {self.st.step}: remove the annotation lockstep.dev/paused "
                    f"(kubectl lockstep resume {self.name})"
                )
                return self.finish()
        if self.st.paused_at is not None:
            self.resume()

        self.handle_request()
        self.protect_stable()
        self.check_schema_still_there()
        # Steps advance through several states in one evaluation when nothing needs waiting.
        for _ in range(12):
            step = self.st.step
            getattr(self, "step_" + (step or Step.DONE).value.lower())()
            if self.st.step == step:
                break
        return self.finish()

    def resume(self) -> None:
        """Time spent paused counts against no deadline and not towards the analysis."""
        paused = max(0.0, self.elapsed(self.st.paused_at))
        self.st.paused_at = None
        by = timedelta(seconds=paused)
        if self.st.step_started_at:
            self.st.step_started_at = timestamp(parse_timestamp(self.st.step_started_at) + by)
        if self.st.analysis is not None:
            self.st.analysis = analysis_rules.shifted(self.st.analysis, by)

    def finish(self) -> Decision:
        health, reason = self.d.health, self.d.reason
        if self.st.step == Step.DONE and health is Health.PROGRESSING:
            health, reason = Health.READY, "Released"
        elif self.st.step == Step.ROLLED_BACK and health is Health.PROGRESSING:
            health, reason = Health.DEGRADED, "RolledBack"
        self.d.health, self.d.reason = health, reason
        self.st.phase = {
            Health.READY: "Ready",
            Health.PROGRESSING: "Progressing",
            Health.PAUSED: "Paused",
            Health.STALLED: "Blocked",
            Health.DEGRADED: "RolledBack",
            Health.PLANNED: "Progressing",
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
        self.st.database = self.claim()
        if health is Health.READY or self.st.step == Step.ROLLED_BACK:
            self.d.wait(IDLE_RECHECK_SECONDS)
        elif health in (Health.STALLED, Health.PAUSED):
            self.d.wait(BLOCKED_RECHECK_SECONDS)
        else:
            self.d.wait(BUSY_RECHECK_SECONDS)
        return self.d

    def blocked(self, reason: str, message: str) -> None:
        """Stalled until something changes; the Event is posted once, not on every look."""
        was = self.previous.message == message and self.previous.phase == "Blocked"
        self.d.health, self.d.reason = Health.STALLED, reason
        self.say(message)
        if not was:
            self.d.emit("Warning", reason, message)

    # ------------------------------------------------------------------ the database claim

    def claim(self) -> SchemaClaim | None:
        """What this release tells its DatabaseMigration (see api/protocol.py)."""
        gate = self.spec.migration
        if gate is None:
            return None
        kept = (
            self.st.database
            if self.st.database and self.st.database.migration == gate.ref
            else None
        )
        step = self.st.step
        stable_only = step in (Step.WAIT_FOR_MIGRATION, Step.CONTRACT, *SETTLED_STEPS) or (
            step == Step.ROLL_BACK and self.world.service.color == self.stable_color
        )
        # The schema every revision that serves, or is about to, works with: no down
        # migration may go below it.
        needs = self.st.stable_schema_version
        if not stable_only:
            needs = max_version(needs, self.st.updated_schema_version)
        if step == Step.SCALE_DOWN and self.st.previous_stable is not None:
            needs = max_version(needs, self.st.previous_stable.schema_version)
        # Contract migrations only as far as the promoted revision that alone runs tolerates.
        settled = (
            self.st.settled
            and step in (Step.DONE, Step.CONTRACT, Step.ROLLED_BACK)
            and self.st.stable is not None
        )
        return SchemaClaim(
            migration=gate.ref,
            needs=needs,
            tolerates=self.st.stable.contract_version if settled and self.st.stable else None,
            settled=settled,
            backup=kept.backup if kept else None,
            request=kept.request if kept else None,
        )

    def set_claim_backup(self, backup: str | None) -> None:
        claim = self.st.database or self.claim()
        if claim is not None:
            self.st.database = claim.model_copy(update={"backup": backup})

    def set_request(self, request: DatabaseRequest | None) -> None:
        claim = self.st.database or self.claim()
        if claim is not None:
            self.st.database = claim.model_copy(update={"request": request})

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
            return False
        return True

    def start_initial(self) -> None:
        """The first look: adopt the colour the Service already sends traffic to, or deploy blue.

        A FeatureRelease created again over a colour that serves (its earlier object was
        deleted, which leaves the stable colour running) takes that colour as stable and takes
        its own template through a full release, analysis included."""
        color = self.world.service.color
        view = self.view(color) if color in ("blue", "green") else None  # type: ignore[arg-type]
        if color in ("blue", "green") and view is not None and view.available > 0:
            assert color in ("blue", "green")
            same = view.revision == self.revision
            mig = self.world.migration
            schema = (
                self.schema_target()
                if same
                # fail closed: the adopted version may need everything applied now
                else (mig.current_version if mig is not None and mig.exists else None)
            )
            self.st.stable = RevisionRecord(
                revision=view.revision or "adopted",
                release=view.release_name,
                color=color,
                schema_version=schema,
                contract_version=None,
                replicas=view.replicas or None,
                template=pod_template_of(view),
            )
            self.st.stable_revision = view.revision or "adopted"
            self.st.stable_release = view.release_name
            self.st.stable_schema_version = schema
            self.st.active_color = color  # type: ignore[assignment]
            if same:
                self.st.stable = self.st.stable.model_copy(
                    update={
                        "release": self.spec.release,
                        "contract_version": self.spec.migration.contract_version
                        if self.spec.migration
                        else None,
                    }
                )
                self.st.updated_revision = self.revision
                self.st.preview_color = color  # type: ignore[assignment]
                self.st.release = self.st.stable_release = self.spec.release
                self.st.updated_schema_version = schema
                self.st.settled = True
                self.st.stable = self.st.stable.model_copy(update={"template": self.spec.template})
                self.d.actions.append(
                    ApplyColor(color, self.revision, self.spec.template, self.spec.release)  # type: ignore[arg-type]
                )
                self.d.emit(
                    "Normal", "Adopted", f"{self.name}-{color} already serves this revision"
                )
                self.enter(Step.DONE)
                return
            adopted = self.st.stable
            if adopted.template is not None and view.revision is not None:
                # take ownership (an orphaned colour gets its owner back; its pods stay)
                self.d.actions.append(
                    ApplyColor(adopted.color, adopted.revision, adopted.template, adopted.release)
                )
            self.d.emit(
                "Normal",
                "Adopted",
                f"{self.name}-{color} serves revision {view.revision}: it is the stable colour; "
                f"revision {self.revision} is released beside it",
            )
            self.begin(self.revision, preview=other(color))  # type: ignore[arg-type]
            return
        self.begin(self.revision, preview="blue")

    def begin(self, revision: str, preview: Color, attempt: int = 1) -> None:
        self.st.attempt_serial += 1
        self.st.updated_revision = revision
        self.st.preview_color = preview
        self.st.release = self.spec.release
        self.st.attempt = attempt
        self.st.analysis = None
        self.st.checks = []
        self.st.abort_reason = None
        self.st.failed_step = None
        self.st.scale_down_at = None
        self.st.previous_stable = None
        # a new attempt withdraws the previous attempt's database request (and its hold)
        self.set_request(None)
        self.set_claim_backup(None)
        self.st.revision_started_at = self.ts()
        self.st.updated_schema_version = self.schema_target()
        self.st.settled = False
        self.enter(Step.WAIT_FOR_MIGRATION if self.spec.migration else Step.DEPLOY)
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
        if step in (Step.ROLL_BACK,):
            return  # finish rolling back first; the new revision starts afterwards
        if step in (*SETTLED_STEPS, Step.SCALE_DOWN, Step.CONTRACT) or (
            step == Step.AWAIT_ABORT and not self.traffic_moved()
        ):
            if step == Step.AWAIT_ABORT:
                self.add_history("Superseded", "a newer revision was applied")
            if self.revision == self.st.stable_revision:
                # back to what already serves: tidy up, nothing to release
                self.back_to_stable()
                return
            active = self.st.active_color or "green"
            self.begin(self.revision, preview=other(active))
            return
        if self.traffic_moved():
            self.abort("Superseded", "a newer revision was applied during the release")
            return
        if self.revision == self.st.stable_revision:
            # back to what serves: scale the new colour down (the rollback step records it)
            self.st.abort_reason = "Superseded: the spec went back to the stable revision"
            self.rollback_started()
            return
        self.add_history("Superseded", "a newer revision was applied before traffic moved")
        self.begin(self.revision, preview=self.new_color)

    def back_to_stable(self) -> None:
        self.st.updated_revision = self.st.stable_revision
        self.st.preview_color = self.st.active_color
        self.st.release = self.st.stable_release
        self.st.updated_schema_version = self.st.stable_schema_version
        self.st.previous_stable = None
        self.st.abort_reason = None
        self.st.failed_step = None
        self.enter(Step.DONE)

    def traffic_moved(self) -> bool:
        """Traffic is (or may be) on the new colour."""
        if self.initial:
            return False
        if self.world.service.color == self.new_color:
            return True
        if self.st.step == Step.AWAIT_ABORT:
            return self.st.failed_step in TRAFFIC_STEPS
        return self.st.step in TRAFFIC_STEPS

    def handle_request(self, paused: bool = False) -> None:
        action = self.request
        if action is None:
            return
        step = self.st.step
        if action == "abort":
            self.request_abort(step)
        elif paused:
            self.refuse(
                f"{action} refused: the release is paused at step {step}; resume it first "
                f"(kubectl lockstep resume {self.name})"
            )
        elif action == "promote":
            self.request_promote(step)
        elif action == "retry":
            if step in (Step.ROLLED_BACK, Step.AWAIT_ABORT) and not self.traffic_moved():
                self.answer(RequestOutcome.ACCEPTED, "retrying the release as a new attempt")
                if step == Step.AWAIT_ABORT:
                    self.add_history("Aborted", "retried")
                revision = self.revision
                self.begin(revision, preview=self.new_color, attempt=self.st.attempt + 1)
            else:
                self.refuse(
                    f"retry refused: nothing to retry at step {step} (retry a rolled-back "
                    "release, or one waiting for abort before traffic moved)"
                )
        else:
            self.refuse(f"unknown action {action!r}: use promote, abort or retry")

    def request_abort(self, step: Step | None) -> None:
        if step in (*BEFORE_SWITCH, *TRAFFIC_STEPS, Step.AWAIT_ABORT):
            self.answer(RequestOutcome.ACCEPTED, f"aborting at step {step}: rolling back")
            self.abort("Aborted", f"requested ({self.controls.request_id})", manual=True)
        elif step == Step.SCALE_DOWN and self.can_return_to_previous():
            previous = self.st.previous_stable
            assert previous is not None
            self.answer(
                RequestOutcome.ACCEPTED,
                f"aborting after promotion: going back to revision {previous.revision} in "
                f"{previous.color} (it is scaled up and available before traffic moves)",
            )
            self.return_to_previous()
        elif step in (Step.SCALE_DOWN, Step.CONTRACT):
            self.refuse(
                f"abort refused: revision {self.st.stable_revision} was promoted and the "
                "previous colour is gone (contract migrations may have run); to go back, "
                "release the previous version again (revert the template)"
            )
        else:
            self.refuse(f"abort refused: nothing to abort at step {step}")

    def request_promote(self, step: Step | None) -> None:
        if step == Step.AWAIT_PROMOTION:
            self.answer(RequestOutcome.ACCEPTED, "promoting: switching traffic")
            self.d.emit("Normal", "PromoteRequested", "Promotion requested: switching")
            self.enter(Step.SWITCH)
        elif step == Step.ANALYSIS:
            self.answer(RequestOutcome.ACCEPTED, "promoting: the rest of the analysis is skipped")
            self.d.emit("Normal", "PromoteRequested", "Promotion requested during analysis")
            self.enter(Step.POST_PROMOTION_CHECKS)
        elif step == Step.AWAIT_ABORT:
            failed = self.st.failed_step
            resume = {
                Step.PRE_PROMOTION_CHECKS: Step.SWITCH,
                Step.AWAIT_PROMOTION: Step.SWITCH,
                Step.SWITCH: Step.SWITCH,
                Step.ANALYSIS: Step.POST_PROMOTION_CHECKS,
                Step.POST_PROMOTION_CHECKS: Step.POST_PROMOTION_CHECKS,
            }.get(failed)  # type: ignore[arg-type]
            if resume is None:
                self.refuse(
                    f"promote refused: the release failed at step {failed} "
                    f"({self.st.abort_reason}); there is nothing to promote"
                )
                return
            if resume == Step.POST_PROMOTION_CHECKS and self.world.service.color != self.new_color:
                resume = Step.SWITCH  # traffic is not on the new colour: switch first
            self.answer(
                RequestOutcome.ACCEPTED,
                f"promoting despite the failure at step {failed}: resuming at {resume}",
            )
            self.d.emit(
                "Warning", "PromoteRequested", f"Promotion requested after a failure at {failed}"
            )
            if resume == Step.POST_PROMOTION_CHECKS and failed == Step.POST_PROMOTION_CHECKS:
                self.promote()
                return
            self.st.abort_reason = None
            self.enter(resume)
        else:
            self.refuse(f"promote refused: nothing to promote at step {step}")

    def can_return_to_previous(self) -> bool:
        previous = self.st.previous_stable
        if previous is None:
            return False
        view = self.view(previous.color)
        return view is not None and view.revision == previous.revision

    def return_to_previous(self) -> None:
        """Undo a promotion while the previous colour still exists: it becomes stable again."""
        previous, promoted = self.st.previous_stable, self.st.stable
        assert previous is not None
        assert promoted is not None
        self.st.stable = previous
        self.st.previous_stable = None
        self.st.stable_revision = previous.revision
        self.st.stable_release = previous.release
        self.st.stable_schema_version = previous.schema_version
        self.st.preview_color = promoted.color
        self.st.failed_step = self.st.step
        self.st.abort_reason = f"Aborted: requested ({self.controls.request_id}) after promotion"
        self.d.emit("Warning", "RollingBack", self.st.abort_reason)
        self.rollback_started()

    def abort(self, reason: str, message: str, manual: bool = False) -> None:
        """Stop the release; roll back unless automatic rollback is off (then wait)."""
        self.st.failed_step = self.st.step
        self.st.abort_reason = f"{reason}: {message}"
        if not manual and not self.spec.rollback.automatic and reason != "Superseded":
            self.enter(Step.AWAIT_ABORT)
            self.d.emit("Warning", reason, f"{message}; automatic rollback is off")
            return
        self.d.emit("Warning", "RollingBack", f"{reason}: {message}")
        self.rollback_started()

    def rollback_started(self) -> None:
        if self.st.failed_step is None:
            self.st.failed_step = self.st.step
        self.enter(Step.ROLL_BACK)
        self.st.scale_down_at = timestamp(
            self.now
            + timedelta(seconds=self.spec.strategy.blue_green.abort_scale_down_delay_seconds)
        )

    # ------------------------------------------------------------------ the stable colour

    def protect_stable(self) -> None:
        """Keep the stable colour running while a release is in flight or rolled back: a
        Deployment deleted or scaled away by hand is brought back from the recorded template."""
        if self.initial or self.st.stable is None or self.st.step == Step.DONE:
            return
        stable = self.st.stable
        view = self.view(stable.color)
        if view is None or view.revision != stable.revision:
            if stable.template is None:
                return  # nothing recorded to restore it from (an object of an older version)
            self.d.actions.append(
                ApplyColor(stable.color, stable.revision, stable.template, stable.release)
            )
            self.d.actions.append(ScaleColor(stable.color, self.stable_replicas()))
            self.d.emit(
                "Warning",
                "StableRestored",
                f"{self.name}-{stable.color} (stable revision {stable.revision}) was missing or "
                "changed; restored from the recorded template",
            )
            return
        wanted = self.stable_replicas()
        if view.replicas == 0 or (self.spec.replicas is not None and view.replicas != wanted):
            self.d.actions.append(ScaleColor(stable.color, wanted))
            self.d.emit(
                "Warning",
                "StableRestored",
                f"{self.name}-{stable.color} (stable) was scaled to {view.replicas}; "
                f"scaled back to {wanted}",
            )

    def check_schema_still_there(self) -> None:
        """The schema the new revision was deployed for must stay: if the database went below
        it (a person, another release), traffic does not move to it, or moves back."""
        step = self.st.step
        mig, needs = self.world.migration, self.st.updated_schema_version
        if (
            step not in (*BEFORE_SWITCH[1:], *TRAFFIC_STEPS)
            or mig is None
            or not mig.exists
            or not mig.observed_current
            or needs is None
            or (mig.current_version or "") >= needs
        ):
            return
        message = (
            f"the database went down to {mig.current_version or 'nothing applied'}, below the "
            f"{needs} this revision needs"
        )
        if self.traffic_moved():
            self.abort("SchemaLost", message)
        else:
            self.d.emit("Warning", "SchemaLost", f"{message}; waiting for it again")
            self.enter(Step.WAIT_FOR_MIGRATION)

    # ------------------------------------------------------------------ steps

    def step_waitformigration(self) -> None:
        gate = self.spec.migration
        if gate is None:
            self.enter(Step.DEPLOY)
            return
        mig = self.world.migration
        if mig is None or not mig.exists:
            waited = self.elapsed(self.st.step_started_at)
            if waited < MISSING_MIGRATION_GRACE_SECONDS:
                self.say(f"Waiting for DatabaseMigration {gate.ref} to exist")
                self.d.wait(MISSING_MIGRATION_GRACE_SECONDS - waited)
                return
            self.blocked(
                "MigrationNotFound",
                f"DatabaseMigration {gate.ref} not found in namespace {self.namespace}: create "
                "it, or correct spec.migration.ref; nothing was deployed",
            )
            return
        target = self.schema_target()
        self.st.updated_schema_version = target
        if target is None:
            self.say(f"Waiting for DatabaseMigration {gate.ref} to report its target version")
            return
        current = mig.current_version
        ahead = [v for v in mig.applied_contract if v > target and (current or "") >= v]
        if ahead:
            self.blocked(
                "SchemaAhead",
                f"DatabaseMigration {gate.ref} has applied contract migration "
                f"{', '.join(ahead)}, which may remove what revision {self.revision} (schema "
                f"{target}) reads: target {ahead[-1]} or later, or take the database down first",
            )
            return
        if mig.observed_current and current is not None and current >= target:
            self.set_claim_backup(self.protecting_backup(mig))
            self.d.emit("Normal", "SchemaReady", f"Schema is at {current}")
            self.enter(Step.DEPLOY)
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
                "MigrationFailed",
                f"DatabaseMigration {gate.ref} cannot reach {target}: {mig.message}",
            )
            return
        waiting = (
            f"Waiting for DatabaseMigration {gate.ref} to reach {target} "
            f"(now at {current or 'nothing applied'}"
            + (f": {mig.message}" if mig.message else "")
            + ")"
        )
        if self.elapsed(self.st.step_started_at) > gate.timeout_seconds:
            self.blocked(
                "MigrationTimeout",
                f"{waiting} for more than {gate.timeout_seconds}s; still waiting",
            )
            return
        self.say(waiting)
        self.d.wait(2)

    def protecting_backup(self, mig: object) -> str | None:
        """The newest backup of the version the stable revision needs: the one a restore of
        this attempt must use (it was taken immediately before the apply that left it)."""
        from .world import MigrationView

        assert isinstance(mig, MigrationView)
        stable = self.st.stable_schema_version
        if stable is None or self.initial:
            return None
        candidates = [b for b in mig.backups if b.database_version == stable]
        return candidates[-1].name if candidates else None

    def step_deploy(self) -> None:
        color, replicas = self.new_color, self.new_replicas()
        view = self.view(color)
        if view is not None and view.serving(replicas, self.revision):
            self.d.emit("Normal", "ColorAvailable", f"{self.name}-{color} is available")
            if self.initial:
                self.enter(Step.SWITCH)
            elif self.spec.checks.pre_promotion or self.spec.preview_service or self.spec.analysis:
                self.enter(Step.PRE_PROMOTION_CHECKS)
            else:
                self.enter(Step.AWAIT_PROMOTION)
            return
        if view is None or view.revision != self.revision:
            self.d.actions.append(
                ApplyColor(color, self.revision, self.spec.template, self.spec.release)
            )
        if view is None or view.replicas != replicas:
            self.d.actions.append(ScaleColor(color, replicas))
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
            job = check_job_name(self.name, stage, check.name, self.st.attempt_serial)
            record = records.get(check.name)
            if record is not None and record.job == job and record.phase != "Running":
                # decided: the Job may be gone (cleaned up after it finished)
                if record.phase == "Failed":
                    return self.check_failed(stage, check.name, job, record.message)
                continue
            view = self.world.jobs.get(job)
            if view is None:
                # creating an existing Job is a no-op, so ask again until the Job is seen
                self.d.actions.append(RunCheck(check.name, stage, job, color, service))  # type: ignore[arg-type]
                if record is None or record.job != job:
                    record = CheckStatus(name=check.name, stage=stage, job=job, phase="Running")
                    self.st.checks = [
                        c for c in self.st.checks if not (c.stage == stage and c.name == check.name)
                    ] + [record]
                all_passed = False
                continue
            if record is None or record.phase != view.phase or record.job != job:
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
                return self.check_failed(stage, check.name, job, view.message)
            if view.phase != "Succeeded":
                all_passed = False
        return True if all_passed else None

    def check_failed(self, stage: str, check: str, job: str, message: str) -> bool:
        self.d.emit("Warning", "CheckFailed", f"{stage} check {check} failed: {message}")
        self.abort("CheckFailed", f"{stage} check {check} (Job {job}) failed: {message}")
        return False

    def step_prepromotionchecks(self) -> None:
        color = self.new_color
        preview = self.spec.preview_service
        if preview and self.world.preview_service and self.world.preview_service.color != color:
            self.d.actions.append(PointService(preview, color))
            self.say(f"Pointing preview Service {preview} at {color}")
            return
        if not self.analysis_queries_checked():
            return
        result = self.run_checks(
            "prePromotion", self.spec.checks.pre_promotion, color, preview or self.spec.service
        )
        if result is True:
            self.enter(Step.AWAIT_PROMOTION)
        elif result is None:
            self.say("Running pre-promotion checks")

    def analysis_queries_checked(self) -> bool:
        """Before traffic moves, every analysis query must run and name metrics that exist."""
        if self.spec.analysis is None:
            return True
        status = self.st.analysis
        if status is not None and status.started_at is None and status.rounds > 0:
            errors = [m for m in status.measurements if m.phase == "Error"]
            if not errors:
                return True
            first = errors[0]
            metric = next((m for m in self.spec.analysis.metrics if m.name == first.metric), None)
            self.blocked(
                "AnalysisQueryInvalid",
                f"analysis metric {first.metric} cannot be measured: {first.message} (query: "
                f"{metric.query.strip() if metric else '?'}); fix spec.analysis; no traffic "
                "was moved",
            )
            self.st.analysis = None  # measure again on the next look (the spec may be fixed)
            return False
        self.d.actions.append(Measure(self.new_color, preflight=True))
        self.say(f"Checking the analysis queries against {self.new_color}")
        return False

    def step_awaitpromotion(self) -> None:
        if self.spec.strategy.blue_green.auto_promote:
            self.enter(Step.SWITCH)
            return
        self.d.health, self.d.reason = Health.PAUSED, "AwaitingPromotion"
        self.say(
            f"{self.name}-{self.new_color} is ready; waiting for promotion "
            f"(kubectl lockstep promote {self.name})"
        )

    def step_switch(self) -> None:
        color = self.new_color
        replicas = self.new_replicas()
        view = self.view(color)
        if self.world.service.color != color:
            if view is None or not view.serving(replicas, self.revision):
                available = view.available if view else 0
                self.say(
                    f"Not switching to {color}: {available}/{replicas} pods available; "
                    "waiting for it again"
                )
                self.enter(Step.DEPLOY)
                return
            self.d.actions.append(PointService(self.spec.service, color, min_available=replicas))
            self.say(f"Switching Service {self.spec.service} to {color}")
            self.d.wait(0.2)
            return
        previous = self.st.active_color
        self.st.active_color = color
        self.d.emit(
            "Normal",
            "Switched",
            f"Service {self.spec.service} now selects {color} (revision {self.revision})"
            + (f", was {previous}" if previous and previous != color else ""),
        )
        if self.initial:
            self.promote()
            return
        self.st.analysis = AnalysisStatus(started_at=self.ts())
        self.enter(Step.ANALYSIS)

    def new_colour_lost(self) -> bool:
        """The colour under analysis has no available pod: the Service selects nothing."""
        view = self.view(self.new_color)
        if view is not None and view.available > 0 and view.revision == self.revision:
            return False
        self.abort(
            "ColorUnavailable",
            f"{self.name}-{self.new_color} has no available pods while it serves traffic",
        )
        return True

    def step_analysis(self) -> None:
        if self.new_colour_lost():
            return
        spec = self.spec.analysis
        if spec is None:
            self.enter(Step.POST_PROMOTION_CHECKS)
            return
        status = self.st.analysis
        if status is None or status.started_at is None:
            status = AnalysisStatus(started_at=self.ts())
        self.st.analysis = status
        verdict = analysis_rules.verdict(status, spec, self.now)
        if verdict == "failed":
            what = f"{status.failed} failed measurements (limit {spec.failure_limit})"
            first = analysis_rules.first_failure(status, "Failed")
            self.abort("AnalysisFailed", f"{what}: {first}")
        elif verdict == "errored":
            what = (
                f"{status.consecutive_errors} erroring rounds in a row "
                f"(limit {spec.consecutive_error_limit})"
            )
            first = analysis_rules.first_failure(status, "Error")
            self.abort("AnalysisErrored", f"{what}: {first}")
        elif verdict == "passed":
            self.d.emit(
                "Normal",
                "AnalysisPassed",
                f"Analysis passed: {status.clean_rounds} clean rounds, "
                f"{status.failed} failed measurements",
            )
            self.enter(Step.POST_PROMOTION_CHECKS)
        else:
            if verdict == "measure":
                self.d.actions.append(Measure(self.new_color))
            else:
                self.d.wait(analysis_rules.seconds_until_next_round(status, spec, self.now))
            self.say(
                f"Analysing {self.new_color}: {status.clean_rounds}/{spec.required_rounds} clean "
                f"rounds, {status.failed} failed, {status.errors} errors"
            )

    def step_postpromotionchecks(self) -> None:
        if self.new_colour_lost():
            return
        result = self.run_checks(
            "postPromotion", self.spec.checks.post_promotion, self.new_color, self.spec.service
        )
        if result is True:
            self.promote()
        elif result is None:
            self.say("Running post-promotion checks")

    def promote(self) -> None:
        first = self.initial
        color = self.new_color
        view = self.view(color)
        self.st.previous_stable = None if first else self.st.stable
        self.st.stable = RevisionRecord(
            revision=self.revision,
            release=self.st.release,
            color=color,
            schema_version=self.st.updated_schema_version,
            contract_version=self.spec.migration.contract_version if self.spec.migration else None,
            replicas=(view.replicas if view else None) or self.new_replicas(),
            template=self.spec.template,
        )
        self.st.stable_revision = self.st.updated_revision = self.revision
        self.st.stable_release = self.st.release
        self.st.stable_schema_version = self.st.updated_schema_version
        self.st.active_color = color
        self.st.abort_reason = None
        self.st.failed_step = None
        delay = self.spec.strategy.blue_green.scale_down_delay_seconds
        self.st.scale_down_at = timestamp(self.now + timedelta(seconds=delay))
        self.add_history(
            "Promoted",
            "first release" if first else "analysis passed" if self.spec.analysis else "released",
        )
        self.d.emit(
            "Normal",
            "Promoted",
            f"Revision {self.revision} promoted in {color}"
            + ("" if first else f"; {other(color)} scales down in {delay}s"),
        )
        self.enter(Step.SCALE_DOWN)

    def step_scaledown(self) -> None:
        stable = self.stable_color
        if self.world.service.color != stable:
            self.d.actions.append(PointService(self.spec.service, stable))
            self.say(f"Service {self.spec.service} pointed elsewhere; pointing it at {stable}")
            return
        old = other(stable)
        view = self.view(old)
        wait = -self.elapsed(self.st.scale_down_at)
        if view is not None and not view.scaled_down:
            if wait > 0:
                self.say(
                    f"Promoted {self.st.release or self.revision} in {stable}; {self.name}-{old} "
                    f"scales down in {wait:.0f}s"
                )
                self.d.wait(wait)
                return
            if view.replicas != 0:
                self.d.actions.append(ScaleColor(old, 0))
            self.say(f"Scaling {self.name}-{old} down")
            return
        self.st.settled = True
        self.st.scale_down_at = None
        self.st.previous_stable = None
        if view is not None:
            self.d.emit("Normal", "ScaledDown", f"{self.name}-{old} scaled to zero")
        self.enter(Step.CONTRACT if self.spec.migration else Step.DONE)

    def step_contract(self) -> None:
        """Wait for the contract migrations this release tolerates (migration.contractVersion)."""
        mig = self.world.migration
        gate = self.spec.migration
        if gate is None or gate.contract_version is None or mig is None or not mig.exists:
            self.enter(Step.DONE)
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
            message = (
                f"Promoted; waiting for DatabaseMigration {gate.ref} to run contract migrations "
                f"up to {through} (now at {mig.current_version}"
                + (f": {mig.message}" if mig.message else "")
                + ")"
            )
            if self.elapsed(self.st.step_started_at) > gate.timeout_seconds:
                self.blocked("MigrationTimeout", f"{message} for more than {gate.timeout_seconds}s")
                return
            self.say(message)
            self.d.wait(2)
            return
        self.d.emit(
            "Normal", "Contracted", f"DatabaseMigration {gate.ref} is at {mig.current_version}"
        )
        self.enter(Step.DONE)

    def step_done(self) -> None:
        """Steady state: keep the world as promoted (replica changes, drift of the selector)."""
        color: Color = self.st.active_color or "blue"
        view = self.view(color)
        stable = self.st.stable
        template = stable.template if stable and stable.template else self.spec.template
        if view is None or view.revision != self.revision:
            self.d.actions.append(ApplyColor(color, self.revision, template, self.st.release))
        if self.spec.replicas is not None and (view is None or view.replicas != self.spec.replicas):
            self.d.actions.append(ScaleColor(color, self.spec.replicas))
        elif self.spec.replicas is None and (view is None or view.replicas == 0):
            self.d.actions.append(ScaleColor(color, self.stable_replicas()))
        if self.world.service.color != color:
            self.d.actions.append(PointService(self.spec.service, color))
            self.d.emit(
                "Warning",
                "SelectorRestored",
                f"Service {self.spec.service} selector pointed elsewhere; restored to {color}",
            )
        idle = self.view(other(color))
        if idle is not None and idle.replicas != 0 and self.elapsed(self.st.scale_down_at) >= 0:
            self.d.actions.append(ScaleColor(other(color), 0))
        self.st.settled = idle is None or idle.scaled_down or idle.replicas == 0
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
        if not self.initial and not self.stable_ready_for_traffic():
            return
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
        superseded = self.revision != self.st.updated_revision or (
            self.st.abort_reason or ""
        ).startswith("Superseded")
        if not superseded and not self.database_rolled_back():
            return
        view = self.view(new)
        if self.elapsed(self.st.scale_down_at) >= 0 and view is not None and view.replicas != 0:
            self.d.actions.append(ScaleColor(new, 0))
        if not self.initial:
            self.st.active_color = stable
        manual = (self.st.abort_reason or "").startswith("Aborted")
        outcome = "Superseded" if superseded else "Aborted" if manual else "RolledBack"
        self.add_history(outcome, self.st.abort_reason or "")
        if superseded:
            self.d.emit(
                "Normal", "Superseded", f"Traffic stays on {stable}: {self.st.abort_reason}"
            )
            if self.revision == self.st.stable_revision:
                self.back_to_stable()
            else:
                self.begin(self.revision, preview=new)
            return
        details = ""
        if (self.st.abort_reason or "").startswith("Analysis") and self.st.analysis is not None:
            details = f" [{analysis_rules.describe_failure(self.st.analysis)}]"
        self.d.emit(
            "Warning",
            "RolledBack",
            f"Rolled back to {stable} (revision {self.st.stable_revision}): "
            f"{self.st.abort_reason}{details}",
        )
        self.say(f"Rolled back to {stable}: {self.st.abort_reason}")
        self.enter(Step.ROLLED_BACK)

    def stable_ready_for_traffic(self) -> bool:
        """The stable colour can take the traffic back: whole, or (after a short wait) with
        some pods when the new colour has none. Never a colour without available pods."""
        stable = self.st.stable or RevisionRecord(
            revision=self.st.stable_revision or "", color=self.stable_color
        )
        view = self.view(stable.color)
        wanted = self.stable_replicas()
        if view is None or view.revision != stable.revision:
            self.say(f"Rolling back: bringing {self.name}-{stable.color} back before switching")
            return False
        if self.world.service.color == stable.color:
            return True
        if view.available >= wanted:
            return True
        new = self.view(self.new_color)
        new_dead = new is None or new.available == 0
        waited = self.elapsed(self.st.step_started_at)
        if view.available > 0 and (new_dead or waited > ROLLBACK_FULL_AVAILABILITY_WAIT_SECONDS):
            return True
        self.say(
            f"Rolling back: waiting for {self.name}-{stable.color} to become available "
            f"({view.available}/{wanted} pods) before switching traffic back"
        )
        if waited > self.spec.strategy.blue_green.progress_deadline_seconds:
            self.blocked(
                "StableUnavailable",
                f"Rolling back, but {self.name}-{stable.color} (revision {stable.revision}) has "
                f"had no available pods for {waited:.0f}s; traffic stays where it is",
            )
        return False

    def database_rolled_back(self) -> bool:
        """Ask the DatabaseMigration to roll back when the policy says so; True when done."""
        gate, mode = self.spec.migration, self.spec.rollback.database
        if gate is None or mode == "none" or self.initial:
            return True
        to_version = self.st.stable_schema_version
        mig = self.world.migration
        current = mig.current_version if mig is not None else None
        if to_version is None:
            self.note_database("kept: the stable revision declares no schema version")
            return True
        claim = self.st.database
        rid = request_id(self.name, self.st.attempt_serial)
        request = claim.request if claim is not None else None
        asked = request is not None and request.id == rid
        if not asked and (current is None or current <= to_version):
            return True  # nothing above what the stable revision needs
        if request is None or request.id != rid:
            backup = claim.backup if claim is not None else None
            if mode == DatabaseRollback.RESTORE and backup is None:
                self.note_database(
                    f"kept at {current}: no backup of {to_version} protects this release"
                )
                return True
            request = DatabaseRequest(
                id=rid,
                mode=RollbackMode(mode),
                to_version=to_version,
                backup=backup if mode == DatabaseRollback.RESTORE else None,
                requested_at=self.ts(),
            )
            self.set_request(request)
            self.d.emit(
                "Warning",
                "DatabaseRollbackRequested",
                f"Asked {gate.ref} to roll back ({mode}) to {to_version}"
                + (f" from backup {request.backup}" if request.backup else ""),
            )
        ack = mig.acks.get(self.name) if mig is not None else None
        if ack is not None and ack.id == rid and ack.outcome.final:
            if ack.outcome is not AckOutcome.SUCCEEDED:
                self.note_database(f"{ack.outcome.value}: {ack.message}")
            else:
                self.note_database(ack.message or f"rolled back to {to_version}")
            return True
        waiting = f"Rolling back: waiting for DatabaseMigration {gate.ref} to roll back ({mode})"
        if ack is not None and ack.id == rid and ack.message:
            waiting += f": {ack.message}"
        if self.elapsed(request.requested_at) > gate.timeout_seconds:
            self.blocked("DatabaseRollbackTimeout", f"{waiting}; still waiting")
        else:
            self.say(waiting)
            self.d.wait(1)
        return False

    def note_database(self, what: str) -> None:
        note = f"database {what}"
        if note not in (self.st.abort_reason or ""):
            self.st.abort_reason = f"{self.st.abort_reason}; {note}"

    def step_rolledback(self) -> None:
        stable = self.stable_color
        if (
            self.world.service.color != stable
            and not self.initial
            and self.stable_ready_for_traffic()
        ):
            self.d.actions.append(PointService(self.spec.service, stable))
        view = self.view(self.new_color)
        if view is not None and view.replicas != 0 and self.new_color != stable:
            wait = -self.elapsed(self.st.scale_down_at)
            if wait > 0:
                self.d.wait(wait)
            else:
                self.d.actions.append(ScaleColor(self.new_color, 0))
        elif view is None or view.scaled_down or self.new_color == stable:
            self.st.settled = True


Measurer = Callable[[FeatureRelease, Measure], list[analysis_rules.QueryResult]]
"""Takes one round of analysis measurements (the caller's Prometheus I/O)."""


def max_version(*versions: str | None) -> str | None:
    present = [v for v in versions if v is not None]
    return max(present) if present else None


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
    results = measure(release.model_copy(update={"status": decision.status}), request)
    measured = after_measurement(
        release.model_copy(update={"status": decision.status}),
        results,
        world.now,
        preflight=request.preflight,
    )
    emitted: list[Action] = [a for a in decision.actions if isinstance(a, Emit)]
    again = Machine(measured, name, namespace, generation, world, controls).decide()
    again.actions = emitted + [a for a in again.actions if not isinstance(a, Measure)]
    return again


def after_measurement(
    release: FeatureRelease,
    results: list[analysis_rules.QueryResult],
    now: datetime,
    preflight: bool = False,
) -> FeatureRelease:
    """Fold a round of analysis measurements into the release's status.

    A preflight round (before the switch) is kept apart: its analysis status has no start
    time, and it only says whether every query runs."""
    assert release.spec.analysis is not None
    if preflight:
        status = AnalysisStatus()
    else:
        status = release.status.analysis or AnalysisStatus(started_at=timestamp(now))
    updated = analysis_rules.record_round(status, release.spec.analysis, results, now)
    if preflight:
        updated = updated.model_copy(update={"started_at": None})
    return release.model_copy(
        update={"status": release.status.model_copy(update={"analysis": updated})}
    )
