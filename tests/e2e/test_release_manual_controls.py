"""Manual controls through `kubectl lockstep`: promote, abort, pause and resume answer at once,
and never touch the spec (GitOps owns it); `status` and `history` read well."""

from __future__ import annotations

import pytest
from tests.e2e.releases import APP, PROMOTED, Outcome, WebApp, blue_green, holds_for

pytestmark = pytest.mark.cluster

ABORTED = Outcome(
    "RolledBack", "blue", "blue", {"blue": 2, "green": 0}, [("v2", "Aborted"), ("v1", "Promoted")]
)
HISTORY_HEADER = ["RELEASE", "REVISION", "COLOUR", "OUTCOME", "AGE", "REASON"]


def annotations(web: WebApp) -> dict[str, str]:
    return web.k.get("featurerelease", APP)["metadata"].get("annotations") or {}


def history_rows(table: str) -> list[tuple[str, str]]:
    """(release, outcome) of each row of `kubectl lockstep history`, after its header."""
    header, *rows = table.splitlines()
    assert header.split() == HISTORY_HEADER
    return [(row.split()[0], row.split()[3]) for row in rows]


def test_promote_switches_a_release_that_waits_for_promotion(web: WebApp) -> None:
    settings = {
        "analysis": web.analysis(interval="1s", duration="3s"),
        "strategy": blue_green(autoPromote=False, scaleDownDelaySeconds=2),
    }
    web.go_live("v1", **settings)
    web.apply("v2", **settings)
    status = web.wait_for_step("AwaitPromotion", release="v2")
    assert status["phase"] == "Paused"
    assert web.selector_color() == "blue"
    before = web.spec_and_generation()

    shown = web.plugin("status", APP).stdout
    assert "Phase:       Paused" in shown
    assert "Step:        AwaitPromotion" in shown
    assert "Colours:     active blue, stable blue, new green" in shown
    assert f"kubectl lockstep promote {APP}" in shown

    answer = web.plugin("promote", APP).stdout
    assert "Accepted: promoting: switching traffic" in answer

    web.wait_for_phase("Ready", release="v2")
    assert web.outcome() == PROMOTED
    assert web.spec_and_generation() == before
    assert web.status()["lastRequest"]["action"] == "promote"

    assert history_rows(web.plugin("history", APP).stdout) == PROMOTED.history


def test_abort_during_a_long_analysis_rolls_back_to_blue(web: WebApp) -> None:
    settings = {
        "analysis": web.analysis(interval="1s", duration="10m"),
        "strategy": blue_green(scaleDownDelaySeconds=2),
    }
    web.go_live("v1", **settings)
    web.apply("v2", **settings)
    web.timeline.wait_for_release(
        "two successful measurements of green",
        lambda s: (s.get("analysis") or {}).get("successful", 0) >= 2,
    )
    before = web.spec_and_generation()

    shown = web.plugin("status", APP).stdout
    assert "Phase:       Progressing" in shown
    assert "Step:        Analysis" in shown
    assert "Colours:     active green, stable blue, new green" in shown
    assert "successful" in shown
    table = shown[shown.index("METRIC") :].splitlines()
    assert table[0].split() == ["METRIC", "PHASE", "VALUE", "AGE", "MESSAGE"]
    assert any(row.split()[:3] == ["error-ratio", "Successful", "0"] for row in table[1:])

    answer = web.plugin("abort", APP).stdout
    assert "aborting" in answer

    status = web.wait_for_phase("RolledBack")
    assert web.outcome() == ABORTED
    assert status["abortReason"].startswith("Aborted: requested (abort@")
    assert web.spec_and_generation() == before
    assert web.timeline.selector_colors() == [None, "blue", "green", "blue"]

    assert history_rows(web.plugin("history", APP).stdout) == ABORTED.history


