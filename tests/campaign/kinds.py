"""The kinds of release the campaign draws, what each must end in, and how a trial is judged.

Every trial starts from v1 of the shop live in blue at schema 001 under load, then releases one
kind. What each kind does to the release, and the outcome it must end in:

| kind | what happens | expected |
|---|---|---|
| good | v2, expand 002 | Promoted |
| buggy | v3 reads a column that does not exist: real 5xx | RolledBack (analysis) |
| slow | v4 answers 0.4 s late: the latency metric | RolledBack (analysis) |
| never-ready | v5 never passes its readiness probe | RolledBack (progress deadline) |
| failing-check | v2 with a pre-promotion check that fails | RolledBack (check) |
| breaking-migration | v2 needing a migration that renames a column in use | Blocked |
| lock-wait | v2, while a long transaction holds a lock its expand waits for | Promoted |
| operator-kill | v2, the operator SIGKILLed at a random moment | Promoted |
| postgres-restart | v2, PostgreSQL restarted while the migration runs | Promoted |
| prometheus-outage | v2, Prometheus down for most of the analysis | RolledBack (errors) |
| apiserver-restart | v2, kube-apiserver restarted at a random moment | Promoted |

Failed requests are charged to the release machinery unless the kind's own fault explains
them: 500s answered by the buggy version, and requests while PostgreSQL is down (plus a few
seconds for the pods' readiness to come back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PROMOTED, ROLLED_BACK, BLOCKED = "Promoted", "RolledBack", "Blocked"


@dataclass(frozen=True)
class Kind:
    name: str
    expected: str
    reason: str = ""  # what the history entry's reason (or the status message) must mention
    fault_shows: str = ""  # what rollback time is measured from: "failure", "answer", "outage"


KINDS: tuple[Kind, ...] = (
    Kind("good", PROMOTED),
    Kind("buggy", ROLLED_BACK, "AnalysisFailed", fault_shows="failure"),
    Kind("slow", ROLLED_BACK, "AnalysisFailed", fault_shows="answer"),
    Kind("never-ready", ROLLED_BACK, "progress"),
    Kind("failing-check", ROLLED_BACK, "CheckFailed"),
    Kind("breaking-migration", BLOCKED, "breaking"),
    Kind("lock-wait", PROMOTED),
    Kind("operator-kill", PROMOTED),
    Kind("postgres-restart", PROMOTED),
    Kind("prometheus-outage", ROLLED_BACK, "AnalysisErrored", fault_shows="outage"),
    Kind("apiserver-restart", PROMOTED),
)
BY_NAME = {kind.name: kind for kind in KINDS}


def draw(count: int, rng: Any) -> list[Kind]:
    """`count` kinds: every kind once per round of len(KINDS), in a fresh random order each
    round, so that any N covers the kinds evenly."""
    drawn: list[Kind] = []
    while len(drawn) < count:
        round_ = list(KINDS)
        rng.shuffle(round_)
        drawn += round_
    return drawn[:count]


@dataclass
class Trial:
    """What one trial did and measured."""

    index: int
    kind: str
    seed: int
    expected: str
    outcome: str = ""
    reason: str = ""
    correct: bool = False
    why_wrong: str = ""
    requests: int = 0
    failed: int = 0
    failed_by_version_bug: int = 0
    failed_by_outage: int = 0
    failed_by_machinery: int = 0
    acknowledged_writes: int = 0
    lost_writes: int = 0
    downtime_seconds: float = 0.0
    downtime_by_outage_seconds: float = 0.0
    rollback_seconds: float | None = None
    duration_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def judge(kind: Kind, outcome: str, reason: str) -> tuple[bool, str]:
    """Whether the observed outcome is the one the kind must end in; why not."""
    if outcome != kind.expected:
        return False, f"ended {outcome or 'nowhere'} ({reason}), expected {kind.expected}"
    if kind.reason and kind.reason.lower() not in reason.lower():
        return False, f"ended {outcome} for another reason: {reason!r} (expected {kind.reason!r})"
    return True, ""


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of `values`; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def summarise(trials: Sequence[Trial], coverage: float | None) -> dict[str, Any]:
    """The success metrics over all trials."""
    promotable = [t for t in trials if t.expected == PROMOTED]
    rollbacks = [t.rollback_seconds for t in trials if t.rollback_seconds is not None]
    by_kind: dict[str, dict[str, int]] = {}
    for t in trials:
        entry = by_kind.setdefault(t.kind, {"trials": 0, "correct": 0})
        entry["trials"] += 1
        entry["correct"] += int(t.correct)
    return {
        "trials": len(trials),
        "deploymentSuccessRate": (
            sum(t.outcome == PROMOTED for t in promotable) / len(promotable) if promotable else None
        ),
        "correctOutcomeRate": sum(t.correct for t in trials) / len(trials) if trials else None,
        "rollbackSecondsP50": percentile(rollbacks, 50),
        "rollbackSecondsP99": percentile(rollbacks, 99),
        "rollbacksMeasured": len(rollbacks),
        "requests": sum(t.requests for t in trials),
        "requestsFailed": sum(t.failed for t in trials),
        "requestsFailedByVersionBug": sum(t.failed_by_version_bug for t in trials),
        "requestsFailedByInjectedOutage": sum(t.failed_by_outage for t in trials),
        "requestsFailedByMachinery": sum(t.failed_by_machinery for t in trials),
        "acknowledgedWrites": sum(t.acknowledged_writes for t in trials),
        "acknowledgedWritesLost": sum(t.lost_writes for t in trials),
        "downtimeSeconds": round(sum(t.downtime_seconds for t in trials), 3),
        "downtimeDuringInjectedOutageSeconds": round(
            sum(t.downtime_by_outage_seconds for t in trials), 3
        ),
        "coveragePercent": coverage,
        "byKind": by_kind,
        "wrong": [asdict(t) for t in trials if not t.correct],
    }


TARGETS = {
    "correctOutcomeRate": "100 %",
    "rollbackSecondsP99": "< 30 s",
    "requestsFailedByMachinery": "0",
    "acknowledgedWritesLost": "0",
    "downtimeSeconds": "0 s",
}


def table(summary: dict[str, Any]) -> str:
    """The metrics as a Markdown table."""

    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 100:.1f} %"

    def secs(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f} s"

    rows = [
        ("Releases (trials)", str(summary["trials"]), ""),
        (
            "Deployment success rate (releases that should promote)",
            rate(summary["deploymentSuccessRate"]),
            "",
        ),
        (
            "Correct outcome rate",
            rate(summary["correctOutcomeRate"]),
            TARGETS["correctOutcomeRate"],
        ),
        (
            f"Rollback time p50 ({summary['rollbacksMeasured']} rollbacks after traffic moved)",
            secs(summary["rollbackSecondsP50"]),
            "",
        ),
        ("Rollback time p99", secs(summary["rollbackSecondsP99"]), TARGETS["rollbackSecondsP99"]),
        ("Requests sent", str(summary["requests"]), ""),
        (
            "Requests failed by the version's own bug",
            str(summary["requestsFailedByVersionBug"]),
            "",
        ),
        (
            "Requests failed during an injected PostgreSQL outage",
            str(summary["requestsFailedByInjectedOutage"]),
            "",
        ),
        (
            "Requests failed by the release machinery",
            str(summary["requestsFailedByMachinery"]),
            TARGETS["requestsFailedByMachinery"],
        ),
        ("Acknowledged writes", str(summary["acknowledgedWrites"]), ""),
        (
            "Acknowledged writes lost",
            str(summary["acknowledgedWritesLost"]),
            TARGETS["acknowledgedWritesLost"],
        ),
        (
            "Downtime (no Ready endpoint behind the Service)",
            secs(summary["downtimeSeconds"]),
            TARGETS["downtimeSeconds"],
        ),
        (
            "Downtime during an injected PostgreSQL outage",
            secs(summary["downtimeDuringInjectedOutageSeconds"]),
            "",
        ),
        (
            "Test coverage (`make coverage`)",
            "not measured"
            if summary["coveragePercent"] is None
            else f"{summary['coveragePercent']:.1f} %",
            "",
        ),
    ]
    lines = ["| metric | measured | target |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in rows]
    lines += ["", "| kind | trials | correct |", "|---|---|---|"]
    lines += [
        f"| {name} | {entry['trials']} | {entry['correct']} |"
        for name, entry in sorted(summary["byKind"].items())
    ]
    return "\n".join(lines)
