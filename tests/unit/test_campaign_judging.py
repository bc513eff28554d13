"""How the release-outcome campaign draws its releases and judges and sums them up."""

from __future__ import annotations

import random
from collections import Counter

from tests.campaign.kinds import BY_NAME, KINDS, Trial, draw, judge, percentile, summarise, table


def test_the_draw_covers_every_kind_evenly_and_depends_only_on_the_seed() -> None:
    drawn = draw(100, random.Random(1))
    counts = Counter(k.name for k in drawn)
    assert set(counts) == {k.name for k in KINDS}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert drawn == draw(100, random.Random(1))
    assert drawn != draw(100, random.Random(2))


def test_an_outcome_is_right_only_with_the_expected_phase_and_reason() -> None:
    buggy = BY_NAME["buggy"]
    assert judge(buggy, "RolledBack", "AnalysisFailed: 2 failed measurements") == (True, "")
    assert judge(buggy, "Promoted", "analysis passed")[0] is False
    wrong, why = judge(buggy, "RolledBack", "AnalysisErrored: Prometheus unreachable")
    assert not wrong and "another reason" in why
    assert judge(BY_NAME["good"], "", "timed out")[1].startswith("ended nowhere")


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([4.0], 99) == 4.0
    assert percentile([], 50) is None


def test_the_summary_separates_failures_by_cause_and_lists_the_wrong_outcomes() -> None:
    trials = [
        Trial(1, "good", 1, "Promoted", outcome="Promoted", correct=True, requests=100),
        Trial(
            2,
            "buggy",
            2,
            "RolledBack",
            outcome="RolledBack",
            correct=True,
            requests=100,
            failed=30,
            failed_by_version_bug=30,
            rollback_seconds=4.0,
        ),
        Trial(
            3,
            "operator-kill",
            3,
            "Promoted",
            outcome="RolledBack",
            why_wrong="ended RolledBack",
            requests=100,
            failed=2,
            failed_by_machinery=2,
        ),
    ]
    summary = summarise(trials, coverage=91.5)
    assert summary["deploymentSuccessRate"] == 0.5
    assert summary["correctOutcomeRate"] == 2 / 3
    assert summary["requestsFailedByMachinery"] == 2
    assert summary["requestsFailedByVersionBug"] == 30
    assert summary["rollbackSecondsP99"] == 4.0
    assert [w["index"] for w in summary["wrong"]] == [3]
    rendered = table(summary)
    assert "| Correct outcome rate | 66.7 % | 100 % |" in rendered
    assert "| Test coverage (`make coverage`) | 91.5 % |  |" in rendered
