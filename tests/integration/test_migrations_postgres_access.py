"""lockstep.postgres: the one module that talks to PostgreSQL, against a real server."""

from __future__ import annotations

import traceback
from urllib.parse import urlsplit, urlunsplit

import pytest
from tests.env.postgres import PostgresServer
from tests.env.processes import free_port

from lockstep import postgres
from lockstep.postgres import (
    Connection,
    ConnectionFailed,
    DatabaseError,
    connect,
    query,
    server_version,
)


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _everything_printed(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def test_connects_in_autocommit_and_reports_the_server_version(
    database_url: str, postgres: PostgresServer
) -> None:
    with connect(database_url) as conn:
        major, minor = server_version(conn)
        assert major == postgres.version
        assert minor >= 0
        conn.execute("CREATE TABLE committed_at_once (id int)")
        assert not conn.in_transaction
    with connect(database_url) as other:
        assert other.fetch_value("SELECT to_regclass('committed_at_once') IS NOT NULL")


def test_a_transaction_block_rolls_back_when_it_raises(database_url: str) -> None:
    def create_then_fail(conn: Connection) -> None:
        with conn.transaction():
            conn.execute("CREATE TABLE rolled_back (id int)")
            conn.execute("SELECT 1 / 0")

    with connect(database_url) as conn:
        with pytest.raises(DatabaseError) as failure:
            create_then_fail(conn)
        assert failure.value.sqlstate == "22012"
        assert failure.value.message == "division by zero"
        assert conn.fetch_value("SELECT to_regclass('rolled_back')") is None


def test_statement_errors_carry_sqlstate_message_and_detail(database_url: str) -> None:
    with connect(database_url) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(DatabaseError) as failure:
            conn.execute("INSERT INTO t VALUES (1)")
    error = failure.value
    assert error.sqlstate == "23505"
    assert "duplicate key value violates unique constraint" in error.message
    assert error.detail == "Key (id)=(1) already exists."
    assert "SQLSTATE 23505" in str(error)


def test_user_sql_runs_as_written_percent_signs_included(database_url: str) -> None:
    with connect(database_url) as conn:
        conn.execute_text("CREATE TABLE p AS SELECT 'a%b' AS v WHERE 'a%b' LIKE 'a%'")
        assert conn.fetch_value("SELECT v FROM p") == "a%b"


def test_identifiers_are_quoted(database_url: str) -> None:
    awkward = 'Mixed "Case"; DROP TABLE x'
    with connect(database_url) as conn:
        conn.execute(query("CREATE TABLE {table} (id int)", table=("public", awkward)))
        assert conn.fetch_value("SELECT relname FROM pg_class WHERE relname = %s", (awkward,))


def test_a_wrong_password_never_shows_up_in_the_error(database_url: str) -> None:
    wrong = "not-the-Password-4711"
    url = _with_password(database_url, wrong)
    with pytest.raises(ConnectionFailed) as failure:
        connect(url, connect_timeout=5)
    printed = _everything_printed(failure.value)
    assert "password authentication failed" in printed
    assert wrong not in printed
    assert url not in printed
    assert failure.value.__cause__ is None


def test_a_closed_port_fails_fast_without_the_password(postgres: PostgresServer) -> None:
    url = f"postgresql://lockstep:{postgres.password}@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(ConnectionFailed) as failure:
        connect(url, connect_timeout=5)
    printed = _everything_printed(failure.value)
    assert "Connection refused" in printed or "connection" in printed.lower()
    assert postgres.password not in printed
    assert url not in printed


def test_a_malformed_url_is_reported_without_echoing_it(postgres: PostgresServer) -> None:
    url = f"postgresql://lockstep:{postgres.password}@127.0.0.1:{postgres.port}/db?bogus=1"
    with pytest.raises(ConnectionFailed) as failure:
        connect(url)
    printed = _everything_printed(failure.value)
    assert postgres.password not in printed
    assert url not in printed


def test_qualified_names_split_like_postgresql_does() -> None:
    assert postgres.qualified_name("Idx") == ("idx",)
    assert postgres.qualified_name("app.Users_Idx") == ("app", "users_idx")
    assert postgres.qualified_name('"App"."a.b""c"') == ("App", 'a.b"c')


def test_index_state_sees_an_invalid_index_and_drops_it_concurrently(database_url: str) -> None:
    with connect(database_url) as conn:
        conn.execute("CREATE TABLE t (a int)")
        conn.execute("INSERT INTO t VALUES (1), (1)")
        with pytest.raises(DatabaseError):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY t_a_key ON t (a)")
        state = conn.index_state("t_a_key")
        assert state is not None
        assert (state.schema, state.name, state.valid) == ("public", "t_a_key", False)
        conn.drop_index_concurrently(state.schema, state.name)
        assert conn.index_state("t_a_key") is None
        assert conn.index_state("no_such_index") is None


def test_advisory_lock_holder_is_described_for_the_waiting_runner(database_url: str) -> None:
    key = 4242
    with (
        connect(database_url, application_name="first-runner") as first,
        connect(database_url) as second,
    ):
        assert first.try_advisory_lock(key)
        assert first.holds_advisory_lock(key)
        assert not second.try_advisory_lock(key)
        holder = second.advisory_lock_holder(key)
        assert holder is not None
        assert f"pid {first.backend_pid}" in holder
        assert "first-runner" in holder
        assert first.advisory_unlock(key)
        assert second.advisory_lock_holder(key) is None


def test_session_and_local_timeouts(database_url: str) -> None:
    with connect(database_url) as conn:
        with conn.transaction():
            conn.set_local_timeouts(lock_timeout=0.3, statement_timeout=5)
            assert conn.fetch_value("SHOW lock_timeout") == "300ms"
        assert conn.fetch_value("SHOW lock_timeout") == "0"
        conn.set_session_timeouts(lock_timeout=2, statement_timeout=600)
        assert conn.fetch_value("SHOW lock_timeout") == "2s"
        assert conn.fetch_value("SHOW statement_timeout") == "10min"
        conn.reset_session()
        assert conn.fetch_value("SHOW statement_timeout") == "0"
