"""An in-memory world for the release state machine: it carries out actions instantly.

Unit tests of pure logic only: it stands in for Kubernetes and Prometheus so that every
transition, and a restart before or after every action, can be tried in milliseconds. Like the
reconciler, it refuses to point the Service at a colour without available pods and to scale to
zero a colour the Service selects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lockstep.api.base import timestamp
from lockstep.api.protocol import AckOutcome, RequestAck
from lockstep.api.release import FeatureRelease, FeatureReleaseStatus
from lockstep.release import machine
from lockstep.release.analysis import QueryResult
from lockstep.release.world import (
    Action,
    ApplyColor,
    Controls,
    DeploymentView,
    Emit,
    JobView,
    MigrationView,
    PointService,
    RunCheck,
    ScaleColor,
    ServiceView,
    World,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
VERSION_LABEL = "app.kubernetes.io/version"


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "replicas": 2,
        "template": template("v1"),
        "service": "web",
        "release": "v1",
        "strategy": {"blueGreen": {"scaleDownDelaySeconds": 10}},
    }
    base.update(overrides)
    return base


def template(version: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web", VERSION_LABEL: version}},
        "spec": {"containers": [{"name": "web", "image": f"example/web:{version}"}]},
    }


ANALYSIS = {
    "prometheus": {"address": "http://prometheus:9090"},
    "interval": "2s",
    "duration": "10s",
    "failureLimit": 2,
    "consecutiveErrorLimit": 3,
    "metrics": [{"name": "error-ratio", "query": "errors{color='{{color}}'}", "max": 0.05}],
}


@dataclass
class Sim:
    """The world plus the persisted status; `run` drives the machine until it settles."""

    spec: dict[str, Any]
    now: datetime = T0
    status: dict[str, Any] = field(default_factory=dict)
    generation: int = 1
    annotations: dict[str, str] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    service_color: str | None = None
    preview_color: str | None = None
    has_preview: bool = False
    jobs: dict[str, str] = field(default_factory=dict)
    failing_checks: set[str] = field(default_factory=set)
    never_ready: set[str] = field(default_factory=set)  # image versions whose pods never get ready
    metric_value: float | None = 0.0
    metric_error: str | None = None
    preflight_error: str | None = None
    migration: MigrationView | None = None
    events: list[Emit] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    refused: list[Action] = field(default_factory=list)
    answer_rollback_requests: bool = True

    # ------------------------------------------------------------------ world

    def world(self) -> World:
        views = {}
        for color, d in self.deployments.items():
            available = 0 if d["stuck"] else d["replicas"]
            views[color] = DeploymentView(
                color=color,  # type: ignore[arg-type]
                revision=d["revision"],
                replicas=d["replicas"],
                updated=d["replicas"],
                ready=available,
                available=available,
                template=d.get("template"),
                release_name=d.get("release"),
            )
        selector = {"app": "web"}
        if self.service_color:
            selector["lockstep.dev/color"] = self.service_color
        preview = None
        if self.has_preview:
            preview_selector = {"app": "web"}
            if self.preview_color:
                preview_selector["lockstep.dev/color"] = self.preview_color
            preview = ServiceView("web-preview", True, preview_selector)
        return World(
            now=self.now,
            service=ServiceView("web", True, selector),
            preview_service=preview,
            deployments=views,  # type: ignore[arg-type]
            jobs={n: JobView(n, p) for n, p in self.jobs.items()},  # type: ignore[arg-type]
            migration=self.migration,
        )

    def available(self, color: str) -> int:
        d = self.deployments.get(color)
        return 0 if d is None or d["stuck"] else int(d["replicas"])

    def release(self) -> FeatureRelease:
        return FeatureRelease.model_validate({"spec": self.spec, "status": self.status})

    def controls(self) -> Controls:
        from lockstep.release.reconcile import controls_from

        return controls_from(self.annotations)

    def carry_out(self, action: Action) -> None:
        self.actions.append(action)
        if isinstance(action, Emit):
            self.events.append(action)
        elif isinstance(action, ApplyColor):
            version = action.template["metadata"]["labels"][VERSION_LABEL]
            existing = self.deployments.get(action.color)
            self.deployments[action.color] = {
                "revision": action.revision,
                "replicas": existing["replicas"] if existing else 1,
                "stuck": version in self.never_ready,
                "template": action.template,
                "release": action.release_name,
            }
        elif isinstance(action, ScaleColor):
            if action.replicas == 0 and self.service_color == action.color:
                self.refused.append(action)
            elif action.color in self.deployments:
                self.deployments[action.color]["replicas"] = action.replicas
        elif isinstance(action, PointService):
            if self.available(action.color) < action.min_available:
                self.refused.append(action)
            elif action.service == "web":
                self.service_color = action.color
            else:
                self.preview_color = action.color
        elif isinstance(action, RunCheck):
            self.jobs.setdefault(
                action.job, "Failed" if action.check in self.failing_checks else "Succeeded"
            )

    def answer_database(self) -> None:
        """The DatabaseMigration's side, reduced to answering the release's request."""
        claim = self.typed_status().database
        if not self.answer_rollback_requests or self.migration is None or claim is None:
            return
        request = claim.request
        if request is None or (
            (ack := self.migration.acks.get("web")) is not None and ack.id == request.id
        ):
            return
        acks = dict(self.migration.acks)
        acks["web"] = RequestAck(
            release="web",
            id=request.id,
            outcome=AckOutcome.SUCCEEDED,
            message=f"rolled back to {request.to_version}",
            at=timestamp(self.now),
        )
        self.migration = MigrationView(
            **{
                **self.migration.__dict__,
                "acks": acks,
                "current_version": request.to_version,
            }
        )

    # ------------------------------------------------------------------ driving

    def measure(self, _release: FeatureRelease, request: Any) -> list[QueryResult]:
        if request.preflight:
            return [QueryResult("error-ratio", value=0.0, error=self.preflight_error)]
        return [QueryResult("error-ratio", value=self.metric_value, error=self.metric_error)]

    def step(self, crash_after: int | None = None) -> machine.Decision:
        """One evaluation: the status is written, then the actions happen. With `crash_after`,
        only that many actions happen (the process died), like a SIGKILL in the middle of a
        reconcile; a death before the status write changes nothing at all."""
        decision = machine.decide(
            self.release(),
            "web",
            "prod",
            self.generation,
            self.world(),
            self.controls(),
            measure=self.measure,
        )
        self.status = decision.status.wire()
        actions = decision.actions if crash_after is None else decision.actions[:crash_after]
        for action in actions:
            self.carry_out(action)
        self.answer_database()
        return decision

    def run(self, until: str | None = None, max_steps: int = 400, seconds: float = 600) -> None:
        """Evaluate and let time pass until the phase is settled (or `until` is the step)."""
        deadline = self.now + timedelta(seconds=seconds)
        for _ in range(max_steps):
            decision = self.step()
            st = self.typed_status()
            if until is not None and st.step == until:
                return
            if (
                until is None
                and st.step in (machine.DONE, machine.ROLLED_BACK, machine.AWAIT_ABORT)
                and st.phase in ("Ready", "RolledBack", "Blocked")
            ) and not self.pending_work():
                return
            if until is None and st.phase in ("Blocked", "Paused", "Invalid"):
                return
            self.now += timedelta(seconds=min(max(decision.requeue, 0.1), 1.0))
            if self.now > deadline:
                break
        raise AssertionError(
            f"did not settle: step={self.typed_status().step} message={self.typed_status().message}"
        )

    def pending_work(self) -> bool:
        decision = machine.decide(
            self.release(), "web", "prod", self.generation, self.world(), self.controls()
        )
        return any(not isinstance(a, Emit) for a in decision.actions)

    def typed_status(self) -> FeatureReleaseStatus:
        return FeatureReleaseStatus.model_validate(self.status)

    def change(self, **overrides: Any) -> None:
        self.spec = {**self.spec, **overrides}
        self.generation += 1

    def request(self, action: str, ident: str = "1") -> None:
        self.annotations["lockstep.dev/request"] = f"{action}@{ident}"

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def outcome(self) -> dict[str, Any]:
        st = self.typed_status()
        return {
            "phase": st.phase,
            "step": st.step,
            "active": st.active_color,
            "stable": st.stable_revision,
            "service": self.service_color,
            "replicas": {c: d["replicas"] for c, d in sorted(self.deployments.items())},
            "history": [(h.outcome, h.revision) for h in st.history],
        }
