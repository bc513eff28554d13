"""Both reconcilers against a simulated world, driven by random users, failures and operators.

Hypothesis searches for a sequence of actions (template changes and reverts, target version
changes, promote/abort/retry/pause/resume, deleted Deployments and releases, failing metrics,
never-ready pods, failing Jobs, restarts and a second operator with a stale view) that breaks
one of the promises, checked after every step (tests/unit/model.py, `World`):

- the active Service keeps selecting a colour with available pods, if it did before;
- no contract or down migration (and no restore) removes what a serving version needs;
- a restore undoes the apply before it with that apply's own backup (no older writes lost);
- a database rollback only goes down, to a named version;
- no Job name or request id is reused by another attempt;
- and, once the world cooperates, everything settles within a bounded number of rounds.

Every sequence it has found is kept as a named example in test_unhappy_paths.py.
`make fuzz` runs the same machine for much longer (LOCKSTEP_MODEL_EXAMPLES).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from tests.unit.model import VERSIONS, World, cooperate, describe, work

EXAMPLES = int(os.environ.get("LOCKSTEP_MODEL_EXAMPLES", "2000"))
STEPS = int(os.environ.get("LOCKSTEP_MODEL_STEPS", "25"))
SETTLE_ROUNDS = 200

versions = st.sampled_from(sorted(VERSIONS))
operators = st.integers(min_value=0, max_value=1)
colors = st.sampled_from(["blue", "green"])


class Lockstep(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World()

    @initialize(
        database=st.sampled_from(["restore", "down", "none"]),
        automatic=st.booleans(),
        second_operator=st.booleans(),
        live=st.sampled_from([True, True, True, False]),
    )
    def start(self, database: str, automatic: bool, second_operator: bool, live: bool) -> None:
        self.w.create_release("v1", database=database, automatic=automatic)
        if second_operator:
            self.w.add_operator()
        if live:
            cooperate(self.w, rounds=60)

    def op(self, index: int) -> int:
        return index % len(self.w.views)

    # ------------------------------------------------------------------ the operators

    @rule(index=operators)
    def release_operator(self, index: int) -> None:
        self.w.release_pass(self.op(index))

    @rule(index=operators)
    def migration_operator(self, index: int) -> None:
        self.w.migration_pass(self.op(index))

    @rule(index=operators)
    def operator_sees_the_world(self, index: int) -> None:
        self.w.refresh(self.op(index))

    def work(self, rounds: int) -> None:
        work(self.w, rounds)
        fr = self.w.fr.status if self.w.fr else {}
        event(f"release step {fr.get('step')}")
        event(f"migration phase {self.w.dbm.status.get('phase')}")

    # Several rules that let everything work a while, so that a sequence reaches deep steps
    # (analysis, rollbacks, contract) between the actions that disturb it.
    @rule(rounds=st.integers(min_value=1, max_value=4))
    def everything_works_a_moment(self, rounds: int) -> None:
        self.work(rounds)

    @rule(rounds=st.integers(min_value=3, max_value=12))
    def everything_works_a_while(self, rounds: int) -> None:
        self.work(rounds)

    @rule(rounds=st.integers(min_value=8, max_value=30))
    def everything_works_longer(self, rounds: int) -> None:
        self.work(rounds)

    @rule()
    def kubelet(self) -> None:
        self.w.pods_ready()

    @rule()
    def jobs_finish(self) -> None:
        self.w.finish_jobs()

    @rule()
    def traffic(self) -> None:
        self.w.write()

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 5.0, 40.0]))
    def time_passes(self, seconds: float) -> None:
        self.w.tick(seconds)

    # ------------------------------------------------------------------ people

    @precondition(lambda self: self.w.fr is not None)
    @rule(version=versions)
    def release(self, version: str) -> None:
        self.w.change_release(version)

    @precondition(lambda self: self.w.fr is not None and self.w.fr.status.get("stable"))
    @rule()
    def revert_to_stable(self) -> None:
        assert self.w.fr is not None
        self.w.change_release(self.w.fr.status["stable"]["release"] or "v1")

    @rule(version=st.sampled_from([None, "001", "002", "003", "004"]))
    def migration_target(self, version: str | None) -> None:
        self.w.set_migration_target(version)

    @precondition(lambda self: self.w.fr is not None)
    @rule(action=st.sampled_from(["promote", "abort", "retry"]))
    def manual_control(self, action: str) -> None:
        self.w.request(action)

    @precondition(lambda self: self.w.fr is not None)
    @rule(paused=st.booleans())
    def pause(self, paused: bool) -> None:
        assert self.w.fr is not None
        self.w.annotate(self.w.fr, "lockstep.dev/paused", "true" if paused else None)

    @rule(color=colors)
    def someone_deletes_a_deployment(self, color: str) -> None:
        self.w.deployments.pop(color, None)

    @rule(color=colors)
    def someone_scales_a_colour_to_zero(self, color: str) -> None:
        dep = self.w.deployments.get(color)
        if dep is not None:
            dep.replicas = dep.ready_new = dep.ready_old = 0

    @precondition(lambda self: self.w.fr is not None)
    @rule()
    def someone_deletes_the_release(self) -> None:
        self.w.delete_release()

    @precondition(lambda self: self.w.fr is None)
    @rule(version=versions)
    def someone_creates_the_release_again(self, version: str) -> None:
        self.w.create_release(version)

    @rule(down=st.booleans())
    def prometheus(self, down: bool) -> None:
        self.w.prometheus_down = down

    @rule(failing=st.booleans())
    def backups(self, failing: bool) -> None:
        self.w.backup_fails = failing

    @rule()
    def retry_the_migration(self) -> None:
        self.w.annotate(self.w.dbm, "lockstep.dev/request", f"retry@{self.w.bump()}")

    # ------------------------------------------------------------------ promises

    @invariant()
    def promises_hold(self) -> None:
        assert not self.w.violations, f"{self.w.violations[0]}\n{describe(self.w)}"

    def teardown(self) -> None:
        # once the world cooperates (no failures, nobody pausing), everything settles
        w = self.w
        w.prometheus_down = w.backup_fails = False
        if w.fr is not None:
            w.annotate(w.fr, "lockstep.dev/paused", None)
        rounds = cooperate(w, rounds=SETTLE_ROUNDS)
        assert rounds < SETTLE_ROUNDS, f"did not settle: {describe(w)}"
        assert not w.violations, f"{w.violations[0]}\n{describe(w)}"


Lockstep.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLockstep = Lockstep.TestCase
