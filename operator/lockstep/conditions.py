"""kstatus conditions from one coarse health verdict.

kstatus (used by Flux and `kubectl wait`) reads `Reconciling=True` as in progress and
`Stalled=True` as failed; Argo CD's health script reads the same. `Degraded` marks a release
that was rolled back. Conditions are "abnormal-true" except `Ready`.
"""

from __future__ import annotations

from enum import Enum

from .api.base import Condition, timestamp


class Health(Enum):
    READY = "Ready"  # desired state reached
    PROGRESSING = "Progressing"  # working towards it
    PAUSED = "Paused"  # waiting for a person (promotion gate, pause)
    STALLED = "Stalled"  # cannot make progress without a change (invalid spec, blocked)
    DEGRADED = "Degraded"  # rolled back: stable version serves, desired one failed
    PLANNED = "Planned"  # a dry run: nothing to do, nothing done


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
    ready = health is Health.READY
    reconciling = health in (Health.PROGRESSING, Health.PAUSED)
    stalled = health in (Health.STALLED, Health.DEGRADED)
    degraded = health is Health.DEGRADED
    fresh = [
        _condition("Ready", ready, reason if not ready else "Ready", message, generation, at),
        _condition(
            "Reconciling", reconciling, reason, message if reconciling else "", generation, at
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
