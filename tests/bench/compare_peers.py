"""lockstep diff beside migra on the same schema pairs: round-trip correctness, lint errors in
what each generates, and time.

Run: .venv/bin/python tests/bench/compare_peers.py --migra /path/to/venv/bin/migra

migra (PyPI `migra`, Unlicense; deprecated by its author, last release 2022) is not a lockstep
dependency: install it into a throwaway virtual environment, for example

    uv venv /tmp/peer && uv pip install --python /tmp/peer/bin/python migra psycopg2-binary \\
        'sqlalchemy<2'

The script starts its own PostgreSQL. For each pair (the schema pairs of
tests/integration/test_schema_diff.py, with rows, and two cut points of Concourse's history)
it builds the current database, loads the desired schema into a second database, asks each
tool for the change, applies it (lockstep's migrations through lockstep's engine; migra's
script in one transaction, as its README suggests: `psql -1`), and then checks:
- round trip: lockstep's catalog comparison of the result with the desired schema finds no
  difference (the same check for both tools);
- rows kept: the row counts of the tables that exist before and after are unchanged;
- lint errors: `lockstep lint` of what the tool generated (one file for migra's script).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for tests when run as a script

from tests.env.postgres import PostgresServer  # noqa: E402
from tests.integration.generated import apply_generated  # noqa: E402
from tests.integration.test_schema_diff import BASE, PAIRS, Pair, desired_sql  # noqa: E402

from lockstep.lint import LintConfig, lint_set  # noqa: E402
from lockstep.postgres import DatabaseError, connect  # noqa: E402
from lockstep.schema.generate import file_names, generate, write_directory  # noqa: E402
from lockstep.schema.hazards import HAZARDS  # noqa: E402
from lockstep.schema.scratch import ScratchError, execute_script  # noqa: E402

CONCOURSE = sorted((REPO / "tests/data/concourse/migrations").glob("*.up.sql"))


@dataclass
class Outcome:
    tool: str
    case: str
    seconds: float = 0.0
    applied: bool = False
    round_trip: bool = False
    rows_kept: bool | None = None
    lint_errors: int = 0
    statements: int = 0
    error: str = ""


def counts(url: str) -> dict[str, int]:
    with connect(url) as conn:
        tables = conn.fetch_all(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM "
            "pg_stat_user_tables WHERE schemaname <> 'lockstep'"
        )
        return {name: conn.fetch_value(f"SELECT count(*) FROM {name}") for (name,) in tables}


def kept(before: dict[str, int], after: dict[str, int]) -> bool:
    return all(after[name] == rows for name, rows in before.items() if name in after)


def lint_errors(texts: list[str]) -> tuple[int, int]:
    results = lint_set([(text, None) for text in texts], LintConfig())
    return (
        sum(result.errors for result in results),
        sum(len(result.statements) for result in results),
    )


def run_lockstep(url: str, desired: list[Path], case: str, renames: list[str]) -> Outcome:
    from lockstep.schema.generate import parse_rename

    outcome = Outcome("lockstep diff", case)
    before = counts(url)
    started = time.perf_counter()
    try:
        result = generate(
            url, desired, allow=list(HAZARDS), renames=[parse_rename(r) for r in renames]
        )
    except Exception as error:  # the comparison records every failure
        outcome.error = f"{type(error).__name__}: {error}"[:200]
        return outcome
    outcome.seconds = time.perf_counter() - started
    outcome.lint_errors, outcome.statements = lint_errors([m.up for m in result.migrations])
    with tempfile.TemporaryDirectory() as directory:
        write_directory(Path(directory), file_names(result.migrations, "schema"))
        try:
            apply_generated(url, Path(directory))
            outcome.applied = True
        except (AssertionError, Exception) as error:
            outcome.error = f"apply: {error}"[:200]
            return outcome
    outcome.round_trip = generate(url, desired, allow=list(HAZARDS)).empty
    outcome.rows_kept = kept(before, counts(url))
    return outcome


def run_migra(
    migra: str, server: PostgresServer, url: str, database: str, desired: list[Path], case: str
) -> Outcome:
    outcome = Outcome("migra", case)
    before = counts(url)
    target = f"{case[:20]}_desired".replace(" ", "_").replace(",", "").replace(":", "")
    target = "".join(c for c in target.lower() if c.isalnum() or c == "_")
    server.drop_database(target)
    desired_url = server.create_database(target)
    with connect(desired_url) as conn:
        for path in desired:
            execute_script(conn, path.read_text(), path.name)
    environment = os.environ | {"PGPASSWORD": server.password}
    base = f"postgresql://lockstep@127.0.0.1:{server.port}"
    started = time.perf_counter()
    result = subprocess.run(
        [migra, "--unsafe", f"{base}/{database}", f"{base}/{target}"],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    outcome.seconds = time.perf_counter() - started
    server.drop_database(target)
    if result.returncode not in (0, 2):  # 2: there are differences
        outcome.error = result.stderr.strip().splitlines()[-1][:200] if result.stderr else "?"
        return outcome
    script = result.stdout
    outcome.lint_errors, outcome.statements = lint_errors([script])
    try:
        with connect(url) as conn, conn.transaction():
            conn.execute_text(script)
        outcome.applied = True
    except DatabaseError as error:
        outcome.error = f"apply: {error}"[:200]
        return outcome
    outcome.round_trip = generate(url, desired, allow=list(HAZARDS)).empty
    outcome.rows_kept = kept(before, counts(url))
    return outcome


def cases(tmp: Path) -> list[tuple[str, str, list[Path], list[str]]]:
    """(name, current SQL, desired files, rename hints)."""
    found: list[tuple[str, str, list[Path], list[str]]] = []
    pair: Pair
    for number, pair in enumerate(PAIRS):
        path = tmp / f"pair{number}.sql"
        path.write_text(desired_sql(pair))
        found.append((pair.id, BASE, [path], pair.renames))
    for cut in (1, 100):
        current = "".join(p.read_text() + "\n;\n" for p in CONCOURSE[:cut])
        found.append((f"Concourse, migration {cut} to {len(CONCOURSE)}", current, CONCOURSE, []))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--migra", required=True, help="the migra executable (throwaway venv)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockstep-peers-") as directory:
        base = Path(directory)
        base.chmod(0o755)
        server = PostgresServer(base / "postgres")
        server.start()
        try:
            outcomes: list[Outcome] = []
            for number, (name, current, desired, renames) in enumerate(cases(base)):
                for tool in ("lockstep", "migra"):
                    database = f"c{number}_{tool}"
                    url = server.create_database(database)
                    try:
                        with connect(url) as conn:
                            execute_script(conn, current, "current")
                    except ScratchError as error:
                        print(f"cannot build {name}: {error}", file=sys.stderr)
                        continue
                    if tool == "lockstep":
                        outcomes.append(run_lockstep(url, desired, name, renames))
                    else:
                        outcomes.append(run_migra(args.migra, server, url, database, desired, name))
                    server.drop_database(database)
                    print(_row(outcomes[-1]), flush=True)
        finally:
            server.remove()
    print()
    for tool in ("lockstep diff", "migra"):
        mine = [o for o in outcomes if o.tool == tool]
        print(
            f"{tool}: {sum(o.round_trip for o in mine)}/{len(mine)} round trips, "
            f"{sum(bool(o.rows_kept) for o in mine)}/{len(mine)} with rows kept, "
            f"{sum(o.lint_errors for o in mine)} lint errors in "
            f"{sum(o.statements for o in mine)} generated statements, "
            f"{sum(o.seconds for o in mine):.1f} s"
        )
    return 0


def _row(outcome: Outcome) -> str:
    rows = "-" if outcome.rows_kept is None else ("yes" if outcome.rows_kept else "NO")
    return (
        f"| {outcome.case} | {outcome.tool} | {'yes' if outcome.round_trip else 'NO'} | "
        f"{rows} | {outcome.lint_errors}/{outcome.statements} | {outcome.seconds:.2f} s | "
        f"{outcome.error} |"
    )


if __name__ == "__main__":
    sys.exit(main())
