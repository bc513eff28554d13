"""Shared pieces of the lockstep API models: the base model, durations, conditions, selectors."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        json_schema_extra={"example": "30s"},
    ),
]
"""A duration written like Go's time.Duration without the sign: `500ms`, `2s`, `1m30s`, `1h`."""


def seconds(duration: str) -> float:
    """Convert a `Duration` string to seconds."""
    if not re.fullmatch(DURATION_PATTERN, duration):
        raise ValueError(f"invalid duration {duration!r}: use forms like 500ms, 2s, 1m30s, 1h")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(duration))


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 time with milliseconds (step and analysis timing needs sub-second precision)."""
    moment = moment or now()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    """Parse RFC 3339 times with or without fractional seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as it is written to Kubernetes (camelCase, no unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(Model):
    """Base of status models: tolerant of fields written by other versions of the operator."""

    model_config = Model.model_config | {"extra": "ignore"}


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A kstatus-style condition (`Ready`, `Reconciling`, `Stalled`, `Degraded`)."""

    type: str = Field(description="Condition type: Ready, Reconciling, Stalled or Degraded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word that says why.")
    message: str = Field(default="", description="What happened, for a human.")
    last_transition_time: str = Field(
        description="When the condition last changed status (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed from."
    )


class RequestOutcome(StrEnum):
    """What the operator did with a manual request."""

    ACCEPTED = "Accepted"
    REFUSED = "Refused"


class RequestRecord(StatusModel):
    """The last manual request handled (from the lockstep.dev/request annotation)."""

    id: str = Field(description="The request as written (ACTION@ID).")
    action: str = Field(description="The action requested: promote, abort or retry.")
    outcome: RequestOutcome = Field(description="Accepted or Refused.")
    message: str = Field(default="", description="What the operator does, or why it refused.")
    at: str = Field(description="When it was handled.")


class LabelSelectorRequirement(Model):
    """One requirement of a label selector."""

    key: str = Field(description="The label key the requirement applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values."
    )
    values: list[str] | None = Field(
        default=None, description="Values for In and NotIn; empty for Exists and DoesNotExist."
    )


class LabelSelector(Model):
    """A Kubernetes label selector."""

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels that a pod must carry, all of them."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Further requirements on pod labels, all of them."
    )


class SecretKeyRef(Model):
    """A key of a Secret in the object's own namespace."""

    name: str = Field(min_length=1, description="Name of the Secret.")
    key: str = Field(min_length=1, description="Key within the Secret.")


class ConfigMapRef(Model):
    """A ConfigMap in the object's own namespace."""

    name: str = Field(min_length=1, description="Name of the ConfigMap.")


ObjectDict = Annotated[
    dict[str, Any],
    Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}),
]
"""A free-form Kubernetes object (pod template, resources): validated by the API server."""
