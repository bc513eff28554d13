"""The statement cache: a re-lint of statements seen before gives the same findings without
loading the parser; a cache that cannot be used is ignored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lockstep.lint import LintConfig, lint_sql
from lockstep.lint.engine import _read
from lockstep.lint.reading import DiskCache, pack, unpack

SQL = (
    "CREATE TABLE public.t (id bigint, name varchar(20));\n"
    "UPDATE public.users SET a = 1, a = 2;\n"
    "WITH gone AS (DELETE FROM public.sessions RETURNING *) SELECT count(*) FROM gone;\n"
    "ALTER TABLE public.users ADD COLUMN token uuid DEFAULT gen_random_uuid();\n"
    "CREATE INDEX i ON public.users (;\n"
)


def test_a_statement_read_survives_packing() -> None:
    for statement in SQL.split(";\n"):
        read = _read(statement)
        assert unpack(pack(read)) == read


def test_a_relint_from_the_cache_needs_no_parser(tmp_path: Path) -> None:
    migration = tmp_path / "001_change.up.sql"
    migration.write_text(SQL)
    environment = {"LOCKSTEP_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    script = (
        "import sys\n"
        "from lockstep.cli import main\n"
        f"code = main(['lint', {str(migration)!r}])\n"
        "print('PARSER' if 'pgparse' in sys.modules else 'NO-PARSER')\n"
        "sys.exit(code)\n"
    )

    def lint() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=environment,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
        )

    first, second = lint(), lint()
    assert first.stdout.splitlines()[-1] == "PARSER"
    assert second.stdout.splitlines()[-1] == "NO-PARSER"
    assert first.returncode == second.returncode == 1
    assert first.stdout.splitlines()[:-1] == second.stdout.splitlines()[:-1]
    assert "error[syntax-error]" in second.stdout
    assert "error[ban-duplicate-column-assignments]" in second.stdout


def test_a_broken_cache_file_is_ignored(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    cache.path.write_bytes(b"not a cache")
    assert DiskCache(tmp_path).entries == {}
    assert lint_sql(SQL, LintConfig()).has_errors
