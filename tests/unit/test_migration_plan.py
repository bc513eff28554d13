"""The plan: what an apply would do, decided from source, ledger, target, lint and policy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lockstep.api.migration import MigrationPolicy
from lockstep.lint import LintConfig
from lockstep.migrations.linting import lint_source
from lockstep.migrations.plan import DriftError, Plan, PlanError, make_plan
from lockstep.migrations.records import AppliedMigration
from lockstep.migrations.source import Migration

USERS = Migration(
    "001",
    "users",
    "CREATE TABLE users (id bigint PRIMARY KEY, name text);",
    "DROP TABLE users;",
)
EMAIL = Migration(
    "002",
    "email",
    "ALTER TABLE users ADD COLUMN email text;",
    "ALTER TABLE users DROP COLUMN email;",
)
EMAIL_INDEX = Migration(
    "003",
    "email_index",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);",
    "DROP INDEX CONCURRENTLY IF EXISTS users_email_idx;",
)
DROP_NAME = Migration(
    "004",
    "drop_name",
    "ALTER TABLE users DROP COLUMN name;",
    "ALTER TABLE users ADD COLUMN name text;",
)
NICKNAME = Migration("005", "nickname", "ALTER TABLE users ADD COLUMN nickname text;")

# Contract migrations are expected in these tests; the drop rules would block them otherwise.
LINT = LintConfig(ignore=frozenset({"ban-drop-column", "ban-drop-table"}))


def applied(*migrations: Migration, checksum: str | None = None) -> list[AppliedMigration]:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        AppliedMigration(
            version=m.version,
            name=m.name,
            checksum=checksum or m.checksum,
            phase="expand",
            transactional=True,
            statements=1,
            started_at=moment,
            finished_at=moment,
            duration_ms=5,
            lock_wait_ms=0,
            attempts=1,
            applied_by="test",
            lockstep_version="0.1.0",
        )
        for m in migrations
    ]


def plan_for(
    source: list[Migration],
    ledger: list[AppliedMigration] | None = None,
    *,
    target: str | None = None,
    policy: MigrationPolicy | None = None,
    allow_contract: bool = False,
    lint: LintConfig = LINT,
) -> Plan:
    linted = lint_source(source, lint)
    return make_plan(
        source,
        ledger or [],
        target=target,
        up_lint=linted.up,
        down_lint=linted.down,
        policy=policy or MigrationPolicy(),
        allow_contract=allow_contract,
    )


def versions(steps: object) -> list[str]:
    return [step.version for step in steps]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- direction


def test_a_fresh_database_gets_every_migration_up_to_the_latest() -> None:
    plan = plan_for([USERS, EMAIL, EMAIL_INDEX])
    assert plan.direction == "up"
    assert plan.current_version is None
    assert plan.target_version == "003"
    assert versions(plan.steps) == ["001", "002", "003"]
    assert all(step.direction == "up" for step in plan.steps)


def test_a_target_stops_the_apply_at_that_version() -> None:
    plan = plan_for([USERS, EMAIL, EMAIL_INDEX], target="002")
    assert versions(plan.steps) == ["001", "002"]
    assert plan.target_version == "002"


def test_only_migrations_after_the_current_version_are_pending() -> None:
    plan = plan_for([USERS, EMAIL, EMAIL_INDEX], applied(USERS))
    assert plan.current_version == "001"
    assert versions(plan.steps) == ["002", "003"]


def test_nothing_to_do_when_the_ledger_is_at_the_target() -> None:
    plan = plan_for([USERS, EMAIL], applied(USERS, EMAIL))
    assert plan.direction == "none"
    assert plan.steps == ()
    assert plan.up_to_date
    assert plan.verdict.startswith("up to date at 002")
    assert not plan.backup_needed


def test_a_lower_target_reverts_with_down_migrations_newest_first() -> None:
    plan = plan_for([USERS, EMAIL, EMAIL_INDEX], applied(USERS, EMAIL, EMAIL_INDEX), target="001")
    assert plan.direction == "down"
    assert versions(plan.steps) == ["003", "002"]
    assert all(step.direction == "down" for step in plan.steps)
    assert plan.steps[0].sql == EMAIL_INDEX.down
    assert plan.verdict.startswith("rollback: reverts 003, 002")


def test_a_rollback_needs_every_down_it_crosses() -> None:
    no_down = Migration("002", "email", EMAIL.up)
    with pytest.raises(PlanError, match=r"cannot roll back to 001: 002 \(email\) has no down"):
        plan_for([USERS, no_down, EMAIL_INDEX], applied(USERS, no_down, EMAIL_INDEX), target="001")


def test_an_unknown_target_is_an_error_listing_known_versions() -> None:
    with pytest.raises(
        PlanError, match=r"unknown target version '009': known versions are 001, 002"
    ):
        plan_for([USERS, EMAIL], target="009")


def test_a_pending_migration_older_than_the_current_version_is_refused() -> None:
    with pytest.raises(PlanError, match=r"002 \(email\) is not applied, but the later 003 is"):
        plan_for([USERS, EMAIL, EMAIL_INDEX], applied(USERS, EMAIL_INDEX))


# ---------------------------------------------------------------------------------- drift


def test_an_edited_applied_migration_is_drift_naming_the_version() -> None:
    edited = Migration("001", "users", USERS.up + "\n-- tidy up", USERS.down, origin="001.up.sql")
    with pytest.raises(DriftError) as failure:
        plan_for([edited, EMAIL], applied(USERS))
    (drift,) = failure.value.drift
    assert (drift.version, drift.kind) == ("001", "changed")
    assert "migration 001 (users) was applied with checksum" in str(failure.value)
    assert "001.up.sql now has" in str(failure.value)


def test_an_applied_migration_missing_from_the_source_is_drift() -> None:
    with pytest.raises(DriftError, match=r"migration 001 \(users\) is applied in the database but"):
        plan_for([EMAIL], applied(USERS))


def test_drift_blocks_a_rollback_too() -> None:
    with pytest.raises(DriftError):
        plan_for([USERS, EMAIL], applied(USERS, EMAIL, checksum="0" * 64), target="001")


# ------------------------------------------------------------------------------ contract


def test_apply_stops_before_the_first_contract_migration() -> None:
    plan = plan_for([USERS, EMAIL, DROP_NAME, NICKNAME], applied(USERS))
    assert versions(plan.steps) == ["002"]
    assert versions(plan.held_back) == ["004", "005"]
    assert plan.blocked_contract == ("004",)
    assert plan.held_back[0].phase == "contract"
    assert "contract migration 004" in plan.verdict
    assert "held back" in plan.verdict


def test_contract_migrations_apply_when_the_caller_allows_it() -> None:
    plan = plan_for([USERS, EMAIL, DROP_NAME, NICKNAME], applied(USERS), allow_contract=True)
    assert versions(plan.steps) == ["002", "004", "005"]
    assert plan.held_back == ()
    assert plan.verdict.startswith("breaking: contract migration 004 will be applied")


def test_contract_migrations_apply_when_the_policy_allows_breaking_changes() -> None:
    plan = plan_for([USERS, DROP_NAME], applied(USERS), policy=MigrationPolicy(allow_breaking=True))
    assert versions(plan.steps) == ["004"]


def test_a_declared_phase_wins_over_the_lint() -> None:
    declared = Migration("002", "email", EMAIL.up, declared_phase="contract")
    plan = plan_for([USERS, declared], applied(USERS))
    assert plan.steps == ()
    assert plan.held_back[0].phase == "contract"
    assert plan.held_back[0].phase_source == "declared"


def test_expand_only_changes_are_compatible() -> None:
    plan = plan_for([USERS, EMAIL, EMAIL_INDEX], applied(USERS))
    assert [step.phase for step in plan.steps] == ["expand", "expand"]
    assert plan.verdict.startswith("compatible: 2 expand migrations (002, 003)")


# -------------------------------------------------------------------------------- backup


def test_auto_backup_is_not_needed_for_purely_additive_changes() -> None:
    plan = plan_for([USERS, EMAIL], applied(USERS))
    assert not plan.backup_needed


def test_auto_backup_is_needed_before_anything_not_purely_additive() -> None:
    plan = plan_for([USERS, DROP_NAME], applied(USERS), allow_contract=True)
    assert plan.backup_needed


def test_auto_backup_is_needed_before_a_rollback_that_drops_things() -> None:
    plan = plan_for([USERS, EMAIL], applied(USERS, EMAIL), target="001")
    assert plan.backup_needed


def test_backup_always_and_never() -> None:
    always = plan_for([USERS, EMAIL], applied(USERS), policy=MigrationPolicy(backup="always"))
    never = plan_for(
        [USERS, DROP_NAME],
        applied(USERS),
        policy=MigrationPolicy(backup="never"),
        allow_contract=True,
    )
    nothing_to_do = plan_for([USERS], applied(USERS), policy=MigrationPolicy(backup="always"))
    assert always.backup_needed
    assert not never.backup_needed
    assert not nothing_to_do.backup_needed


def test_the_backup_decision_only_counts_what_is_applied_now() -> None:
    plan = plan_for([USERS, EMAIL, DROP_NAME], applied(USERS))
    assert versions(plan.held_back) == ["004"]
    assert not plan.backup_needed


# ----------------------------------------------------------------------- statements, locks


def test_each_statement_carries_its_lock_and_transactional_flag() -> None:
    plan = plan_for([USERS, EMAIL, EMAIL_INDEX], applied(USERS))
    add_column, build_index = plan.steps
    (statement,) = add_column.statements
    assert statement.lock == "ACCESS EXCLUSIVE"
    assert statement.transactional
    assert add_column.transactional
    (index,) = build_index.statements
    assert index.lock == "SHARE UPDATE EXCLUSIVE"
    assert not index.transactional
    assert index.concurrent_index == "users_email_idx"
    assert not build_index.transactional
    assert build_index.locks == ("SHARE UPDATE EXCLUSIVE",)


def test_a_migration_mixing_concurrent_and_transactional_statements_must_be_split() -> None:
    mixed = Migration(
        "002",
        "mixed",
        "ALTER TABLE users ADD COLUMN email text;\n"
        "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n",
    )
    with pytest.raises(PlanError) as failure:
        plan_for([USERS, mixed], applied(USERS))
    message = str(failure.value)
    assert "migration 002 (mixed) mixes statements that cannot run in a transaction" in message
    assert "line 2: CREATE INDEX CONCURRENTLY" in message
    assert "line 1: ALTER TABLE users ADD COLUMN email" in message
    assert "split it into separate migrations" in message


def test_session_settings_may_precede_a_concurrent_index_build() -> None:
    tuned = Migration(
        "003",
        "email_index",
        "SET statement_timeout = '1h';\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n",
    )
    plan = plan_for([USERS, EMAIL, tuned], applied(USERS, EMAIL))
    (step,) = plan.steps
    assert not step.transactional
    assert len(step.statements) == 2


def test_transaction_control_in_a_migration_is_refused() -> None:
    wrapped = Migration("002", "email", "BEGIN;\nALTER TABLE users ADD COLUMN email text;\nCOMMIT;")
    with pytest.raises(
        PlanError, match=r"migration 002 \(email\) has transaction control at line 1"
    ):
        plan_for([USERS, wrapped], applied(USERS))


def test_a_migration_without_statements_is_refused() -> None:
    scaffold = Migration("002", "email", "-- 002_email: up\n-- write the change here\n")
    with pytest.raises(PlanError, match=r"migration 002 \(email\) has no SQL statements"):
        plan_for([USERS, scaffold], applied(USERS))


def test_lint_errors_are_carried_by_the_step_and_block_it() -> None:
    blocking = Migration("002", "email_index", "CREATE INDEX users_name_idx ON users (name);")
    plan = plan_for([USERS, blocking], applied(USERS))
    (step,) = plan.steps
    assert any("require-concurrent-index-creation" in error for error in step.lint_errors)
    assert plan.lint_blocked == (step,)


def test_statement_summaries_are_one_line_and_short() -> None:
    long_statement = Migration(
        "002",
        "long",
        "ALTER TABLE users\n    ADD COLUMN "
        + ", ADD COLUMN ".join(f"c{i} text" for i in range(40))
        + ";",
    )
    plan = plan_for([USERS, long_statement], applied(USERS))
    summary = plan.steps[0].statements[0].summary
    assert "\n" not in summary
    assert len(summary) <= 120
    assert summary.endswith("…")


def test_lint_errors_in_a_held_back_migration_block_too() -> None:
    blocking = Migration("005", "index", "CREATE INDEX users_nick_idx ON users (nickname);")
    plan = plan_for([USERS, EMAIL, DROP_NAME, blocking], applied(USERS, EMAIL))
    assert versions(plan.steps) == []
    assert versions(plan.held_back) == ["004", "005"]
    assert [step.version for step in plan.lint_blocked] == ["005"]


def test_a_lint_error_above_the_target_does_not_block() -> None:
    blocking = Migration("005", "index", "CREATE INDEX users_nick_idx ON users (nickname);")
    plan = plan_for([USERS, EMAIL, EMAIL_INDEX, blocking], applied(USERS), target="003")
    assert plan.lint_blocked == ()
