"""A real project's history: Concourse CI's SQL migrations (tests/data/concourse) applied in
order give the desired schema; `lockstep diff` from earlier points of that history to it
round-trips: what it generates lints clean, applies through lockstep's engine, and leaves
nothing to diff."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.generated import apply_generated

from lockstep.postgres import connect
from lockstep.schema.generate import file_names, generate, write_directory
from lockstep.schema.hazards import HAZARDS
from lockstep.schema.scratch import execute_script

MIGRATIONS = Path(__file__).resolve().parents[1] / "data" / "concourse" / "migrations"
UPS = sorted(MIGRATIONS.glob("*.up.sql"))


def test_the_corpus_is_there() -> None:
    assert len(UPS) == 149
    assert len(list(MIGRATIONS.glob("*.sql"))) == 299


@pytest.mark.parametrize("applied", [1, 100])
def test_diff_from_an_earlier_point_of_the_history_round_trips(
    applied: int, database_url: str, tmp_path: Path
) -> None:
    with connect(database_url) as conn:
        for path in UPS[:applied]:
            execute_script(conn, path.read_text(), path.name)
    result = generate(database_url, UPS, allow=list(HAZARDS))
    assert not result.empty
    directory = tmp_path / "generated"
    write_directory(directory, file_names(result.migrations, "concourse"))
    apply_generated(database_url, directory)
    assert generate(database_url, UPS, allow=list(HAZARDS)).empty
