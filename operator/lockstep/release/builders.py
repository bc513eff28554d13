"""Pure builders of the objects a FeatureRelease owns or touches; no client here."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from ..api.release import CheckJob, Color, FeatureReleaseSpec
from .world import COLOR_LABEL, MANAGED_BY, RELEASE_LABEL, REVISION_LABEL, label_value

CHECK_LABEL = "lockstep.dev/check"
RELEASE_NAME_ANNOTATION = "lockstep.dev/release-name"
STAGE_LABEL = "lockstep.dev/stage"


CHECK_JOB_TTL_SECONDS = 3600
"""Finished check Jobs are removed after an hour; their outcome is kept in the status."""


def color_name(release: str, color: Color) -> str:
    """`<release>-<color>`, a DNS label: shortened with a hash of the release name if needed."""
    name = f"{release}-{color}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(release.encode()).hexdigest()[:6]
    return f"{release[: 63 - len(color) - len(digest) - 2].rstrip('-')}-{digest}-{color}"


def selector_labels(spec: FeatureReleaseSpec, color: Color) -> dict[str, str]:
    return {**(spec.selector.match_labels or {}), COLOR_LABEL: color}


def color_deployment(
    *,
    release: str,
    namespace: str,
    owner: dict[str, Any],
    spec: FeatureReleaseSpec,
    template: dict[str, Any],
    color: Color,
    revision: str,
    release_name: str | None,
) -> dict[str, Any]:
    """The Deployment `<release>-<color>` running `revision` of `template`.

    It carries no replica count: that changes only through the scale subresource, so that a
    HorizontalPodAutoscaler (or a person) can own it without lockstep fighting them."""
    pod_template = copy.deepcopy(template)
    release_label = label_value(release)
    metadata = pod_template.setdefault("metadata", {})
    metadata["labels"] = {
        **(metadata.get("labels") or {}),
        **selector_labels(spec, color),
        REVISION_LABEL: revision,
        RELEASE_LABEL: release_label,
    }
    metadata.setdefault("annotations", {})
    if release_name:
        metadata["annotations"][RELEASE_NAME_ANNOTATION] = release_name
    selector: dict[str, Any] = {"matchLabels": selector_labels(spec, color)}
    if spec.selector.match_expressions:
        selector["matchExpressions"] = [
            e.model_dump(by_alias=True, exclude_none=True) for e in spec.selector.match_expressions
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": color_name(release, color),
            "namespace": namespace,
            "labels": {
                **MANAGED_BY,
                RELEASE_LABEL: release_label,
                COLOR_LABEL: color,
                REVISION_LABEL: revision,
            },
            "ownerReferences": [owner],
        },
        "spec": {
            "selector": selector,
            "template": pod_template,
            "progressDeadlineSeconds": spec.strategy.blue_green.progress_deadline_seconds,
            "revisionHistoryLimit": 2,
        },
    }


def service_selector(
    spec: FeatureReleaseSpec, namespace: str, service: str, color: Color
) -> dict[str, Any]:
    """The Service fragment we apply: only the selector (GitOps keeps the rest)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service, "namespace": namespace},
        "spec": {"selector": selector_labels(spec, color)},
    }


def check_job(
    *,
    release: str,
    namespace: str,
    owner: dict[str, Any],
    check: CheckJob,
    stage: str,
    job: str,
    color: Color,
    service: str,
    revision: str,
    release_name: str | None,
) -> dict[str, Any]:
    """A check Job; its containers learn what to test from LOCKSTEP_* variables."""
    template = copy.deepcopy(check.template)
    pod_spec = template.setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Never")
    env = [
        {"name": "LOCKSTEP_SERVICE", "value": f"{service}.{namespace}.svc"},
        {"name": "LOCKSTEP_COLOR", "value": color},
        {"name": "LOCKSTEP_RELEASE", "value": release_name or ""},
        {"name": "LOCKSTEP_REVISION", "value": revision},
    ]
    for container in pod_spec.get("containers", []):
        container["env"] = [*container.get("env", []), *env]
    labels = {
        **MANAGED_BY,
        RELEASE_LABEL: label_value(release),
        CHECK_LABEL: check.name,
        STAGE_LABEL: stage,
        REVISION_LABEL: revision,
    }
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": {
            "backoffLimit": check.backoff_limit,
            "activeDeadlineSeconds": check.active_deadline_seconds,
            "ttlSecondsAfterFinished": CHECK_JOB_TTL_SECONDS,
            "template": template,
        },
    }
