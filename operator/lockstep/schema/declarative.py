"""Declarative mode: a DatabaseMigration names a desired schema; the operator shows the plan
that would reach it, and applies it through the same engine (lint, backup, ledger, bounded
locks, contract gate) only once an annotation carries that plan's hash.

The decisions are pure functions of (the generated plan, the status, the annotation, the
ledger). The plan is applied as versioned migrations: the approved plan's migrations (kept in
status), plus a placeholder for every migration the ledger already holds, whose checksum is
the recorded one, so the engine's drift check passes and nothing is applied twice. While an
approved plan is not fully applied (its contract migrations wait for the releases), no new plan
is generated: the approved one is finished first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from lockstep.api.declarative import DeclarativeMigration, DeclarativeStatus
from lockstep.migrations.records import AppliedMigration
from lockstep.migrations.source import Migration

from .diff import GeneratedMigration


@dataclass(frozen=True)
class Source:
    """Apply these migrations (the versioned flow takes it from here)."""

    migrations: list[Migration]


@dataclass(frozen=True)
class Waiting:
    """Nothing to apply now: say why."""

    reason: str
    message: str
    stalled: bool = False
    delay: float = 30.0


@dataclass(frozen=True)
class Generated:
    """A plan generated now (empty when the database matches the desired schema)."""

    migrations: Sequence[GeneratedMigration]
    hazards: Sequence[tuple[str, str]] = ()
    error: str | None = None
    """Why no plan could be generated (hazards not allowed, bad SQL, no CREATEDB...)."""


@dataclass
class Decision:
    outcome: Source | Waiting
    status: DeclarativeStatus = field(default_factory=DeclarativeStatus)


def desired_sql(data: Mapping[str, str]) -> list[tuple[str, str]]:
    """The *.sql keys of the desired-schema ConfigMap, in key order."""
    return [(key, data[key]) for key in sorted(data) if key.endswith(".sql")]


def plan_hash(migrations: Sequence[GeneratedMigration]) -> str:
    """Changes with any statement of the plan (so a changed plan needs a new approval)."""
    body = [[m.name, m.phase, m.up, m.down] for m in migrations]
    return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()[:20]


def versions_after(applied: Sequence[str], count: int, now: datetime) -> list[str]:
    """`count` versions after every applied version (lexically, as lockstep sorts them): UTC
    timestamps (yyyymmddHHMMSS) one second apart from now, or from just after the latest
    applied timestamp when that is later; after a latest version that is no timestamp and
    sorts after one, that version with a counter."""
    start = now.astimezone(UTC).replace(microsecond=0)
    latest = max(applied, default="")
    if latest >= start.strftime("%Y%m%d%H%M%S"):
        try:
            start = datetime.strptime(latest, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            start += timedelta(seconds=1)
        except ValueError:
            return [f"{latest}_{i + 1:04d}" for i in range(count)]
    return [(start + timedelta(seconds=i)).strftime("%Y%m%d%H%M%S") for i in range(count)]


def placeholders(applied: Sequence[AppliedMigration], keep: set[str]) -> list[Migration]:
    """Applied migrations the approved plan does not hold: their recorded checksum stands in
    for their SQL (they are history; nothing of them runs again)."""
    return [
        Migration(
            version=row.version,
            name=row.name,
            up=f"-- applied earlier (checksum {row.checksum})\n",
            origin=f"ledger row {row.version}",
            recorded_checksum=row.checksum,
        )
        for row in applied
        if row.version not in keep
    ]


def as_migrations(records: Sequence[DeclarativeMigration]) -> list[Migration]:
    return [
        Migration(
            version=record.version,
            name=record.name,
            up=record.up,
            down=record.down,
            declared_phase="contract" if record.phase == "contract" else "expand",
            origin=f"declarative plan {record.version}_{record.name}",
            down_origin=f"declarative plan {record.version}_{record.name} (down)",
        )
        for record in records
    ]


def decide(
    previous: DeclarativeStatus | None,
    applied: Sequence[AppliedMigration],
    generate: Generated | None,
    approved: str | None,
    dry_run: bool,
    now: datetime,
    name: str,
) -> Decision:
    """What to do this pass. `generate` is None when the caller skipped generating because
    an approved plan is still being applied (see `needs_plan`)."""
    status = (previous or DeclarativeStatus()).model_copy(deep=True)
    done = {row.version for row in applied}
    if status.approved and not all(m.version in done for m in status.approved):
        keep = {m.version for m in status.approved}
        status.message = (
            f"applying the approved plan {status.approved_hash}: "
            f"{sum(m.version in done for m in status.approved)} of {len(status.approved)} "
            "migrations applied"
        )
        return Decision(
            Source(placeholders(applied, keep) + as_migrations(status.approved)), status
        )
    if generate is None:
        raise ValueError("a plan must be generated when no approved plan is in progress")
    history = placeholders(applied, set())
    if generate.error is not None:
        status.plan_hash, status.migrations, status.hazards = "", [], []
        status.message = generate.error
        return Decision(Waiting("InvalidDesiredSchema", generate.error, stalled=True), status)
    if not generate.migrations:
        status.plan_hash, status.migrations, status.hazards = "", [], []
        status.message = "the database matches the desired schema"
        return Decision(Source(history), status)
    digest = plan_hash(generate.migrations)
    if status.plan_hash == digest and len(status.migrations) == len(generate.migrations):
        versions = [m.version for m in status.migrations]  # the plan shown keeps its versions
    else:
        versions = versions_after([row.version for row in applied], len(generate.migrations), now)
    records = [
        DeclarativeMigration(version=version, name=m.name, phase=m.phase, up=m.up, down=m.down)
        for version, m in zip(versions, generate.migrations, strict=True)
    ]
    status.plan_hash = digest
    status.migrations = records
    status.hazards = [f"{kind}: {what}" for kind, what in generate.hazards]
    summary = ", ".join(f"{r.name} ({r.phase})" for r in records)
    if dry_run:
        status.message = f"dry run: plan {digest}: {summary}"
        return Decision(Source(history + as_migrations(records)), status)
    if approved != digest:
        how = (
            f"kubectl annotate databasemigration {name} lockstep.dev/approve-plan={digest} "
            "--overwrite"
        )
        stale = f" (the approved {approved} is not the current plan)" if approved else ""
        status.message = f"plan {digest} waits for approval{stale}: {summary}; approve: {how}"
        return Decision(Waiting("WaitingForApproval", status.message), status)
    status.approved_hash = digest
    status.approved = records
    status.message = f"applying the approved plan {digest}"
    return Decision(Source(history + as_migrations(records)), status)


def needs_plan(previous: DeclarativeStatus | None, applied: Sequence[AppliedMigration]) -> bool:
    """False while an approved plan is not fully applied (it is finished first)."""
    if previous is None or not previous.approved:
        return True
    done = {row.version for row in applied}
    return all(m.version in done for m in previous.approved)


# ------------------------------------------------------------------------------ one pass


def plan_pass(
    *,
    url: str,
    desired: Mapping[str, str],
    allow_hazards: Sequence[str],
    server_url: str | None,
    previous: DeclarativeStatus | None,
    approved: str | None,
    dry_run: bool,
    name: str,
) -> Decision:
    """Read the ledger, generate the plan when one is needed, and decide (the I/O around
    `decide`: the database and scratch databases; the ConfigMap data is given)."""
    import tempfile
    from pathlib import Path

    from lockstep.migrations import engine
    from lockstep.postgres import DatabaseError

    from .diff import DiffError, HazardError
    from .generate import generate
    from .scratch import ScratchError

    applied = engine.read_applied(url, application_name="lockstep-operator")
    generated: Generated | None = None
    if needs_plan(previous, applied):
        files = desired_sql(desired)
        if not files:
            generated = Generated((), error="the desired-schema ConfigMap has no *.sql key")
        else:
            with tempfile.TemporaryDirectory(prefix="lockstep-desired-") as directory:
                paths = []
                for key, text in files:
                    path = Path(directory) / key.replace("/", "_")
                    path.write_text(text, encoding="utf-8")
                    paths.append(path)
                try:
                    result = generate(url, paths, allow=allow_hazards, server_url=server_url)
                    generated = Generated(result.migrations, result.hazards)
                except HazardError as error:
                    kinds = ", ".join(sorted({kind for kind, _ in error.hazards}))
                    generated = Generated(
                        (),
                        error=f"{error}; in a DatabaseMigration, list them in "
                        f"spec.source.desiredSchema.allowHazards: [{kinds}]",
                    )
                except (DiffError, ScratchError, DatabaseError) as error:
                    generated = Generated((), error=str(error))
    return decide(previous, applied, generated, approved, dry_run, datetime.now(UTC), name)
