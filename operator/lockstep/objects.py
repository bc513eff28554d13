"""What both reconcilers share: a snapshot of the object, status writes, invalid specs."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import metrics
from .api.base import Condition, now, timestamp
from .conditions import Health, conditions_for
from .kube import Kube, ObjectRef


@dataclass
class Snapshot:
    """The object as a daemon saw it at the start of one pass (`status`: as last written)."""

    kind: str
    plural: str
    name: str
    namespace: str
    uid: str
    generation: int
    annotations: dict[str, str]
    spec: dict[str, Any]
    status: dict[str, Any]

    @classmethod
    def of(
        cls, kind: str, plural: str, body: Mapping[str, Any], status: dict[str, Any]
    ) -> Snapshot:
        """Copy what a pass needs out of kopf's live body (which changes under our feet)."""
        meta = body.get("metadata") or {}
        return cls(
            kind=kind,
            plural=plural,
            name=str(meta.get("name")),
            namespace=str(meta.get("namespace") or ""),
            uid=str(meta.get("uid")),
            generation=int(meta.get("generation") or 0),
            annotations=dict(meta.get("annotations") or {}),
            spec=copy.deepcopy(dict(body.get("spec") or {})),
            status=status,
        )

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.kind, self.namespace, self.name, self.uid)


def write_status(kube: Kube, obj: Snapshot, status: dict[str, Any]) -> None:
    """Merge-patch the status if it changed; keys no longer set are removed explicitly."""
    metrics.observed(obj.kind, obj.namespace, obj.name, status)
    if status == obj.status:
        return
    patch: dict[str, Any] = {key: None for key in obj.status if key not in status}
    patch.update(status)
    kube.patch_status(obj.plural, obj.namespace, obj.name, patch)


def validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "invalid spec: " + "; ".join(parts)


def mark_invalid(kube: Kube, obj: Snapshot, error: ValidationError) -> dict[str, Any]:
    """A spec the models reject: Stalled with the reason and one Event; nothing else happens."""
    message = validation_message(error)
    previous_conditions = [Condition.model_validate(c) for c in obj.status.get("conditions") or []]
    already = (
        obj.status.get("phase") == "Invalid"
        and obj.status.get("observedGeneration") == obj.generation
    )
    status = {
        **obj.status,
        "observedGeneration": obj.generation,
        "phase": "Invalid",
        "message": message,
        "conditions": [
            c.wire()
            for c in conditions_for(
                Health.STALLED,
                "InvalidSpec",
                message,
                obj.generation,
                previous_conditions,
                at=timestamp(now()),
            )
        ],
    }
    if not already:
        kube.event(obj.ref, "Warning", "InvalidSpec", message)
    write_status(kube, obj, status)
    return status
