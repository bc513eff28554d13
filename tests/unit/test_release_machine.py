"""The release state machine, transition by transition, in a simulated world."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.unit.release_sim import ANALYSIS, Sim, spec, template

from lockstep.api.base import RequestOutcome
from lockstep.release import machine
from lockstep.release.world import MigrationView, PointService, ScaleColor


def live_v1(**overrides: object) -> Sim:
    sim = Sim(spec(**overrides))
    sim.run()
    assert sim.typed_status().phase == "Ready"
    return sim


def release_v2(sim: Sim, **overrides: object) -> None:
    sim.change(template=template("v2"), release="v2", **overrides)


# ---------------------------------------------------------------------------- first release


def test_the_first_release_goes_live_in_blue_without_analysis() -> None:
    sim = Sim(spec(analysis=ANALYSIS))
    sim.run()
    st = sim.typed_status()
    assert (st.phase, st.step, st.active_color) == ("Ready", machine.DONE, "blue")
    assert sim.service_color == "blue"
    assert list(sim.deployments) == ["blue"]
    assert sim.deployments["blue"]["revision"] == st.stable_revision
    assert sim.deployments["blue"]["replicas"] == 2
    assert st.observed_generation == 1
    assert [(h.outcome, h.release) for h in st.history] == [("Promoted", "v1")]
    assert "Switched" in sim.reasons()


def test_ready_conditions_follow_kstatus() -> None:
    sim = live_v1()
    conditions = {c.type: c.status for c in sim.typed_status().conditions}
    assert conditions == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
        "Degraded": "False",
    }


def test_an_existing_serving_colour_is_adopted_not_redeployed() -> None:
    sim = Sim(spec())
    revision = machine.revision_of(sim.release().spec)
    sim.deployments["green"] = {"revision": revision, "replicas": 2, "stuck": False}
    sim.service_color = "green"
    sim.run()
    assert sim.typed_status().active_color == "green"
    assert not any(isinstance(a, PointService) for a in sim.actions)


# ---------------------------------------------------------------------------- happy path


def test_a_new_template_is_released_in_the_idle_colour_and_promoted_after_analysis() -> None:
    sim = live_v1(analysis=ANALYSIS)
    release_v2(sim)
    sim.run(until=machine.ANALYSIS)
    assert sim.service_color == "green"
    assert sim.deployments["blue"]["replicas"] == 2  # the old colour still runs
    sim.run()
    st = sim.typed_status()
    assert (st.phase, st.active_color, st.release) == ("Ready", "green", "v2")
    assert st.analysis is not None and st.analysis.successful >= 5 and st.analysis.failed == 0
    assert sim.deployments["blue"]["replicas"] == 0
    assert [h.outcome for h in st.history] == ["Promoted", "Promoted"]
    reasons = sim.reasons()
    for expected in (
        "ReleaseStarted",
        "ColorAvailable",
        "Switched",
        "AnalysisPassed",
        "Promoted",
        "ScaledDown",
    ):
        assert expected in reasons


def test_the_old_colour_waits_for_the_scale_down_delay() -> None:
    sim = live_v1()
    release_v2(sim)
    sim.run(until=machine.SCALE_DOWN)
    promoted_at = sim.now
    sim.run()
    scaled = [a for a in sim.actions if isinstance(a, ScaleColor) and a.color == "blue"]
    assert scaled and sim.typed_status().settled
    assert sim.now - promoted_at >= timedelta(seconds=10)


def test_replica_changes_do_not_start_a_release() -> None:
    sim = live_v1()
    sim.change(replicas=5)
    sim.run()
    st = sim.typed_status()
    assert sim.deployments["blue"]["replicas"] == 5
    assert len(st.history) == 1 and st.active_color == "blue"


def test_a_selector_changed_by_hand_is_restored() -> None:
    sim = live_v1()
    sim.service_color = "green"
    sim.run()
    assert sim.service_color == "blue"
    assert "SelectorRestored" in sim.reasons()


# ---------------------------------------------------------------------------- failures


def test_an_error_spike_during_analysis_rolls_back_traffic_and_scales_the_new_colour_down() -> None:
    sim = live_v1(analysis=ANALYSIS)
    release_v2(sim)
    sim.run(until=machine.ANALYSIS)
    sim.metric_value = 0.5
    sim.run()
    st = sim.typed_status()
    assert (st.phase, st.step) == ("RolledBack", machine.ROLLED_BACK)
    assert sim.service_color == "blue" and st.active_color == "blue"
    assert sim.deployments["green"]["replicas"] == 0
    conditions = {c.type: c.status for c in st.conditions}
    assert conditions["Degraded"] == "True" and conditions["Ready"] == "False"
    assert st.history[0].outcome == "RolledBack"
    rolled = [e for e in sim.events if e.reason == "RolledBack"]
    assert rolled and "error-ratio=0.5" in rolled[0].message
    assert st.analysis is not None and st.analysis.failed == 2


def test_a_rolled_back_release_stays_rolled_back_until_retried() -> None:
    sim = live_v1(analysis=ANALYSIS)
    release_v2(sim)
    sim.run(until=machine.ANALYSIS)
    sim.metric_value = 0.5
    sim.run()
    sim.now += timedelta(minutes=5)
    sim.run()
    assert sim.typed_status().phase == "RolledBack"
    sim.metric_value = 0.0
    sim.request("retry")
    sim.run()
    st = sim.typed_status()
    assert (st.phase, st.active_color, st.attempt) == ("Ready", "green", 2)
    assert st.last_request is not None and st.last_request.outcome == RequestOutcome.ACCEPTED
    assert "retrying" in st.last_request.message


def test_new_pods_that_never_become_ready_roll_back_at_the_deadline_without_moving_traffic() -> (
    None
):
    sim = live_v1(strategy={"blueGreen": {"progressDeadlineSeconds": 30}})
    sim.never_ready.add("v2")
    release_v2(sim)
    sim.run()
    st = sim.typed_status()
    assert st.phase == "RolledBack"
    assert "ProgressDeadlineExceeded" in (st.abort_reason or "")
    assert not any(isinstance(a, PointService) and a.color == "green" for a in sim.actions)
    assert sim.service_color == "blue"
    assert sim.deployments["green"]["replicas"] == 0


def test_a_failing_pre_promotion_check_means_no_switch() -> None:
    check = {"name": "smoke", "template": {"spec": {"containers": [{"name": "t", "image": "t"}]}}}
    sim = live_v1(checks={"prePromotion": [check]})
    sim.failing_checks.add("smoke")
    release_v2(sim)
    sim.run()
    assert sim.typed_status().phase == "RolledBack"
    assert sim.service_color == "blue"
    assert not any(isinstance(a, PointService) and a.color == "green" for a in sim.actions)
    assert "CheckFailed" in sim.reasons()


def test_passing_checks_run_once_each_and_let_the_release_through() -> None:
    check = {"name": "smoke", "template": {"spec": {"containers": [{"name": "t", "image": "t"}]}}}
    sim = live_v1(checks={"prePromotion": [check], "postPromotion": [dict(check, name="load")]})
    release_v2(sim)
    sim.run()
    assert sim.typed_status().phase == "Ready"
    assert sorted(j.split("-")[1] + "-" + j.split("-")[2] for j in sim.jobs) == [
        "post-load",
        "pre-smoke",
    ]
    assert {c.phase for c in sim.typed_status().checks} == {"Succeeded"}


def test_prometheus_errors_never_promote_and_abort_after_the_error_limit() -> None:
    sim = live_v1(analysis=ANALYSIS)
    release_v2(sim)
    sim.run(until=machine.ANALYSIS)
    sim.metric_error = "Prometheus unreachable"
    sim.run()
    st = sim.typed_status()
    assert st.phase == "RolledBack"
    assert "AnalysisErrored" in (st.abort_reason or "")
    assert st.analysis is not None and st.analysis.consecutive_errors == 3
    assert "Promoted" not in [h.outcome for h in st.history[:1]]


def test_no_data_is_not_success() -> None:
    sim = live_v1(analysis=ANALYSIS)
    release_v2(sim)
    sim.metric_value = None
    sim.run()
    assert sim.typed_status().phase == "RolledBack"
    assert sim.typed_status().history[0].outcome == "RolledBack"


def test_with_automatic_rollback_off_a_failure_waits_for_a_person() -> None:
    sim = live_v1(analysis=ANALYSIS, rollback={"automatic": False})
    release_v2(sim)
    sim.run(until=machine.ANALYSIS)
    sim.metric_value = 0.9
    sim.run()
    st = sim.typed_status()
    assert (st.phase, st.step) == ("Blocked", machine.AWAIT_ABORT)
    assert sim.service_color == "green"
    sim.request("abort")
    sim.run()
    assert sim.typed_status().phase == "RolledBack" and sim.service_color == "blue"
    assert sim.typed_status().history[0].outcome == "Aborted"


# ---------------------------------------------------------------------------- manual controls


def test_promote_skips_the_rest_of_the_analysis() -> None:
    analysis = dict(ANALYSIS, duration="1h")
    sim = live_v1(analysis=analysis)
    release_v2(sim)
    sim.run(until=machine.ANALYSIS)
    sim.request("promote")
    sim.run()
    st = sim.typed_status()
    assert st.phase == "Ready" and st.active_color == "green"
    assert st.last_request is not None and st.last_request.action == "promote"


def test_abort_rolls_back_by_request() -> None:
    sim = live_v1(analysis=dict(ANALYSIS, duration="1h"))
    release_v2(sim)
    sim.run(until=machine.ANALYSIS)
    sim.request("abort")
    sim.run()
    st = sim.typed_status()
    assert st.phase == "RolledBack" and sim.service_color == "blue"
    assert st.history[0].outcome == "Aborted"


def test_a_request_is_handled_once() -> None:
    sim = live_v1(analysis=dict(ANALYSIS, duration="1h"))
    sim.request("abort", "a")
    sim.run()
    assert sim.typed_status().last_request.outcome == RequestOutcome.REFUSED  # type: ignore[union-attr]
    release_v2(sim)
    sim.run(until=machine.ANALYSIS)
    sim.run(until=machine.ANALYSIS)  # the old request id does not abort the new release
    assert sim.typed_status().step == machine.ANALYSIS


def test_manual_promotion_gate_waits_then_switches_on_promote() -> None:
    sim = live_v1(strategy={"blueGreen": {"autoPromote": False, "scaleDownDelaySeconds": 0}})
    release_v2(sim)
    sim.run()
    st = sim.typed_status()
    assert (st.phase, st.step) == ("Paused", machine.AWAIT_PROMOTION)
    assert sim.service_color == "blue" and sim.deployments["green"]["replicas"] == 2
    sim.request("promote")
    sim.run()
    assert sim.typed_status().phase == "Ready" and sim.service_color == "green"


def test_pause_holds_the_release_and_resume_continues() -> None:
    sim = live_v1()
    sim.annotations["lockstep.dev/paused"] = "true"
    release_v2(sim)
    sim.run()
    assert sim.typed_status().phase == "Paused"
    assert sim.service_color == "blue"
    del sim.annotations["lockstep.dev/paused"]
    sim.run()
    assert sim.typed_status().phase == "Ready" and sim.service_color == "green"


# ---------------------------------------------------------------------------- supersede


def test_a_newer_template_before_the_switch_replaces_the_release_in_progress() -> None:
    sim = live_v1(strategy={"blueGreen": {"autoPromote": False}})
    release_v2(sim)
    sim.run()
    sim.change(template=template("v3"), release="v3", strategy={"blueGreen": {"autoPromote": True}})
    sim.run()
    st = sim.typed_status()
    assert (st.phase, st.release, st.active_color) == ("Ready", "v3", "green")
    assert [h.outcome for h in st.history][:2] == ["Promoted", "Superseded"]


def test_a_newer_template_during_analysis_first_moves_traffic_back() -> None:
    sim = live_v1(analysis=dict(ANALYSIS, duration="1h"))
    release_v2(sim)
    sim.run(until=machine.ANALYSIS)
    sim.change(template=template("v3"), release="v3")
    sim.run(until=machine.DEPLOY)
    assert sim.service_color == "blue"
    assert sim.typed_status().history[0].outcome == "Superseded"


def test_reverting_the_template_to_the_stable_one_goes_back_without_degrading() -> None:
    sim = live_v1(strategy={"blueGreen": {"autoPromote": False}})
    release_v2(sim)
    sim.run()
    sim.change(template=template("v1"), release="v1")
    sim.run()
    st = sim.typed_status()
    assert (st.phase, st.active_color) == ("Ready", "blue")


# ---------------------------------------------------------------------------- migration gate


def migration(
    current: str | None, pending_contract: tuple[str, ...] = (), stalled: bool = False
) -> MigrationView:
    return MigrationView(
        exists=True,
        current_version=current,
        target_version="003",
        ready=not pending_contract,
        stalled=stalled,
        observed_current=True,
        pending_contract=pending_contract,
        message="boom" if stalled else "",
    )


def test_the_new_colour_waits_for_the_schema_then_contract_runs_after_scale_down() -> None:
    gate = {"ref": "db", "targetVersion": "002", "contractVersion": "003"}
    sim = Sim(spec(migration={"ref": "db", "targetVersion": "001"}))
    sim.migration = migration("001")
    sim.run()
    release_v2(sim, migration=gate)
    sim.migration = migration("001")
    sim.run(until=machine.WAIT_FOR_MIGRATION)
    sim.step()
    assert not any(isinstance(a, PointService) and a.color == "green" for a in sim.actions)
    assert "Waiting for DatabaseMigration db to reach 002" in (sim.typed_status().message or "")
    sim.migration = migration("002", pending_contract=("003",))
    sim.run(until=machine.CONTRACT)
    assert sim.typed_status().settled and sim.typed_status().stable_schema_version == "002"
    assert sim.typed_status().phase == "Progressing"
    sim.migration = migration("003")
    sim.run()
    assert sim.typed_status().phase == "Ready"


def test_a_breaking_migration_needed_by_the_release_blocks_it_and_changes_nothing() -> None:
    sim = Sim(spec(migration={"ref": "db", "targetVersion": "001"}))
    sim.migration = migration("001")
    sim.run()
    before = dict(sim.deployments)
    release_v2(sim, migration={"ref": "db", "targetVersion": "003"})
    sim.migration = migration("001", pending_contract=("002",))
    sim.run()
    st = sim.typed_status()
    assert st.phase == "Blocked"
    assert "002" in (st.message or "") and "breaking" in (st.message or "")
    assert sim.deployments == before and sim.service_color == "blue"
    assert {c.type: c.status for c in st.conditions}["Stalled"] == "True"


def test_database_rollback_by_down_is_requested_and_awaited() -> None:
    sim = Sim(
        spec(
            migration={"ref": "db", "targetVersion": "001"},
            analysis=ANALYSIS,
            rollback={"database": "down"},
        )
    )
    sim.migration = migration("001")
    sim.run()
    release_v2(sim, migration={"ref": "db", "targetVersion": "002"})
    sim.migration = migration("002")
    sim.run(until=machine.ANALYSIS)
    sim.metric_value = 1.0
    sim.run()
    assert sim.typed_status().phase == "RolledBack"
    claim = sim.typed_status().database
    assert claim is not None and claim.request is not None
    assert (claim.request.mode, claim.request.to_version) == ("down", "001")
    assert sim.migration is not None and sim.migration.current_version == "001"


# ---------------------------------------------------------------------------- restarts


def scenario(kind: str) -> Sim:
    if kind == "promote":
        sim = live_v1(analysis=ANALYSIS)
        release_v2(sim)
    elif kind == "rollback":
        sim = live_v1(analysis=ANALYSIS)
        sim.metric_value = 0.7
        release_v2(sim)
    else:
        check = {
            "name": "smoke",
            "template": {"spec": {"containers": [{"name": "t", "image": "t"}]}},
        }
        sim = live_v1(checks={"prePromotion": [check]})
        release_v2(sim)
    return sim


@pytest.mark.parametrize("kind", ["promote", "rollback", "checks"])
def test_a_restart_before_or_after_any_action_reaches_the_same_outcome(kind: str) -> None:
    baseline = scenario(kind)
    baseline.run()
    expected = baseline.outcome()

    evaluations = 0
    probe = scenario(kind)
    while probe.typed_status().step not in (machine.DONE, machine.ROLLED_BACK) or evaluations == 0:
        decision = probe.step()
        evaluations += 1
        probe.now += timedelta(seconds=min(decision.requeue, 1.0))
        assert evaluations < 400

    for crash_at in range(evaluations):
        for after in (0, 1, 2, 3):
            sim = scenario(kind)
            for _ in range(crash_at):
                decision = sim.step()
                sim.now += timedelta(seconds=min(decision.requeue, 1.0))
            sim.step(crash_after=after)  # the process dies here: the status is not written
            sim.run()
            assert sim.outcome() == expected, (kind, crash_at, after)
