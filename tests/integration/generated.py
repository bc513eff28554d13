"""Applying what `lockstep diff` generated, the way lockstep applies any migration."""

from __future__ import annotations

from pathlib import Path

from lockstep.api.migration import MigrationPolicy
from lockstep.migrations import engine
from lockstep.migrations.linting import lint_config, lint_source
from lockstep.migrations.source import from_directory

POLICY = MigrationPolicy(lock_timeout="5s", retry_backoff="50ms", runner_lock_timeout="10s")


def apply_generated(url: str, directory: Path) -> None:
    """Through lockstep's own engine: lint (errors refuse), ledger, bounded locks."""
    source = from_directory(directory)
    linted = lint_source(source, lint_config())
    errors = {
        version: [f"{f.rule}: {f.message}" for f in result.findings if f.severity == "error"]
        for version, result in linted.up.items()
        if result.has_errors
    }
    assert errors == {}
    engine.apply(
        url,
        source,
        up_lint=linted.up,
        down_lint=linted.down,
        policy=POLICY,
        applied_by="test",
        allow_contract=True,
    )
