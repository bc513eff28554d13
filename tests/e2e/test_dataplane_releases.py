"""Releases of the real sample application under real load, judged by counts: every request the
load generator sent and every write it saw acknowledged, checked against PostgreSQL.

The pods run examples/shop as processes; the load generator sends 100 requests/s (30 % writes)
through the router, which follows the EndpointSlices the real kube-controller-manager computes.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import psycopg
import pytest
from tests.e2e.dataplane import BUGGY, V1, V2, ShopApp
from tests.e2e.releases import APP, Change, at_step
from tests.env.loadgen import LoadReport
from tests.env.operator_runner import OperatorProcess

pytestmark = pytest.mark.cluster


def columns(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'orders' ORDER BY 1"
            )
        ]


def selector_changes(shop: ShopApp) -> list[Change]:
    """The versions of the Service that changed its colour, in order."""
    changes: list[Change] = []
    for change in shop.timeline.of("Service", APP):
        if not changes or changes[-1].selector_color != change.selector_color:
            changes.append(change)
    return changes


def assert_no_failure_and_no_loss(shop: ShopApp, report: LoadReport) -> None:
    lost = report.lost_writes(shop.database_url)
    assert not report.failed, (
        f"{shop.verdict(report)}; failures:\n{report.describe_failures()}\n"
        f"steps: {shop.timeline.steps()}"
    )
    assert not lost, f"{len(lost)} acknowledged writes are not in the database: {lost[:3]}"
    assert report.downtime_seconds() == 0, f"no endpoint during {report.outages}"


def test_blue_green_with_expand_switch_scale_down_and_contract_fails_no_request_and_loses_no_write(
    shop: ShopApp,
) -> None:
    shop.go_live(V1, ("001",))
    shop.start_load(rps=100, wait_for="v1")
    shop.release(V2, ("001", "002", "003"), contract="003")
    shop.wait_for_phase("Ready", release="v2", timeout=180)
    shop.wait_until_served_by("v2")
    report = shop.stop_load()

    assert_no_failure_and_no_loss(shop, report)
    served = report.served_by_version()
    assert served["v1"] > 100 and served["v2"] > 100, shop.verdict(report)
    steps = shop.timeline.steps()
    assert steps.index("Switch") < steps.index("ScaleDown") < steps.index("Contract"), steps
    assert columns(shop.database_url) == ["created_at", "id", "item", "note", "quantity", "ref"]
    assert shop.replicas() == {"blue": 0, "green": 2}
    with psycopg.connect(shop.database_url) as conn:
        notes = conn.execute("SELECT count(*) FROM orders WHERE note = 'from v2'").fetchone()
    assert notes is not None and notes[0] > 0  # v2 wrote the column the expand added


def test_the_buggy_version_is_rolled_back_on_its_real_errors_which_are_all_its_own(
    shop: ShopApp,
) -> None:
    shop.go_live(V1, ("001",))
    shop.start_load(rps=100, wait_for="v1")
    shop.release(BUGGY, ("001", "002"))
    status = shop.wait_for_phase("RolledBack", timeout=180)
    report = shop.stop_load()

    assert "error-ratio" in status["history"][0]["reason"], status["history"][0]
    assert report.failed, f"the buggy version failed no request: {shop.verdict(report)}"
    assert set(report.failed_by_version()) == {"v3"}, report.describe_failures()
    assert {r["code"] for r in report.failed} == {500}
    assert all("UndefinedColumn" in r["error"] for r in report.failed)
    assert not report.lost_writes(shop.database_url)
    assert report.downtime_seconds() == 0
    # traffic is back: nothing fails once the selector points at blue again
    back = next(c for c in selector_changes(shop)[2:] if c.selector_color == "blue")
    first = report.first_failure()
    assert first is not None
    reaction = back.at - first
    print(f"rollback reaction: first failed request -> selector back in {reaction:.2f}s")
    assert 0 < reaction < 30, f"first failure at {first}, selector back at {back.at}"
    late = [r for r in report.failed if r["t"] > back.at + 2.0]  # router sync + in flight
    assert not late, f"requests failed after traffic went back: {late[:3]}"


def test_an_operator_killed_during_the_switch_fails_no_request_and_loses_no_write(
    shop: ShopApp, operator: OperatorProcess
) -> None:
    shop.go_live(V1, ("001",))
    shop.start_load(rps=100, wait_for="v1")
    killed = shop.timeline.when(at_step("Switch", release="v2"), operator.kill)
    shop.release(V2, ("001", "002"))
    killed.wait(timeout=120)
    operator.start()
    shop.wait_for_phase("Ready", release="v2", timeout=180)
    shop.wait_until_served_by("v2")
    report = shop.stop_load()

    assert_no_failure_and_no_loss(shop, report)
    assert [c.selector_color for c in selector_changes(shop)][-2:] == ["blue", "green"]


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def discarded_writes(tree: Any) -> dict[str, Any] | None:
    """The first `discardedWrites` window ({start, end}) anywhere in a status."""
    if isinstance(tree, dict):
        window = tree.get("discardedWrites")
        if isinstance(window, dict):
            return window
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            found = discarded_writes(item)
            if found is not None:
                return found
    return None


def reported_window(shop: ShopApp) -> tuple[list[float], str]:
    """The times the DatabaseMigration reports for the writes its restore discarded: its
    status's `discardedWrites` window, else the times in what its status and Events say."""
    dbm = shop.k.status("dbm", "shop-db")
    window = discarded_writes(dbm)
    if window is not None:
        return [epoch(window["start"]), epoch(window["end"])], f"discardedWrites {window}"
    texts = [str((dbm.get("lastRequest") or {}).get("outcome", ""))]
    texts += [
        e["message"]
        for e in shop.k.events("shop-db")
        if "discard" in e["message"] or "lost" in e["message"]
    ]
    for text in texts:
        found = [epoch(t) for t in TIMESTAMP.findall(text)]
        if found:
            return found, text
    return [], " / ".join(texts)


