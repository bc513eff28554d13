"""The lockstep CLI against a real PostgreSQL: plan, apply, rollback, exit codes, secrecy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.env.postgres import PostgresServer
from tests.env.processes import free_port

from lockstep.cli import main
from lockstep.migrations import ledger
from lockstep.postgres import connect

REPO = Path(__file__).resolve().parents[2]

FILES = {
    "001_users.up.sql": "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);\n",
    "001_users.down.sql": "DROP TABLE users;\n",
    "002_email.up.sql": "ALTER TABLE users ADD COLUMN email text;\n",
    "002_email.down.sql": "ALTER TABLE users DROP COLUMN email;\n",
    "003_email_index.up.sql": (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n"
    ),
    "003_email_index.down.sql": "DROP INDEX CONCURRENTLY IF EXISTS users_email_idx;\n",
}
DROP_NAME = {"004_drop_name.up.sql": "ALTER TABLE users DROP COLUMN name;\n"}
# the drop is what a contract migration is for; the rule would block it otherwise
ALLOW_DROPS = ["--ignore", "ban-drop-column", "--ignore", "ban-drop-table"]


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    for name, text in FILES.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture
def url_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LOCKSTEP_TEST_DATABASE_URL", database_url)
    return "LOCKSTEP_TEST_DATABASE_URL"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def applied_versions(url: str) -> list[str]:
    with connect(url) as conn:
        return [row.version for row in ledger.applied(conn)]


def assert_no_secret(url: str, *outputs: str) -> None:
    password = urlsplit(url).password
    assert password
    for output in outputs:
        assert password not in output
        assert url not in output


def test_plan_shows_pending_migrations_with_phase_and_locks(
    migrations: Path, url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "plan", "--database-url-env", url_env, str(migrations))
    assert code == 0, err
    assert "current version: none (empty ledger)" in out
    assert "target version:  003" in out
    assert "compatibility:   compatible: 3 expand migrations" in out
    assert "backup needed:   no" in out
    assert "002 (email)  expand (from lint), one transaction" in out
    assert "ACCESS EXCLUSIVE" in out
    assert "003 (email_index)  expand (from lint), outside a transaction" in out
    assert "SHARE UPDATE EXCLUSIVE" in out
    assert applied_versions(database_url) == []
    assert_no_secret(database_url, out, err)


def test_plan_as_json(migrations: Path, url_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    (migrations / "004_drop_name.up.sql").write_text(DROP_NAME["004_drop_name.up.sql"])
    code, out, _ = run(
        capsys,
        "plan",
        "--database-url-env",
        url_env,
        "--format",
        "json",
        *ALLOW_DROPS,
        str(migrations),
    )
    assert code == 0
    document = json.loads(out)
    assert document["currentVersion"] is None
    assert [m["version"] for m in document["migrations"]] == ["001", "002", "003"]
    assert document["blockedContract"] == ["004"]
    assert document["backupNeeded"] is False
    index_statement = document["migrations"][2]["statements"][0]
    assert index_statement["lock"] == "SHARE UPDATE EXCLUSIVE"
    assert index_statement["transactional"] is False


def test_apply_then_apply_again_then_roll_back(
    migrations: Path, url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "apply", "--database-url-env", url_env, str(migrations))
    assert code == 0, err
    assert "applied  001 (users) expand" in out
    assert "applied  003 (email_index) expand" in out
    assert applied_versions(database_url) == ["001", "002", "003"]

    code, out, _ = run(capsys, "apply", "--database-url-env", url_env, str(migrations))
    assert code == 0
    assert out.startswith("up to date at 003")

    code, out, err = run(
        capsys,
        "rollback",
        "--database-url-env",
        url_env,
        "--to",
        "001",
        *ALLOW_DROPS,
        str(migrations),
    )
    assert code == 0, err
    assert "reverted 003 (email_index)" in out
    assert "reverted 002 (email)" in out
    assert applied_versions(database_url) == ["001"]
    assert_no_secret(database_url, out, err)


def test_apply_to_a_target_and_as_json(
    migrations: Path, url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "apply",
        "--database-url-env",
        url_env,
        "--target",
        "002",
        "--format",
        "json",
        str(migrations),
    )
    assert code == 0
    document = json.loads(out)
    assert [r["version"] for r in document["results"]] == ["001", "002"]
    assert document["results"][0]["attempts"] == 1
    assert applied_versions(database_url) == ["001", "002"]


def test_a_dry_run_applies_nothing(
    migrations: Path, url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "apply", "--database-url-env", url_env, "--dry-run", str(migrations))
    assert code == 0
    assert "dry run: nothing was changed" in out
    with connect(database_url) as conn:
        assert conn.fetch_value("SELECT to_regnamespace('lockstep')") is None
        assert conn.fetch_value("SELECT to_regclass('users')") is None


def test_contract_migrations_wait_for_allow_contract(
    migrations: Path, url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (migrations / "004_drop_name.up.sql").write_text(DROP_NAME["004_drop_name.up.sql"])
    code, out, _ = run(
        capsys, "apply", "--database-url-env", url_env, *ALLOW_DROPS, str(migrations)
    )
    assert code == 0
    assert "held back: 004 (drop_name)" in out
    assert applied_versions(database_url) == ["001", "002", "003"]
    code, out, _ = run(
        capsys,
        "apply",
        "--database-url-env",
        url_env,
        "--allow-contract",
        *ALLOW_DROPS,
        str(migrations),
    )
    assert code == 0
    assert "applied  004 (drop_name) contract" in out


def test_lint_errors_stop_apply_before_the_database_is_changed(
    migrations: Path, url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (migrations / "004_name_index.up.sql").write_text(
        "CREATE INDEX users_name_idx ON users (name);\n"
    )
    code, _, err = run(capsys, "apply", "--database-url-env", url_env, str(migrations))
    assert code == 1
    assert "require-concurrent-index-creation" in err
    assert "the lint found errors in 004 (name_index); nothing was applied" in err
    with connect(database_url) as conn:
        assert conn.fetch_value("SELECT to_regnamespace('lockstep')") is None


def test_drift_stops_apply_with_exit_1(
    migrations: Path, url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "apply", "--database-url-env", url_env, str(migrations))[0] == 0
    (migrations / "002_email.up.sql").write_text("ALTER TABLE users ADD COLUMN email citext;\n")
    code, _, err = run(capsys, "apply", "--database-url-env", url_env, str(migrations))
    assert code == 1
    assert "lockstep apply: drift:" in err
    assert "migration 002 (email) was applied with checksum" in err


def test_apply_never_goes_down(
    migrations: Path, url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "apply", "--database-url-env", url_env, str(migrations))[0] == 0
    code, _, err = run(
        capsys, "apply", "--database-url-env", url_env, "--target", "001", str(migrations)
    )
    assert code == 1
    assert "the target 001 is below the current version 003: this run only goes up" in err
    assert applied_versions(database_url) == ["001", "002", "003"]


def test_rollback_without_a_down_is_refused(
    migrations: Path, url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (migrations / "002_email.down.sql").unlink()
    assert run(capsys, "apply", "--database-url-env", url_env, str(migrations))[0] == 0
    code, _, err = run(
        capsys, "rollback", "--database-url-env", url_env, "--to", "001", str(migrations)
    )
    assert code == 1
    assert "002 (email) has no down migration" in err
    assert applied_versions(database_url) == ["001", "002", "003"]


def test_the_url_can_come_from_a_file(
    migrations: Path, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(database_url + "\n")
    code, out, err = run(
        capsys, "apply", "--database-url-file", str(secret), "--target", "001", str(migrations)
    )
    assert code == 0, err
    assert applied_versions(database_url) == ["001"]
    assert_no_secret(database_url, out, err)


def test_a_wrong_password_fails_without_printing_url_or_password(
    migrations: Path,
    postgres: PostgresServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = f"postgresql://lockstep:Wr0ng-{postgres.password}@127.0.0.1:{postgres.port}/postgres"
    monkeypatch.setenv("LOCKSTEP_TEST_WRONG_URL", wrong)
    for command in ("plan", "apply"):
        code, out, err = run(
            capsys, command, "--database-url-env", "LOCKSTEP_TEST_WRONG_URL", str(migrations)
        )
        assert code == 1
        assert "password authentication failed" in err
        assert_no_secret(wrong, out, err)
        assert postgres.password not in out + err


def test_a_closed_port_fails_without_printing_url_or_password(
    migrations: Path,
    postgres: PostgresServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = f"postgresql://lockstep:{postgres.password}@127.0.0.1:{free_port()}/postgres"
    monkeypatch.setenv("LOCKSTEP_TEST_CLOSED_URL", closed)
    code, out, err = run(
        capsys, "apply", "--database-url-env", "LOCKSTEP_TEST_CLOSED_URL", str(migrations)
    )
    assert code == 1
    assert "cannot connect to the database" in err
    assert_no_secret(closed, out, err)


def test_python_dash_m_lockstep_runs_the_same_cli(migrations: Path, database_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lockstep", "plan", "--database-url-env", "DB", str(migrations)],
        env={"DB": database_url, "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "target version:  003" in result.stdout
    assert_no_secret(database_url, result.stdout, result.stderr)


def test_plan_and_a_dry_run_reach_the_same_decision_on_a_later_lint_error(
    migrations: Path, url_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (migrations / "004_drop_name.up.sql").write_text("ALTER TABLE users DROP COLUMN name;\n")
    (migrations / "005_blocking_index.up.sql").write_text(
        "CREATE INDEX users_name_idx ON users (email);\n"
    )
    plan_code, plan_out, plan_err = run(
        capsys, "plan", "--database-url-env", url_env, str(migrations)
    )
    dry_code, dry_out, dry_err = run(
        capsys, "apply", "--dry-run", "--database-url-env", url_env, str(migrations)
    )
    assert plan_code == dry_code == 1
    assert "005 (blocking_index)" in plan_err and "005 (blocking_index)" in dry_err
    assert "require-concurrent-index-creation" in plan_err
    # the same plan is shown by both, and nothing was applied
    assert plan_out + "dry run: nothing was changed\n" == dry_out


def test_a_lint_error_above_the_target_does_not_block(
    migrations: Path, url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (migrations / "004_blocking_index.up.sql").write_text(
        "CREATE INDEX users_name_idx ON users (email);\n"
    )
    plan_code, _, _ = run(
        capsys, "plan", "--database-url-env", url_env, "--target", "003", str(migrations)
    )
    code, _, err = run(
        capsys, "apply", "--database-url-env", url_env, "--target", "003", str(migrations)
    )
    assert plan_code == code == 0, err
    assert applied_versions(database_url) == ["001", "002", "003"]
