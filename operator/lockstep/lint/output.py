"""Lint reports: text (like squawk's), JSON, and GitHub Actions annotations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lockstep.lint.model import Finding, LintResult, StatementInfo

_STDIN = "<stdin>"
_GITHUB_COMMANDS = {"error": "error", "warning": "warning", "info": "notice"}


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_text(result: LintResult, path: str | None = None) -> str:
    """`path:line:col: severity[rule] message` and an indented help line per finding."""
    lines: list[str] = []
    for finding in result.findings:
        where = path or finding.path or _STDIN
        lines.append(
            f"{where}:{finding.line}:{finding.column}: "
            f"{finding.severity}[{finding.rule}] {finding.message}"
        )
        lines.append(f"  help: {finding.help}")
    infos = len(result.findings) - result.errors - result.warnings
    summary = f"{path or _STDIN}: {_plural(result.errors, 'error')}, "
    summary += f"{_plural(result.warnings, 'warning')}"
    if infos:
        summary += f", {infos} info"
    summary += f"; phase {result.phase}"
    lines.append(summary)
    return "\n".join(lines) + "\n"


def _finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "severity": finding.severity,
        "message": finding.message,
        "help": finding.help,
        "line": finding.line,
        "column": finding.column,
        "statement_index": finding.statement_index,
        "path": finding.path,
    }


def _statement_json(statement: StatementInfo) -> dict[str, Any]:
    return {
        "index": statement.index,
        "text": statement.text,
        "line": statement.line,
        "column": statement.column,
        "kind": statement.kind,
        "lock": statement.lock,
        "transactional": statement.transactional,
        "classes": sorted(statement.classes),
        "rewrites": statement.rewrites,
        "tables": list(statement.tables),
        "concurrent_index": statement.concurrent_index,
        "if_not_exists": statement.if_not_exists,
    }


def format_json(results: Sequence[tuple[str | None, LintResult]]) -> str:
    """One JSON document for several files: per file its findings, statements and summary."""
    files = [
        {
            "path": path,
            "phase": result.phase,
            "errors": result.errors,
            "warnings": result.warnings,
            "needs_backup": result.needs_backup,
            "findings": [_finding_json(finding) for finding in result.findings],
            "statements": [_statement_json(statement) for statement in result.statements],
        }
        for path, result in results
    ]
    summary = {
        "files": len(files),
        "errors": sum(result.errors for _, result in results),
        "warnings": sum(result.warnings for _, result in results),
    }
    import json

    return json.dumps({"files": files, "summary": summary}, indent=2) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(results: Sequence[tuple[str | None, LintResult]]) -> str:
    """GitHub Actions workflow commands: `::error file=F,line=L,col=C,title=RULE::message`."""
    lines: list[str] = []
    for path, result in results:
        for finding in result.findings:
            command = _GITHUB_COMMANDS[finding.severity]
            where = path or finding.path or _STDIN
            properties = ",".join(
                (
                    f"file={_escape_property(where)}",
                    f"line={finding.line}",
                    f"col={finding.column}",
                    f"title={_escape_property(finding.rule)}",
                )
            )
            lines.append(f"::{command} {properties}::{_escape_data(finding.message)}")
    return "\n".join(lines) + ("\n" if lines else "")
