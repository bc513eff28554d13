"""The lint's reports (text, JSON, GitHub annotations) and the generated rule catalog."""

from __future__ import annotations

import json
from pathlib import Path

from lockstep.lint import (
    RULES,
    Finding,
    LintConfig,
    LintResult,
    catalog_markdown,
    format_github,
    format_json,
    format_text,
    lint_sql,
)

CONFIG = LintConfig(ignore=frozenset({"require-table-schema"}))
SQL = (
    "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();\n"
    "CREATE TABLE tags (id integer);\n"
)
ROOT = Path(__file__).resolve().parents[2]


def test_text_output_is_like_squawk() -> None:
    result = lint_sql(SQL, CONFIG, path="0001_add_token.up.sql")
    text = format_text(result, "0001_add_token.up.sql")
    lines = text.splitlines()
    assert lines[0].startswith(
        "0001_add_token.up.sql:1:49: error[adding-field-with-default] ADD COLUMN users.token "
        "DEFAULT gen_random_uuid() calls volatile gen_random_uuid()"
    )
    assert lines[1] == (
        "  help: ALTER TABLE users ADD COLUMN token uuid; ALTER TABLE users ALTER COLUMN token "
        "SET DEFAULT gen_random_uuid(); then backfill existing rows in batches."
    )
    assert lines[2].startswith("0001_add_token.up.sql:2:23: warning[prefer-bigint-over-int] ")
    assert lines[3] == "  help: Use bigint."
    assert lines[4] == "0001_add_token.up.sql: 1 error, 1 warning; phase expand"
    assert len(lines) == 5


def test_text_output_without_a_path_and_without_findings() -> None:
    result = lint_sql("SELECT 1;")
    assert format_text(result) == "<stdin>: 0 errors, 0 warnings; phase expand\n"


def test_text_output_counts_info_findings() -> None:
    result = lint_sql("ALTER TABLE users ADD COLUMN nick text;")
    assert format_text(result, "m.sql").splitlines()[-1] == (
        "m.sql: 0 errors, 0 warnings, 1 info; phase expand"
    )


def test_json_output() -> None:
    first = lint_sql(SQL, CONFIG, path="a.sql")
    second = lint_sql("CREATE INDEX legacy ON users (legacy);", CONFIG, path="b.sql")
    document = json.loads(format_json([("a.sql", first), ("b.sql", second)]))
    assert document["summary"] == {"files": 2, "errors": 2, "warnings": 1}
    a, b = document["files"]
    assert (a["path"], a["phase"], a["errors"], a["warnings"]) == ("a.sql", "expand", 1, 1)
    assert a["needs_backup"] is True
    assert a["findings"][0] == {
        "rule": "adding-field-with-default",
        "severity": "error",
        "message": first.findings[0].message,
        "help": first.findings[0].help,
        "line": 1,
        "column": 49,
        "statement_index": 0,
        "path": "a.sql",
    }
    statement = a["statements"][0]
    assert statement["kind"] == "ALTER TABLE"
    assert statement["lock"] == "ACCESS EXCLUSIVE"
    assert statement["classes"] == ["long-locking"]
    assert statement["tables"] == ["users"]
    assert statement["transactional"] is True
    assert (b["phase"], b["findings"][0]["rule"]) == ("expand", "require-concurrent-index-creation")


def test_github_annotations() -> None:
    result = lint_sql(SQL, CONFIG, path="db/0001.sql")
    lines = format_github([("db/0001.sql", result)]).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(
        "::error file=db/0001.sql,line=1,col=49,title=adding-field-with-default::ADD COLUMN"
    )
    assert lines[1] == (
        "::warning file=db/0001.sql,line=2,col=23,title=prefer-bigint-over-int::"
        + result.findings[1].message
    )


def test_github_annotations_escape_and_map_info_to_notice() -> None:
    result = lint_sql("ALTER TABLE users ADD COLUMN nick text;", path="x")
    [line] = format_github([("dir,with:odd%name.sql", result)]).splitlines()
    assert line.startswith("::notice file=dir%2Cwith%3Aodd%25name.sql,line=1,col=13,")
    assert format_github([("clean.sql", lint_sql("SELECT 1;"))]) == ""
    finding = Finding("syntax-error", "error", "50% done\r\nsecond line", "h", 1, 1, 0, None)
    rendered = format_github([("m.sql", LintResult(findings=[finding]))])
    assert rendered == (
        "::error file=m.sql,line=1,col=1,title=syntax-error::50%25 done%0D%0Asecond line\n"
    )


def test_catalog_document_is_generated_from_the_rules() -> None:
    document = (ROOT / "docs" / "lint-rules.md").read_text()
    assert document == catalog_markdown()


def test_catalog_lists_every_rule_with_help_and_source() -> None:
    text = catalog_markdown()
    for rule in RULES.values():
        assert f"## {rule.id}" in text
        assert rule.help
        assert rule.summary
        assert rule.source
        assert rule.default_severity in ("error", "warning", "info")
