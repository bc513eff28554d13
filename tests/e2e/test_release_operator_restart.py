"""The operator killed with SIGKILL in the middle of a release, then started again, finishes the
release as if nothing had happened: same phase, colours, replicas, selector and history, and
nothing done twice (one check Job per check, one history entry per release)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.e2e.releases import (
    APP,
    PROMOTED,
    ROLLED_BACK,
    Change,
    Trigger,
    WebApp,
    at_step,
    blue_green,
    check,
    selecting,
)
from tests.env.operator_runner import OperatorProcess

pytestmark = pytest.mark.cluster


def settings(web: WebApp, *, auto_promote: bool = True) -> dict[str, Any]:
    """A release that passes through every step: a check, analysis, a scale-down delay."""
    return {
        "checks": {"prePromotion": [check("smoke")]},
        "analysis": web.analysis(interval="1s", duration="4s"),
        "strategy": blue_green(autoPromote=auto_promote, scaleDownDelaySeconds=3),
    }


def kill_when(
    web: WebApp, operator: OperatorProcess, condition: Callable[[Change], bool]
) -> Trigger:
    """Arm a SIGKILL of the operator for the moment the timeline sees `condition`."""
    return web.timeline.when(condition, operator.kill)


def test_without_a_kill_the_release_promotes_v2(web: WebApp) -> None:
    web.go_live("v1", **settings(web))
    web.apply("v2", **settings(web))
    web.wait_for_phase("Ready", release="v2")
    assert web.outcome() == PROMOTED
    assert len(web.check_jobs()) == 1


@pytest.mark.parametrize(
    "step", ["Deploy", "PrePromotionChecks", "AwaitPromotion", "Analysis", "ScaleDown"]
)
def test_a_kill_at_any_step_still_promotes_v2_once(
    web: WebApp, operator: OperatorProcess, step: str
) -> None:
    manual = step == "AwaitPromotion"
    web.go_live("v1", **settings(web, auto_promote=not manual))
    killed = kill_when(web, operator, at_step(step, release="v2"))
    web.apply("v2", **settings(web, auto_promote=not manual))

    killed.wait()
    assert web.status()["step"] == step  # the operator died at that step
    if manual:  # promoted while the operator is down: the request waits for it
        with ThreadPoolExecutor(1) as pool:
            promote = pool.submit(web.plugin, "promote", APP)
            operator.start()
            assert "promoting: switching traffic" in promote.result(timeout=60).stdout
    else:
        operator.start()

    web.wait_for_phase("Ready", release="v2")
    assert web.outcome() == PROMOTED
    assert len(web.check_jobs()) == 1


def test_a_kill_during_the_rollback_still_rolls_back_once(
    web: WebApp, operator: OperatorProcess
) -> None:
    spec = {
        "analysis": web.analysis(interval="1s", duration="60s"),
        "strategy": blue_green(scaleDownDelaySeconds=2),
    }
    web.go_live("v1", **spec)
    web.apply("v2", **spec)
    web.timeline.wait_for_release(
        "a first successful measurement of green",
        lambda s: (s.get("analysis") or {}).get("successful", 0) > 0,
    )

    # The rollback's first action moves traffic back to blue; the kill lands right after it,
    # before green is scaled down and before the rollback is recorded.
    killed = kill_when(web, operator, selecting(APP, "blue"))
    web.start_clients(error_ratio={"v2": 0.5})

    killed.wait()
    status = web.status()
    assert status["step"] in ("Analysis", "RollBack")
    assert web.replicas()["green"] == 2
    assert [h["release"] for h in status["history"]] == ["v1"]
    operator.start()

    web.wait_for_phase("RolledBack")
    assert web.outcome() == ROLLED_BACK
