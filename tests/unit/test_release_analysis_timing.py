"""When analysis rounds are taken: one interval after the switch, then every interval; a pass
needs a clean round at the end of the duration or later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lockstep.api.base import timestamp
from lockstep.api.release import Analysis, AnalysisStatus
from lockstep.release.analysis import (
    QueryResult,
    first_failure,
    record_round,
    seconds_until_next_round,
    verdict,
)

SWITCH = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ANALYSIS = Analysis.model_validate(
    {
        "prometheus": {"address": "http://prometheus:9090"},
        "interval": "2s",
        "duration": "10s",
        "metrics": [{"name": "error-ratio", "query": "errors", "max": 0.05}],
    }
)


def at(seconds: float) -> datetime:
    return SWITCH + timedelta(seconds=seconds)


def started() -> AnalysisStatus:
    return AnalysisStatus(started_at=timestamp(SWITCH))


def measured(status: AnalysisStatus, seconds: float, value: float = 0.0) -> AnalysisStatus:
    return record_round(status, ANALYSIS, [QueryResult("error-ratio", value=value)], at(seconds))


def test_the_first_round_comes_one_interval_after_the_switch() -> None:
    status = started()
    assert verdict(status, ANALYSIS, at(0)) == "wait"
    assert seconds_until_next_round(status, ANALYSIS, at(0.5)) == 1.5
    assert verdict(status, ANALYSIS, at(2)) == "measure"


def test_rounds_cover_the_whole_duration_before_a_pass() -> None:
    status = started()
    rounds = 0
    for second in range(0, 13):
        outcome = verdict(status, ANALYSIS, at(second))
        if outcome == "measure":
            status = measured(status, second)
            rounds += 1
            outcome = verdict(status, ANALYSIS, at(second))
        if outcome == "passed":
            break
    assert (outcome, second, rounds) == ("passed", 10, 5)


def test_after_a_long_outage_the_analysis_takes_its_clean_rounds_before_passing() -> None:
    status = measured(started(), 2)
    assert verdict(status, ANALYSIS, at(60)) == "measure"
    status = measured(status, 60)
    assert verdict(status, ANALYSIS, at(60)) == "wait"  # 2 of 5 clean rounds: no pass
    for moment in (62, 64):
        status = measured(status, moment)
        assert verdict(status, ANALYSIS, at(moment)) == "wait"
    assert verdict(measured(status, 66), ANALYSIS, at(66)) == "passed"


def test_a_failing_last_round_within_the_failure_limit_is_no_pass() -> None:
    status = started()
    for moment in (2, 4, 6, 8):
        status = measured(status, moment)
    status = measured(status, 10, value=0.5)
    assert (status.failed, ANALYSIS.failure_limit) == (1, 2)
    assert verdict(status, ANALYSIS, at(10)) == "wait"
    assert verdict(status, ANALYSIS, at(12)) == "measure"
    assert verdict(measured(status, 12), ANALYSIS, at(12)) == "passed"
    assert verdict(measured(status, 12, value=0.5), ANALYSIS, at(12)) == "failed"


def test_a_failed_analysis_is_explained_by_a_failed_measurement_not_an_earlier_error() -> None:
    # the new colour's series are seconds old at the switch: the first round often has no data
    status = record_round(started(), ANALYSIS, [QueryResult("error-ratio")], at(2))
    status = measured(status, 4, value=0.68)
    message = first_failure(status, "Failed")
    assert message.startswith("error-ratio=0.68 (0.68 is above max 0.05)"), message
    assert first_failure(status, "Error").startswith("error-ratio (no data)")
