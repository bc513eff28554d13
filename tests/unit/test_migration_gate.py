"""When contract migrations may run, and what the reason names when they may not."""

from __future__ import annotations

from lockstep.migrations.gate import ReleaseGate, contract_decision

VERSIONS = ["001", "002", "003", "004", "005"]


def test_nothing_held_back_means_nothing_to_decide() -> None:
    assert not contract_decision(VERSIONS, (), [], False, None).allowed


def test_allow_breaking_applies_contract_migrations_without_releases() -> None:
    decision = contract_decision(VERSIONS, ("003",), [], True, "004")
    assert decision.allowed and decision.target == "004"


def test_without_a_release_contract_migrations_wait_and_say_how_to_proceed() -> None:
    decision = contract_decision(VERSIONS, ("003",), [], False, None)
    assert not decision.allowed
    assert "no FeatureRelease references" in decision.reason and "allowBreaking" in decision.reason


def test_a_release_still_running_two_colours_holds_contract_back() -> None:
    gates = [ReleaseGate("web", settled=False, contract_through="003")]
    decision = contract_decision(VERSIONS, ("003",), gates, False, None)
    assert not decision.allowed and "web" in decision.reason


def test_a_settled_release_that_did_not_declare_the_contract_holds_it_back() -> None:
    gates = [ReleaseGate("web", settled=True, contract_through=None)]
    decision = contract_decision(VERSIONS, ("003",), gates, False, None)
    assert not decision.allowed and "contractVersion" in decision.reason


def test_contract_runs_up_to_what_every_release_tolerates() -> None:
    gates = [
        ReleaseGate("web", settled=True, contract_through="005"),
        ReleaseGate("worker", settled=True, contract_through="003"),
    ]
    decision = contract_decision(VERSIONS, ("003", "005"), gates, False, None)
    assert decision.allowed and decision.target == "003"


def test_contract_never_goes_past_the_spec_target() -> None:
    gates = [ReleaseGate("web", settled=True, contract_through="005")]
    assert contract_decision(VERSIONS, ("003",), gates, False, "004").target == "004"


def test_the_reason_names_what_each_release_lacks() -> None:
    gates = [
        ReleaseGate("api", settled=True, contract_through=None),
        ReleaseGate("web", settled=False, contract_through="005"),
        ReleaseGate("worker", settled=True, contract_through="002"),
        ReleaseGate("batch", settled=True, contract_through="005", current=False),
    ]
    reason = contract_decision(VERSIONS, ("003",), gates, False, None).reason
    assert "api's promoted revision declares no migration.contractVersion" in reason
    assert "web is releasing" in reason
    assert "worker's promoted revision tolerates contract migrations only up to 002" in reason
    assert "batch has not acted on its latest spec" in reason
