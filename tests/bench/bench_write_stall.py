"""How long does a schema change stall the application's writes? Naive SQL vs lockstep.

Run: .venv/bin/python tests/bench/bench_write_stall.py [--rows 1000000] [--lock-timeout 2s]

It starts its own PostgreSQL, fills a table with a million rows, and runs the same change
twice, each time on a fresh copy of the data, while
- a writer process inserts and updates rows without pause and records every write's latency;
- a reader process now and then holds a transaction that read the table open for a few
  seconds (a report, a slow request), so that a DDL statement queues behind it, and every
  write queues behind the DDL.

(a) naive: one file through `psql -1`: ADD COLUMN with a default, SET NOT NULL, CREATE INDEX,
    ADD FOREIGN KEY, all in one transaction.
(b) lockstep: the same intent as lint-clean migrations (constant default; CHECK NOT VALID,
    VALIDATE, SET NOT NULL; CREATE INDEX CONCURRENTLY; FOREIGN KEY NOT VALID, VALIDATE),
    applied by the engine with lock_timeout and retries.

It prints the longest and the 99th-percentile write latency of both runs, and exits 1 when
lockstep's longest stall exceeds lock_timeout + 0.5 s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for tests.env when run as a script

from tests.env.postgres import PostgresServer  # noqa: E402

from lockstep.api.base import seconds  # noqa: E402
from lockstep.api.migration import MigrationPolicy  # noqa: E402
from lockstep.lint import LintConfig  # noqa: E402
from lockstep.migrations import engine  # noqa: E402
from lockstep.migrations.linting import lint_source  # noqa: E402
from lockstep.migrations.source import Migration  # noqa: E402
from lockstep.postgres import connect  # noqa: E402

PARENTS = 1000

NAIVE_SQL = """\
ALTER TABLE events ADD COLUMN status text DEFAULT 'new';
ALTER TABLE events ALTER COLUMN status SET NOT NULL;
CREATE INDEX events_status_idx ON events (status);
ALTER TABLE events ADD CONSTRAINT events_parent_fk FOREIGN KEY (parent_id) REFERENCES parents (id);
"""

SAFE_MIGRATIONS = [
    Migration("001", "add_status", "ALTER TABLE events ADD COLUMN status text DEFAULT 'new';\n"),
    Migration(
        "002",
        "status_not_null_check",
        "ALTER TABLE events ADD CONSTRAINT events_status_not_null "
        "CHECK (status IS NOT NULL) NOT VALID;\n",
    ),
    Migration(
        "003",
        "validate_status_not_null",
        "ALTER TABLE events VALIDATE CONSTRAINT events_status_not_null;\n",
    ),
    Migration(
        "004",
        "status_set_not_null",
        # the validated CHECK proves no NULLs: PostgreSQL 12+ skips the scan
        "ALTER TABLE events ALTER COLUMN status SET NOT NULL;\n"
        "ALTER TABLE events DROP CONSTRAINT events_status_not_null;\n",
    ),
    Migration(
        "005",
        "status_index",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS events_status_idx ON events (status);\n",
    ),
    Migration(
        "006",
        "parent_fk",
        "ALTER TABLE events ADD CONSTRAINT events_parent_fk FOREIGN KEY (parent_id) "
        "REFERENCES parents (id) NOT VALID;\n",
    ),
    Migration(
        "007", "validate_parent_fk", "ALTER TABLE events VALIDATE CONSTRAINT events_parent_fk;\n"
    ),
]
# The lint checks one file at a time: it cannot see that 003 validated the CHECK that makes
# 004's SET NOT NULL a catalog-only change, so that one rule is ignored here.
SAFE_LINT = LintConfig(pg_version=(15, 0), ignore=frozenset({"adding-not-nullable-field"}))


@dataclass
class Run:
    name: str
    latencies: list[float]
    duration: float
    attempts: int = 0

    @property
    def max(self) -> float:
        return max(self.latencies)

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98]

    @property
    def stalled(self) -> float:
        """Seconds spent in writes that took longer than 100 ms."""
        return sum(value for value in self.latencies if value > 0.1)


# ------------------------------------------------------------------------ load processes


def writer(url: str, rows: int, stop: EventType, window: EventType, out: str) -> None:
    """Insert and update rows without pause; record each write's latency while `window`."""
    latencies: list[float] = []
    generator = random.Random(1)
    with connect(url, application_name="bench-writer") as conn:
        while not stop.is_set():
            parent = generator.randint(1, PARENTS)
            started = time.monotonic()
            if generator.random() < 0.5:
                conn.execute("INSERT INTO events (parent_id, payload) VALUES (%s, 'w')", (parent,))
            else:
                conn.execute(
                    "UPDATE events SET payload = 'u' WHERE id = %s", (generator.randint(1, rows),)
                )
            elapsed = time.monotonic() - started
            if window.is_set():
                latencies.append(elapsed)
    Path(out).write_text("\n".join(f"{value:.6f}" for value in latencies))


def reader(url: str, stop: EventType, holding: EventType, hold: float, pause: float) -> None:
    """Now and then, hold a transaction that read the table open for `hold` seconds."""
    generator = random.Random(2)
    with connect(url, application_name="bench-reader") as conn:
        while not stop.is_set():
            with conn.transaction():
                conn.execute("SELECT count(*) FROM events WHERE id < 1000")
                holding.set()
                stop.wait(hold * generator.uniform(0.8, 1.2))
                holding.clear()
            stop.wait(pause * generator.uniform(0.5, 1.5))


