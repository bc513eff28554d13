"""The lock probe: run each statement on a scratch copy and read the locks it really takes.

A statement that can run in a transaction is executed inside one; before ROLLBACK the probe
reads `pg_locks` for its own backend (the relation locks on tables that existed before the
statement) and compares `pg_class.relfilenode` with the value before it (a changed one is a
table rewrite). Then the statement is run for real on the scratch copy, so the next one sees
what it did. A statement that cannot run in a transaction (CREATE INDEX CONCURRENTLY, ...) is
started while a second session holds ROW EXCLUSIVE on every table; such statements wait for
writers after taking their own lock, and a third session reads that lock from `pg_locks`
while they wait. The target database is never connected to here: only the scratch copy is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lockstep.lint.model import LOCK_STRENGTH, StatementInfo
from lockstep.postgres import Connection, DatabaseError, connect

_RELATIONS = (
    "SELECT c.oid, c.relfilenode, quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
    "c.relkind, (SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = c.oid) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'm', 'v', 'f', 'i', 'I') AND n.nspname <> 'pg_catalog' "
    "AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'"
)
_LOCKS = (
    "SELECT l.relation, l.mode, l.granted FROM pg_locks l "
    "WHERE l.pid = %s AND l.locktype = 'relation' "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
WAIT_LIMIT = 10.0
"""Seconds to wait for a statement outside a transaction to block behind the writer."""


def lock_name(mode: str) -> str:
    """pg_locks' `AccessExclusiveLock` as the documentation writes it: `ACCESS EXCLUSIVE`."""
    words: list[str] = []
    current = ""
    for char in mode.removesuffix("Lock"):
        if char.isupper() and current:
            words.append(current)
            current = ""
        current += char
    words.append(current)
    return " ".join(word.upper() for word in words if word)


@dataclass(frozen=True)
class Observation:
    """What one statement did on the scratch copy."""

    index: int
    line: int
    text: str
    observed: bool
    """False when the probe could not watch the statement (see `note`)."""
    locks: tuple[tuple[str, str], ...] = ()
    """(table, mode) for each table that existed before, strongest mode per table."""
    rewrites: tuple[str, ...] = ()
    """Tables whose storage was replaced (a rewrite)."""
    rule_lock: str = "NONE"
    rule_rewrites: bool = False
    note: str = ""

    @property
    def lock(self) -> str:
        """The strongest observed lock ("NONE" when none)."""
        strongest = "NONE"
        for _, mode in self.locks:
            if LOCK_STRENGTH.get(mode, 0) > LOCK_STRENGTH[strongest]:
                strongest = mode
        return strongest

    @property
    def differences(self) -> list[str]:
        """Where the observation contradicts the lint's rule-based guess."""
        if not self.observed:
            return []
        found: list[str] = []
        if self.lock != self.rule_lock:
            found.append(f"observed lock {self.lock}, the rules said {self.rule_lock}")
        if bool(self.rewrites) != self.rule_rewrites:
            found.append(
                f"observed a rewrite of {', '.join(self.rewrites)}, the rules said none"
                if self.rewrites
                else "observed no rewrite, the rules said it rewrites"
            )
        return found


@dataclass
class MigrationProbe:
    version: str
    observations: list[Observation] = field(default_factory=list)
    error: str | None = None
    """Set when a statement failed on the scratch copy: the probe stopped there."""


def probe(
    scratch_url: str, migrations: Sequence[tuple[str, Sequence[StatementInfo]]]
) -> list[MigrationProbe]:
    """Run each migration's statements on the scratch copy, in order, observing each one.

    `migrations` holds (version, statements as the lint split them). Stops at the first
    statement that fails on the copy (the later ones would run on a wrong schema).
    """
    results: list[MigrationProbe] = []
    with connect(scratch_url, application_name="lockstep:probe") as conn:
        for version, statements in migrations:
            result = MigrationProbe(version)
            results.append(result)
            for statement in statements:
                try:
                    if statement.transactional:
                        observation = _in_transaction(conn, statement)
                    else:
                        observation = _outside_transaction(conn, scratch_url, statement)
                    result.observations.append(observation)
                except DatabaseError as error:
                    result.error = f"line {statement.line}: {error}"
                    return results
    return results


