"""When contract migrations may run, and how rollback requests are read."""

from __future__ import annotations

from lockstep.migrations.gate import (
    ReleaseGate,
    RollbackRequest,
    backup_token,
    contract_decision,
    parse_rollback_request,
)

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


def test_backup_tokens_are_stable_short_and_change_with_the_plan() -> None:
    token = backup_token("abc", "002", 1)
    assert token == backup_token("abc", "002", 1)
    assert len(token) == 12 and token.isalnum()
    assert token != backup_token("abc", "003", 1) != backup_token("abc", "002", 2)


def test_rollback_requests_are_parsed_or_explained() -> None:
    request = parse_rollback_request(
        '{"id": "web-1", "mode": "down", "toVersion": "001", "requestedBy": "FeatureRelease/web"}'
    )
    assert request == RollbackRequest("web-1", "down", "001", "FeatureRelease/web")
    assert parse_rollback_request(None) is None
    assert isinstance(parse_rollback_request("not json"), str)
    assert isinstance(parse_rollback_request('{"id": "x", "mode": "sideways"}'), str)
