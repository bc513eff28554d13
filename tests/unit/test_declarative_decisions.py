"""Declarative mode's decisions: a plan is shown, applied only with its hash, finished before
a new one is generated; what the ledger holds stays history."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lockstep.api.declarative import DeclarativeMigration, DeclarativeStatus
from lockstep.migrations.records import AppliedMigration
from lockstep.schema.declarative import (
    Generated,
    Source,
    Waiting,
    decide,
    desired_sql,
    needs_plan,
    plan_hash,
    versions_after,
)
from lockstep.schema.diff import GeneratedMigration

NOW = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
PLAN = Generated(
    [
        GeneratedMigration(
            "expand", "expand", True, "CREATE TABLE t (id bigint);\n", "DROP TABLE t;\n"
        ),
        GeneratedMigration("contract", "contract", True, "ALTER TABLE u DROP COLUMN a;\n", None),
    ],
    [("drop-column", "column u.a")],
)


def row(version: str, checksum: str = "c" * 64) -> AppliedMigration:
    return AppliedMigration(
        version, "old", checksum, "expand", True, 1, NOW, NOW, 1, 0, 1, "test", "0.1.0"
    )


def test_a_plan_waits_for_an_approval_that_names_its_hash() -> None:
    decision = decide(None, [], PLAN, None, False, NOW, "shop-db")
    assert isinstance(decision.outcome, Waiting)
    digest = plan_hash(PLAN.migrations)
    assert decision.status.plan_hash == digest
    assert f"lockstep.dev/approve-plan={digest}" in decision.outcome.message
    assert [m.version for m in decision.status.migrations] == ["20261130100000", "20261130100001"]
    assert decision.status.hazards == ["drop-column: column u.a"]


def test_an_approved_plan_becomes_the_migrations_to_apply() -> None:
    digest = plan_hash(PLAN.migrations)
    decision = decide(None, [row("001")], PLAN, digest, False, NOW, "shop-db")
    assert isinstance(decision.outcome, Source)
    migrations = decision.outcome.migrations
    assert [m.version for m in migrations] == ["001", "20261130100000", "20261130100001"]
    # the applied one is history: its recorded checksum stands in for its SQL
    assert migrations[0].checksum == "c" * 64
    assert [m.declared_phase for m in migrations[1:]] == ["expand", "contract"]
    assert decision.status.approved_hash == digest


def test_a_stale_approval_does_not_apply_a_changed_plan() -> None:
    decision = decide(None, [], PLAN, "0" * 20, False, NOW, "shop-db")
    assert isinstance(decision.outcome, Waiting)
    assert "is not the current plan" in decision.outcome.message


def test_the_approved_plan_is_finished_before_a_new_one() -> None:
    approved = [
        DeclarativeMigration(version="20261130100000", name="expand", phase="expand", up="x;"),
        DeclarativeMigration(version="20261130100001", name="contract", phase="contract", up="y;"),
    ]
    previous = DeclarativeStatus(approved_hash="abc", approved=approved)
    applied = [row("20261130100000")]
    assert not needs_plan(previous, applied)
    decision = decide(previous, applied, None, None, False, NOW, "shop-db")
    assert isinstance(decision.outcome, Source)
    assert [m.version for m in decision.outcome.migrations] == [
        "20261130100000",
        "20261130100001",
    ]
    assert "1 of 2 migrations applied" in (decision.status.message or "")
    assert needs_plan(previous, [*applied, row("20261130100001")])


def test_no_difference_is_in_sync() -> None:
    decision = decide(None, [row("001")], Generated(()), None, False, NOW, "shop-db")
    assert isinstance(decision.outcome, Source)
    assert decision.status.plan_hash == ""
    assert decision.status.message == "the database matches the desired schema"


def test_a_desired_schema_that_cannot_be_planned_stalls() -> None:
    decision = decide(None, [], Generated((), error="hazards: drop-table"), None, False, NOW, "x")
    assert isinstance(decision.outcome, Waiting) and decision.outcome.stalled


def test_a_dry_run_shows_the_plan_without_approval() -> None:
    decision = decide(None, [], PLAN, None, True, NOW, "shop-db")
    assert isinstance(decision.outcome, Source)
    assert (decision.status.message or "").startswith("dry run: plan ")
    assert decision.status.approved_hash is None


def test_versions_follow_every_applied_one() -> None:
    assert versions_after([], 1, NOW) == ["20261130100000"]
    assert versions_after(["001", "002"], 2, NOW) == ["20261130100000", "20261130100001"]
    assert versions_after(["20991231235959"], 2, NOW) == ["21000101000000", "21000101000001"]
    assert versions_after(["v5"], 2, NOW) == ["v5_0001", "v5_0002"]


def test_the_plan_keeps_its_versions_while_it_waits() -> None:
    first = decide(None, [], PLAN, None, False, NOW, "x")
    later = decide(first.status, [], PLAN, None, False, NOW.replace(hour=11), "x")
    assert [m.version for m in later.status.migrations] == [
        m.version for m in first.status.migrations
    ]


@pytest.mark.parametrize(
    ("data", "keys"),
    [({"b.sql": "2", "a.sql": "1", "README": "x"}, ["a.sql", "b.sql"]), ({}, [])],
)
def test_desired_sql_is_the_sql_keys_in_order(data: dict[str, str], keys: list[str]) -> None:
    assert [key for key, _ in desired_sql(data)] == keys
