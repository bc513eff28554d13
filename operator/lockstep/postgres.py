"""The one module that talks to PostgreSQL (psycopg 3).

Every connection is in autocommit mode; transactions are explicit `with conn.transaction():`
blocks, so nothing is ever left "idle in transaction" by accident and statements that cannot
run in a transaction (CREATE INDEX CONCURRENTLY) run as they are. psycopg errors are turned
into `DatabaseError` (with SQLSTATE and message, passwords masked), so callers never import
psycopg. Identifiers go through `sql.Identifier`, values through parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, LiteralString, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from .redact import redact, remember

__all__ = [
    "LOCK_NOT_AVAILABLE",
    "QUERY_CANCELED",
    "Connection",
    "ConnectionFailed",
    "DatabaseError",
    "IndexState",
    "Query",
    "connect",
    "qualified_name",
    "query",
    "server_version",
]

LOCK_NOT_AVAILABLE = "55P03"
"""SQLSTATE of a statement that gave up waiting for a lock (lock_timeout)."""
QUERY_CANCELED = "57014"
"""SQLSTATE of a statement cancelled by statement_timeout (or by a cancel request)."""
DEADLOCK_DETECTED = "40P01"

DEFAULT_CONNECT_TIMEOUT = 10

Query = LiteralString | sql.SQL | sql.Composed
Params = Sequence[Any] | Mapping[str, Any] | None
Row = TypeVar("Row")


class DatabaseError(Exception):
    """A failure reported by PostgreSQL or by the connection to it; never holds a password."""

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = redact(message)
        self.sqlstate = sqlstate
        self.detail = redact(detail) if detail else None
        self.hint = redact(hint) if hint else None
        super().__init__(self.message)

    def __str__(self) -> str:
        text = self.message
        if self.sqlstate:
            text = f"{text} (SQLSTATE {self.sqlstate})"
        if self.detail:
            text = f"{text}; {self.detail}"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, sqlstate={self.sqlstate!r})"

    @property
    def lock_timeout(self) -> bool:
        return self.sqlstate == LOCK_NOT_AVAILABLE


class ConnectionFailed(DatabaseError):
    """The server could not be reached, refused the login, or the connection broke."""


def _wrap(exc: psycopg.Error) -> DatabaseError:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip() or type(exc).__name__
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        return ConnectionFailed(message)
    return DatabaseError(
        message, sqlstate=exc.sqlstate, detail=diag.message_detail, hint=diag.message_hint
    )


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Raise psycopg errors as DatabaseError, without chaining the original exception.

    The original is dropped (`from None`) because its text is not ours to vouch for: a
    traceback must be safe to print.
    """
    try:
        yield
    except psycopg.Error as exc:
        raise _wrap(exc) from None


def _remember_password(url: str) -> None:
    """Register the URL's password with the redactor before anything can echo it."""
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            remember(password)
            remember(unquote(password))
    with contextlib.suppress(psycopg.Error, ValueError):
        parsed = psycopg.conninfo.conninfo_to_dict(url).get("password")
        if isinstance(parsed, str):
            remember(parsed)


def connect(
    url: str,
    *,
    application_name: str = "lockstep",
    autocommit: bool = True,
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
) -> Connection:
    """Open a connection (autocommit unless told otherwise); raise ConnectionFailed on failure."""
    _remember_password(url)
    try:
        raw = psycopg.connect(
            url,
            autocommit=autocommit,
            # migrations run each statement once: server-side prepared statements only cost
            # a round trip and break behind transaction-pooling proxies
            prepare_threshold=None,
            connect_timeout=connect_timeout,
            application_name=application_name,
            # a runner whose host vanished must not keep its advisory lock for hours
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
    except psycopg.Error as exc:
        raise ConnectionFailed(
            f"cannot connect to the database: {redact(str(exc)).strip()}"
        ) from None
    return Connection(raw)


def query(template: LiteralString, **identifiers: str | Sequence[str]) -> sql.Composed:
    """A query with its `{names}` filled in as quoted identifiers (a sequence = qualified name)."""
    return sql.SQL(template).format(
        **{
            key: sql.Identifier(value) if isinstance(value, str) else sql.Identifier(*value)
            for key, value in identifiers.items()
        }
    )


def qualified_name(name: str) -> tuple[str, ...]:
    """Split `schema.name` (either part possibly double-quoted) into its parts, as PG would.

    Unquoted parts fold to lower case; quoted ones keep their case and may hold dots.
    """
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    index = 0
    while index < len(name):
        char = name[index]
        if quoted:
            if char == '"' and name[index + 1 : index + 2] == '"':
                current.append('"')
                index += 1
            elif char == '"':
                quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted = True
        elif char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char.lower())
        index += 1
    parts.append("".join(current))
    return tuple(parts)


@dataclass(frozen=True)
class IndexState:
    """An index found by name, and whether a failed concurrent build left it unusable."""

    schema: str
    name: str
    valid: bool
    ready: bool


