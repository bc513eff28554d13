"""The lockstep CLI without a database: lint, new, usage errors and secrets kept out of output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lockstep.cli import main
from lockstep.migrations.source import NEW_NAME_RULE

REPO = Path(__file__).resolve().parents[2]
SAFE = "ALTER TABLE users ADD COLUMN email text;\n"
UNSAFE = "CREATE INDEX users_email_idx ON users (email);\n"
SECRET_URL = "postgresql://app:Sup3r-s3cret-pw@db.internal:5432/app"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------ lint


def test_lint_reports_what_apply_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "002_email.up.sql"
    path.write_text(
        "ALTER TABLE users ADD COLUMN email text;\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n"
    )
    code, out, _ = run(capsys, "lint", str(path))
    assert code == 1
    assert "error[mixed-transaction-modes]" in out


def test_lint_carries_facts_across_the_migrations_of_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "001_check.up.sql").write_text(
        "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;\n"
    )
    (tmp_path / "002_validate.up.sql").write_text(
        "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n"
    )
    (tmp_path / "003_not_null.up.sql").write_text(
        "-- lockstep:phase=contract\nALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"
    )
    code, out, _ = run(capsys, "lint", "--ignore", "require-table-schema", str(tmp_path))
    assert code == 0, out
    assert "adding-not-nullable-field" not in out


def test_lint_passes_a_safe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "001_email.up.sql"
    path.write_text(SAFE)
    code, _, err = run(capsys, "lint", str(path))
    assert code == 0
    assert err == ""


def test_lint_fails_on_an_error_finding_and_names_the_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "001_index.up.sql"
    path.write_text(UNSAFE)
    code, out, _ = run(capsys, "lint", str(path))
    assert code == 1
    assert "require-concurrent-index-creation" in out
    assert "001_index.up.sql" in out


def test_lint_reads_every_up_migration_of_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "001_email.up.sql").write_text(SAFE)
    (tmp_path / "001_email.down.sql").write_text("ALTER TABLE users DROP COLUMN email;\n")
    (tmp_path / "002_index.up.sql").write_text(UNSAFE)
    code, out, _ = run(capsys, "lint", "--format", "json", str(tmp_path))
    assert code == 1
    paths = [entry["path"] for entry in json.loads(out)["files"]]
    assert [Path(p).name for p in paths] == ["001_email.up.sql", "002_index.up.sql"]


def test_down_migrations_are_linted_when_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "001_email.up.sql").write_text(SAFE)
    (tmp_path / "001_email.down.sql").write_text("CREATE INDEX users_email ON users (email);\n")
    assert run(capsys, "lint", str(tmp_path))[0] == 0
    code, out, _ = run(capsys, "lint", "--include-down", str(tmp_path))
    assert code == 1  # the down would block writes while it builds the index
    assert "001_email.down.sql" in out
    assert "require-concurrent-index-creation" in out


def test_lint_json_output_is_machine_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "001_index.up.sql"
    path.write_text(UNSAFE)
    code, out, _ = run(capsys, "lint", "--format", "json", str(path))
    assert code == 1
    assert "require-concurrent-index-creation" in json.dumps(json.loads(out))


def test_lint_github_output_is_workflow_annotations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "001_index.up.sql"
    path.write_text(UNSAFE)
    code, out, _ = run(capsys, "lint", "--format", "github", str(path))
    assert code == 1
    assert re.search(r"^::error file=.*001_index\.up\.sql,line=1", out, re.M)


def test_lint_rules_can_be_lowered_or_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "001_index.up.sql"
    path.write_text(UNSAFE)
    assert run(capsys, "lint", "--warn", "require-concurrent-index-creation", str(path))[0] == 0
    assert run(capsys, "lint", "--ignore", "require-concurrent-index-creation", str(path))[0] == 0


def test_lint_of_a_missing_path_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "lint", str(tmp_path / "nope.sql"))
    assert code == 2
    assert out == ""
    assert "nope.sql: no such file or directory" in err


def test_lint_of_an_unreadable_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "001_bad.up.sql"
    path.write_bytes(b"SELECT '\xff';")
    code, _, err = run(capsys, "lint", str(path))
    assert code == 2
    assert "001_bad.up.sql: not UTF-8 text" in err


def test_lint_of_an_unknown_rule_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "001_email.up.sql"
    path.write_text(SAFE)
    code, _, err = run(capsys, "lint", "--ignore", "no-such-rule", str(path))
    assert code == 2
    assert "no-such-rule" in err


def test_lint_of_a_badly_named_migration_in_a_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "schema.sql").write_text(SAFE)
    code, _, err = run(capsys, "lint", str(tmp_path))
    assert code == 2
    assert "schema.sql: not a migration file name" in err


# ------------------------------------------------------------------------------------- new


def test_new_scaffolds_an_up_and_a_down_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "migrations"
    code, out, _ = run(capsys, "new", "add_email", "--dir", str(directory))
    assert code == 0
    up, down = (Path(line) for line in out.split())
    assert re.fullmatch(r"\d{14}_add_email\.up\.sql", up.name)
    assert down.name == up.name.replace(".up.sql", ".down.sql")
    assert up.read_text().startswith(f"-- {up.name.removesuffix('.up.sql')}: up")
    assert "Do not add BEGIN" in up.read_text()
    assert down.exists()


def test_a_scaffolded_migration_lints_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "new", "add_email", "--dir", str(tmp_path))
    code, _, _ = run(capsys, "lint", str(tmp_path))
    assert code == 0


@pytest.mark.parametrize("name", ["add_email", "AddEmail2", "7-seas", "x" * 128])
def test_new_accepts_what_the_docs_allow(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "new", name, "--dir", str(tmp_path))
    assert code == 0, err
    assert len(list(tmp_path.iterdir())) == 2


def test_new_and_the_docs_state_the_same_name_rule(capsys: pytest.CaptureFixture[str]) -> None:
    docs = " ".join((REPO / "docs" / "cli.md").read_text().split())
    assert f"`NAME` may contain {NEW_NAME_RULE};" in docs
    code, _, err = run(capsys, "new", "bad name", "--dir", "unused")
    assert code == 2
    assert NEW_NAME_RULE in err


@pytest.mark.parametrize(
    "name", ["add email", "../escape", "", "a/b", "-flag-like", "x.up", "_x", "x" * 129]
)
def test_new_refuses_bad_names(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "new", name, "--dir", str(tmp_path))
    assert code == 2
    assert out == ""
    assert err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- usage and secrets


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "apply" in out


def test_a_url_given_as_the_variable_name_is_refused_without_printing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "apply", "--database-url-env", SECRET_URL, str(tmp_path))
    assert code == 2
    assert "takes the NAME of an environment variable" in err
    assert "Sup3r-s3cret-pw" not in out + err
    assert "db.internal" not in out + err


def test_there_is_no_option_that_takes_a_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "apply", "--database-url", SECRET_URL, str(tmp_path))
    assert code == 2
    assert "Sup3r-s3cret-pw" not in out + err
    assert "db.internal" not in out + err


def test_a_stray_url_argument_is_not_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "apply", "--database-url-env", "DATABASE_URL", str(tmp_path), SECRET_URL
    )
    assert code == 2
    assert "unrecognized arguments: <connection string hidden>" in err
    assert "Sup3r-s3cret-pw" not in out + err
    assert "db.internal" not in out + err


def test_an_unset_variable_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCKSTEP_TEST_UNSET", raising=False)
    code, _, err = run(capsys, "plan", "--database-url-env", "LOCKSTEP_TEST_UNSET", str(tmp_path))
    assert code == 2
    assert "LOCKSTEP_TEST_UNSET is not set" in err


def test_a_missing_url_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "plan", "--database-url-file", str(tmp_path / "nope"), str(tmp_path))
    assert code == 2
    assert "cannot read the database URL file" in err


def test_the_database_url_source_is_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "apply", str(tmp_path))
    assert code == 2
    assert "--database-url-env" in err


def test_a_bad_duration_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKSTEP_TEST_URL", SECRET_URL)
    (tmp_path / "001_email.up.sql").write_text(SAFE)
    code, out, err = run(
        capsys,
        "apply",
        "--database-url-env",
        "LOCKSTEP_TEST_URL",
        "--lock-timeout",
        "soon",
        str(tmp_path),
    )
    assert code == 2
    assert "--lock-timeout" in err
    assert "Sup3r-s3cret-pw" not in out + err


def test_a_missing_migrations_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKSTEP_TEST_URL", SECRET_URL)
    code, _, err = run(
        capsys, "apply", "--database-url-env", "LOCKSTEP_TEST_URL", str(tmp_path / "missing")
    )
    assert code == 2
    assert "missing: no such directory" in err
