"""The alerts pass promtool's checks and unit tests, the dashboard and the alerts query only
metrics (and labels) the operator exports, and the installable copies match monitoring/."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client import REGISTRY
from tests.env import monitoring

from lockstep import metrics
from lockstep.conditions import Health, conditions_for


def promtool(*args: str, cwd: Path = monitoring.SOURCES) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def test_the_alerting_rules_are_valid() -> None:
    checked = promtool("check", "rules", str(monitoring.ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_the_alerts_fire_as_their_unit_tests_say() -> None:
    tested = promtool("test", "rules", monitoring.ALERT_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_unit_tested() -> None:
    tests = yaml.safe_load(monitoring.ALERT_TESTS.read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])}
    fired = {
        t["alertname"]
        for case in tests
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in monitoring.alert_rules()}
    assert alerts == tested == fired


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": monitoring.as_promql(query)}
        for i, query in enumerate(monitoring.dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every sample name the operator exports, with its label names: every hook called once
    with made-up objects, then the registry collected (as /metrics does)."""
    status = {
        "phase": "Progressing",
        "step": "Analysis",
        "stepStartedAt": "2026-01-01T00:00:00Z",
        "conditions": [
            c.wire() for c in conditions_for(Health.PROGRESSING, "Progressing", "m", 1, [])
        ],
    }
    metrics.observed("FeatureRelease", "hooks", "web", status)
    metrics.observed("DatabaseMigration", "hooks", "shop-db", {**status, "phase": "Ready"})
    metrics.reconciled("FeatureRelease", "error")
    metrics.RECONCILE_SECONDS.labels("FeatureRelease").observe(0.1)  # timed by the reconcilers
    metrics.reconcile_failed("DatabaseMigration")
    release = SimpleNamespace(
        abort_reason="AnalysisFailed: 3 failed", revision_started_at="2026-01-01T00:00:00Z"
    )
    metrics.release_event("hooks", "web", "RolledBack", release)  # type: ignore[arg-type]
    metrics.release_event("hooks", "web", "Promoted", release)  # type: ignore[arg-type]
    measured = SimpleNamespace(metric="error-ratio", value=0.01, error=None)
    metrics.measured("hooks", "web", [measured])  # type: ignore[list-item]
    step = SimpleNamespace(direction="up", duration_ms=1200, lock_wait_ms=300)
    metrics.migrations_applied([step])  # type: ignore[list-item]
    metrics.backup_finished("hooks", "shop-db", "shop-db-backup-1", 4096, 3)
    metrics.backup_finished("hooks", "shop-db", "shop-db-backup-2", None, None)
    found: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def every_query() -> Iterator[tuple[str, str]]:
    for query in monitoring.dashboard_queries():
        yield "dashboard", monitoring.as_promql(query)
    for rule in monitoring.alert_rules():
        yield f"alert {rule['alert']}", rule["expr"]


def test_the_dashboard_and_the_alerts_use_only_exported_metrics_and_labels(
    exported: dict[str, set[str]],
) -> None:
    available = exported
    for where, query in every_query():
        names = monitoring.metric_names(query)
        assert names, f"{where}: no metric in {query!r}"
        missing = names - set(available)
        assert not missing, f"{where} queries {missing}, which lockstep does not export"
        for metric, labels in monitoring.label_matchers(query).items():
            unknown = labels - available[metric]
            assert not unknown, f"{where}: {metric} has no label {unknown}"


def test_the_metric_name_lexer_finds_names_not_functions_labels_or_keywords() -> None:
    query = (
        'sum by (le, kind) (rate(a_seconds_bucket{kind="x", le!="1"}[5m])) / ignoring (le) '
        "b_total offset 5m and on (namespace) c unless d_info == bool 1"
    )
    assert monitoring.metric_names(query) == {"a_seconds_bucket", "b_total", "c", "d_info"}
    assert monitoring.label_matchers(query) == {"a_seconds_bucket": {"kind", "le"}}


def test_a_forgotten_object_leaves_no_series(exported: dict[str, set[str]]) -> None:
    metrics.forget("FeatureRelease", "hooks", "web")
    metrics.forget("DatabaseMigration", "hooks", "shop-db")
    left = [
        (sample.name, sample.labels)
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.labels.get("namespace") == "hooks"
    ]
    assert left == []


def test_the_chart_and_the_manifests_carry_the_same_dashboard_and_alerts() -> None:
    for path, text in monitoring.rendered().items():
        assert path.exists() and path.read_text() == text, (
            f"{path} drifted from monitoring/: run `python -m tests.env.monitoring`"
        )
    assert json.loads(monitoring.DASHBOARD.read_text())["uid"] == "lockstep-operator"
