"""kstatus conditions from one coarse health verdict: what kubectl, Flux and Argo CD read.

Both kinds write four conditions, "abnormal-true" except `Ready`. Readers:
- kstatus (Flux's health checks): `Reconciling=True` is InProgress, `Stalled=True` is Failed (and
  final: Flux stops waiting), else `Ready=True` is Current and `Ready=False` InProgress;
- `kubectl wait --for=condition=Ready` waits for `Ready=True`;
- the Argo CD health script of gitops/argocd/health.lua.

The mapping, pinned by tests on objects captured from the end-to-end tests (docs/gitops.md):

| health      | Ready | Reconciling            | Stalled | Degraded | kstatus    | Argo CD     |
|-------------|-------|------------------------|---------|----------|------------|-------------|
| READY       | True  | False                  | False   | False    | Current    | Healthy     |
| PLANNED     | True  | False                  | False   | False    | Current    | Healthy     |
| PROGRESSING | False | True                   | False   | False    | InProgress | Progressing |
| PAUSED      | False | True                   | False   | False    | InProgress | Suspended*  |
| RETRYING    | False | True (WithRetry)       | False   | False    | InProgress | Degraded    |
| STALLED     | False | False                  | True    | False    | Failed     | Degraded    |
| DEGRADED    | False | False                  | True    | True     | Failed     | Degraded    |

(* Argo CD reads `phase: Paused`, which the release machine writes with PAUSED. WithRetry: the
Reconciling reason is `ProgressingWithRetry`, and Ready's reason names the error.)
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from .api.base import Condition, timestamp


class Health(Enum):
    READY = "Ready"  # desired state reached
    PROGRESSING = "Progressing"  # working towards it
    PAUSED = "Paused"  # waiting for a person (promotion gate, pause)
    RETRYING = "Retrying"  # an error lockstep retries by itself; may heal without a change
    STALLED = "Stalled"  # cannot make progress without a change (invalid spec, blocked)
    DEGRADED = "Degraded"  # rolled back: stable version serves, desired one failed
    PLANNED = "Planned"  # a dry run: the plan is the result; nothing else will happen


# The Reconciling reason of RETRYING, as Flux's own controllers write it.
RETRYING_REASON = "ProgressingWithRetry"

# Errors that lockstep retries on its own: the object heals when the world changes (the database
# comes back, the Secret or Service is created), with no change to the spec. They are not
# Stalled, which kstatus reads as final.
RETRIED_REASONS = frozenset(
    {"DatabaseUnreachable", "SecretNotFound", "SourceNotFound", "ServiceNotFound"}
)


def effective(health: Health, reason: str) -> Health:
    """STALLED with a reason lockstep retries by itself is RETRYING."""
    if health is Health.STALLED and reason in RETRIED_REASONS:
        return Health.RETRYING
    return health


def _condition(
    kind: str, status: bool, reason: str, message: str, generation: int | None, at: str
) -> Condition:
    return Condition(
        type=kind,
        status="True" if status else "False",
        reason=reason,
        message=message,
        last_transition_time=at,
        observed_generation=generation,
    )


def conditions_for(
    health: Health,
    reason: str,
    message: str,
    generation: int | None,
    previous: list[Condition],
    at: str | None = None,
) -> list[Condition]:
    """The four conditions for `health`, keeping transition times of unchanged statuses."""
    at = at or timestamp()
    health = effective(health, reason)
    ready = health in (Health.READY, Health.PLANNED)
    reconciling = health in (Health.PROGRESSING, Health.PAUSED, Health.RETRYING)
    stalled = health in (Health.STALLED, Health.DEGRADED)
    degraded = health is Health.DEGRADED
    ready_reason = "DryRun" if health is Health.PLANNED else "Ready" if ready else reason
    reconciling_reason = RETRYING_REASON if health is Health.RETRYING else reason
    fresh = [
        _condition("Ready", ready, ready_reason, message, generation, at),
        _condition(
            "Reconciling",
            reconciling,
            reconciling_reason,
            message if reconciling else "",
            generation,
            at,
        ),
        _condition("Stalled", stalled, reason, message if stalled else "", generation, at),
        _condition("Degraded", degraded, reason, message if degraded else "", generation, at),
    ]
    old = {c.type: c for c in previous}
    result = []
    for condition in fresh:
        before = old.get(condition.type)
        if before is not None and before.status == condition.status:
            kept = condition.model_copy(
                update={"last_transition_time": before.last_transition_time}
            )
            result.append(kept)
        else:
            result.append(condition)
    return result


def condition_status(conditions: list[Condition], kind: str) -> str | None:
    for condition in conditions:
        if condition.type == kind:
            return condition.status
    return None


def health_of(status: Mapping[str, Any]) -> Health | None:
    """The health that a written status expresses (the inverse of `conditions_for`; PAUSED is
    told from PROGRESSING by `phase: Paused`, as the Argo CD script does). None: no conditions."""
    conditions = {c.get("type"): c for c in status.get("conditions") or []}

    def holds(kind: str) -> bool:
        return (conditions.get(kind) or {}).get("status") == "True"

    if holds("Degraded"):
        return Health.DEGRADED
    if holds("Stalled"):
        return Health.STALLED
    if holds("Ready"):
        return Health.PLANNED if conditions["Ready"].get("reason") == "DryRun" else Health.READY
    if holds("Reconciling"):
        if conditions["Reconciling"].get("reason") == RETRYING_REASON:
            return Health.RETRYING
        return Health.PAUSED if status.get("phase") == "Paused" else Health.PROGRESSING
    return None
