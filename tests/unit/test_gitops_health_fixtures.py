"""Objects captured from the end-to-end tests (gitops/argocd/testdata) read exactly as
docs/gitops.md documents in kstatus, Flux's healthCheckExprs, `kubectl wait` and the Argo CD
health script, each run by the library its tool uses (tests/env/health_check.py); the docs carry
the shipped script and expressions."""

from __future__ import annotations

import re

import pytest
import yaml
from tests.env.health_check import (
    DOCS,
    HEALTH_SCRIPT,
    KINDS,
    NOT_OBSERVED,
    Case,
    argocd_configmap_scripts,
    check,
    documented_case,
    documented_cases,
    flux_health_check_exprs,
)

CASES = documented_cases()


def verdict_of(fixture: str) -> tuple[str, str, str, str]:
    (verdict,) = check([documented_case(fixture).load()])
    return verdict.observed()


def test_the_table_covers_every_case_the_tools_must_tell_apart() -> None:
    assert [c.fixture for c in CASES] == [
        "featurerelease-created.yaml",
        "featurerelease-spec-change-not-observed.yaml",
        "featurerelease-progressing.yaml",
        "featurerelease-awaiting-promotion.yaml",
        "featurerelease-paused.yaml",
        "featurerelease-promoted.yaml",
        "featurerelease-rolled-back.yaml",
        "featurerelease-stalled.yaml",
        "featurerelease-retrying.yaml",
        "databasemigration-created.yaml",
        "databasemigration-retrying.yaml",
        "databasemigration-ready.yaml",
        "databasemigration-failed.yaml",
        "databasemigration-dry-run.yaml",
    ]
    for case in CASES:
        assert case.load()["kind"] == case.kind, case.fixture


@pytest.mark.parametrize("case", CASES, ids=[c.fixture.removesuffix(".yaml") for c in CASES])
def test_each_captured_object_reads_as_documented(case: Case) -> None:
    obj = case.load()
    (verdict,) = check([obj])
    assert verdict.observed() == case.expected()
    status = obj.get("status") or {}
    if status.get("observedGeneration") == obj["metadata"]["generation"]:
        assert verdict.argocd_message == status.get("message", "")
    else:
        assert verdict.argocd_message == NOT_OBSERVED


# The decisions, one by one (docs/gitops.md, "Why these").


def test_a_dry_run_is_done_for_every_tool() -> None:
    assert verdict_of("databasemigration-dry-run.yaml") == (
        "Current",
        "Current",
        "Healthy",
        "returns",
    )


def test_a_release_waiting_for_a_person_is_in_progress_unless_flux_is_told_otherwise() -> None:
    for fixture in ("featurerelease-awaiting-promotion.yaml", "featurerelease-paused.yaml"):
        assert verdict_of(fixture) == ("InProgress", "Current", "Suspended", "waits"), fixture


def test_errors_lockstep_retries_by_itself_are_in_progress_never_failed() -> None:
    for fixture in ("featurerelease-retrying.yaml", "databasemigration-retrying.yaml"):
        kstatus, flux, argocd, _ = verdict_of(fixture)
        assert (kstatus, flux, argocd) == ("InProgress", "InProgress", "Degraded"), fixture
        conditions = {c["type"]: c for c in documented_case(fixture).load()["status"]["conditions"]}
        assert conditions["Stalled"]["status"] == "False"
        assert conditions["Reconciling"]["reason"] == "ProgressingWithRetry"


def test_a_new_object_is_in_progress_never_current() -> None:
    for fixture in ("featurerelease-created.yaml", "databasemigration-created.yaml"):
        assert documented_case(fixture).load()["status"] == {"observedGeneration": 0}
        assert verdict_of(fixture) == ("InProgress", "InProgress", "Progressing", "waits")


def test_a_spec_change_is_in_progress_until_observed_even_while_ready_holds() -> None:
    obj = documented_case("featurerelease-spec-change-not-observed.yaml").load()
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] < obj["metadata"]["generation"]


# What the docs ship.


def test_the_docs_carry_the_shipped_argo_cd_script_for_both_kinds() -> None:
    scripts = argocd_configmap_scripts()
    expected = {f"resource.customizations.health.{k.replace('/', '_')}" for k in KINDS}
    assert set(scripts) == expected
    for key, script in scripts.items():
        assert script == HEALTH_SCRIPT.read_text(), f"{key} in docs/gitops.md differs"


def test_the_docs_carry_the_shipped_flux_health_check_exprs() -> None:
    block = re.search(r"```yaml\n(  healthCheckExprs:\n.*?)```", DOCS.read_text(), re.S)
    assert block is not None
    documented = yaml.safe_load(block.group(1).replace("\n  ", "\n"))["healthCheckExprs"]
    (entry,) = documented
    shipped = flux_health_check_exprs()["lockstep.dev/FeatureRelease"]
    assert {k: entry[k] for k in ("current", "failed")} == shipped


def test_the_engine_gives_scripts_only_the_libraries_argo_cd_gives_argocd_cm_scripts() -> None:
    obj = documented_case("featurerelease-promoted.yaml").load()
    # Argo CD preloads its safe os library for require(); the global `os` is not set
    safe_os = 'local os = require("os") return {status = "Healthy", message = os.date("!%Y")}'
    (verdict,) = check([obj], script=safe_os)
    assert verdict.argocd == "Healthy" and verdict.argocd_message.isdigit()
    with pytest.raises(AssertionError, match=r"nil.* with key 'date'"):
        check([obj], script='return {status = "Healthy", message = os.date("!%Y")}')
    with pytest.raises(AssertionError, match=r"nil.* with key 'format'"):
        check([obj], script='return {status = string.format("%s", "Healthy")}')
