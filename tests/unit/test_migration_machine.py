"""The DatabaseMigration's decisions with several releases on one database: each has its own
request and hold, and nothing one release does undoes what another needs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.unit.model import ledger_row, migration_spec, source

from lockstep.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from lockstep.api.protocol import AckOutcome, DatabaseRequest, SchemaClaim
from lockstep.migrations import machine
from lockstep.migrations.machine import Observed, ReleaseClaim

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def seen(applied: list[str], claims: list[ReleaseClaim], **overrides: Any) -> Observed:
    migrations, linted, digest = source()
    by_version = {m.version: m for m in migrations}
    return Observed(
        now=NOW,
        name="db",
        uid="u",
        generation=1,
        migrations=migrations,
        linted=linted,
        source_hash=digest,
        applied=[ledger_row(by_version[v], "expand", NOW) for v in applied],
        jobs={},
        job_messages={},
        claims=claims,
        **overrides,
    )


def claim(
    release: str, needs: str | None, request: str | None = None, rid: str = ""
) -> ReleaseClaim:
    wanted = (
        DatabaseRequest(id=rid or f"{release}/1", mode="down", to_version=request, requested_at="t")
        if request
        else None
    )
    return ReleaseClaim(release, True, SchemaClaim(migration="db", needs=needs, request=wanted))


def spec(**overrides: Any) -> DatabaseMigrationSpec:
    return DatabaseMigrationSpec.model_validate({**migration_spec(), **overrides})


def decide(
    status: DatabaseMigrationStatus, observed: Observed, **spec_overrides: Any
) -> machine.Decision:
    return machine.decide(spec(policy={"backup": "never"}, **spec_overrides), status, observed)


def test_two_releases_have_their_own_requests_and_answers() -> None:
    status = DatabaseMigrationStatus()
    claims = [claim("api", "001", request="001"), claim("web", "002", request="002")]
    first = decide(status, seen(["001", "002"], claims))
    # the oldest request first; web's "roll back to 002" does not touch api's
    acks = {a.release: a for a in first.status.requests}
    assert "api" in acks
    second = decide(first.status, seen(["001", "002"], claims))
    acks = {a.release: a for a in second.status.requests}
    assert acks["web"].outcome == AckOutcome.SUCCEEDED  # already at 002: nothing to do
    assert acks["api"].outcome == AckOutcome.REFUSED  # web still needs 002
    assert "web (needs 002)" in acks["api"].message


def test_one_release_withdrawing_its_request_keeps_the_other_hold() -> None:
    claims = [claim("api", "001", request="001"), claim("web", "001", request="001")]
    status = DatabaseMigrationStatus()
    for _ in range(3):
        status = decide(status, seen(["001"], claims)).status
    assert {h.release for h in status.gate.holds} == {"api", "web"}  # type: ignore[union-attr]
    # web retries: its request goes, api's hold stays, so the database stays at 001
    claims = [claim("api", "001", request="001"), claim("web", "001")]
    decision = decide(status, seen(["001"], claims))
    assert [h.release for h in decision.status.gate.holds] == ["api"]  # type: ignore[union-attr]
    assert decision.run is None and decision.status.phase == "Ready"
    assert "held by rollback: 001 by api" in (decision.status.message or "")


def test_a_request_answered_once_is_not_executed_again() -> None:
    claims = [claim("web", "001", request="001", rid="web/7")]
    status = decide(DatabaseMigrationStatus(), seen(["001", "002"], claims)).status
    assert status.operation is not None
    done = machine.after_run(
        spec(policy={"backup": "never"}),
        status,
        seen(["001"], claims),
        machine.RunOutcome(),
    )
    again = decide(done.status, seen(["001"], claims))
    assert again.run is None
    assert [(a.id, a.outcome) for a in again.status.requests] == [("web/7", AckOutcome.SUCCEEDED)]


def test_a_new_request_of_the_same_release_replaces_its_answer_only() -> None:
    claims = [claim("web", "001", request="001", rid="web/7"), claim("api", "001")]
    status = DatabaseMigrationStatus()
    for _ in range(2):
        status = decide(status, seen(["001"], claims)).status
    claims = [claim("web", "001", request="001", rid="web/8"), claim("api", "001")]
    status = decide(status, seen(["001"], claims)).status
    assert [a.id for a in status.requests] == ["web/8"]


def test_a_backup_is_named_by_a_serial_that_only_increases() -> None:
    claims = [claim("web", "001")]
    status = DatabaseMigrationStatus()
    names = []
    for _ in range(3):
        decision = machine.decide(
            spec(policy={"backup": "always"}, targetVersion="002"), status, seen(["001"], claims)
        )
        assert decision.status.operation is not None
        names.append(decision.status.operation.backup)
        status = decision.status.model_copy(update={"operation": None})
    assert len(set(names)) == 3
