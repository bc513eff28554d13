"""Scratch databases: created on the target's server (or a separate dev server), loaded with a
schema, and dropped at the end. Nothing here writes to the target database.

A schema gets into a scratch database in one of three ways:
- SQL files (a desired schema), statement by statement;
- a schema-only `pg_dump` of the target (read-only for the target; needs the `pg_dump`
  binary; the URL goes to it through environment variables, never its command line);
- replaying migrations (the ones the target's ledger says are applied).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

from lockstep.lint.split import split_statements
from lockstep.postgres import Connection, DatabaseError, connect, query
from lockstep.redact import redact

SCRATCH_PREFIX = "lockstep_scratch_"
_CREATE_SCHEMA = re.compile(r"^\s*CREATE\s+SCHEMA\s+(?!IF\b)", re.IGNORECASE)


class ScratchError(Exception):
    """A scratch database could not be created or loaded; the message says why."""


def database_url(url: str, database: str) -> str:
    """The same server and credentials, another database (a conninfo string)."""
    return psycopg.conninfo.make_conninfo(url, dbname=database)


@contextmanager
def scratch_database(server_url: str, *, purpose: str = "scratch") -> Iterator[str]:
    """Create an empty database on `server_url`'s server; yield its URL; drop it after.

    Needs the CREATEDB privilege. The name is random, so several runs can share a server.
    """
    name = f"{SCRATCH_PREFIX}{purpose}_{secrets.token_hex(5)}"
    with connect(server_url, application_name=f"lockstep:{purpose}") as conn:
        try:
            conn.execute(query("CREATE DATABASE {name} TEMPLATE template0", name=name))
        except DatabaseError as error:
            raise ScratchError(
                f"cannot create a scratch database on the server ({error}); the role needs "
                "CREATEDB, or name a separate development server with --dev-database-url-env"
            ) from None
        version = conn.server_version_number
    try:
        yield database_url(server_url, name)
    finally:
        with connect(server_url, application_name=f"lockstep:{purpose}") as conn:
            force = " WITH (FORCE)" if version >= 130000 else ""
            conn.execute(query("DROP DATABASE IF EXISTS {name}" + force, name=name))


def execute_script(conn: Connection, sql: str, origin: str) -> None:
    """Run SQL text statement by statement in autocommit (so that CREATE INDEX
    CONCURRENTLY works); a failure names the origin and the statement's line."""
    split = split_statements(sql)
    for statement in split.statements:
        text = _CREATE_SCHEMA.sub("CREATE SCHEMA IF NOT EXISTS ", statement.text, count=1)
        try:
            conn.execute_text(text)
        except DatabaseError as error:
            line = sql.count("\n", 0, statement.start) + 1
            raise ScratchError(f"{origin}, line {line}: {error}") from None


def load_files(conn: Connection, paths: Sequence[Path]) -> None:
    """Load SQL files (a desired schema) in the order given."""
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
        except (OSError, UnicodeDecodeError) as error:
            raise ScratchError(f"cannot read {path}: {error}") from None
        execute_script(conn, text, str(path))


def sql_files(path: Path) -> list[Path]:
    """A file, or the `*.sql` files of a directory (and its subdirectories) sorted by path."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*.sql") if p.is_file())
    return [path]


def pg_dump_binary() -> str | None:
    """pg_dump on PATH, or the newest one of the Debian packages."""
    found = shutil.which("pg_dump")
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_dump"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return str(candidates[-1]) if candidates else None


def schema_dump(
    url: str, exclude_schemas: Sequence[str] = ("lockstep",), *, privileges: bool = True
) -> str:
    """The target's schema as SQL (`pg_dump --schema-only`), without psql meta-commands.

    pg_dump only reads. The connection parameters, password included, go to it through the
    environment (libpq's PG* variables), so no command line ever shows them.
    """
    binary = pg_dump_binary()
    if binary is None:
        raise ScratchError(
            "pg_dump is not installed; install the PostgreSQL client, or build the scratch "
            "copy from the migrations instead"
        )
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("PG")
    } | _libpq_environment(url)
    command = [binary, "--schema-only", "--no-owner"]
    if not privileges:
        command.append("--no-privileges")
    command += [f"--exclude-schema={schema}" for schema in exclude_schemas]
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, check=False, timeout=600
    )
    if result.returncode != 0:
        raise ScratchError(f"pg_dump failed: {redact(result.stderr.strip())}")
    # \restrict and \unrestrict (and any other psql meta-command) are not SQL
    return "\n".join(line for line in result.stdout.splitlines() if not line.startswith("\\"))


_LIBPQ_VARIABLES = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "options": "PGOPTIONS",
}


def _libpq_environment(url: str) -> dict[str, str]:
    try:
        parameters = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ScratchError("the database URL cannot be read") from None
    return {
        _LIBPQ_VARIABLES[key]: str(value)
        for key, value in parameters.items()
        if key in _LIBPQ_VARIABLES and value is not None
    }


@contextmanager
def scratch_copy(
    target_url: str,
    *,
    server_url: str | None = None,
    migrations: Sequence[tuple[str, str]] | None = None,
    purpose: str = "probe",
) -> Iterator[str]:
    """A scratch database holding the target's schema and no rows.

    From `migrations` ((SQL, origin) pairs, in order) when given, else from a schema-only
    dump of the target. The scratch database lives on `server_url`'s server (a dev server),
    or on the target's own.
    """
    # GRANTs name roles, which exist on the target's server but maybe not on a dev server
    dump = (
        None if migrations is not None else schema_dump(target_url, privileges=server_url is None)
    )
    with scratch_database(server_url or target_url, purpose=purpose) as url:
        with connect(url, application_name=f"lockstep:{purpose}") as conn:
            if dump is not None:
                execute_script(conn, dump, "the schema-only dump of the target")
            else:
                for sql, origin in migrations or ():
                    execute_script(conn, sql, origin)
            with contextlib.suppress(DatabaseError):
                conn.reset_session()
        yield url
