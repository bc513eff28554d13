"""Carrying out release decisions: the glue between the pure machine and the outside world.

`reconcile` validates the object, asks the machine what to do, writes the status, then
performs the actions through `Kube` and `prometheus`. It runs in a worker thread; it never
sleeps: it returns how long the caller may wait before looking again.

The status is written first, and only if the object is still the version the decision was
taken from (a resourceVersion precondition). A second operator process, or a stale view, loses
that race, performs nothing, and decides again from the object as it is now; so two writers
never fight over the Service. The two actions that could cause an outage check the live world
once more right before they happen: a Service is switched only to a colour with available
pods, and a colour is scaled to zero only when no Service of the release selects it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .. import metrics
from ..api.base import seconds
from ..api.release import FeatureRelease
from ..kube import Conflict, Kube, NotFound
from ..objects import Snapshot, mark_invalid, write_status
from ..prometheus import PrometheusError, known_metrics, query_value
from ..redact import redact
from . import builders
from .analysis import QueryResult, metric_names, render_query
from .machine import Decision, decide
from .world import (
    ApplyColor,
    Controls,
    Emit,
    Measure,
    PointService,
    RunCheck,
    ScaleColor,
    World,
)

log = logging.getLogger("lockstep.release")

REQUEST_ANNOTATION = "lockstep.dev/request"
PAUSED_ANNOTATION = "lockstep.dev/paused"
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


@dataclass(frozen=True)
class Outcome:
    """What one pass left behind: the object as now known, and when to look again."""

    obj: dict[str, Any] | None  # the object after our write (or as re-read after a conflict)
    delay: float


def reconcile(kube: Kube, obj: Snapshot, world: World) -> Outcome:
    """One look at a FeatureRelease."""
    with metrics.RECONCILE_SECONDS.labels("FeatureRelease").time():
        try:
            return decide_and_act(kube, obj, world)
        except Conflict:
            # Someone else (another operator process, a person) changed the object since it
            # was read: nothing was done; decide again from the object as it is now.
            metrics.reconciled("FeatureRelease", "conflict")
            return Outcome(kube.get_custom(PLURAL, obj.namespace, obj.name), 0.05)
        except NotFound:
            return Outcome(None, 60.0)


def decide_and_act(kube: Kube, obj: Snapshot, world: World) -> Outcome:
    """Decide, write the status (conditionally), then act."""
    try:
        release = FeatureRelease.model_validate({"spec": obj.spec, "status": obj.status})
    except ValidationError as exc:
        metrics.reconciled("FeatureRelease", "invalid")
        return Outcome(mark_invalid(kube, obj, exc), 60.0)
    decision = decide(
        release,
        obj.name,
        obj.namespace,
        obj.generation,
        world,
        controls_from(obj.annotations),
        measure=lambda current, request: measure_round(current, obj, request),
    )
    status = decision.status.wire()
    work = [a for a in decision.actions if not isinstance(a, Emit)]
    written: dict[str, Any] | None = None
    if status != obj.status or work:
        written = write_status(kube, obj, status, always=bool(work))
    failed = perform(kube, obj, release, decision)
    metrics.reconciled("FeatureRelease", "error" if failed else "ok")
    return Outcome(written, 2.0 if failed else decision.requeue)


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
                        template=action.template,
                        color=action.color,
                        revision=action.revision,
                        release_name=action.release_name,
                    )
                )
            elif isinstance(action, ScaleColor):
                name = builders.color_name(obj.name, action.color)
                if action.replicas == 0 and kube.service_selects(
                    obj.namespace, spec.service, action.color
                ):
                    log.warning(
                        "Not scaling %s/%s to zero: Service %s selects it",
                        obj.namespace,
                        name,
                        spec.service,
                    )
                    return True
                kube.scale(obj.namespace, name, action.replicas)
            elif isinstance(action, PointService):
                name = builders.color_name(obj.name, action.color)
                available = kube.available_pods(obj.namespace, name)
                if available < action.min_available:
                    log.warning(
                        "Not pointing Service %s/%s at %s: %d available pods, %d needed",
                        obj.namespace,
                        action.service,
                        name,
                        available,
                        action.min_available,
                    )
                    return True
                wanted = builders.service_selector(
                    spec, obj.namespace, action.service, action.color
                )
                live = kube.service_selector(obj.namespace, action.service)
                # A pass that ran before the watch delivered our own switch would send it again:
                # the Service's record keeps exactly one write per switch.
                if live is None or any(
                    live.get(k) != v for k, v in wanted["spec"]["selector"].items()
                ):
                    kube.apply(wanted)
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
        except Exception as exc:
            log.log(
                logging.DEBUG if kube.namespace_terminating(exc) else logging.WARNING,
                "Action %s on FeatureRelease %s/%s failed: %s",
                type(action).__name__,
                obj.namespace,
                obj.name,
                redact(str(exc))[:500],
            )
            return True
    return False


def measure_round(release: FeatureRelease, obj: Snapshot, measure: Measure) -> list[QueryResult]:
    """Query every metric once for the colour under analysis.

    A preflight round (before any traffic moves) only checks that each query runs and names
    metrics Prometheus knows; no data for a colour that has served nothing yet is fine."""
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
    known: set[str] | None = None
    results = []
    for metric in analysis.metrics:
        query = render_query(metric.query, values)
        try:
            value = query_value(analysis.prometheus.address, query, timeout)
            if measure.preflight:
                if known is None:
                    known = known_metrics(analysis.prometheus.address, timeout)
                missing = sorted(metric_names(query) - known)
                if missing:
                    raise PrometheusError(f"Prometheus has no metric named {', '.join(missing)}")
                value = 0.0 if value is None else value
        except PrometheusError as exc:
            results.append(QueryResult(metric.name, error=str(exc)))
            continue
        results.append(QueryResult(metric.name, value=value))
    metrics.measured(obj.namespace, obj.name, results)
    return results


def keep_serving(kube: Kube, obj: Snapshot) -> None:
    """A FeatureRelease is being deleted: its stable colour keeps serving.

    The Service is pointed at the stable colour if it selects another (a release in flight)
    and the stable colour has pods, and the stable colour's Deployment is orphaned so that the
    garbage collector removes only the other colour. A FeatureRelease created again with the
    same name adopts it as its stable colour. The release's database claim goes with the
    object, which releases any hold it had on its DatabaseMigration.
    """
    try:
        release = FeatureRelease.model_validate({"spec": obj.spec, "status": obj.status})
    except ValidationError:
        return
    status, spec = release.status, release.spec
    color = status.stable.color if status.stable else status.active_color
    if color is None or status.stable_revision is None:
        return  # never released: nothing serves
    deployment = builders.color_name(obj.name, color)
    if kube.available_pods(obj.namespace, deployment) > 0:
        if not kube.service_selects(obj.namespace, spec.service, color):
            kube.apply(builders.service_selector(spec, obj.namespace, spec.service, color))
        kube.orphan(obj.namespace, deployment)
        kube.event(
            obj.ref,
            "Normal",
            "StableKept",
            f"FeatureRelease deleted: {deployment} (revision {status.stable_revision}) keeps "
            f"serving through Service {spec.service}; delete it when the application goes",
        )
    else:
        kube.event(
            obj.ref,
            "Warning",
            "NothingServes",
            f"FeatureRelease deleted: {deployment} has no available pods; nothing is kept",
        )
