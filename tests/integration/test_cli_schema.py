"""The commands that know the database, against the real PostgreSQL: lint with live facts,
analyze, check-compatibility and diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lockstep.cli import main
from lockstep.migrations.source import from_configmap, from_directory
from lockstep.postgres import connect

SCHEMA = """
CREATE TABLE public.users (id bigint PRIMARY KEY, email varchar(40), name text, age integer);
ALTER TABLE public.users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL);
INSERT INTO public.users SELECT g, 'u' || g, 'n' || g, g FROM generate_series(1, 2000) g;
ANALYZE public.users;
GRANT SELECT ON public.users TO PUBLIC;
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def url_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    with connect(database_url) as conn:
        conn.execute_text(SCHEMA)
    monkeypatch.setenv("LOCKSTEP_TEST_DATABASE_URL", database_url)
    return "LOCKSTEP_TEST_DATABASE_URL"


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


# ------------------------------------------------------------------------- lint, live facts


def test_live_lint_scales_a_rewrite_by_the_table_size(
    url_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "002_token.up.sql"
    path.write_text("ALTER TABLE public.users ADD COLUMN token uuid DEFAULT gen_random_uuid();\n")
    code, out, _ = run(capsys, "lint", str(path))
    assert code == 1
    assert "error[adding-field-with-default]" in out
    # on the live database the table is small: a rewrite of it blocks for milliseconds
    code, out, _ = run(capsys, "lint", "--database-url-from-env", url_env, str(path))
    assert code == 0, out
    assert "warning[adding-field-with-default]" in out
    assert "public.users has about 2.0k rows" in out
    assert "within the 1 s budget" in out
    # with a budget smaller than the estimate it is an error, with the estimate
    code, out, _ = run(
        capsys, "lint", "--database-url-env", url_env, "--blocking-budget", "0.0001", str(path)
    )
    assert code == 1
    assert "error[adding-field-with-default]" in out
    assert "estimated" in out and "under the lock" in out


def test_live_lint_counts_validated_checks_and_column_types(
    url_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "003_tighten.up.sql"
    path.write_text(
        "-- lockstep:phase=contract\n"
        "ALTER TABLE public.users ALTER COLUMN email SET NOT NULL;\n"
        "ALTER TABLE public.users ALTER COLUMN email TYPE varchar(80);\n"
    )
    _, out, _ = run(capsys, "lint", str(path))
    assert "adding-not-nullable-field" in out
    assert "changing-column-type" in out
    _, out, _ = run(capsys, "lint", "--database-url-env", url_env, str(path))
    # the validated CHECK (email IS NOT NULL) proves the column; varchar(40) -> (80) is safe;
    # what is left is the CHECK on the column that the type change re-checks
    assert "adding-not-nullable-field" not in out
    assert "changing-column-type]" not in out
    assert "changing-column-type-with-check" in out


# ---------------------------------------------------------------------------------- analyze


def test_analyze_reports_facts_sessions_and_verdicts(
    url_env: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = write(
        tmp_path / "migrations",
        {
            "001_age.up.sql": "ALTER TABLE public.users ALTER COLUMN age TYPE bigint;\n",
            "002_index.up.sql": (
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_name_idx ON public.users (name);\n"
            ),
        },
    )
    with connect(database_url, application_name="stuck-worker") as idle:
        idle.execute("BEGIN")
        idle.execute("SELECT count(*) FROM public.users")
        code, out, _ = run(
            capsys, "analyze", "--database-url-env", url_env, "--probe", str(migrations)
        )
        idle.execute("ROLLBACK")
    assert "server: PostgreSQL" in out
    assert "public.users  ~2,000 rows" in out
    assert "index public.users_pkey" in out
    assert "stuck-worker" in out and "idle in transaction" in out
    assert "pending 001 (age): contract" in out
    # the probe saw the rewrite and the concurrent build's lock
    assert "ACCESS EXCLUSIVE" in out and "rewrites public.users" in out
    assert "SHARE UPDATE EXCLUSIVE" in out
    assert code == 0, out  # small table: the rewrite is a warning on the live database


def test_analyze_json_is_safe_for_a_status(
    url_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "analyze", "--database-url-env", url_env, "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["serverVersion"].startswith("15.")
    [users] = document["tables"]
    assert users["name"] == "public.users" and users["rows"] == 2000
    assert {"name": "users_email_nn", "kind": "check", "validated": True} in users["constraints"]
    password = database_url.split(":")[2].split("@", maxsplit=1)[0]
    assert password not in out


# ---------------------------------------------------------------------- check-compatibility


def test_check_compatibility_finds_what_breaks_the_running_version(
    url_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = write(
        tmp_path / "migrations",
        {
            "001_base.up.sql": "SELECT 1;\n",
            "002_expand.up.sql": (
                "-- lockstep:phase=expand\n"
                "-- lockstep-ignore: ban-drop-column, ban-revoke\n"
                "ALTER TABLE public.users DROP COLUMN name;\n"
                "ALTER TABLE public.users ADD COLUMN plan text NOT NULL DEFAULT 'free';\n"
                "-- lockstep-ignore: adding-required-field\n"
                "ALTER TABLE public.users ADD COLUMN region text NOT NULL;\n"
            ),
            "003_contract.up.sql": (
                "REVOKE SELECT ON public.users FROM PUBLIC;\n"
                "ALTER TABLE public.users ALTER COLUMN email TYPE varchar(80);\n"
            ),
        },
    )
    code, _, err = run(
        capsys, "apply", "--database-url-env", url_env, "--target", "001", str(migrations)
    )
    assert code == 0, err
    code, out, err = run(
        capsys,
        "check-compatibility",
        "--database-url-env",
        url_env,
        "--running-version",
        "001",
        str(migrations),
    )
    assert code == 1
    assert "column public.users.name is gone" in out
    assert "new column public.users.region is NOT NULL without a default" in out
    assert "public.users.plan" not in out  # it has a default: old inserts keep working
    assert "PUBLIC loses SELECT on public.users" in out
    assert "contract: runs after the running version is gone" in out
    assert "varchar(80)" not in out  # a widening keeps the running version working
    assert "break the running version" in err


# ------------------------------------------------------------------------------------- diff


def test_diff_writes_migrations_lockstep_reads(
    url_env: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desired = tmp_path / "schema.sql"
    desired.write_text(
        "CREATE TABLE public.users (id bigint PRIMARY KEY, email varchar(40) NOT NULL,"
        " name text, age integer, plan text NOT NULL DEFAULT 'free');\n"
        "CREATE INDEX users_name_idx ON public.users (name);\n"
    )
    out_dir = tmp_path / "generated"
    code, out, err = run(
        capsys,
        "diff",
        "--database-url-env",
        url_env,
        "--out",
        str(out_dir),
        "--version-start",
        "20260101000000",
        str(desired),
    )
    assert code == 0, err
    assert "wrote" in out
    source = from_directory(out_dir)
    assert source[0].version == "20260101000000"
    assert [m.name for m in source] == [
        "schema_expand",
        "schema_expand_indexes",
        "schema_expand_validate",
        "schema_contract",
    ]
    code, out, _ = run(capsys, "lint", str(out_dir))
    assert code == 0, out
    code, out, _ = run(
        capsys, "diff", "--database-url-env", url_env, "--configmap", "users-schema", str(desired)
    )
    document = yaml.safe_load(out)
    assert document["kind"] == "ConfigMap"
    assert [m.name for m in from_configmap(document["data"])] == [m.name for m in source]
    code, _, _ = run(capsys, "diff", "--database-url-env", url_env, "--exit-code", str(desired))
    assert code == 1


def test_diff_refuses_hazards_that_are_not_allowed(
    url_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desired = tmp_path / "schema.sql"
    desired.write_text("CREATE TABLE public.users (id bigint PRIMARY KEY, email varchar(40));\n")
    code, out, err = run(capsys, "diff", "--database-url-env", url_env, str(desired))
    assert code == 1
    assert "drop-column: column public.users.name" in err
    assert "--allow-hazard drop-column" in err
    assert out == ""


def test_diff_renames_by_hint(
    url_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desired = tmp_path / "schema.sql"
    desired.write_text(
        "CREATE TABLE public.users (id bigint PRIMARY KEY, email varchar(40), full_name text,"
        " age integer, CONSTRAINT users_email_nn CHECK (email IS NOT NULL));\n"
    )
    code, out, err = run(
        capsys,
        "diff",
        "--database-url-env",
        url_env,
        "--rename",
        "users.name=full_name",
        str(desired),
    )
    assert code == 0, err
    assert "ALTER TABLE public.users RENAME COLUMN name TO full_name" in out
    assert "DROP COLUMN" not in out