# ---------------------------------------------------------------------------- scenario


def prepare(server: PostgresServer, name: str, rows: int) -> str:
    url = server.create_database(name)
    with connect(url) as conn:
        conn.execute(
            "CREATE TABLE parents (id bigint PRIMARY KEY);"
            "CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
            "parent_id bigint NOT NULL, payload text, created_at timestamptz DEFAULT now())"
        )
        conn.execute("INSERT INTO parents SELECT generate_series(1, %s)", (PARENTS,))
        conn.execute(
            "INSERT INTO events (id, parent_id, payload) SELECT g, 1 + g %% %s, 'seed' "
            "FROM generate_series(1, %s) g",
            (PARENTS, rows),
        )
        conn.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), %s)", (rows,))
        conn.execute("VACUUM ANALYZE events")
    return url


Change = Callable[[str], int]
"""Applies the change to the database at the URL; returns the number of attempts."""


def measure(name: str, url: str, rows: int, change: Change, *, hold: float, pause: float) -> Run:
    context = multiprocessing.get_context("spawn")
    stop, window, holding = context.Event(), context.Event(), context.Event()
    handle, out = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".txt")
    os.close(handle)
    load = [
        context.Process(target=writer, args=(url, rows, stop, window, out)),
        context.Process(target=reader, args=(url, stop, holding, hold, pause)),
    ]
    for process in load:
        process.start()
    window.set()
    # start the change half a second into one of the reader's long transactions: the moment
    # a naive ALTER TABLE queues behind it, and every write queues behind the ALTER
    if not holding.wait(timeout=60):
        raise SystemExit("the reader never started a transaction")
    time.sleep(0.5)
    started = time.monotonic()
    attempts = change(url)
    duration = time.monotonic() - started
    time.sleep(1.0)  # writes queued behind the change finish inside the window
    window.clear()
    stop.set()
    for process in load:
        process.join(timeout=30)
    latencies = [float(line) for line in Path(out).read_text().split()]
    os.unlink(out)
    return Run(name, latencies, duration, attempts)


def naive_change(server: PostgresServer) -> Change:
    def run(url: str) -> int:
        script = Path(tempfile.mkdtemp()) / "naive.sql"
        script.write_text(NAIVE_SQL)
        database = url.rsplit("/", 1)[1]
        subprocess.run(
            [
                str(server.bindir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-1",
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                "lockstep",
                "-d",
                database,
                "-f",
                str(script),
            ],
            env={**os.environ, "PGPASSWORD": server.password},
            check=True,
        )
        return 1

    return run


def safe_change(lock_timeout: str) -> Change:
    policy = MigrationPolicy(
        lock_timeout=lock_timeout,
        statement_timeout="10m",
        lock_timeout_retries=50,
        retry_backoff="500ms",
        max_retry_backoff="5s",
    )
    linted = lint_source(SAFE_MIGRATIONS, SAFE_LINT)
    problems = [
        f"{version}: {finding.rule}"
        for version, result in linted.up.items()
        for finding in result.findings
        if finding.severity == "error"
    ]
    if problems:
        raise SystemExit(f"the safe migrations are not lint-clean: {problems}")

    def run(url: str) -> int:
        result = engine.apply(
            url,
            SAFE_MIGRATIONS,
            up_lint=linted.up,
            policy=policy,
            applied_by="bench",
            allow_contract=True,
            on_event=lambda kind, version, detail: (
                print(f"  [{version}] {detail}")
                if kind in {"retrying", "invalid-index-dropped"}
                else None
            ),
        )
        return sum(step.attempts for step in result.results)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lock-timeout", default="2s")
    parser.add_argument("--hold", type=float, default=4.0, help="reader transaction seconds")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between them")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="lockstep-bench-"))
    base.chmod(0o755)  # the server runs as the unprivileged postgres user
    server = PostgresServer(base / "postgres")
    server.start()
    try:
        print(f"PostgreSQL {server.version}, {args.rows:,} rows, lock_timeout {args.lock_timeout}")
        naive_url = prepare(server, "bench_naive", args.rows)
        safe_url = prepare(server, "bench_safe", args.rows)
        print("(a) naive: psql -1 -f naive.sql")
        naive = measure(
            "naive", naive_url, args.rows, naive_change(server), hold=args.hold, pause=args.pause
        )
        print("(b) lockstep: 7 migrations, engine with lock_timeout and retries")
        safe = measure(
            "lockstep",
            safe_url,
            args.rows,
            safe_change(args.lock_timeout),
            hold=args.hold,
            pause=args.pause,
        )
    finally:
        server.remove()
    print()
    print(
        f"{'run':<10} {'writes':>8} {'max stall':>10} {'p99':>9} {'stalled >100ms':>15} "
        f"{'change took':>12} {'attempts':>9}"
    )
    for run in (naive, safe):
        print(
            f"{run.name:<10} {len(run.latencies):>8} {run.max * 1000:>8.0f}ms "
            f"{run.p99 * 1000:>7.1f}ms {run.stalled:>14.1f}s {run.duration:>11.1f}s "
            f"{run.attempts:>9}"
        )
    print(f"max stall ratio naive/lockstep: {naive.max / safe.max:.1f}x")
    limit = seconds(args.lock_timeout) + 0.5
    if safe.max > limit:
        print(f"FAIL: lockstep stalled writes for {safe.max:.2f}s > lock_timeout + 0.5s")
        return 1
    print(f"OK: lockstep's longest stall {safe.max:.2f}s <= lock_timeout + 0.5s ({limit:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
