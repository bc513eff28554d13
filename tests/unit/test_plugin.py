"""`kubectl lockstep`: kubectl's flags anywhere on the line, the context's namespace, and manual
controls judged from the status before anything is written."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.release_sim import ANALYSIS, Sim, spec, template

from lockstep.api.base import RequestOutcome
from lockstep.plugin import Client, judge, parser
from lockstep.release import machine

PAUSED = "lockstep.dev/paused"

# ------------------------------------------------------------------------------ kubectl's flags


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "ledger", "-n", "payments"],
        ["-n", "payments", "status", "ledger"],
        ["status", "-n", "payments", "ledger"],
        ["status", "ledger", "--namespace=payments"],
        ["--namespace", "payments", "status", "ledger"],
        ["status", "ledger", "-npayments"],
    ],
)
def test_the_namespace_flag_works_anywhere_on_the_line(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    assert (args.command, args.name, args.namespace) == ("status", "ledger", "payments")


def test_context_and_kubeconfig_work_after_the_command_too() -> None:
    args = parser().parse_args(
        ["promote", "ledger", "--context", "staging", "--kubeconfig", "/k", "--wait", "5"]
    )
    assert (args.context, args.kubeconfig, args.wait) == ("staging", "/k", 5.0)
    before = parser().parse_args(["--context=staging", "--kubeconfig=/k", "history", "ledger"])
    assert (before.context, before.kubeconfig, before.command) == ("staging", "/k", "history")


def test_a_flag_after_the_command_wins_over_the_same_flag_before_it() -> None:
    args = parser().parse_args(["-n", "one", "status", "ledger", "-n", "two"])
    assert args.namespace == "two"


def test_without_flags_nothing_is_chosen_for_the_client() -> None:
    args = parser().parse_args(["status", "ledger"])
    assert not hasattr(args, "namespace")
    assert not hasattr(args, "context")
    assert not hasattr(args, "kubeconfig")


def kubeconfig(path: Path, current: str, namespaces: dict[str, str | None]) -> Path:
    cluster = {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}
    contexts = []
    for name, namespace in namespaces.items():
        context: dict[str, Any] = {"cluster": "c", "user": "u"}
        if namespace:
            context["namespace"] = namespace
        contexts.append({"name": name, "context": context})
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": contexts,
                "current-context": current,
            }
        )
    )
    return path


def test_the_default_namespace_is_the_current_contexts(tmp_path: Path) -> None:
    config = kubeconfig(
        tmp_path / "config", "dev", {"dev": "payments", "prod": "ledger", "bare": None}
    )
    assert Client(str(config), None).default_namespace == "payments"


def test_the_default_namespace_follows_the_context_flag(tmp_path: Path) -> None:
    config = kubeconfig(
        tmp_path / "config", "dev", {"dev": "payments", "prod": "ledger", "bare": None}
    )
    assert Client(str(config), "prod").default_namespace == "ledger"
    assert Client(str(config), "bare").default_namespace == "default"


def test_kubeconfig_comes_from_the_environment_without_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = kubeconfig(tmp_path / "config", "dev", {"dev": "from-env"})
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert Client(None, None).default_namespace == "from-env"


# ------------------------------------------------------------------------------ controls


def release(step: str | None, paused: bool = False, **status: Any) -> dict[str, Any]:
    annotations = {PAUSED: "true"} if paused else {}
    return {
        "metadata": {"name": "ledger", "annotations": annotations},
        "spec": {"analysis": {"duration": "5m"}},
        "status": {"step": step, **status},
    }


def test_promote_on_a_paused_release_is_refused_and_says_it_is_paused() -> None:
    verdict = judge("promote", release("Analysis", paused=True))
    assert verdict.refusal == (
        "paused at step Analysis: resume it first (kubectl lockstep resume ledger), then promote"
    )


def test_promote_during_the_analysis_says_it_skips_the_rest_of_it() -> None:
    verdict = judge(
        "promote",
        release("Analysis", analysis={"successful": 3, "startedAt": "2026-01-01T12:00:00Z"}),
    )
    assert verdict.refusal is None
    assert verdict.note is not None
    assert verdict.note.startswith("promote skips the rest of the analysis (running for ")
    assert "of 5m, 3 successful measurements" in verdict.note


def test_promote_awaiting_promotion_says_where_traffic_goes() -> None:
    verdict = judge("promote", release("AwaitPromotion", previewColor="green"))
    assert (verdict.refusal, verdict.note) == (None, "promote switches traffic to green")


@pytest.mark.parametrize(
    ("step", "phase", "words"),
    [
        ("Done", "Ready", "v2 is released and settled (phase Ready)"),
        ("RolledBack", "RolledBack", "v2 was rolled back (phase RolledBack)"),
    ],
)
def test_pause_on_a_settled_or_rolled_back_release_is_refused(
    step: str, phase: str, words: str
) -> None:
    verdict = judge("pause", release(step, phase=phase, release="v2"))
    assert verdict.refusal == (
        f"nothing to pause: {words}; pause holds a release in progress "
        "(kubectl lockstep pause ledger --next holds the next one before it starts)"
    )


def test_pause_next_holds_the_next_release_of_a_settled_one() -> None:
    verdict = judge("pause-next", release("Done", phase="Ready"))
    assert verdict.refusal is None
    assert verdict.note == "the next release waits before its first step until resumed"


def test_pause_and_resume_say_when_there_is_nothing_to_change() -> None:
    assert (
        judge("pause", release("Analysis", paused=True)).done == "already paused at step Analysis"
    )
    assert judge("resume", release("Analysis")).done == "not paused"
    assert judge("resume", release("Analysis", paused=True)) == judge("pause", release("Deploy"))


def test_abort_on_a_paused_release_lifts_the_pause() -> None:
    verdict = judge("abort", release("Analysis", paused=True))
    assert verdict.lift_pause
    assert verdict.note == "abort lifts the pause (at step Analysis)"


# ------------------------------------------------------------------------------ agreement

REQUESTS = ("promote", "abort", "retry")


def snapshots(sim: Sim, seconds: float = 120) -> list[Sim]:
    """A copy of the simulation at each step the release rests in, evaluation by evaluation."""
    seen: list[Sim] = []
    steps: set[str | None] = set()
    deadline = sim.now + timedelta(seconds=seconds)
    while sim.now < deadline:
        decision = sim.step()
        step = sim.typed_status().step
        if step not in steps:
            steps.add(step)
            seen.append(copy.deepcopy(sim))
        if step in machine.SETTLED_STEPS and not sim.pending_work():
            break
        sim.now += timedelta(seconds=min(max(decision.requeue, 0.1), 1.0))
    return seen


def answer(sim: Sim, action: str) -> str:
    """What the release machine answers to `action` in the state of `sim`."""
    trial = copy.deepcopy(sim)
    trial.request(action, ident="trial")
    trial.step()
    return trial.typed_status().last_request.outcome  # type: ignore[union-attr]


def scenarios() -> list[Sim]:
    waits = Sim(spec(strategy={"blueGreen": {"autoPromote": False, "scaleDownDelaySeconds": 10}}))
    analysed = Sim(spec(analysis=ANALYSIS))
    failing = Sim(spec(analysis=ANALYSIS))
    held = Sim(spec(analysis=ANALYSIS, rollback={"automatic": False}))
    for sim in (waits, analysed, failing, held):
        sim.run()
        sim.change(template=template("v2"), release="v2")
    failing.metric_value = held.metric_value = 0.5
    return [s for sim in (waits, analysed, failing, held) for s in snapshots(sim)]


def test_the_plugin_refuses_exactly_the_requests_the_release_machine_ignores() -> None:
    checked: set[tuple[str | None, str]] = set()
    for sim in scenarios():
        obj = {"metadata": {"name": "web"}, "spec": sim.spec, "status": sim.status}
        step = sim.typed_status().step
        for action in REQUESTS:
            outcome = answer(sim, action)
            refusal = judge(action, obj).refusal
            assert (refusal is None) == (outcome == RequestOutcome.ACCEPTED), (
                step,
                action,
                outcome,
                refusal,
            )
            checked.add((step, action))
    steps = {step for step, _ in checked}
    assert {"AwaitPromotion", "Analysis", "Done", "RolledBack", "AwaitAbort"} <= steps
