"""What the release state machine sees (views of the world) and what it asks for (actions)."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..api.protocol import RequestAck
from ..api.release import Color

COLOR_LABEL = "lockstep.dev/color"
REVISION_LABEL = "lockstep.dev/revision"
RELEASE_LABEL = "lockstep.dev/release"
MANAGED_BY = {"app.kubernetes.io/managed-by": "lockstep"}


def label_value(name: str) -> str:
    """An object name as a label value (at most 63 characters): names that do not fit are
    shortened with a hash of the whole name, the same way wherever the label is written or
    looked up."""
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-.')}-{digest}"


def other(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


@dataclass(frozen=True)
class DeploymentView:
    """One colour's Deployment as observed."""

    color: Color
    revision: str | None
    replicas: int
    updated: int = 0
    ready: int = 0
    available: int = 0
    current: bool = True  # the Deployment controller has seen the latest spec
    template: dict[str, Any] | None = field(default=None, compare=False)  # its pod template
    release_name: str | None = None  # the human release name it was deployed for
    terminating: int = 0  # pods shutting down (status.terminatingReplicas)

    def serving(self, replicas: int, revision: str | None) -> bool:
        """All `replicas` pods of `revision` are available."""
        return (
            self.current
            and self.revision == revision
            and self.replicas == replicas
            and self.updated >= replicas
            and self.available >= replicas
        )

    @property
    def scaled_down(self) -> bool:
        """No pod of the colour runs any more, terminating ones included."""
        return self.current and self.replicas == 0 and self.ready == 0 and self.terminating == 0


def pod_template_of(view: DeploymentView) -> dict[str, Any] | None:
    """A colour's pod template as the user wrote it (the labels lockstep adds removed)."""
    if view.template is None:
        return None
    template = copy.deepcopy(view.template)
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        for key in (COLOR_LABEL, REVISION_LABEL, RELEASE_LABEL):
            labels.pop(key, None)
    return template


@dataclass(frozen=True)
class ServiceView:
    name: str
    exists: bool
    selector: dict[str, str] = field(default_factory=dict)

    @property
    def color(self) -> str | None:
        return self.selector.get(COLOR_LABEL)


JobPhase = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class JobView:
    name: str
    phase: JobPhase
    message: str = ""


@dataclass(frozen=True)
class BackupView:
    """A backup the DatabaseMigration took: of which version, when."""

    name: str
    database_version: str | None
    completed_at: str | None


@dataclass(frozen=True)
class MigrationView:
    """The referenced DatabaseMigration's status, as far as a release cares."""

    exists: bool
    current_version: str | None = None
    target_version: str | None = None
    phase: str | None = None
    message: str = ""
    ready: bool = False
    stalled: bool = False
    observed_current: bool = False  # its status describes its latest generation
    pending_contract: tuple[str, ...] = ()
    applied_contract: tuple[str, ...] = ()  # contract migrations in the ledger
    backups: tuple[BackupView, ...] = ()
    acks: dict[str, RequestAck] = field(default_factory=dict, compare=False)  # by release name


@dataclass(frozen=True)
class World:
    now: datetime
    service: ServiceView
    preview_service: ServiceView | None
    deployments: dict[Color, DeploymentView]
    jobs: dict[str, JobView]
    migration: MigrationView | None


@dataclass(frozen=True)
class Controls:
    """Manual controls from annotations; they never touch the spec."""

    paused: bool = False
    request_id: str | None = None  # the full annotation value; handled once
    request_action: str | None = None  # promote, abort or retry


# ------------------------------------------------------------------------------ actions


@dataclass(frozen=True)
class ApplyColor:
    """Create or update `<name>-<color>` with `template` at `revision` (never its replicas:
    those change only through `ScaleColor`, so an autoscaler can own them)."""

    color: Color
    revision: str
    template: dict[str, Any] = field(compare=False)
    release_name: str | None = None


@dataclass(frozen=True)
class ScaleColor:
    """Set a colour's replicas. Scaling to zero is refused at the last moment if a Service
    of the release selects the colour."""

    color: Color
    replicas: int


@dataclass(frozen=True)
class PointService:
    """Make `service` select `color` (only its selector is touched). Refused at the last
    moment unless the colour has at least `min_available` available pods."""

    service: str
    color: Color
    min_available: int = 1


@dataclass(frozen=True)
class RunCheck:
    check: str
    stage: Literal["prePromotion", "postPromotion"]
    job: str
    color: Color
    service: str


@dataclass(frozen=True)
class Measure:
    """Take one round of analysis measurements of `color`; a preflight round only checks that
    every query runs and names metrics Prometheus has (before any traffic moves)."""

    color: Color
    preflight: bool = False


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the FeatureRelease."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = ApplyColor | ScaleColor | PointService | RunCheck | Measure | Emit
