"""The wait before retrying a migration that hit lock_timeout: exponential, capped, jittered."""

from __future__ import annotations

import random

import pytest

from lockstep.migrations import backoff


def test_the_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    ceilings = [backoff.ceiling(n, base=0.5, cap=30) for n in range(1, 10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert backoff.delay(3, base=0.5, cap=30, uniform=lambda: 0.0) == 0.0
    assert backoff.delay(3, base=0.5, cap=30, uniform=lambda: 0.5) == 1.0
    assert backoff.delay(3, base=0.5, cap=30, uniform=lambda: 0.999) == pytest.approx(1.998)


def test_a_schedule_has_one_wait_per_retry_each_within_its_ceiling() -> None:
    generator = random.Random(7)
    waits = backoff.schedule(12, base=0.5, cap=30, uniform=generator.random)
    assert len(waits) == 12
    for retry, wait in enumerate(waits, start=1):
        assert 0 <= wait <= backoff.ceiling(retry, base=0.5, cap=30)
    assert max(waits) <= 30


def test_the_jitter_is_not_the_same_for_every_runner() -> None:
    first = backoff.schedule(5, base=0.5, cap=30, uniform=random.Random(1).random)
    second = backoff.schedule(5, base=0.5, cap=30, uniform=random.Random(2).random)
    assert first != second


def test_huge_retry_numbers_stay_at_the_cap() -> None:
    assert backoff.ceiling(10_000, base=0.5, cap=30) == 30


def test_no_retries_means_no_waits() -> None:
    assert backoff.schedule(0, base=0.5, cap=30) == []


def test_retries_are_numbered_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff.ceiling(0, base=0.5, cap=30)
