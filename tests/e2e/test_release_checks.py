"""Pre-promotion checks: a failing check Job stops the release before any traffic moves; a
passing one runs against the preview Service, which points at the new colour first."""

from __future__ import annotations

from typing import Any

import pytest
from tests.e2e.releases import (
    APP,
    FIRST_RELEASE_STEPS,
    PREVIEW,
    PROMOTED,
    ROLLED_BACK,
    WebApp,
    blue_green,
    check,
)
from tests.env.processes import wait_until

pytestmark = pytest.mark.cluster


def container_env(job: dict[str, Any]) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_a_failing_pre_promotion_check_rolls_back_without_switching(web: WebApp) -> None:
    settings = {
        "checks": {"prePromotion": [check("smoke", fail=True)]},
        "strategy": blue_green(scaleDownDelaySeconds=2),
    }
    web.go_live("v1", **settings)
    web.apply("v2", **settings)

    status = web.wait_for_phase("RolledBack")
    assert web.outcome() == ROLLED_BACK
    assert status["abortReason"].startswith("CheckFailed")
    [record] = status["checks"]
    assert (record["name"], record["stage"], record["phase"]) == ("smoke", "prePromotion", "Failed")
    assert len(web.check_jobs()) == 1

    # From the start of the test, the Service never selected green.
    web.timeline.check()
    assert web.timeline.selector_colors() == [None, "blue"]
    assert web.timeline.steps() == [
        *FIRST_RELEASE_STEPS,
        "Deploy",
        "PrePromotionChecks",
        "RolledBack",
    ]
    wait_until(
        lambda: any(e["reason"] == "CheckFailed" for e in web.warnings()),
        timeout=10,
        what="a Warning Event CheckFailed",
    )


def test_a_passing_check_runs_against_the_preview_service_which_selects_green_first(
    web: WebApp,
) -> None:
    settings = {
        "previewService": PREVIEW,
        "checks": {"prePromotion": [check("smoke")]},
        "strategy": blue_green(scaleDownDelaySeconds=2),
    }
    web.go_live("v1", **settings)
    web.apply("v2", **settings)

    web.wait_for_phase("Ready", release="v2")
    assert web.outcome() == PROMOTED

    # The preview Service selected green before the active Service did (one watch of both
    # Services delivers their changes in the order the API server made them).
    assert web.timeline.first_selecting(PREVIEW, "green") < web.timeline.first_selecting(
        APP, "green"
    )

    # The check ran once, told to test the preview Service in green.
    [job] = web.check_jobs()
    assert job["status"].get("succeeded") == 1
    env = container_env(job)
    assert env["LOCKSTEP_SERVICE"] == f"{PREVIEW}.{web.namespace}.svc"
    assert env["LOCKSTEP_COLOR"] == "green"
    assert env["LOCKSTEP_RELEASE"] == "v2"
    [record] = web.status()["checks"]
    assert (record["stage"], record["phase"]) == ("prePromotion", "Succeeded")
