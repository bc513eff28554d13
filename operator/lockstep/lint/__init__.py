"""The migration lint: finds PostgreSQL schema changes that block traffic, lose data or break
the running application version, and describes what each statement does (lock, transaction,
classes) for the runner and the plan.

    from lockstep.lint import lint_sql, LintConfig
    result = lint_sql(sql, LintConfig(pg_version=(15, 0)), path="0001_add_email.up.sql")
"""

from __future__ import annotations

from lockstep.lint.catalog import catalog_markdown
from lockstep.lint.engine import lint_sql
from lockstep.lint.model import Finding, LintConfig, LintResult, StatementInfo
from lockstep.lint.output import format_github, format_json, format_text
from lockstep.lint.rules import RULES, Rule, Severity

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
    "lint_sql",
]
