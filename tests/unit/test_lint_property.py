"""Properties of the lint that must hold for every input, found by generating inputs."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.lint import RULES, LintConfig, LintResult, lint_sql
from lockstep.lint.model import LOCK_MODES, STATEMENT_CLASSES

SQLISH_WORDS = """
    ALTER TABLE CREATE INDEX CONCURRENTLY UNIQUE DROP COLUMN ADD CONSTRAINT CHECK FOREIGN KEY
    PRIMARY REFERENCES NOT NULL VALID VALIDATE DEFAULT SET TYPE USING RENAME TO IF EXISTS ON
    ONLY UPDATE DELETE FROM WHERE INSERT INTO VALUES SELECT BEGIN COMMIT ROLLBACK ATOMIC END
    CASE WHEN THEN VACUUM FULL REINDEX CLUSTER TRUNCATE CASCADE DETACH ATTACH PARTITION
    GENERATED ALWAYS AS IDENTITY STORED EXCLUDE DOMAIN ENUM VALUE BEFORE AFTER SCHEMA COMMENT
    IS DO LOCK MODE WITH varchar(20) int bigint serial timestamp json char(3) numeric(10,2)
    text now() random() gen_random_uuid() t public.t "Quoted" c x 0 1.5 'str' 'it''s' E'\\''
    $$ $tag$ $1 ( ) [ ] , ; . :: = * -- /* */ \\ ' " $
""".split()  # noqa: SIM905 (a word list reads better as text)
SQLISH_TOKENS = [
    *SQLISH_WORDS,
    "$$ body; $$",
    "-- lockstep-ignore: ban-drop-column\n",
    "-- squawk-ignore-file\n",
    "-- lockstep:phase=expand\n",
    "\n",
    " ",
    "\t",
]

sqlish = st.lists(st.sampled_from(SQLISH_TOKENS), max_size=60).map(" ".join)
configs = st.builds(
    LintConfig,
    pg_version=st.sampled_from([(10, 0), (11, 0), (12, 0), (14, 2), (15, 0), (17, 1)]),
    runner_sets_timeouts=st.booleans(),
    runner_manages_transactions=st.booleans(),
)


def assert_well_formed(sql: str, result: LintResult) -> None:
    lines = sql.split("\n")
    for finding in result.findings:
        assert finding.rule in RULES
        assert finding.severity in ("error", "warning", "info")
        assert 1 <= finding.line <= len(lines), finding
        assert 1 <= finding.column <= len(lines[finding.line - 1]) + 1, finding
        assert -1 <= finding.statement_index < len(result.statements)
        assert finding.message
        assert finding.help
    positions = [(finding.line, finding.column) for finding in result.findings]
    assert positions == sorted(positions)
    for index, statement in enumerate(result.statements):
        assert statement.index == index
        assert statement.lock in LOCK_MODES
        assert statement.classes <= STATEMENT_CLASSES
        assert 1 <= statement.line <= len(lines)
        assert statement.text
        assert sql.split("\n")[statement.line - 1][statement.column - 1 :].startswith(
            statement.text.split("\n")[0]
        )
    assert result.phase in ("expand", "contract")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_never_raises_on_any_text(sql: str) -> None:
    assert_well_formed(sql, lint_sql(sql))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sqlish, configs)
def test_never_raises_on_sql_like_token_soup(sql: str, config: LintConfig) -> None:
    assert_well_formed(sql, lint_sql(sql, config))


@settings(max_examples=100, deadline=None)
@given(st.lists(sqlish, max_size=8))
def test_statements_are_found_wherever_they_are_split(parts: list[str]) -> None:
    """Joining statements with semicolons and newlines gives every one of them back."""
    sql = ";\n".join(parts)
    result = lint_sql(sql)
    assert_well_formed(sql, result)


def test_deep_nesting_does_not_crash() -> None:
    sql = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    result = lint_sql(sql)
    assert_well_formed(sql, result)


def test_huge_identifier_and_null_bytes() -> None:
    sql = "CREATE TABLE " + "x" * 10000 + " (id bigint);\x00;\r\n\x0b;"
    assert_well_formed(sql, lint_sql(sql))
