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
    resource_version: str
    annotations: dict[str, str]
    spec: dict[str, Any]
    status: dict[str, Any]

    @classmethod
    def of(cls, kind: str, plural: str, body: Mapping[str, Any]) -> Snapshot:
        """Copy what a pass needs out of an object (kopf's live body changes under our feet)."""
        meta = body.get("metadata") or {}
        return cls(
            kind=kind,
            plural=plural,
            name=str(meta.get("name")),
            namespace=str(meta.get("namespace") or ""),
            uid=str(meta.get("uid")),
            generation=int(meta.get("generation") or 0),
            resource_version=str(meta.get("resourceVersion") or ""),
            annotations=dict(meta.get("annotations") or {}),
            spec=copy.deepcopy(dict(body.get("spec") or {})),
            status=copy.deepcopy(dict(body.get("status") or {})),
        )

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.kind, self.namespace, self.name, self.uid)


def write_status(
    kube: Kube, obj: Snapshot, status: dict[str, Any], always: bool = False
) -> dict[str, Any] | None:
    """Merge-patch the status, only if the object is still at the version it was read at
    (raises Conflict otherwise). Keys no longer set are removed explicitly. Unchanged, it is
    not written unless `always` (to check that the decision was taken on the current object).
    Returns the object as written, or None when nothing was written."""
    metrics.observed(obj.kind, obj.namespace, obj.name, status)
    if status == obj.status and not always:
        return None
    patch = merge_patch(obj.status, status)
    return kube.patch_status(
        obj.plural, obj.namespace, obj.name, patch, resource_version=obj.resource_version or None
    )


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: keys that went away are
    set to null at every depth (a merge patch keeps nested keys it does not mention)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = value
    return patch


def apply_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """What the API server makes of a JSON merge patch (RFC 7386)."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            before = result.get(key)
            result[key] = apply_merge_patch(before if isinstance(before, Mapping) else {}, value)
        else:
            result[key] = value
    return result


def newest(*objects: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The most recent of several copies of one object, by resourceVersion.

    resourceVersions are opaque to clients in general, but for objects of one resource they
    are etcd revisions, which only grow; an unparsable one is taken as the newest."""

    def version(item: Mapping[str, Any]) -> int:
        text = str((item.get("metadata") or {}).get("resourceVersion") or "")
        return int(text) if text.isdigit() else 1 << 62

    present = [o for o in objects if o]
    return max(present, key=version) if present else None


def validation_message(error: ValidationError) -> str:
    """The validation errors, in the spec's own field names, without the library's wording."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"] if p != "spec")
        text = str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        parts.append(f"{where}: {text}" if where else text)
    return "invalid spec: " + "; ".join(parts)


def mark_invalid(kube: Kube, obj: Snapshot, error: ValidationError) -> dict[str, Any] | None:
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
    return write_status(kube, obj, status)
