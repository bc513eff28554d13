"""Analysis verdicts from measurements: pure functions, no Prometheus I/O here.

An error (Prometheus unreachable, a bad query, no data when `noData: error`) never counts as a
success: the analysis only passes with a clean round taken at the end of its duration, and it
aborts after `consecutiveErrorLimit` erroring rounds in a row. Rounds come every interval, the
first one interval after the analysis starts (the switch), when the new colour has metrics.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ..api.base import parse_timestamp, seconds, timestamp
from ..api.release import (
    Analysis,
    AnalysisMetric,
    AnalysisStatus,
    Measurement,
    MeasurementPhase,
)

MEASUREMENTS_KEPT_PER_METRIC = 10
PLACEHOLDERS = ("color", "revision", "release", "name", "namespace")


@dataclass(frozen=True)
class QueryResult:
    """What one query returned: a value, nothing (no data), or an error."""

    metric: str
    value: float | None = None
    error: str | None = None


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_LABEL_LISTS = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
    ]
)


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query reads (what it selects by name, outside label matchers,
    strings, ranges and function calls): each must exist for the query to mean anything."""
    text = _STRINGS.sub(" ", query)
    text = _MATCHERS.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = re.sub(r"@\s*[0-9.]+", " ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def render_query(template: str, values: dict[str, str]) -> str:
    """Replace {{color}}, {{revision}}, {{release}}, {{name}}, {{namespace}}."""
    query = template
    for key in PLACEHOLDERS:
        for spelling in (f"{{{{{key}}}}}", f"{{{{ {key} }}}}"):
            query = query.replace(spelling, values.get(key, ""))
    return query


def evaluate(
    metric: AnalysisMetric, result: QueryResult, analysis: Analysis, at: str
) -> Measurement:
    """One measurement: Successful, Failed (out of bounds) or Error."""
    if result.error is not None:
        return Measurement(metric=metric.name, phase="Error", message=result.error, at=at)
    value = result.value
    if value is None or math.isnan(value):
        if analysis.no_data == "failure":
            return Measurement(metric=metric.name, phase="Failed", message="no data", at=at)
        return Measurement(metric=metric.name, phase="Error", message="no data", at=at)
    if metric.max is not None and value > metric.max:
        return Measurement(
            metric=metric.name,
            phase="Failed",
            value=value,
            message=f"{value:g} is above max {metric.max:g}",
            at=at,
        )
    if metric.min is not None and value < metric.min:
        return Measurement(
            metric=metric.name,
            phase="Failed",
            value=value,
            message=f"{value:g} is below min {metric.min:g}",
            at=at,
        )
    return Measurement(metric=metric.name, phase="Successful", value=value, at=at)


def record_round(
    status: AnalysisStatus, analysis: Analysis, results: list[QueryResult], now: datetime
) -> AnalysisStatus:
    """Fold one round of query results into the analysis status."""
    at = timestamp(now)
    by_name = {r.metric: r for r in results}
    round_ = [
        evaluate(m, by_name.get(m.name, QueryResult(m.name, error="not measured")), analysis, at)
        for m in analysis.metrics
    ]
    errored = any(m.phase == "Error" for m in round_)
    clean = all(m.phase == "Successful" for m in round_)
    kept: list[Measurement] = []
    for metric in analysis.metrics:
        history = [m for m in status.measurements if m.metric == metric.name]
        history += [m for m in round_ if m.metric == metric.name]
        kept += history[-MEASUREMENTS_KEPT_PER_METRIC:]
    return status.model_copy(
        update={
            "successful": status.successful + sum(m.phase == "Successful" for m in round_),
            "failed": status.failed + sum(m.phase == "Failed" for m in round_),
            "errors": status.errors + sum(m.phase == "Error" for m in round_),
            "rounds": status.rounds + 1,
            "clean_rounds": status.clean_rounds + (1 if clean else 0),
            "consecutive_errors": status.consecutive_errors + 1 if errored else 0,
            "last_measured_at": at,
            "measurements": kept,
        }
    )


Verdict = Literal["measure", "wait", "passed", "failed", "errored"]


def verdict(status: AnalysisStatus, analysis: Analysis, now: datetime) -> Verdict:
    """What the analysis says now: measure again, wait, or a final outcome."""
    if status.failed >= analysis.failure_limit:
        return "failed"
    if status.consecutive_errors >= analysis.consecutive_error_limit:
        return "errored"
    started = parse_timestamp(status.started_at) if status.started_at else now
    interval = seconds(analysis.interval)
    if status.last_measured_at is None:
        # The first round comes one interval after the switch: at the switch the new colour
        # has served nothing yet, and a rate() over its requests has no data.
        return "measure" if (now - started).total_seconds() >= interval else "wait"
    last = parse_timestamp(status.last_measured_at)
    # Passing needs a clean round taken at the end of the duration or later: after a pause or
    # an outage the release is judged on a fresh measurement, and never on a failing one. It
    # also needs enough clean rounds: an outage that covered most of the window extends the
    # analysis instead of letting one round after it decide.
    last_round = [m for m in status.measurements if m.at == status.last_measured_at]
    if (
        (last - started).total_seconds() >= seconds(analysis.duration)
        and status.clean_rounds >= analysis.required_rounds
        and last_round
        and all(m.phase == "Successful" for m in last_round)
    ):
        return "passed"
    return "measure" if (now - last).total_seconds() >= interval else "wait"


def seconds_until_next_round(status: AnalysisStatus, analysis: Analysis, now: datetime) -> float:
    last = status.last_measured_at or status.started_at
    if last is None:
        return 0.0
    since_last = (now - parse_timestamp(last)).total_seconds()
    return max(0.0, seconds(analysis.interval) - since_last)


def shifted(status: AnalysisStatus, by: timedelta) -> AnalysisStatus:
    """The analysis with its clock moved forward by `by` (time spent paused does not count)."""

    def later(value: str | None) -> str | None:
        return timestamp(parse_timestamp(value) + by) if value else None

    return status.model_copy(
        update={
            "started_at": later(status.started_at),
            "last_measured_at": later(status.last_measured_at),
            "measurements": [m.model_copy(update={"at": later(m.at)}) for m in status.measurements],
        }
    )


def first_failure(status: AnalysisStatus, phase: MeasurementPhase) -> str:
    """The first measurement of `phase` (the kind that ended the analysis; else the first that
    was not successful) and a count, short enough for a status message."""
    bad = [m for m in status.measurements if m.phase != "Successful"]
    total = status.successful + status.failed + status.errors
    if not bad:
        return f"no failing measurement ({total} taken)"
    m = next((m for m in bad if m.phase == phase), bad[0])
    value = f"={m.value:g}" if m.value is not None else ""
    count = status.failed + status.errors
    return (
        f"{m.metric}{value} ({m.message or m.phase}); {count} of {total} measurements "
        "failed or errored, details in status.analysis"
    )


def describe_failure(status: AnalysisStatus) -> str:
    """The measurements that caused an abort, for the Event and the status message."""
    bad = [m for m in status.measurements if m.phase != "Successful"][-5:]
    parts = []
    for m in bad:
        value = f"={m.value:g}" if m.value is not None else ""
        parts.append(f"{m.metric}{value} ({m.phase}: {m.message}) at {m.at}")
    return "; ".join(parts) or "no measurements"
