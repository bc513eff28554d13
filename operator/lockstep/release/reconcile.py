"""Carrying out release decisions: the glue between the pure machine and the outside world.

`reconcile` validates the object, asks the machine what to do, performs the actions through
`Kube` and `prometheus`, and writes the status. It runs in a worker thread; it never sleeps:
it returns how long the caller may wait before looking again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from .. import metrics
from ..api.base import seconds
from ..api.release import FeatureRelease
from ..kube import Kube
from ..objects import Snapshot, mark_invalid, write_status
from ..prometheus import PrometheusError, query_value
from ..redact import redact
from . import builders
from .analysis import QueryResult, render_query
from .machine import Decision, decide
from .world import (
    ApplyColor,
    Controls,
    Emit,
    Measure,
    PointService,
    ReleaseMigrationHold,
    RequestMigrationRollback,
    RunCheck,
    ScaleColor,
    World,
)

log = logging.getLogger("lockstep.release")

REQUEST_ANNOTATION = "lockstep.dev/request"
PAUSED_ANNOTATION = "lockstep.dev/paused"
ROLLBACK_REQUEST_ANNOTATION = "lockstep.dev/rollback-request"
PLURAL = "featurereleases"


def controls_from(annotations: dict[str, str]) -> Controls:
    """Manual controls: `lockstep.dev/paused: "true"` and `lockstep.dev/request: ACTION@ID`."""
    request = annotations.get(REQUEST_ANNOTATION)
    action = request.split("@", 1)[0].strip().lower() if request else None
    return Controls(
        paused=annotations.get(PAUSED_ANNOTATION, "").lower() == "true",
        request_id=request,
        request_action=action,
    )


def reconcile(kube: Kube, obj: Snapshot, world: World) -> tuple[dict[str, Any], float]:
    """One look at a FeatureRelease: returns (the status written, seconds until next look)."""
    with metrics.RECONCILE_SECONDS.labels("FeatureRelease").time():
        try:
            release = FeatureRelease.model_validate({"spec": obj.spec, "status": obj.status})
        except ValidationError as exc:
            metrics.reconciled("FeatureRelease", "invalid")
            return mark_invalid(kube, obj, exc), 60.0
        decision = decide(
            release,
            obj.name,
            obj.namespace,
            obj.generation,
            world,
            controls_from(obj.annotations),
            measure=lambda current, request: measure_round(current, obj, request),
        )
        failed = perform(kube, obj, release, decision)
        status = decision.status.wire()
        write_status(kube, obj, status)
        metrics.reconciled("FeatureRelease", "error" if failed else "ok")
        return status, (2.0 if failed else decision.requeue)


def perform(kube: Kube, obj: Snapshot, release: FeatureRelease, decision: Decision) -> bool:
    """Carry out the actions in order; returns True if one failed (it is retried next time)."""
    spec, owner = release.spec, obj.ref.owner_reference()
    for action in decision.actions:
        try:
            if isinstance(action, Emit):
                kube.event(obj.ref, action.type, action.reason, action.message)
                metrics.release_event(obj.namespace, obj.name, action.reason, decision.status)
            elif isinstance(action, ApplyColor):
                kube.apply(
                    builders.color_deployment(
                        release=obj.name,
                        namespace=obj.namespace,
                        owner=owner,
                        spec=spec,
                        color=action.color,
                        revision=action.revision,
                        replicas=action.replicas,
                    )
                )
            elif isinstance(action, ScaleColor):
                kube.scale(
                    obj.namespace, builders.color_name(obj.name, action.color), action.replicas
                )
            elif isinstance(action, PointService):
                kube.apply(
                    builders.service_selector(spec, obj.namespace, action.service, action.color)
                )
            elif isinstance(action, RunCheck):
                stage_checks = (
                    spec.checks.pre_promotion
                    if action.stage == "prePromotion"
                    else spec.checks.post_promotion
                )
                check = next(c for c in stage_checks if c.name == action.check)
                kube.create_job(
                    builders.check_job(
                        release=obj.name,
                        namespace=obj.namespace,
                        owner=owner,
                        check=check,
                        stage=action.stage,
                        job=action.job,
                        color=action.color,
                        service=action.service,
                        revision=decision.status.updated_revision or "",
                        release_name=spec.release,
                    )
                )
            elif isinstance(action, RequestMigrationRollback):
                request = json.dumps(
                    {
                        "id": action.request_id,
                        "mode": action.mode,
                        "toVersion": action.to_version,
                        "requestedBy": f"FeatureRelease/{obj.name}",
                    },
                    sort_keys=True,
                )
                kube.annotate(
                    "databasemigrations",
                    obj.namespace,
                    action.migration,
                    {ROLLBACK_REQUEST_ANNOTATION: request},
                )
            elif isinstance(action, ReleaseMigrationHold):
                kube.annotate(
                    "databasemigrations",
                    obj.namespace,
                    action.migration,
                    {ROLLBACK_REQUEST_ANNOTATION: None},
                )
        except Exception as exc:
            # a namespace being deleted refuses new objects: nothing to do, nothing to report
            level = logging.DEBUG if "being terminated" in str(exc) else logging.WARNING
            log.log(
                level,
                "Action %s on FeatureRelease %s/%s failed: %s",
                type(action).__name__,
                obj.namespace,
                obj.name,
                redact(str(exc))[:500],
            )
            return True
    return False


def measure_round(release: FeatureRelease, obj: Snapshot, measure: Measure) -> list[QueryResult]:
    """Query every metric once for the colour under analysis."""
    analysis = release.spec.analysis
    assert analysis is not None
    values = {
        "color": measure.color,
        "revision": release.status.updated_revision or "",
        "release": release.spec.release or "",
        "name": obj.name,
        "namespace": obj.namespace,
    }
    timeout = seconds(analysis.prometheus.timeout)
    results = []
    for metric in analysis.metrics:
        query = render_query(metric.query, values)
        try:
            value = query_value(analysis.prometheus.address, query, timeout)
        except PrometheusError as exc:
            results.append(QueryResult(metric.name, error=str(exc)))
            continue
        results.append(QueryResult(metric.name, value=value))
    metrics.measured(obj.namespace, obj.name, results)
    return results