class Connection:
    """A psycopg connection that raises DatabaseError, in autocommit mode by default."""

    def __init__(self, raw: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._raw = raw

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed

    @property
    def backend_pid(self) -> int:
        return self._raw.info.backend_pid

    @property
    def server_version_number(self) -> int:
        return self._raw.info.server_version

    @property
    def in_transaction(self) -> bool:
        return self._raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        try:
            with self._raw.transaction():
                yield
        except psycopg.Error as exc:
            raise _wrap(exc) from None

    def execute(self, statement: Query, params: Params = None) -> None:
        with _translated():
            self._raw.execute(statement, params)

    def execute_text(self, text: str) -> None:
        """Run SQL text written by the user (a migration statement), without parameters.

        With no parameters psycopg sends the text as it is: `%` needs no escaping.
        """
        with _translated():
            # the text is the migration itself: trusted input by definition
            self._raw.execute(text)

    def fetch_all(self, statement: Query, params: Params = None) -> list[tuple[Any, ...]]:
        with _translated():
            return self._raw.execute(statement, params).fetchall()

    def fetch_one(self, statement: Query, params: Params = None) -> tuple[Any, ...] | None:
        with _translated():
            return self._raw.execute(statement, params).fetchone()

    def fetch_value(self, statement: Query, params: Params = None) -> Any:
        row = self.fetch_one(statement, params)
        return None if row is None else row[0]

    def fetch_rows(self, statement: Query, params: Params, row_type: type[Row]) -> list[Row]:
        """Rows mapped onto `row_type` (a dataclass whose fields are the column names)."""
        with _translated(), self._raw.cursor(row_factory=class_row(row_type)) as cursor:
            return cursor.execute(statement, params).fetchall()

    # -- named operations shared by the migration engine -------------------------------------

    def set_session_timeouts(self, *, lock_timeout: float, statement_timeout: float) -> None:
        """Session-level timeouts, for statements that run outside a transaction."""
        self.execute(
            "SELECT set_config('lock_timeout', %s, false), "
            "set_config('statement_timeout', %s, false)",
            (_milliseconds(lock_timeout), _milliseconds(statement_timeout)),
        )

    def set_local_timeouts(self, *, lock_timeout: float, statement_timeout: float) -> None:
        """Timeouts for the current transaction only (SET LOCAL)."""
        self.execute(
            "SELECT set_config('lock_timeout', %s, true), "
            "set_config('statement_timeout', %s, true)",
            (_milliseconds(lock_timeout), _milliseconds(statement_timeout)),
        )

    def reset_session(self) -> None:
        """Forget every session setting a migration may have made (SET search_path, ...)."""
        self.execute("RESET ALL")

    def try_advisory_lock(self, key: int) -> bool:
        return bool(self.fetch_value("SELECT pg_try_advisory_lock(%s)", (key,)))

    def advisory_unlock(self, key: int) -> bool:
        return bool(self.fetch_value("SELECT pg_advisory_unlock(%s)", (key,)))

    def holds_advisory_lock(self, key: int) -> bool:
        classid, objid = _advisory_lock_parts(key)
        return bool(
            self.fetch_value(
                "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid() AND classid = %s AND objid = %s "
                "AND objsubid = 1 AND granted)",
                (classid, objid),
            )
        )

    def advisory_lock_holder(self, key: int) -> str | None:
        """Who holds a session advisory lock (pid, application, client, since), if anyone."""
        classid, objid = _advisory_lock_parts(key)
        row = self.fetch_one(
            "SELECT a.pid, a.application_name, a.client_addr::text, a.backend_start, a.usename "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s "
            "AND l.objsubid = 1 AND l.granted AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            (classid, objid),
        )
        if row is None:
            return None
        pid, application, client, since, user = row
        return (
            f"backend pid {pid}, application {application or '?'!r}, user {user!r}, "
            f"client {client or 'local socket'}, connected since {since:%Y-%m-%d %H:%M:%S %Z}"
        )

    def index_state(self, name: str) -> IndexState | None:
        """The index `name` (optionally schema-qualified) as the search path resolves it."""
        row = self.fetch_one(
            "SELECT n.nspname, c.relname, i.indisvalid, i.indisready "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(%s)",
            (_regclass_text(name),),
        )
        if row is None:
            return None
        return IndexState(schema=row[0], name=row[1], valid=row[2], ready=row[3])

    def drop_index_concurrently(self, schema: str, name: str) -> None:
        self.execute(query("DROP INDEX CONCURRENTLY IF EXISTS {index}", index=(schema, name)))

    def keep_schema_out_of_search_path(self, schema: str) -> None:
        """Make sure unqualified names do not resolve to `schema`.

        The default search path starts with "$user": for a role named like the schema, every
        unqualified CREATE TABLE would land in it once it exists.
        """
        row = self.fetch_one(
            "SELECT current_setting('search_path'), current_user, %s = ANY(current_schemas(false))",
            (schema,),
        )
        if row is None or not row[2]:
            return
        path, user = row[0], row[1]
        kept = [
            entry
            for entry in (part.strip() for part in path.split(","))
            if entry and _search_path_schema(entry, user) != schema
        ]
        self.execute("SELECT set_config('search_path', %s, false)", (", ".join(kept),))

    def set_client_connection_check(self, seconds: float) -> None:
        """Have the server notice a vanished client while a statement runs (PostgreSQL 14+).

        Without it a killed runner's statement (and its locks) lives on until it finishes.
        """
        if self.server_version_number >= 140000:
            self.execute(
                "SELECT set_config('client_connection_check_interval', %s, false)",
                (_milliseconds(seconds),),
            )


def _search_path_schema(entry: str, user: str) -> str:
    """The schema a search_path entry names ("$user" is the current role)."""
    if entry in {'"$user"', "$user"}:
        return user
    if entry.startswith('"') and entry.endswith('"'):
        return entry[1:-1].replace('""', '"')
    return entry.lower()


def _milliseconds(seconds: float) -> str:
    return f"{max(0, round(seconds * 1000))}ms"


def _advisory_lock_parts(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def _regclass_text(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in qualified_name(name))


def server_version(conn: Connection) -> tuple[int, int]:
    """The server's (major, minor) version, e.g. (15, 4)."""
    number = conn.server_version_number
    if number >= 100000:
        return number // 10000, number % 10000
    return number // 10000, (number // 100) % 100
