"""Benchmark: lint a generated 5,000-statement migration with lockstep, then with squawk; then a
real project's migrations, a new process each, against squawk.

Run: .venv/bin/python tests/bench/bench_lint.py [--statements N] [--rounds R]

Exits non-zero when lockstep's best time on the generated file is over the 3 s budget, or its
first run on the real corpus takes over 3x squawk's CPU time.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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


def best_of(rounds: int, run: Callable[[], object], cold: bool = False) -> Timing:
    """Best of `rounds` in this process: wall-clock seconds and this process's CPU seconds."""
    walls, cpus = [], []
    for _ in range(rounds):
        if cold:
            clear_caches()
        started, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return Timing(min(walls), min(cpus))


def squawk_executable() -> str | None:
    beside_python = Path(sys.executable).with_name("squawk")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("squawk")


CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "concourse" / "migrations"
CORPUS_TARGET_RATIO = 3.0


def timed(command: list[str], env: dict[str, str] | None = None) -> Timing:
    """One new process: wall-clock seconds, and CPU seconds (user + system, of the process
    and its children). On a machine shared with other work the CPU time is the steadier of
    the two: it does not count the time spent waiting for a core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=False, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Timing(wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float

    def over(self, other: Timing) -> str:
        return f"{self.wall / other.wall:.1f}x wall, {self.cpu / other.cpu:.1f}x CPU"


def corpus(rounds: int) -> float | None:
    """Cold start on a real project's 299 migration files: a new `lockstep lint` process and
    a new squawk process on the same files, best of `rounds` each, interleaved. lockstep is
    timed twice: a first run (--no-cache: every statement tokenized and parsed), and a run
    whose statement cache already holds the files (a re-lint in CI with the cache kept).

    Python's bytecode is written once before timing (an installed package has it: pip and
    `uv sync --compile-bytecode` compile at install time); with PYTHONDONTWRITEBYTECODE set
    and no bytecode, every run would compile the lint's modules again.
    Returns the first run's CPU-time ratio to squawk (the wall-clock ratio swings with the
    machine's load)."""
    files = [str(path) for path in sorted(CORPUS.glob("*.sql"))]
    lockstep = str(Path(sys.executable).with_name("lockstep"))
    squawk = squawk_executable()
    print(f"corpus: {len(files)} files of Concourse CI's migrations (tests/data/concourse)")
    writes_bytecode = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    first_run = [lockstep, "lint", "--no-cache", *files]
    subprocess.run(first_run, check=False, capture_output=True, env=writes_bytecode)
    with tempfile.TemporaryDirectory(prefix="lockstep-lint-cache-") as cache:
        environment = os.environ | {"LOCKSTEP_CACHE_DIR": cache}
        relint = [lockstep, "lint", *files]
        subprocess.run(relint, check=False, capture_output=True, env=environment)
        first: list[Timing] = []
        warm: list[Timing] = []
        theirs: list[Timing] = []
        for _ in range(rounds):  # interleaved, so that a busy moment hits all three alike
            first.append(timed(first_run))
            warm.append(timed(relint, environment))
            if squawk is not None:
                command = [squawk, f"--pg-version={PG_VERSION[0]}.{PG_VERSION[1]}"]
                theirs.append(timed([*command, "--reporter=gcc", *files]))

    def best(timings: list[Timing]) -> Timing:
        return Timing(min(t.wall for t in timings), min(t.cpu for t in timings))

    ours_first, ours_warm = best(first), best(warm)
    print(
        f"lockstep lint, a new process, first run: best of {rounds}: "
        f"{ours_first.wall:.3f} s wall, {ours_first.cpu:.3f} s CPU"
    )
    print(
        f"lockstep lint, a new process, statement cache filled: best of {rounds}: "
        f"{ours_warm.wall:.3f} s wall, {ours_warm.cpu:.3f} s CPU"
    )
    if not theirs:
        return None
    squawk_best = best(theirs)
    print(
        f"squawk, a new process: best of {rounds}: "
        f"{squawk_best.wall:.3f} s wall, {squawk_best.cpu:.3f} s CPU"
    )
    print(
        f"ratio lockstep/squawk (corpus, new process): first run {ours_first.over(squawk_best)}; "
        f"cache filled {ours_warm.over(squawk_best)} (target {CORPUS_TARGET_RATIO:.0f}x)"
    )
    return ours_first.cpu / squawk_best.cpu


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
        cold = best_of(args.rounds, lambda: lint_sql(sql, config, str(path)), cold=True)
        warm = best_of(args.rounds, lambda: lint_sql(sql, config, str(path)))
        print(f"file: {count} statements, {len(sql):,} characters")
        print(
            f"lockstep lint (cold): best of {args.rounds}: {cold.wall:.3f} s wall "
            f"({count / cold.wall:,.0f} statements/s), {cold.cpu:.3f} s CPU; "
            f"{result.errors} errors, {result.warnings} warnings"
        )
        print(
            f"lockstep lint (warm statement cache): best of {args.rounds}: "
            f"{warm.wall:.3f} s wall, {warm.cpu:.3f} s CPU"
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
            runs = [timed(command) for _ in range(args.rounds)]
            theirs = Timing(min(t.wall for t in runs), min(t.cpu for t in runs))
            print(
                f"squawk {' '.join(command[1:-1])}: best of {args.rounds}: "
                f"{theirs.wall:.3f} s wall, {theirs.cpu:.3f} s CPU"
            )
            print(f"ratio lockstep/squawk (cold): {cold.over(theirs)}")

    corpus_ratio = corpus(args.rounds)
    if cold.wall > BUDGET_SECONDS:
        print(f"FAIL: lockstep took {cold.wall:.3f} s, over the {BUDGET_SECONDS} s budget")
        return 1
    if corpus_ratio is not None and corpus_ratio > CORPUS_TARGET_RATIO:
        print(f"FAIL: the corpus's first run took {corpus_ratio:.1f}x squawk's CPU (target 3x)")
        return 1
    print(f"OK: under the {BUDGET_SECONDS} s budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
