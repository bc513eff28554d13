"""Linting a whole migration source: every up, and every down, with one configuration."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lockstep.api.migration import LintPolicy
from lockstep.lint.checks.base import FileState
from lockstep.lint.engine import lint_set, lint_sql
from lockstep.lint.model import LintConfig, LintResult
from lockstep.postgres import Connection

from .source import Migration

if TYPE_CHECKING:
    from lockstep.schema.live import LiveLint


@dataclass(frozen=True)
class LintedSource:
    """Lint results by version: `up` for every migration, `down` for those that have one."""

    up: dict[str, LintResult]
    down: dict[str, LintResult]
    live: LiveLint | None = None
    """The live facts the pending migrations were linted in, when read from the database."""

    @property
    def has_errors(self) -> bool:
        """Whether any up migration has error-level findings (downs never block)."""
        return any(result.has_errors for result in self.up.values())


def lint_config(
    policy: LintPolicy | None = None, pg_version: tuple[int, int] = (15, 0)
) -> LintConfig:
    """The lint configuration for a policy; raises ValueError on unknown rule ids."""
    policy = policy or LintPolicy()
    return LintConfig(
        pg_version=pg_version,
        errors=frozenset(policy.errors),
        warnings=frozenset(policy.warnings),
        ignore=frozenset(policy.ignore),
    )


def lint_source(
    migrations: Sequence[Migration], config: LintConfig, known: FileState | None = None
) -> LintedSource:
    """Lint the ups as one set in version order (what an earlier migration establishes
    counts in the later ones, from `known` facts on), and each down on its own."""
    ordered = sorted(migrations, key=lambda m: m.version)
    ups = lint_set([(m.up, m.origin or None) for m in ordered], config, known)
    return LintedSource(
        up={m.version: result for m, result in zip(ordered, ups, strict=True)},
        down={
            m.version: lint_sql(m.down, config, path=m.down_origin or None)
            for m in migrations
            if m.down is not None
        },
    )


def lint_source_live(
    conn: Connection,
    migrations: Sequence[Migration],
    config: LintConfig,
    applied: Collection[str] = (),
) -> LintedSource:
    """Lint with the live database's facts (lockstep.schema.live.lint_live): the pending
    migrations in the light of the tables' sizes, the catalog and the server's version."""
    from lockstep.schema.live import lint_live

    live = lint_live(conn, migrations, config, applied)
    return LintedSource(up=live.up, down=live.down, live=live)