def test_a_restore_rollback_reports_the_window_of_writes_it_discards_and_the_count_matches(
    shop: ShopApp,
) -> None:
    shop.go_live(V1, ("001",))
    shop.start_load(rps=100, wait_for="v1")
    shop.release(BUGGY, ("001", "002"), rollback={"automatic": True, "database": "restore"})
    shop.wait_for_phase("RolledBack", timeout=180)

    def restore_reported() -> bool:
        dbm = shop.k.status("dbm", "shop-db")
        return discarded_writes(dbm) is not None or "restore" in str(dbm.get("lastRequest"))

    shop.k.wait_for("the restore to be reported", restore_reported, timeout=120)
    shop.wait_until_served_by("v1", count=50)
    report = shop.stop_load()

    lost = report.lost_writes(shop.database_url)
    assert lost, f"the restore discarded no acknowledged write: {shop.verdict(report)}"
    times, text = reported_window(shop)
    lost_span = (min(r["t"] for r in lost), max(r["t"] + r["ms"] / 1000 for r in lost))
    evidence = (
        f"{len(lost)} acknowledged writes lost, sent between "
        f"{datetime.fromtimestamp(lost_span[0]).isoformat()} and "
        f"{datetime.fromtimestamp(lost_span[1]).isoformat()} (local time); "
        f"the restore reports: {text!r}"
    )
    assert len(times) >= 2, (
        f"the restore must report where its window of discarded writes ends; {evidence}"
    )
    start, end = times[0], times[1]

    def within(record: dict[str, Any]) -> bool:  # sent and answered inside the window
        return start <= record["t"] and record["t"] + record["ms"] / 1000 <= end

    def outside(record: dict[str, Any]) -> bool:  # answered before it, or sent after it
        return record["t"] + record["ms"] / 1000 < start or record["t"] > end

    inside = [r for r in report.acknowledged if within(r)]
    lost_refs = {r["ref"] for r in lost}
    assert all(r["ref"] in lost_refs for r in inside), (
        f"a write inside the window survived; {evidence}"
    )
    stray = [r for r in lost if outside(r)]
    assert not stray, f"{len(stray)} lost writes lie outside the reported window; {evidence}"
    ambiguous = [r for r in report.acknowledged if not within(r) and not outside(r)]
    assert len(inside) <= len(lost) <= len(inside) + len(ambiguous), evidence
