"""Benchmark: lint a generated 5,000-statement migration with lockstep, then with squawk.

Run: .venv/bin/python tests/bench/bench_lint.py [--statements N] [--rounds R]

Exits non-zero when lockstep's best time is over the 3 s budget.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lockstep.lint import LintConfig, lint_sql
from lockstep.lint.engine import clear_caches

BUDGET_SECONDS = 3.0
PG_VERSION = (15, 0)


def _function(rng: random.Random, n: int) -> str:
    return (
        f"CREATE OR REPLACE FUNCTION public.touch_{n}() RETURNS trigger AS $$\n"
        "BEGIN\n"
        "  NEW.updated_at := now();  -- keep ; inside the body\n"
        f"  IF NEW.status = 'done;{rng.randint(0, 9)}' THEN\n"
        "    NEW.finished_at := clock_timestamp();\n"
        "  END IF;\n"
        "  RETURN NEW;\n"
        "END\n"
        "$$ LANGUAGE plpgsql"
    )


def generate(count: int, seed: int = 20260101) -> str:
    """A realistic migration history squashed into one file, `count` statements long."""
    rng = random.Random(seed)
    # Half the statements act on tables from earlier migrations, half on tables this file
    # creates (the lint treats the two differently).
    tables: list[str] = [f"public.legacy_{i}" for i in range(50)]
    statements: list[str] = []
    n = 0
    while len(statements) < count:
        n += 1
        choice = rng.random()
        if choice < 0.10:
            table = f"public.t_{n}"
            tables.append(table)
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {table} (\n"
                "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
                "  name text NOT NULL,\n"
                "  status varchar(32) DEFAULT 'new',\n"
                "  payload jsonb DEFAULT '{}'::jsonb,\n"
                "  created_at timestamptz NOT NULL DEFAULT now(),\n"
                "  updated_at timestamptz\n"
                ")"
            )
            continue
        table = rng.choice(tables)
        column = f"c_{n}"
        if choice < 0.22:
            statements.append(f"ALTER TABLE {table} ADD COLUMN {column} integer")
        elif choice < 0.32:
            default = rng.choice(["0", "'x'", "now()", "gen_random_uuid()", "false"])
            kind = {"0": "bigint", "'x'": "text", "now()": "timestamptz"}.get(default, "uuid")
            if default == "false":
                kind = "boolean"
            statements.append(
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind} DEFAULT {default}"
            )
        elif choice < 0.42:
            concurrently = rng.random() < 0.6
            statements.append(
                f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS "
                f"idx_{n} ON {table} (name, created_at)"
            )
        elif choice < 0.50:
            other = rng.choice(tables)
            validity = " NOT VALID" if rng.random() < 0.5 else ""
            statements.append(
                f"ALTER TABLE {table} ADD COLUMN ref_{n} bigint, "
                f"ADD CONSTRAINT fk_{n} FOREIGN KEY (ref_{n}) REFERENCES {other} (id){validity}"
            )
        elif choice < 0.57:
            statements.append(f"ALTER TABLE {table} ALTER COLUMN updated_at SET NOT NULL")
        elif choice < 0.67:
            statements.append(
                f"UPDATE {table} SET status = 'migrated', updated_at = now() "
                f"WHERE id BETWEEN {n * 1000} AND {n * 1000 + 999}"
            )
        elif choice < 0.72:
            statements.append(f"ALTER TABLE {table} DROP COLUMN IF EXISTS c_{n - 1}")
        elif choice < 0.76:
            statements.append(f"ALTER TABLE {table} RENAME COLUMN status TO state_{n}")
        elif choice < 0.86:
            statements.append(f"COMMENT ON TABLE {table} IS 'owned by team {n}; see runbook'")
        elif choice < 0.92:
            statements.append(_function(rng, n))
        elif choice < 0.96:
            statements.append(f"DROP INDEX CONCURRENTLY IF EXISTS public.idx_{n - 3}")
        else:
            statements.append(f"ALTER TABLE {table} ADD CONSTRAINT ck_{n} CHECK (id > 0) NOT VALID")
    return "".join(f"-- statement {i}\n{sql};\n\n" for i, sql in enumerate(statements))


def best_of(rounds: int, run: Callable[[], object], cold: bool = False) -> float:
    times = []
    for _ in range(rounds):
        if cold:
            clear_caches()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def squawk_executable() -> str | None:
    beside_python = Path(sys.executable).with_name("squawk")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("squawk")


CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "concourse" / "migrations"
CORPUS_TARGET_RATIO = 3.0


def corpus(rounds: int) -> float | None:
    """Cold start on a real project's 299 migration files: a new `lockstep lint` process and
    a new squawk process on the same files, best of `rounds` each. lockstep is timed twice:
    a first run (--no-cache: every statement tokenized and parsed), and a run whose statement
    cache already holds the files (a re-lint in CI with the cache kept, or on a laptop).
    Returns the ratio of the cached run to squawk."""
    files = [str(path) for path in sorted(CORPUS.glob("*.sql"))]
    lockstep = str(Path(sys.executable).with_name("lockstep"))
    print(f"corpus: {len(files)} files of Concourse CI's migrations (tests/data/concourse)")
    first = best_of(
        rounds,
        lambda: subprocess.run(
            [lockstep, "lint", "--no-cache", *files], capture_output=True, check=False
        ),
    )
    print(f"lockstep lint, a new process, first run: best of {rounds}: {first:.3f} s")
    with tempfile.TemporaryDirectory(prefix="lockstep-lint-cache-") as cache:
        environment = os.environ | {"LOCKSTEP_CACHE_DIR": cache}

        def cached() -> None:
            subprocess.run(
                [lockstep, "lint", *files], capture_output=True, check=False, env=environment
            )

        cached()  # fills the cache
        warm = best_of(rounds, cached)
    print(f"lockstep lint, a new process, statement cache filled: best of {rounds}: {warm:.3f} s")
    squawk = squawk_executable()
    if squawk is None:
        return None
    theirs = best_of(
        rounds,
        lambda: subprocess.run(
            [squawk, f"--pg-version={PG_VERSION[0]}.{PG_VERSION[1]}", "--reporter=gcc", *files],
            capture_output=True,
            check=False,
        ),
    )
    print(f"squawk, a new process: best of {rounds}: {theirs:.3f} s")
    print(
        f"ratio lockstep/squawk (corpus, new process): first run {first / theirs:.1f}x, "
        f"cache filled {warm / theirs:.1f}x (target {CORPUS_TARGET_RATIO:.0f}x)"
    )
    return warm / theirs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--statements", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lockstep-bench-") as directory:
        path = Path(directory) / "migration.sql"
        path.write_text(generate(args.statements))
        sql = path.read_text()
        config = LintConfig(pg_version=PG_VERSION)

        result = lint_sql(sql, config, str(path))
        count = len(result.statements)
        # Cold: the statement cache is emptied before each round, so every statement is
        # tokenized and parsed again (the first lint of a file). Warm: a re-lint of the same
        # file, as on every reconcile of a DatabaseMigration.
        lockstep_seconds = best_of(args.rounds, lambda: lint_sql(sql, config, str(path)), cold=True)
        warm_seconds = best_of(args.rounds, lambda: lint_sql(sql, config, str(path)))
        print(f"file: {count} statements, {len(sql):,} characters")
        print(
            f"lockstep lint (cold): best of {args.rounds}: {lockstep_seconds:.3f} s "
            f"({count / lockstep_seconds:,.0f} statements/s), "
            f"{result.errors} errors, {result.warnings} warnings"
        )
        print(
            f"lockstep lint (warm statement cache): best of {args.rounds}: "
            f"{warm_seconds:.3f} s ({count / warm_seconds:,.0f} statements/s)"
        )

        squawk = squawk_executable()
        if squawk is None:
            print("squawk: not installed (pip package squawk-cli); no comparison")
        else:
            command = [
                squawk,
                f"--pg-version={PG_VERSION[0]}.{PG_VERSION[1]}",
                "--reporter=gcc",
                str(path),
            ]
            squawk_seconds = best_of(
                args.rounds,
                lambda: subprocess.run(command, capture_output=True, check=False),
            )
            print(
                f"squawk {' '.join(command[1:-1])}: best of {args.rounds}: "
                f"{squawk_seconds:.3f} s ({count / squawk_seconds:,.0f} statements/s)"
            )
            print(f"ratio lockstep/squawk (cold): {lockstep_seconds / squawk_seconds:.1f}x")

    corpus_ratio = corpus(args.rounds)
    if lockstep_seconds > BUDGET_SECONDS:
        print(f"FAIL: lockstep took {lockstep_seconds:.3f} s, over the {BUDGET_SECONDS} s budget")
        return 1
    if corpus_ratio is not None and corpus_ratio > CORPUS_TARGET_RATIO:
        print(f"FAIL: the corpus took {corpus_ratio:.1f}x squawk's time, over the target")
        return 1
    print(f"OK: under the {BUDGET_SECONDS} s budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
