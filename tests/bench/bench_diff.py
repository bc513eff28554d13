"""Benchmark: `lockstep diff` on a 500-table schema: time and memory.

Run: .venv/bin/python tests/bench/bench_diff.py [--tables 500]

It starts its own PostgreSQL and times two diffs of a generated schema (each table: an identity
primary key, eight columns of common types, a foreign key to the table before it, a CHECK, an
index, a comment; a view per ten tables):
- from an empty database to the whole schema (every object created);
- from the whole schema to a changed one (one table in ten gets a column, an index, a wider
  varchar and a new CHECK), the everyday case.
Each diff includes loading the desired SQL into a scratch database, reading both catalogs and
deciding the statements. Memory is the process's peak resident set size. Exits 1 when a diff
takes over 120 s or the peak is over 1 GiB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for tests.env when run as a script

from tests.env.postgres import PostgresServer  # noqa: E402

from lockstep.postgres import connect  # noqa: E402
from lockstep.schema.generate import generate  # noqa: E402
from lockstep.schema.scratch import execute_script  # noqa: E402

BUDGET_SECONDS = 120.0
BUDGET_RSS_MIB = 1024


def schema(tables: int, changed: bool) -> str:
    parts = []
    for n in range(tables):
        touched = changed and n % 10 == 0
        reference = f",\n  parent_id bigint REFERENCES public.t{n - 1} (id)" if n else ""
        extra = ",\n  added text" if touched else ""
        width = 120 if touched else 60
        parts.append(
            f"CREATE TABLE public.t{n} (\n"
            "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
            f"  name varchar({width}) NOT NULL,\n"
            "  status text DEFAULT 'new',\n"
            "  amount numeric(12,2) DEFAULT 0,\n"
            "  created_at timestamptz NOT NULL DEFAULT now(),\n"
            "  payload jsonb,\n"
            "  flag boolean DEFAULT false,\n"
            "  score integer,\n"
            f"  code uuid{reference}{extra},\n"
            f"  CONSTRAINT t{n}_amount_check CHECK (amount >= 0)"
            + (f",\n  CONSTRAINT t{n}_score_check CHECK (score > 0)" if touched else "")
            + "\n);\n"
            f"CREATE INDEX t{n}_created_idx ON public.t{n} (created_at);\n"
            + (f"CREATE INDEX t{n}_status_idx ON public.t{n} (status);\n" if touched else "")
            + f"COMMENT ON TABLE public.t{n} IS 'table {n}';\n"
        )
        if n % 10 == 9:
            parts.append(f"CREATE VIEW public.v{n} AS SELECT id, name, status FROM public.t{n};\n")
    return "".join(parts)


def timed(url: str, desired: Path) -> tuple[float, int]:
    started = time.perf_counter()
    result = generate(url, [desired])
    seconds = time.perf_counter() - started
    statements = sum(m.up.count(";\n") for m in result.migrations)
    return seconds, statements


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockstep-bench-diff-") as directory:
        base = Path(directory)
        base.chmod(0o755)
        server = PostgresServer(base / "postgres")
        server.start()
        try:
            full = base / "full.sql"
            full.write_text(schema(args.tables, changed=False))
            changed = base / "changed.sql"
            changed.write_text(schema(args.tables, changed=True))
            url = server.create_database("target")
            create_seconds, create_statements = timed(url, full)
            print(
                f"empty -> {args.tables} tables: {create_seconds:.2f} s, "
                f"{create_statements} statements"
            )
            with connect(url) as conn:
                execute_script(conn, full.read_text(), "full schema")
            change_seconds, change_statements = timed(url, changed)
            print(
                f"{args.tables} tables -> changed ({args.tables // 10} tables touched): "
                f"{change_seconds:.2f} s, {change_statements} statements"
            )
            again, nothing = timed(url, full)
            print(f"{args.tables} tables -> the same: {again:.2f} s, {nothing} statements")
        finally:
            server.remove()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MiB")
    worst = max(create_seconds, change_seconds, again)
    if worst > BUDGET_SECONDS or peak > BUDGET_RSS_MIB:
        print(f"FAIL: over the budget ({BUDGET_SECONDS:.0f} s, {BUDGET_RSS_MIB} MiB)")
        return 1
    print(f"OK: under {BUDGET_SECONDS:.0f} s and {BUDGET_RSS_MIB} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
