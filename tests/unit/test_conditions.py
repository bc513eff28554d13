"""Each health verdict becomes conditions that kstatus, `kubectl wait` and the Argo CD health
script read as documented in lockstep.conditions (checked with their real libraries)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.env.health_check import check

from lockstep.conditions import RETRIED_REASONS, Health, conditions_for, effective

AT = "2026-01-01T00:00:00Z"

# health, reason, phase the reconcilers write -> (kstatus, Argo CD, kubectl wait Ready, Flux with
# the healthCheckExprs of gitops/flux for a FeatureRelease)
MAPPING = [
    (Health.READY, "Released", "Ready", ("Current", "Healthy", True, "Current")),
    (Health.PLANNED, "DryRun", "DryRun", ("Current", "Healthy", True, "Current")),
    (
        Health.PROGRESSING,
        "Progressing",
        "Progressing",
        ("InProgress", "Progressing", False, "InProgress"),
    ),
    (Health.PAUSED, "AwaitingPromotion", "Paused", ("InProgress", "Suspended", False, "Current")),
    (Health.PAUSED, "Paused", "Paused", ("InProgress", "Suspended", False, "Current")),
    (
        Health.RETRYING,
        "DatabaseUnreachable",
        "Failed",
        ("InProgress", "Degraded", False, "InProgress"),
    ),
    (Health.STALLED, "LintFailed", "Failed", ("Failed", "Degraded", False, "Failed")),
    (Health.DEGRADED, "RolledBack", "RolledBack", ("Failed", "Degraded", False, "Failed")),
]


def release_with(health: Health, reason: str, phase: str, generation: int = 3) -> dict[str, Any]:
    conditions = conditions_for(health, reason, f"{reason} message", generation, [], at=AT)
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "FeatureRelease",
        "metadata": {"name": "web", "namespace": "shop", "generation": generation},
        "spec": {},
        "status": {
            "observedGeneration": generation,
            "phase": phase,
            "message": f"{reason} message",
            "conditions": [c.wire() for c in conditions],
        },
    }


@pytest.mark.parametrize(
    ("health", "reason", "phase", "expected"),
    MAPPING,
    ids=[f"{h.value}-{r}" for h, r, _, _ in MAPPING],
)
def test_each_health_reads_as_documented_in_kstatus_argo_cd_kubectl_wait_and_flux(
    health: Health, reason: str, phase: str, expected: tuple[str, str, bool, str]
) -> None:
    release, migration = release_with(health, reason, phase), release_with(health, reason, phase)
    migration["kind"] = "DatabaseMigration"
    for obj, verdict in zip((release, migration), check([release, migration]), strict=True):
        kstatus, argocd, ready, flux = expected
        assert (verdict.kstatus, verdict.argocd, verdict.ready) == (kstatus, argocd, ready)
        assert verdict.argocd_message == f"{reason} message"
        # healthCheckExprs are given for releases only; a migration reads as kstatus says
        assert verdict.flux == (flux if obj["kind"] == "FeatureRelease" else kstatus)


def test_an_unobserved_generation_is_in_progress_whatever_the_conditions_say() -> None:
    obj = release_with(Health.READY, "Released", "Ready")
    obj["metadata"]["generation"] = 4
    (verdict,) = check([obj])
    assert (verdict.kstatus, verdict.argocd, verdict.ready) == ("InProgress", "Progressing", False)
    assert verdict.kstatus_message == "FeatureRelease generation is 4, but latest observed " + (
        "generation is 3"
    )


@pytest.mark.parametrize("reason", sorted(RETRIED_REASONS))
def test_errors_lockstep_retries_by_itself_are_never_stalled(reason: str) -> None:
    assert effective(Health.STALLED, reason) is Health.RETRYING
    conditions = {c.type: c for c in conditions_for(Health.STALLED, reason, "m", 1, [], at=AT)}
    assert conditions["Stalled"].status == "False"
    assert conditions["Reconciling"].status == "True"
    assert conditions["Reconciling"].reason == "ProgressingWithRetry"
    assert (conditions["Ready"].status, conditions["Ready"].reason) == ("False", reason)


def test_errors_that_need_a_change_stay_stalled() -> None:
    for reason in ("InvalidSpec", "LintFailed", "Drift", "BackupFailed", "MigrationFailed"):
        assert effective(Health.STALLED, reason) is Health.STALLED


def test_a_dry_run_is_ready_with_its_own_reason() -> None:
    conditions = {c.type: c for c in conditions_for(Health.PLANNED, "DryRun", "m", 1, [], at=AT)}
    assert (conditions["Ready"].status, conditions["Ready"].reason) == ("True", "DryRun")
    assert all(conditions[k].status == "False" for k in ("Reconciling", "Stalled", "Degraded"))


def test_transition_times_stay_while_a_status_holds() -> None:
    first = conditions_for(Health.PROGRESSING, "Progressing", "a", 1, [], at=AT)
    later = conditions_for(Health.PAUSED, "Paused", "b", 1, first, at="2026-01-01T00:05:00Z")
    times = {c.type: c.last_transition_time for c in later}
    assert times == dict.fromkeys(("Ready", "Reconciling", "Stalled", "Degraded"), AT)
    done = conditions_for(Health.READY, "Released", "c", 1, later, at="2026-01-01T00:09:00Z")
    times = {c.type: c.last_transition_time for c in done}
    assert times["Ready"] == times["Reconciling"] == "2026-01-01T00:09:00Z"
    assert times["Stalled"] == AT
