"""A pause holds the release where it is; the time spent paused counts against no deadline."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.release_sim import Sim, spec, template

PAUSED = "lockstep.dev/paused"


def test_a_pause_longer_than_the_progress_deadline_does_not_fail_the_release() -> None:
    sim = Sim(spec(strategy={"blueGreen": {"progressDeadlineSeconds": 30}}))
    sim.run()
    sim.annotations[PAUSED] = "true"
    sim.change(template=template("v2"), release="v2")
    sim.run()
    assert (sim.typed_status().phase, sim.typed_status().step) == ("Paused", "Deploy")
    assert "green" not in sim.deployments

    sim.now += timedelta(minutes=10)
    sim.run()
    assert sim.typed_status().phase == "Paused"

    del sim.annotations[PAUSED]
    sim.run()
    st = sim.typed_status()
    assert (st.phase, st.active_color, st.release) == ("Ready", "green", "v2")
    assert st.abort_reason is None


def test_the_deadline_still_applies_after_the_resume() -> None:
    sim = Sim(spec(strategy={"blueGreen": {"progressDeadlineSeconds": 30}}))
    sim.run()
    sim.never_ready.add("v2")
    sim.annotations[PAUSED] = "true"
    sim.change(template=template("v2"), release="v2")
    sim.run()
    sim.now += timedelta(minutes=10)
    del sim.annotations[PAUSED]
    resumed_at = sim.now
    sim.run()
    st = sim.typed_status()
    assert st.phase == "RolledBack"
    assert "ProgressDeadlineExceeded" in (st.abort_reason or "")
    assert sim.now - resumed_at >= timedelta(seconds=30)