Relations = dict[int, tuple[int, str, str, int | None]]
"""oid -> (relfilenode, qualified name, relkind, the table of an index)."""


def _relations(conn: Connection) -> Relations:
    return {
        oid: (node, name, kind, table)
        for oid, node, name, kind, table in conn.fetch_all(_RELATIONS)
    }


def _observation(
    statement: StatementInfo,
    before: Relations,
    locks: list[tuple[Any, ...]],
    after: Relations | None,
    note: str = "",
) -> Observation:
    strongest: dict[str, str] = {}
    for locked, mode, _ in locks:
        if locked not in before:
            continue  # a relation the statement created: no other session can wait on it
        # a lock on an existing index counts for its table (REINDEX, DROP INDEX)
        relation = before[locked][3] or locked
        if relation not in before:
            continue
        name = before[relation][1]
        mode_name = lock_name(mode)
        if LOCK_STRENGTH[mode_name] > LOCK_STRENGTH.get(strongest.get(name, "NONE"), 0):
            strongest[name] = mode_name
    rewrites: list[str] = []
    if after is not None:
        for oid, (node, name, kind, _) in before.items():
            if kind in ("r", "m") and oid in after and after[oid][0] != node:
                rewrites.append(name)
    return Observation(
        index=statement.index,
        line=statement.line,
        text=statement.text,
        observed=True,
        locks=tuple(sorted(strongest.items())),
        rewrites=tuple(sorted(rewrites)),
        rule_lock=statement.lock,
        rule_rewrites=statement.rewrites,
        note=note,
    )


class _RollBack(Exception):
    """Leaves the probe's transaction block, which rolls it back."""


def _in_transaction(conn: Connection, statement: StatementInfo) -> Observation:
    try:
        with conn.transaction():
            before = _relations(conn)
            # the probe's own catalog reads take ACCESS SHARE on catalogs only (filtered out)
            conn.execute_text(statement.text)
            locks = conn.fetch_all(_LOCKS, (conn.backend_pid,))
            after = _relations(conn)
            observation = _observation(statement, before, locks, after)
            raise _RollBack
    except _RollBack:
        pass
    # then for real (in a transaction, as the runner does), so that the next statement sees
    # what this one did
    with conn.transaction():
        conn.execute_text(statement.text)
    return observation


def _outside_transaction(conn: Connection, url: str, statement: StatementInfo) -> Observation:
    before = _relations(conn)
    tables = [name for _, name, kind, _ in before.values() if kind in ("r", "p")]
    with (
        connect(url, application_name="lockstep:probe-writer") as writer,
        connect(url, application_name="lockstep:probe-observer") as observer,
    ):
        writer.execute("BEGIN")
        for name in tables:
            writer.execute_text(f"LOCK TABLE {name} IN ROW EXCLUSIVE MODE")
        outcome: dict[str, BaseException | None] = {}

        def run() -> None:
            try:
                conn.execute_text(statement.text)
                outcome["error"] = None
            except BaseException as error:  # re-raised by the caller's thread below
                outcome["error"] = error

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        locks: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + WAIT_LIMIT
        while worker.is_alive() and time.monotonic() < deadline:
            seen = observer.fetch_all(_LOCKS, (conn.backend_pid,))
            waiting = observer.fetch_value(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                (conn.backend_pid,),
            )
            if waiting:
                locks = seen
                break
            time.sleep(0.01)
        writer.execute("ROLLBACK")
        worker.join(timeout=60)
    error = outcome.get("error")
    if error is not None:
        raise error
    if not locks:
        return Observation(
            index=statement.index,
            line=statement.line,
            text=statement.text,
            observed=False,
            rule_lock=statement.lock,
            rule_rewrites=statement.rewrites,
            note="runs outside a transaction and finished before it could be watched",
        )
    granted = [row for row in locks if row[2]]
    return _observation(
        statement,
        before,
        granted,
        None,
        note="outside a transaction: the lock it holds while it waits for writers",
    )