def test_pause_holds_the_analysis_and_resume_continues_it(web: WebApp) -> None:
    settings = {
        # long enough that the pause lands in the analysis on a loaded machine (pausing a
        # settled release is refused)
        "analysis": web.analysis(interval="1s", duration="20s"),
        "strategy": blue_green(scaleDownDelaySeconds=2),
    }
    web.go_live("v1", **settings)
    web.apply("v2", **settings)
    web.timeline.wait_for_release(
        "a first successful measurement of green",
        lambda s: (s.get("analysis") or {}).get("successful", 0) >= 1,
    )
    before = web.spec_and_generation()

    assert "paused" in web.plugin("pause", APP).stdout
    paused = web.timeline.wait_for_release("phase Paused", lambda s: s.get("phase") == "Paused")
    assert "Paused:      yes" in web.plugin("status", APP).stdout

    # Held: no more measurements, no step forward, traffic stays on green.
    taken = len(paused["analysis"]["measurements"])
    holds_for(
        3,
        "the pause",
        lambda: (
            len(web.status()["analysis"]["measurements"]) == taken
            and web.status()["step"] == "Analysis"
            and web.selector_color() == "green"
        ),
    )

    assert "resumed" in web.plugin("resume", APP).stdout
    web.timeline.wait_for_release(
        "measurements to go on",
        lambda s: len((s.get("analysis") or {}).get("measurements", [])) > taken,
    )
    web.wait_for_phase("Ready", release="v2")
    assert web.outcome() == PROMOTED
    assert web.spec_and_generation() == before


def test_a_release_paused_before_it_starts_is_held_past_its_deadline_then_goes_on(
    web: WebApp,
) -> None:
    settings = {"strategy": blue_green(progressDeadlineSeconds=4, scaleDownDelaySeconds=2)}
    web.go_live("v1", **settings)
    web.plugin("pause", APP, "--next")
    generation = web.apply("v2", **settings)
    web.timeline.wait_for_release(
        "v2 to be held",
        lambda s: s.get("observedGeneration") == generation and s.get("phase") == "Paused",
    )
    before = web.spec_and_generation()

    # Held for longer than the progress deadline: nothing is deployed, nothing times out.
    holds_for(
        6,
        "the pause",
        lambda: web.replicas()["green"] == -1 and web.status()["phase"] == "Paused",
    )

    web.plugin("resume", APP)
    web.wait_for_phase("Ready", release="v2")
    assert web.outcome() == PROMOTED
    assert web.spec_and_generation() == before


def test_controls_that_cannot_apply_are_refused_at_once_with_the_reason(web: WebApp) -> None:
    settings = {
        "analysis": web.analysis(interval="1s", duration="10m"),
        "strategy": blue_green(scaleDownDelaySeconds=2),
    }
    web.go_live("v1", **settings)

    settled = web.plugin("pause", APP, check=False)
    assert settled.returncode == 1
    assert "nothing to pause: v1 is released and settled (phase Ready)" in settled.stderr
    assert "lockstep.dev/paused" not in annotations(web)

    web.apply("v2", **settings)
    web.wait_for_step("Analysis", release="v2")
    assert "paused at step Analysis" in web.plugin("pause", APP).stdout
    web.timeline.wait_for_release("phase Paused", lambda s: s.get("phase") == "Paused")

    refused = web.plugin("promote", APP, check=False)
    assert refused.returncode == 1
    assert (
        "paused at step Analysis: resume it first (kubectl lockstep resume web), then promote"
        in refused.stderr
    )
    assert "lockstep.dev/request" not in annotations(web)

    web.plugin("resume", APP)
    promoted = web.plugin("promote", APP).stdout
    assert "promote skips the rest of the analysis" in promoted
    assert (
        "the operator answered: Accepted: promoting: the rest of the analysis is skipped"
        in promoted
    )
    web.wait_for_phase("Ready", release="v2")
    assert web.outcome() == PROMOTED


def test_not_found_names_the_namespace(web: WebApp) -> None:
    missing = web.plugin("status", "nosuch", check=False)
    assert missing.returncode == 1
    assert f'featurerelease "nosuch" not found in namespace "{web.namespace}"' in missing.stderr
