"""What the release state machine sees (views of the world) and what it asks for (actions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ..api.release import Color

COLOR_LABEL = "lockstep.dev/color"
REVISION_LABEL = "lockstep.dev/revision"
RELEASE_LABEL = "lockstep.dev/release"
MANAGED_BY = {"app.kubernetes.io/managed-by": "lockstep"}


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

    def serving(self, replicas: int, revision: str) -> bool:
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
        return self.current and self.replicas == 0 and self.ready == 0


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
    last_request_id: str | None = None
    last_request_outcome: str | None = None


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
    """Create or update `<name>-<color>` with the spec's template at `revision`."""

    color: Color
    revision: str
    replicas: int


@dataclass(frozen=True)
class ScaleColor:
    color: Color
    replicas: int


@dataclass(frozen=True)
class PointService:
    """Make `service` select `color` (only its selector is touched)."""

    service: str
    color: Color


@dataclass(frozen=True)
class RunCheck:
    check: str
    stage: Literal["prePromotion", "postPromotion"]
    job: str
    color: Color
    service: str


@dataclass(frozen=True)
class Measure:
    """Take one round of analysis measurements of `color`."""

    color: Color


@dataclass(frozen=True)
class RequestMigrationRollback:
    migration: str
    request_id: str
    mode: Literal["down", "restore"]
    to_version: str | None


@dataclass(frozen=True)
class ReleaseMigrationHold:
    """Withdraw an earlier rollback request, so the migration may move forward again."""

    migration: str


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the FeatureRelease."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = (
    ApplyColor
    | ScaleColor
    | PointService
    | RunCheck
    | Measure
    | RequestMigrationRollback
    | ReleaseMigrationHold
    | Emit
)
