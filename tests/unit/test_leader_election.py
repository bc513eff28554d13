"""Leader election: who may take the Lease, when, and how long a leader may act without renewing.

The election against a real API server is in tests/e2e/test_ha.py; here are its rules."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from lockstep import metrics
from lockstep.leader import (
    Leadership,
    LeaseRecord,
    NotLeading,
    Timing,
    claim,
    guard_writes,
    microtime,
)
from lockstep.leader import utcnow as wall_now

TIMING = Timing(lease_duration=15, renew_deadline=10, retry_period=2)
T0, T1 = "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:09.000000Z"


def held_by(holder: str, transitions: int = 3, duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder, duration, T0, T0, transitions)


# ------------------------------------------------------------------------------ claim


def test_a_missing_lease_is_created_held_by_the_candidate() -> None:
    assert claim("a", None, 0, TIMING, T0) == LeaseRecord("a", 15, T0, T0, 0)


def test_the_holder_renews_keeping_its_acquire_time_and_transitions() -> None:
    renewed = claim("a", held_by("a"), 0, TIMING, T1)
    assert renewed == LeaseRecord("a", 15, T0, T1, 3)


def test_a_standby_waits_while_the_lease_changed_less_than_its_duration_ago() -> None:
    assert claim("b", held_by("a"), 14.9, TIMING, T1) is None


def test_a_standby_takes_a_lease_unchanged_for_its_duration_and_counts_a_transition() -> None:
    taken = claim("b", held_by("a", transitions=3), 15.0, TIMING, T1)
    assert taken == LeaseRecord("b", 15, T1, T1, 4)


def test_the_duration_written_in_the_lease_counts_not_the_standbys_own() -> None:
    assert claim("b", held_by("a", duration=60), 30, TIMING, T1) is None
    assert claim("b", held_by("a", duration=5), 5, TIMING, T1) is not None


def test_a_released_lease_is_taken_at_once() -> None:
    released = LeaseRecord("", 1, T0, T0, 3)
    assert claim("b", released, 0, TIMING, T1) == LeaseRecord("b", 15, T1, T1, 4)


def test_the_record_round_trips_through_the_lease_spec() -> None:
    record = LeaseRecord("a", 15, T0, T1, 2)
    assert LeaseRecord.of({"spec": record.spec()}) == record
    assert LeaseRecord.of({"spec": {}}) == LeaseRecord()


def test_times_are_written_as_micro_times() -> None:
    assert microtime(wall_now()).endswith("Z")
    assert len(microtime(wall_now())) == len(T0)


# ------------------------------------------------------------------------------ timing


def test_the_renew_deadline_must_be_shorter_than_the_lease_duration() -> None:
    with pytest.raises(ValueError, match="must be longer than the renew deadline"):
        Timing(lease_duration=10, renew_deadline=10, retry_period=2)


def test_the_renew_deadline_leaves_room_for_more_than_one_retry() -> None:
    with pytest.raises(ValueError, match="x the retry period"):
        Timing(lease_duration=15, renew_deadline=2.4, retry_period=2)


def test_the_retry_period_is_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Timing(lease_duration=15, renew_deadline=10, retry_period=0)


# ------------------------------------------------------------------------------ leadership


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_leader_acts_until_the_renew_deadline_after_its_last_renewal_started() -> None:
    clock = Clock()
    leadership = Leadership("a", renew_deadline=10, clock=clock)
    assert not leadership.acting()
    leadership.renewed(attempt_started=100.0)
    clock.now = 109.99
    assert leadership.acting()
    clock.now = 110.0
    assert not leadership.acting()
    with pytest.raises(NotLeading, match="a does not lead"):
        leadership.check("writing")


def test_the_leader_gauge_follows_the_leadership() -> None:
    leadership = Leadership("a", renew_deadline=10, clock=Clock())
    leadership.renewed(100.0)
    assert metrics.LEADER._value.get() == 1
    leadership.end()
    assert metrics.LEADER._value.get() == 0
    assert not leadership.acting()


def test_without_an_election_a_replica_always_acts() -> None:
    assert Leadership.unconditional("solo").acting()


def test_a_standby_never_acts_before_it_has_renewed_once() -> None:
    assert not Leadership("a", 10, Clock()).acting()


# ------------------------------------------------------------------------------ the write guard


class Recorder:
    """Stands in for the HTTP layer below the client (pure logic: which calls go out)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        self.sent.append(method)


def test_writes_go_out_only_while_leading_reads_always() -> None:
    clock = Clock()
    leadership = Leadership("a", renew_deadline=10, clock=clock)
    api = client.ApiClient()
    recorder = Recorder()
    api.call_api = recorder  # type: ignore[method-assign]
    guard_writes(api, leadership)
    leadership.renewed(100.0)
    api.call_api("PATCH", "https://k/apis/x")
    clock.now = 111.0  # past the renew deadline
    api.call_api("GET", "https://k/api/v1/services")
    for method in ("PATCH", "POST", "PUT", "DELETE"):
        with pytest.raises(NotLeading):
            api.call_api(method, "https://k/apis/x?dryRun=All")
    assert recorder.sent == ["PATCH", "GET"]
