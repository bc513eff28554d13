"""The unhappy paths, one named example each: both reconcilers in the simulated world of
tests/unit/model.py (where the promises are checked after every step), and the release machine
alone in tests/unit/release_sim.py where the database plays no part."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from tests.unit.model import VERSIONS, World, cooperate, describe, work
from tests.unit.release_sim import ANALYSIS, Sim, spec, template

from lockstep.api.base import RequestOutcome
from lockstep.api.migration import DatabaseMigrationStatus
from lockstep.api.protocol import AckOutcome
from lockstep.api.release import FeatureReleaseStatus, Step
from lockstep.release import machine


def live(version: str = "v1", migration_target: str | None = None, **release: Any) -> World:
    w = World()
    w.set_migration_target(migration_target)
    w.create_release(version, **release)
    settle(w)
    assert w.fr is not None
    assert w.fr.status["step"] == "Done", describe(w)
    return w


def settle(w: World, rounds: int = 300) -> None:
    assert cooperate(w, rounds) < rounds, f"did not settle: {describe(w)}"
    assert not w.violations, w.violations


def fr(w: World) -> FeatureReleaseStatus:
    assert w.fr is not None
    return FeatureReleaseStatus.model_validate(w.fr.status)


def dbm(w: World) -> DatabaseMigrationStatus:
    return DatabaseMigrationStatus.model_validate(w.dbm.status)


def until(w: World, step: str, rounds: int = 100) -> None:
    for _ in range(rounds):
        work(w, 1)
        if w.fr is not None and w.fr.status.get("step") == step:
            return
    raise AssertionError(f"never reached {step}: {describe(w)}")


def reasons(w: World) -> list[str]:
    return [reason for reason, _ in w.events]


# ----------------------------------------------------------- schema versus the serving version


def test_a_rolled_back_revision_never_lets_its_contract_migrations_through() -> None:
    # v2 declares it tolerates contract migration 003 (dropping the column v1 reads); it fails
    # its analysis and is rolled back: v1 serves again, and 003 must not run
    w = live("v1", database="none")
    w.change_release("v2bad")
    settle(w)
    assert fr(w).step == Step.ROLLED_BACK
    assert fr(w).database is not None and fr(w).database.tolerates is None  # type: ignore[union-attr]
    assert w.db.version == "002" and "name" in w.db.columns()
    assert dbm(w).phase == "WaitingForContract"
    assert "declares no migration.contractVersion" in (dbm(w).message or "")


def test_contract_migrations_run_once_the_promoted_revision_alone_runs_and_tolerates_them() -> None:
    w = live("v1")
    w.change_release("v2")
    settle(w)
    assert fr(w).step == Step.DONE
    assert w.db.version == "004" and "name" not in w.db.columns()
    assert "Contracted" in reasons(w)


def test_a_lowered_target_version_waits_while_the_serving_revision_needs_it() -> None:
    w = live("v1", migration_target="002")
    w.change_release("v2")
    settle(w)
    w.set_migration_target("001")  # a git revert of the migration, the release not reverted
    settle(w)
    assert w.db.version == "002", "the down migration would drop the column v2 writes"
    assert dbm(w).phase == "WaitingForReleases"
    assert "web (needs 002)" in (dbm(w).message or "")
    w.change_release("v1")  # now the release is reverted too
    settle(w)
    assert (fr(w).step, w.db.version) == (Step.DONE, "001")


def test_a_down_waits_for_a_release_that_has_not_acted_on_its_new_spec() -> None:
    # the release's new spec needs 002 while the migration is taken down to 001 at the same
    # moment: the migration waits for the release to say what it needs, so it never drops a
    # column the release is about to use
    w = live("v1", migration_target="002")
    w.change_release("bad")
    w.set_migration_target("001")
    work(w, 60)
    assert not w.violations, w.violations


def test_a_stable_revision_without_a_schema_version_never_asks_to_roll_back_to_nothing() -> None:
    sim = Sim(spec(analysis=ANALYSIS, rollback={"database": "down"}))
    sim.migration = None
    sim.run()  # v1 has no migration reference at all
    sim.change(
        template=template("v2"), release="v2", migration={"ref": "db", "targetVersion": "002"}
    )
    from lockstep.release.world import MigrationView

    sim.migration = MigrationView(exists=True, current_version="002", observed_current=True)
    sim.run(until=machine.ANALYSIS)
    sim.metric_value = 1.0
    sim.run()
    st = sim.typed_status()
    assert st.phase == "RolledBack"
    assert st.database is not None and st.database.request is None
    assert "database kept: the stable revision declares no schema version" in (
        st.abort_reason or ""
    )


def test_a_rollback_request_goes_strictly_down_to_the_version_it_names() -> None:
    w = live("v1", database="down", migration_target="001")
    w.set_migration_target("002")
    w.change_release("v2bad")
    settle(w)
    claim = fr(w).database
    assert claim is not None and claim.request is not None
    assert claim.request.to_version == "001"
    assert w.db.version == "001"
    ack = dbm(w).requests[0]
    assert (ack.outcome, ack.id) == (AckOutcome.SUCCEEDED, claim.request.id)


def test_a_hotfix_during_the_analysis_never_rolls_the_database_back() -> None:
    w = live("v1", database="restore", migration_target="001")
    w.set_migration_target("002")
    w.change_release("v2")
    until(w, "Analysis")
    w.change_release("bad")  # a hotfix with the same schema need, pushed during the analysis
    settle(w)
    assert not [j for j in w.jobs.values() if j.kind == "restore"]
    assert fr(w).database is not None and fr(w).database.request is None  # type: ignore[union-attr]
    assert w.db.version == "002"


# ------------------------------------------------------------------------ backups and restores


def test_a_second_rollback_restores_the_backup_of_the_second_attempt() -> None:
    # attempt 1 migrates, fails, and is restored; rows are written; attempt 2 migrates again
    # (with a new backup, holding those rows), fails, and must restore *that* backup
    w = live("v1", database="restore", migration_target="001")
    w.dbm.spec = {**w.dbm.spec, "policy": {"backup": "always"}}
    w.set_migration_target("002")
    w.change_release("v2bad")
    settle(w)
    assert (fr(w).step, w.db.version) == (Step.ROLLED_BACK, "001"), describe(w)
    for _ in range(25):
        assert w.write()
    between = list(w.db.rows)
    w.request("retry")
    settle(w)
    assert fr(w).step == Step.ROLLED_BACK and w.db.version == "001"
    assert set(between) <= set(w.db.rows), "rows written between the attempts were lost"
    restored = [backup for backup, _ in w.restores]
    assert len(set(restored)) == 2, f"each attempt restored its own backup: {restored}"


def test_a_down_that_loses_data_takes_a_backup_first_and_says_what_it_destroys() -> None:
    w = live("v1", database="down", migration_target="001")
    w.set_migration_target("002")
    w.change_release("v2bad")
    settle(w)
    ack = dbm(w).requests[0]
    assert ack.outcome == AckOutcome.SUCCEEDED
    assert ack.destroys == ["002: ALTER TABLE items DROP COLUMN email"]
    assert ack.backup is not None and ack.backup in w.backups
    assert "destroyed 002: ALTER TABLE items DROP COLUMN email" in ack.message


def test_a_restore_reports_the_window_of_writes_it_discards() -> None:
    w = live("v1", database="restore", migration_target="001")
    w.dbm.spec = {**w.dbm.spec, "policy": {"backup": "always"}}
    w.set_migration_target("002")
    w.change_release("v2bad")
    settle(w)
    ack = dbm(w).requests[0]
    assert ack.outcome == AckOutcome.SUCCEEDED and ack.discarded_writes is not None
    assert "were discarded" in ack.message
    assert any(r == "RequestSucceeded" and "discarded" in m for r, m in w.events)


def test_a_dry_run_never_executes_a_rollback_it_is_asked_for() -> None:
    w = live("v1", database="down", migration_target="001")
    w.set_migration_target("002")
    w.change_release("v2bad")
    until(w, "Analysis")
    w.dbm.spec = {**w.dbm.spec, "dryRun": True}
    w.dbm.generation += 1
    w.dbm.rv = w.bump()
    settle(w)
    ack = dbm(w).requests[0]
    assert ack.outcome == AckOutcome.PLANNED
    assert "nothing was executed" in ack.message
    assert w.db.version == "002"
    assert "database Planned" in (fr(w).abort_reason or "")


# -------------------------------------------------------------------------------- traffic


def test_abort_during_scale_down_brings_the_previous_colour_back_before_switching() -> None:
    w = live("v1", migration_target="002")
    w.change_release("v2")
    until(w, "ScaleDown")
    w.deployments["blue"].replicas = 0  # it was already being scaled down
    w.deployments["blue"].ready_new = 0
    w.request("abort")
    settle(w)
    assert fr(w).last_request is not None
    assert fr(w).last_request.outcome == RequestOutcome.ACCEPTED  # type: ignore[union-attr]
    assert (fr(w).step, w.service_color, fr(w).stable_release) == (
        Step.ROLLED_BACK,
        "blue",
        "v1",
    )
    assert w.deployments["blue"].available == 2


def test_abort_after_the_contract_step_began_is_refused() -> None:
    w = live("v1")
    w.change_release("v2")
    settle(w)
    w.request("abort")
    settle(w)
    record = fr(w).last_request
    assert record is not None and record.outcome == RequestOutcome.REFUSED
    assert w.service_color == "green" and fr(w).step == Step.DONE


def test_promote_after_a_failed_pre_promotion_check_still_switches() -> None:
    w = live("v1", migration_target="002", automatic=False)
    w.change_release("checkfails")
    settle(w)
    assert (fr(w).step, fr(w).failed_step) == (Step.AWAIT_ABORT, Step.PRE_PROMOTION_CHECKS)
    w.request("promote")
    work(w, 15)
    assert w.service_color == "green", "promotion never skips the switch"
    assert w.deployments["blue"].available == 2 or fr(w).step in (Step.SCALE_DOWN, Step.DONE)


def test_promote_of_a_release_whose_pods_never_became_ready_is_refused() -> None:
    w = live("v1", migration_target="002", automatic=False)
    w.change_release("never")
    w.tick(40)
    settle(w)
    assert (fr(w).step, fr(w).failed_step) == (Step.AWAIT_ABORT, Step.DEPLOY)
    w.request("promote")
    settle(w)
    record = fr(w).last_request
    assert record is not None and record.outcome == RequestOutcome.REFUSED
    assert w.service_color == "blue"


def test_no_switch_to_a_colour_without_available_pods() -> None:
    strategy = {"blueGreen": {"autoPromote": False, "scaleDownDelaySeconds": 10}}
    sim = Sim(spec(strategy=strategy))
    sim.run()
    sim.change(template=template("v2"), release="v2")
    sim.run()
    assert sim.typed_status().step == Step.AWAIT_PROMOTION
    sim.deployments["green"]["stuck"] = True  # its pods went away while it waited
    sim.request("promote")
    sim.step()
    assert sim.service_color == "blue"
    assert sim.typed_status().step == Step.DEPLOY


def test_the_service_never_selects_a_colour_that_lost_its_pods_during_the_analysis() -> None:
    sim = Sim(spec(analysis=ANALYSIS))
    sim.run()
    sim.change(template=template("v2"), release="v2")
    sim.run(until=machine.ANALYSIS)
    sim.deployments["green"]["stuck"] = True
    sim.run()
    st = sim.typed_status()
    assert (st.step, sim.service_color) == (Step.ROLLED_BACK, "blue")
    assert (st.abort_reason or "").startswith("ColorUnavailable")


# --------------------------------------------------------------------- the stable colour


def test_a_stable_deployment_deleted_during_a_release_is_restored() -> None:
    w = live("v1", migration_target="002")
    w.change_release("never")
    work(w, 3)
    del w.deployments["blue"]
    work(w, 3)
    assert "blue" in w.deployments and w.deployments["blue"].version == "v1"
    assert "StableRestored" in reasons(w)


def test_a_stable_colour_scaled_to_zero_while_rolled_back_is_scaled_back() -> None:
    w = live("v1", migration_target="002")
    w.change_release("bad")
    settle(w)
    assert fr(w).step == Step.ROLLED_BACK
    blue = w.deployments["blue"]
    blue.replicas = blue.ready_new = 0
    work(w, 3)
    assert (w.deployments["blue"].replicas, w.deployments["blue"].available) == (2, 2)


def test_a_rollback_waits_for_the_stable_colour_before_switching_back() -> None:
    w = live("v1", migration_target="002")
    w.change_release("bad")
    until(w, "Analysis")
    blue = w.deployments["blue"]
    blue.replicas = blue.ready_new = 0  # someone scaled the stable colour away meanwhile
    for _ in range(30):
        w.refresh(0)
        w.release_pass(0)
        assert w.serving(), "the Service never selects a colour without pods"
        w.pods_ready()
        w.tick(1)
    assert w.service_color == "blue"


def test_deleting_the_release_mid_analysis_keeps_the_stable_colour_serving() -> None:
    w = live("v1", migration_target="002")
    w.change_release("v2")
    until(w, "Analysis")
    w.delete_release()
    assert w.service_color == "blue" and w.serving()
    assert set(w.deployments) == {"blue"} and not w.deployments["blue"].owned


def test_a_release_created_again_over_a_serving_colour_goes_through_the_analysis() -> None:
    w = live("v1", migration_target="002")
    w.delete_release()
    w.create_release("bad")
    settle(w)
    st = fr(w)
    assert st.step == Step.ROLLED_BACK, "the new template was analysed, not taken live"
    assert (w.service_color, st.stable_revision is not None) == ("blue", True)
    assert w.deployments["blue"].owned


def test_an_autoscaler_owns_the_replicas_when_the_spec_leaves_them_out() -> None:
    sim = Sim(spec(replicas=None))
    sim.run()
    sim.deployments["blue"]["replicas"] = 5  # the autoscaler scaled the active colour up
    sim.run()
    assert sim.deployments["blue"]["replicas"] == 5, "lockstep does not fight the autoscaler"
    sim.change(template=template("v2"), release="v2")
    sim.run()
    assert sim.service_color == "green" and sim.deployments["green"]["replicas"] == 5


# ------------------------------------------------------------- identity, liveness and load


def test_a_revert_and_redo_never_reuses_an_earlier_check_result() -> None:
    w = live("v1", migration_target="002")
    w.change_release("checkfails")
    settle(w)
    w.change_release("v1")
    settle(w)
    w.change_release("checkfails")
    settle(w)
    checks = [n for n, j in w.jobs.items() if j.kind == "check"]
    assert len(checks) == 2 and len(set(checks)) == 2


def test_check_jobs_are_cleaned_up_after_they_finish() -> None:
    from lockstep.release.builders import check_job

    body = check_job(
        release="web",
        namespace="prod",
        owner={},
        check=machine.CheckJob(name="smoke", template={"spec": {"containers": [{"name": "t"}]}}),
        stage="prePromotion",
        job="web-pre-smoke-3",
        color="green",
        service="web",
        revision="r",
        release_name=None,
    )
    assert body["spec"]["ttlSecondsAfterFinished"] == 3600


def test_reverting_the_template_mid_release_settles_on_the_stable_revision() -> None:
    w = live("v1", migration_target="002")
    w.change_release("v2")
    until(w, "PrePromotionChecks")
    w.change_release("v1")
    settle(w)
    assert (fr(w).step, w.service_color, fr(w).stable_release) == (Step.DONE, "blue", "v1")
    assert "green" not in w.deployments or w.deployments["green"].replicas == 0


def test_waiting_for_a_migration_that_never_arrives_ends_in_stalled() -> None:
    w = live("v1", migration_target="001")
    w.change_release("v2")  # needs 002, the migration stays at 001
    work(w, 70)
    st = fr(w)
    assert (st.phase, st.step) == ("Blocked", Step.WAIT_FOR_MIGRATION)
    assert "for more than 60s; still waiting" in (st.message or "")


def test_a_missing_migration_is_reported_once_after_a_grace_period() -> None:
    sim = Sim(spec(migration={"ref": "nope", "targetVersion": "001"}))
    from lockstep.release.world import MigrationView

    sim.migration = MigrationView(exists=False)
    for _ in range(3):
        sim.step()
        sim.now += timedelta(seconds=1)
    assert sim.typed_status().phase == "Progressing"
    sim.now += timedelta(seconds=11)
    for _ in range(5):
        sim.step()
        sim.now += timedelta(seconds=1)
    st = sim.typed_status()
    assert st.phase == "Blocked" and "not found in namespace prod" in (st.message or "")
    assert sim.reasons().count("MigrationNotFound") == 1
    assert sim.step().requeue >= 30


@pytest.mark.parametrize("length", [40, 63])
def test_long_release_names_fit_every_name_and_label(length: int) -> None:
    from lockstep.release.builders import color_name
    from lockstep.release.world import label_value

    name = "a" * (length - 2) + "-b"
    assert len(color_name(name, "green")) <= 63
    assert color_name(name, "green") != color_name(name + "x", "green")
    assert len(machine.check_job_name(name, "prePromotion", "a" * 40, 12345)) <= 63
    assert len(label_value(name)) <= 63 and label_value(name) == label_value(name)


def test_time_paused_during_the_analysis_does_not_count() -> None:
    sim = Sim(spec(analysis=dict(ANALYSIS, duration="10s")))
    sim.run()
    sim.change(template=template("v2"), release="v2")
    sim.run(until=machine.ANALYSIS)
    sim.annotations["lockstep.dev/paused"] = "true"
    sim.step()
    sim.now += timedelta(minutes=10)
    sim.step()
    del sim.annotations["lockstep.dev/paused"]
    sim.step()
    analysis = sim.typed_status().analysis
    assert analysis is not None and analysis.clean_rounds < 5
    sim.run()
    final = sim.typed_status().analysis
    assert sim.typed_status().phase == "Ready"
    assert final is not None and final.clean_rounds >= 5


def test_an_outage_covering_the_analysis_never_passes_it_on_one_measurement() -> None:
    sim = Sim(spec(analysis=dict(ANALYSIS, duration="30s", consecutiveErrorLimit=1000)))
    sim.run()
    sim.change(template=template("v2"), release="v2")
    sim.run(until=machine.ANALYSIS)
    sim.metric_error = "Prometheus unreachable"
    for _ in range(25):
        sim.step()
        sim.now += timedelta(seconds=1)
    sim.metric_error = None
    sim.step()
    assert sim.typed_status().step == Step.ANALYSIS, (
        "one clean round after the outage is not enough"
    )
    sim.run()
    analysis = sim.typed_status().analysis
    assert analysis is not None and analysis.clean_rounds >= 15


def test_two_operators_with_stale_views_never_flip_the_service() -> None:
    w = live("v1", migration_target="002")
    w.add_operator()
    w.change_release("bad")
    flips = 0
    last = w.service_color
    for n in range(120):
        operator = n % 2
        if n % 7:
            w.refresh(operator)  # operator 1 sometimes decides on an old view
        w.prometheus_down = operator == 1
        w.release_pass(operator)
        w.migration_pass(operator)
        w.pods_ready()
        w.finish_jobs()
        w.tick(0.5)
        if w.service_color != last:
            flips += 1
            last = w.service_color
    assert not w.violations, w.violations
    assert flips <= 2, "one switch to the new colour, one back"


def test_the_machines_never_change_their_input() -> None:
    w = live("v1")
    assert w.fr is not None
    before = repr(w.fr.status), repr(w.dbm.status)
    w.change_release("v2")
    view = w.views[0]
    w.refresh(0)
    frozen = repr(view.fr.status) if view.fr else "", repr(view.dbm.status)
    work(w, 5)
    assert frozen == (repr(view.fr.status) if view.fr else "", repr(view.dbm.status))
    assert before != (repr(w.fr.status), repr(w.dbm.status))


def test_every_app_version_of_the_model_is_released_cleanly_from_v1() -> None:
    for version, app in VERSIONS.items():
        w = live("v1", migration_target="002")
        w.change_release(version)
        settle(w)
        expected = Step.ROLLED_BACK if (app.bad or app.never_ready or app.failing_check) else None
        if expected:
            assert fr(w).step == expected, (version, describe(w))


# ------------------------------------------------------------------- what a new user reads


def test_a_broken_later_migration_does_not_block_a_release_whose_schema_is_there() -> None:
    from lockstep.release.world import MigrationView

    sim = Sim(spec(migration={"ref": "db", "targetVersion": "003"}))
    sim.migration = MigrationView(
        exists=True,
        current_version="003",
        target_version="004",
        observed_current=True,
        stalled=True,
        message="the lint found errors in 004 (broken)",
    )
    sim.run()
    assert sim.typed_status().phase == "Ready"


def test_a_release_waiting_for_a_broken_migration_names_it() -> None:
    from lockstep.release.world import MigrationView

    sim = Sim(spec(migration={"ref": "db", "targetVersion": "004"}))
    sim.migration = MigrationView(
        exists=True,
        current_version="003",
        observed_current=True,
        stalled=True,
        message="the lint found errors in 004 (broken)",
    )
    sim.run()
    st = sim.typed_status()
    assert st.phase == "Blocked"
    assert st.message == (
        "DatabaseMigration db cannot reach 004: the lint found errors in 004 (broken)"
    )


def test_an_analysis_failure_names_the_first_failing_measurement_and_a_count() -> None:
    sim = Sim(spec(analysis=ANALYSIS))
    sim.run()
    sim.change(template=template("v2"), release="v2")
    sim.metric_value = 0.5
    sim.run()
    message = sim.typed_status().message or ""
    assert message.startswith("Rolled back to blue: AnalysisFailed: 2 failed measurements")
    assert "error-ratio=0.5 (0.5 is above max 0.05); 2 of 2 measurements" in message
    assert "details in status.analysis" in message


def test_a_query_that_cannot_run_stops_the_release_before_traffic_moves() -> None:
    sim = Sim(spec(analysis=ANALYSIS))
    sim.run()
    sim.preflight_error = "query failed: bad_data: 1:8: parse error: unexpected <EOF>"
    sim.change(template=template("v2"), release="v2")
    sim.run()
    st = sim.typed_status()
    assert (st.phase, st.step, sim.service_color) == ("Blocked", Step.PRE_PROMOTION_CHECKS, "blue")
    assert "analysis metric error-ratio cannot be measured: query failed" in (st.message or "")
    assert "(query: errors{color='{{color}}'})" in (st.message or "")
    sim.preflight_error = None  # the spec is fixed
    sim.change(analysis=dict(ANALYSIS, interval="2s"))
    sim.run()
    assert (sim.typed_status().phase, sim.service_color) == ("Ready", "green")
