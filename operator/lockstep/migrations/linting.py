"""Linting a whole migration source: every up, and every down, with one configuration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lockstep.api.migration import LintPolicy
from lockstep.lint import LintConfig, LintResult, lint_sql

from .source import Migration


@dataclass(frozen=True)
class LintedSource:
    """Lint results by version: `up` for every migration, `down` for those that have one."""

    up: dict[str, LintResult]
    down: dict[str, LintResult]

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


def lint_source(migrations: Sequence[Migration], config: LintConfig) -> LintedSource:
    return LintedSource(
        up={m.version: lint_sql(m.up, config, path=m.origin or None) for m in migrations},
        down={
            m.version: lint_sql(m.down, config, path=m.down_origin or None)
            for m in migrations
            if m.down is not None
        },
    )
