"""A new version goes live: green comes up, traffic switches, analysis passes, blue scales down."""

from __future__ import annotations

import pytest
from tests.e2e.releases import APP, FIRST_RELEASE_STEPS, PROMOTED, WebApp, blue_green
from tests.env.processes import wait_until

from lockstep.api.base import parse_timestamp

pytestmark = pytest.mark.cluster

SCALE_DOWN_DELAY = 3


def test_v2_is_released_in_green_and_blue_scales_down_after_the_delay(web: WebApp) -> None:
    settings = {
        "analysis": web.analysis(interval="1s", duration="4s"),
        "strategy": blue_green(scaleDownDelaySeconds=SCALE_DOWN_DELAY),
    }
    web.go_live("v1", **settings)
    assert web.selector_color() == "blue"

    generation = web.apply("v2", **settings)
    web.timeline.wait_for_release(
        "v2 to be picked up", lambda s: s.get("observedGeneration") == generation
    )
    web.k("wait", "--for=condition=Ready", f"fr/{APP}", "--timeout=90s")

    status = web.status()
    assert status["observedGeneration"] == generation
    assert (status["phase"], status["activeColor"], status["release"]) == ("Ready", "green", "v2")
    assert status["stableRevision"] == status["updatedRevision"]
    assert status["stableRelease"] == "v2"
    assert [(h["release"], h["outcome"]) for h in status["history"]] == PROMOTED.history
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
        "Degraded": "False",
    }
    analysis = status["analysis"]
    assert analysis["successful"] >= 1
    assert analysis["failed"] == 0
    assert web.outcome() == PROMOTED

    # Traffic moved once, from blue to green, and the steps came in the documented order.
    assert web.timeline.selector_colors() == [None, "blue", "green"]
    v2_steps = ["Deploy", "Switch", "Analysis", "ScaleDown", "Done"]
    assert web.timeline.steps() == FIRST_RELEASE_STEPS + v2_steps

    # Blue kept running for the scale-down delay after the promotion.
    promoted_at = parse_timestamp(status["history"][0]["finishedAt"]).timestamp()
    scaled_down = next(c for c in web.timeline.of("Deployment", f"{APP}-blue") if c.replicas == 0)
    assert scaled_down.at - promoted_at >= SCALE_DOWN_DELAY - 0.1

    # Every transition is an Event.
    transitions = {
        "ReleaseStarted",
        "ColorAvailable",
        "Switched",
        "AnalysisPassed",
        "Promoted",
        "ScaledDown",
    }
    wait_until(
        lambda: transitions <= set(web.event_reasons()),
        timeout=10,
        what="an Event for every transition",
    )
