"""The migration lint: finds PostgreSQL schema changes that block traffic, lose data or break
the running application version, and describes what each statement does (lock, transaction,
classes) for the runner and the plan.

    from lockstep.lint import lint_sql, LintConfig
    result = lint_sql(sql, LintConfig(pg_version=(15, 0)), path="0001_add_email.up.sql")

The names are imported on first use: `lockstep.lint.model` (configuration, results) needs
neither the parser nor the checks, so the planner and the operator's status code can read lint
results without paying for the parser.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lockstep.lint.catalog import catalog_markdown
    from lockstep.lint.engine import lint_set, lint_sql
    from lockstep.lint.model import Finding, LintConfig, LintResult, StatementInfo
    from lockstep.lint.output import format_github, format_json, format_text
    from lockstep.lint.rules import RULES, Rule, Severity

_WHERE = {
    "RULES": "rules",
    "Rule": "rules",
    "Severity": "rules",
    "Finding": "model",
    "LintConfig": "model",
    "LintResult": "model",
    "StatementInfo": "model",
    "catalog_markdown": "catalog",
    "format_github": "output",
    "format_json": "output",
    "format_text": "output",
    "lint_set": "engine",
    "lint_sql": "engine",
}

__all__ = [
    "RULES",
    "Finding",
    "LintConfig",
    "LintResult",
    "Rule",
    "Severity",
    "StatementInfo",
    "catalog_markdown",
    "format_github",
    "format_json",
    "format_text",
    "lint_set",
    "lint_sql",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
