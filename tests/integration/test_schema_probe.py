"""The lock probe on the real PostgreSQL: observed locks equal the documented ones, a rewrite is
seen exactly when PostgreSQL rewrites, and the live database is never touched."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.env.postgres import PostgresServer

from lockstep.lint import lint_sql
from lockstep.postgres import connect
from lockstep.schema.probe import probe
from lockstep.schema.scratch import SCRATCH_PREFIX, scratch_copy

SCHEMA = """
CREATE TABLE public.users (id bigint PRIMARY KEY, email varchar(40), age integer, note text,
  status text);
CREATE TABLE public.orders (id bigint PRIMARY KEY, user_id bigint, total numeric(10,2));
CREATE TABLE public.events (id bigint, at timestamptz) PARTITION BY RANGE (at);
CREATE TABLE public.events_2026 PARTITION OF public.events
  FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE public.events_2027 (id bigint, at timestamptz);
CREATE INDEX users_age_idx ON public.users (age);
ALTER TABLE public.users ADD CONSTRAINT users_age_check CHECK (age > 0) NOT VALID;
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER users_touch BEFORE UPDATE ON public.users
  FOR EACH ROW EXECUTE FUNCTION public.touch();
INSERT INTO public.users SELECT g, 'u' || g, g, 'n', 's' FROM generate_series(1, 500) g;
"""


@dataclass(frozen=True)
class Documented:
    sql: str
    locks: dict[str, str]
    """Table -> the lock the PostgreSQL documentation gives for the statement."""
    rewrites: bool = False


# ALTER TABLE, CREATE INDEX and explicit-locking pages of the PostgreSQL 15 documentation.
DOCUMENTED = [
    Documented("ALTER TABLE users ADD COLUMN nick text", {"public.users": "ACCESS EXCLUSIVE"}),
    Documented(
        "ALTER TABLE users ADD COLUMN score bigint DEFAULT 0", {"public.users": "ACCESS EXCLUSIVE"}
    ),
    Documented(
        "ALTER TABLE users ADD COLUMN seen timestamptz DEFAULT clock_timestamp()",
        {"public.users": "ACCESS EXCLUSIVE"},
        rewrites=True,
    ),
    Documented(
        "ALTER TABLE users ALTER COLUMN note SET NOT NULL", {"public.users": "ACCESS EXCLUSIVE"}
    ),
    Documented(
        "ALTER TABLE users ALTER COLUMN note DROP NOT NULL", {"public.users": "ACCESS EXCLUSIVE"}
    ),
    Documented("CREATE INDEX users_note_idx ON users (note)", {"public.users": "SHARE"}),
    Documented(
        "CREATE INDEX CONCURRENTLY users_status_idx ON users (status)",
        {"public.users": "SHARE UPDATE EXCLUSIVE"},
    ),
    Documented(
        "ALTER TABLE users ADD CONSTRAINT users_email_check CHECK (email <> '')",
        {"public.users": "ACCESS EXCLUSIVE"},
    ),
    Documented(
        "ALTER TABLE users ADD CONSTRAINT users_email_check CHECK (email <> '') NOT VALID",
        {"public.users": "ACCESS EXCLUSIVE"},
    ),
    Documented(
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users (id) NOT VALID",
        {"public.orders": "SHARE ROW EXCLUSIVE", "public.users": "SHARE ROW EXCLUSIVE"},
    ),
    Documented(
        "ALTER TABLE users VALIDATE CONSTRAINT users_age_check",
        {"public.users": "SHARE UPDATE EXCLUSIVE"},
    ),
    Documented(
        "ALTER TABLE users ALTER COLUMN age TYPE bigint",
        {"public.users": "ACCESS EXCLUSIVE"},
        rewrites=True,
    ),
    Documented(
        "ALTER TABLE users ALTER COLUMN email TYPE varchar(80)",
        {"public.users": "ACCESS EXCLUSIVE"},
    ),
    Documented(
        "ALTER TABLE users ALTER COLUMN email TYPE text", {"public.users": "ACCESS EXCLUSIVE"}
    ),
    Documented("ALTER TABLE orders SET UNLOGGED", {"public.orders": "ACCESS EXCLUSIVE"}, True),
    Documented(
        "ALTER TABLE users ALTER COLUMN note SET STATISTICS 500",
        {"public.users": "SHARE UPDATE EXCLUSIVE"},
    ),
    Documented(
        "ALTER TABLE users SET (fillfactor = 70)", {"public.users": "SHARE UPDATE EXCLUSIVE"}
    ),
    Documented(
        "ALTER TABLE users DISABLE TRIGGER users_touch", {"public.users": "SHARE ROW EXCLUSIVE"}
    ),
    Documented(
        "ALTER TABLE users ALTER COLUMN status SET DEFAULT 'new'",
        {"public.users": "ACCESS EXCLUSIVE"},
    ),
    Documented("ALTER TABLE users DROP COLUMN status", {"public.users": "ACCESS EXCLUSIVE"}),
    Documented("DROP INDEX users_age_idx", {"public.users": "ACCESS EXCLUSIVE"}),
    Documented(
        "ALTER TABLE events ATTACH PARTITION events_2027 "
        "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
        {"public.events": "SHARE UPDATE EXCLUSIVE", "public.events_2027": "ACCESS EXCLUSIVE"},
    ),
    Documented(
        "ALTER TABLE events DETACH PARTITION events_2026",
        {"public.events": "ACCESS EXCLUSIVE", "public.events_2026": "ACCESS EXCLUSIVE"},
    ),
    Documented("LOCK TABLE users IN ROW EXCLUSIVE MODE", {"public.users": "ROW EXCLUSIVE"}),
    Documented("UPDATE users SET note = 'x' WHERE id = 1", {"public.users": "ROW EXCLUSIVE"}),
    Documented("SELECT count(*) FROM users", {"public.users": "ACCESS SHARE"}),
    Documented(
        "CREATE TABLE public.tags (id bigint REFERENCES users (id))",
        {"public.users": "SHARE ROW EXCLUSIVE"},
    ),
]


@pytest.fixture
def live(database_url: str) -> str:
    with connect(database_url) as conn:
        conn.execute_text(SCHEMA)
    return database_url


@pytest.fixture(scope="module")
def template(postgres: PostgresServer) -> Iterator[str]:
    """A schema-only copy of the live schema, built once (the scratch copy of a test is a
    fresh database made from it, which is much faster than a pg_dump per test)."""
    name = f"probe_template_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(name)
    with connect(url) as conn:
        conn.execute_text(SCHEMA)
        conn.execute("TRUNCATE public.users")
    yield name
    postgres.drop_database(name)


@pytest.fixture
def copy(template: str, postgres: PostgresServer) -> Iterator[str]:
    name = f"probe_copy_{uuid.uuid4().hex[:8]}"
    with connect(postgres.url()) as conn:
        conn.execute_text(f"CREATE DATABASE {name} TEMPLATE {template}")
    yield postgres.url(name)
    postgres.drop_database(name)


@pytest.mark.parametrize("case", DOCUMENTED, ids=[case.sql[:70] for case in DOCUMENTED])
def test_observed_locks_are_the_documented_ones(case: Documented, copy: str) -> None:
    [result] = probe(copy, [("1", lint_sql(case.sql).statements)])
    assert result.error is None
    [observation] = result.observations
    assert observation.observed, observation.note
    assert dict(observation.locks) == case.locks
    assert bool(observation.rewrites) is case.rewrites


def test_each_statement_is_observed_after_the_ones_before_it(copy: str) -> None:
    migration = lint_sql(
        "ALTER TABLE users ADD COLUMN flag boolean;\n"
        "ALTER TABLE users ALTER COLUMN flag TYPE integer USING flag::integer;\n"
        "CREATE INDEX users_flag_idx ON users (flag);"
    )
    [result] = probe(copy, [("1", migration.statements)])
    locks = [observation.lock for observation in result.observations]
    assert locks == ["ACCESS EXCLUSIVE", "ACCESS EXCLUSIVE", "SHARE"]
    assert [bool(o.rewrites) for o in result.observations] == [False, True, False]


def test_where_the_rules_guess_differently_the_observation_says_so(copy: str) -> None:
    # the rules take ADD CHECK ... NOT VALID for ACCESS EXCLUSIVE, as documented; a validated
    # FOREIGN KEY takes SHARE ROW EXCLUSIVE on both tables: a table of facts the probe checks
    [result] = probe(
        copy, [("1", lint_sql("ALTER TABLE users ALTER COLUMN age TYPE bigint;").statements)]
    )
    [observation] = result.observations
    assert observation.rewrites == ("public.users",)
    assert observation.differences == []
    [result] = probe(
        copy, [("2", lint_sql("ALTER TABLE users ALTER COLUMN email TYPE text;").statements)]
    )
    [observation] = result.observations
    # without the live type the rules assume a rewrite; the probe sees none
    assert observation.rewrites == ()
    assert observation.differences == ["observed no rewrite, the rules said it rewrites"]


def test_the_live_database_is_never_touched(live: str, postgres: PostgresServer) -> None:
    statements = lint_sql(
        "ALTER TABLE users ADD COLUMN probe_only text;\n"
        "ALTER TABLE users ALTER COLUMN age TYPE bigint;\n"
    ).statements
    outcome: list[object] = []
    with scratch_copy(live) as url, connect(live) as holder:
        # a session holds the strongest lock on the live table while the statements are
        # probed: they run on the copy only, so they are not held up by it
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE public.users IN ACCESS EXCLUSIVE MODE")
        finished = threading.Event()

        def run() -> None:
            outcome.extend(probe(url, [("1", statements)]))
            finished.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert finished.wait(60), "the probe waited for a lock on the live database"
        holder.execute("ROLLBACK")
    [result] = outcome
    assert [o.lock for o in result.observations] == ["ACCESS EXCLUSIVE", "ACCESS EXCLUSIVE"]
    with connect(live) as conn:
        columns = conn.fetch_all(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'public.users'::regclass AND attnum > 0 ORDER BY attnum"
        )
        assert ("probe_only", "text") not in columns
        assert ("age", "integer") in columns
        assert conn.fetch_value("SELECT count(*) FROM public.users") == 500
    with connect(postgres.url()) as conn:
        left = conn.fetch_value(
            "SELECT count(*) FROM pg_database WHERE datname LIKE %s", (SCRATCH_PREFIX + "%",)
        )
    assert left == 0
