"""`lockstep analyze`: the live database's facts and each pending statement's verdict in their
light; and the same as plain data for a DatabaseMigration's dry-run plan in status.

The target is read (one read-only transaction for the catalog, one query for sessions); with
`probe`, the pending statements also run on a schema-only scratch copy to observe their locks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lockstep.lint.engine import lint_set
from lockstep.lint.model import LintConfig, LintResult
from lockstep.migrations.source import Migration
from lockstep.postgres import connect

from . import scratch
from .live import LiveFacts, LiveLint, Session, read_live
from .probe import MigrationProbe, Observation, probe

if TYPE_CHECKING:
    from lockstep.api.migration import AnalysisStatus


@dataclass
class PendingMigration:
    migration: Migration
    lint: LintResult
    probe: MigrationProbe | None = None

    def observation(self, index: int) -> Observation | None:
        if self.probe is None:
            return None
        return next((o for o in self.probe.observations if o.index == index), None)


@dataclass
class Analysis:
    facts: LiveFacts
    applied: list[str]
    pending: list[PendingMigration] = field(default_factory=list)
    probe_error: str | None = None


def applied_versions(url: str) -> list[str]:
    from lockstep.migrations import ledger

    with connect(url, application_name="lockstep:analyze") as conn:
        return [row.version for row in ledger.applied(conn)]


def analyze(
    url: str,
    source: Sequence[Migration],
    config: LintConfig,
    *,
    run_probe: bool = False,
    server_url: str | None = None,
    replay: bool = False,
    long_seconds: float = 30.0,
) -> Analysis:
    """Facts of the target, and the pending migrations linted in their light (and probed)."""
    with connect(url, application_name="lockstep:analyze") as conn:
        facts = read_live(conn, long_seconds)
    applied = applied_versions(url)
    live_config = config.replace(pg_version=facts.version, live=facts.tables())
    ordered = sorted(source, key=lambda m: m.version)
    pending = [m for m in ordered if m.version not in set(applied)]
    results = lint_set([(m.up, m.origin or None) for m in pending], live_config, facts.file_state())
    analysis = Analysis(
        facts, applied, [PendingMigration(m, r) for m, r in zip(pending, results, strict=True)]
    )
    if run_probe and pending:
        history = [(m.up, m.origin or m.label) for m in ordered if m.version in set(applied)]
        with scratch.scratch_copy(
            url, server_url=server_url, migrations=history if replay else None
        ) as copy:
            probes = probe(
                copy, [(p.migration.version, p.lint.statements) for p in analysis.pending]
            )
        by_version = {p.version: p for p in probes}
        for item in analysis.pending:
            item.probe = by_version.get(item.migration.version)
            if item.probe is not None and item.probe.error:
                analysis.probe_error = f"{item.migration.label}: {item.probe.error}"
    return analysis


def verdict(item: PendingMigration, index: int) -> str:
    """One statement's verdict: its findings in the light of the live facts."""
    findings = [f for f in item.lint.findings if f.statement_index == index]
    if not findings:
        return "ok"
    worst = "error" if any(f.severity == "error" for f in findings) else findings[0].severity
    return f"{worst}: " + "; ".join(f"[{f.rule}] {f.message}" for f in findings)


def analysis_document(analysis: Analysis) -> dict[str, Any]:
    """JSON-ready, and safe for a status: no query text, no connection details."""
    facts = analysis.facts
    catalog = facts.catalog
    return {
        "serverVersion": f"{facts.version[0]}.{facts.version[1]}",
        "tables": [
            {
                "name": t.name,
                "rows": round(t.rows),
                "bytes": t.bytes,
                "indexes": [
                    {"name": i.name, "valid": i.valid, "bytes": i.bytes} for i in t.indexes
                ],
                "constraints": [
                    {"name": c.name, "kind": c.kind, "validated": c.validated}
                    for c in t.constraints
                ],
            }
            for t in catalog.tables
        ],
        "blockingSessions": [
            {
                "pid": s.pid,
                "application": s.application,
                "state": s.state,
                "transactionSeconds": round(s.seconds, 1),
            }
            for s in facts.sessions
        ],
        "appliedVersions": analysis.applied,
        "pending": [
            {
                "version": item.migration.version,
                "name": item.migration.name,
                "phase": item.lint.phase,
                "statements": [
                    _statement_document(item, statement.index, statement.line, statement.lock)
                    for statement in item.lint.statements
                ],
            }
            for item in analysis.pending
        ],
        "probeError": analysis.probe_error,
    }


def _statement_document(
    item: PendingMigration, index: int, line: int, rule_lock: str
) -> dict[str, Any]:
    observed = item.observation(index)
    document: dict[str, Any] = {
        "line": line,
        "lock": rule_lock,
        "verdict": verdict(item, index),
    }
    if observed is not None:
        document["observedLock"] = observed.lock if observed.observed else None
        document["observedRewrites"] = list(observed.rewrites)
        document["differences"] = observed.differences
        if observed.note:
            document["probeNote"] = observed.note
    return document


# ------------------------------------------------------------------ a dry run's status

MAX_TABLES = 20
MAX_SESSIONS = 10
MAX_STATEMENTS = 50
MAX_VERDICT = 400


def dry_run_analysis(
    live: LiveLint,
    migrations: Sequence[Migration],
    blocking: Sequence[Session] | None = None,
) -> AnalysisStatus:
    """The analysis a dry run writes to status: the server version, the tables the pending
    migrations touch with their sizes, the sessions that would block them (`blocking`, else
    those read with the facts) and each pending statement's verdict in the light of the
    facts, each list bounded. No statement text or query of another session is included."""
    from lockstep.api.migration import (
        AnalysisStatus,
        BlockingSession,
        LiveTableFacts,
        StatementVerdict,
    )

    facts = live.facts
    sizes = facts.tables()
    by_version = {m.version: m for m in migrations}
    pending = [
        PendingMigration(by_version[version], live.up[version])
        for version in live.pending
        if version in by_version and version in live.up
    ]
    touched: dict[str, LiveTableFacts] = {}
    verdicts: list[StatementVerdict] = []
    statements = 0
    for item in pending:
        for statement in item.lint.statements:
            statements += 1
            if len(verdicts) < MAX_STATEMENTS:
                text = verdict(item, statement.index)
                verdicts.append(
                    StatementVerdict(
                        version=item.migration.version,
                        line=statement.line,
                        lock=statement.lock,
                        verdict=text
                        if len(text) <= MAX_VERDICT
                        else text[: MAX_VERDICT - 3] + "...",
                    )
                )
            for name in statement.tables:
                table = sizes.find(name)
                if table is not None and table.qualified not in touched:
                    touched[table.qualified] = LiveTableFacts(
                        name=table.qualified, rows=round(table.rows), size_bytes=table.bytes
                    )
    sessions = list(facts.sessions if blocking is None else blocking)
    return AnalysisStatus(
        server_version=f"{facts.version[0]}.{facts.version[1]}",
        tables=list(touched.values())[:MAX_TABLES],
        blocking_sessions=[
            BlockingSession(
                pid=s.pid,
                application=s.application,
                state=s.state,
                transaction_seconds=round(s.seconds, 1),
            )
            for s in sessions[:MAX_SESSIONS]
        ],
        statements=verdicts,
        truncated=(
            len(touched) > MAX_TABLES or len(sessions) > MAX_SESSIONS or statements > MAX_STATEMENTS
        ),
    )
