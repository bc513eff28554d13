"""The apply engine: runs a plan against the database, one migration at a time.

- One runner at a time: a session advisory lock, taken with `pg_try_advisory_lock` in a loop
  until `runner_lock_timeout`, on a connection of its own. It is never a blocking
  `pg_advisory_lock` (a second runner must be able to give up) and never a transaction-level
  lock (it would have to be held across CREATE INDEX CONCURRENTLY, which waits for every open
  transaction: a deadlock). A killed runner's session ends with it, and so does the lock.
- Each migration runs in its own transaction with `SET LOCAL lock_timeout/statement_timeout`,
  statement by statement so that a failure names the statement, and writes its ledger row in
  that same transaction: it is applied and recorded, or neither.
- A lock timeout (SQLSTATE 55P03) rolls the migration back and retries it after an
  exponential, fully jittered backoff; the wait goes through an injected `wait` so that the
  caller can cancel it.
- A migration made only of statements that cannot run in a transaction (CREATE INDEX
  CONCURRENTLY, ...) runs them one by one with session-level timeouts, records its progress
  after each, and drops an INVALID index left by an earlier failed build before building it
  again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from lockstep.api.base import seconds
from lockstep.api.migration import MigrationPolicy
from lockstep.postgres import (
    DEADLOCK_DETECTED,
    LOCK_NOT_AVAILABLE,
    Connection,
    ConnectionFailed,
    DatabaseError,
    connect,
)
from lockstep.redact import redact

from . import backoff, ledger
from .plan import (
    LintedSql,
    Plan,
    PlanError,
    PlannedStatement,
    Step,
    is_session_setting,
    make_plan,
    shorten,
)
from .records import AppliedMigration
from .source import Migration

log = logging.getLogger("lockstep.migrations")

EventKind = Literal[
    "runner-lock-waiting",
    "runner-lock-acquired",
    "held-back",
    "started",
    "resumed",
    "invalid-index-dropped",
    "retrying",
    "applied",
    "reverted",
    "failed",
]
OnEvent = Callable[[EventKind, str | None, str], None]
"""Progress callback: (kind, version or None, a sentence for a human)."""
Wait = Callable[[float], bool]
"""Waits up to the given seconds; returns True when the caller wants to stop."""

# One key for every lockstep runner; advisory locks are per database already.
RUNNER_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"lockstep:migrations:runner").digest()[:8], "big", signed=True
)
RUNNER_LOCK_POLL = 0.5
"""Seconds between two tries of the runner lock."""
CLIENT_CHECK_INTERVAL = 1.0
"""How soon the server notices a vanished runner mid-statement and rolls it back."""

_T = TypeVar("_T")

# Worth another try after a rollback: the lock may be free next time.
_RETRYABLE = frozenset({LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED})


class EngineError(Exception):
    """The engine stopped; the message says why. It never holds a password."""


class RunnerLockTimeout(EngineError):
    """Another runner held the migration lock for longer than runner_lock_timeout."""


class Cancelled(EngineError):
    """The caller asked to stop while the engine was waiting."""


class MigrationFailed(EngineError):
    """A migration failed; for a transactional one nothing of it was applied."""

    def __init__(
        self,
        version: str,
        statement: str | None,
        sqlstate: str | None,
        message: str,
        *,
        summary: str,
        attempts: int = 1,
        lock_wait_ms: int = 0,
    ) -> None:
        self.version = version
        self.statement = redact(shorten(statement)) if statement else None
        self.sqlstate = sqlstate
        self.message = redact(message)
        self.attempts = attempts
        self.lock_wait_ms = lock_wait_ms
        super().__init__(redact(summary))

    @property
    def lock_timeout(self) -> bool:
        return self.sqlstate == LOCK_NOT_AVAILABLE


@dataclass(frozen=True)
class Settings:
    """The policy's timing knobs, in seconds."""

    lock_timeout: float = 2.0
    statement_timeout: float = 600.0
    lock_timeout_retries: int = 10
    retry_backoff: float = 0.5
    max_retry_backoff: float = 30.0
    runner_lock_timeout: float = 30.0

    @classmethod
    def from_policy(cls, policy: MigrationPolicy) -> Settings:
        return cls(
            lock_timeout=seconds(policy.lock_timeout),
            statement_timeout=seconds(policy.statement_timeout),
            lock_timeout_retries=policy.lock_timeout_retries,
            retry_backoff=seconds(policy.retry_backoff),
            max_retry_backoff=seconds(policy.max_retry_backoff),
            runner_lock_timeout=seconds(policy.runner_lock_timeout),
        )


@dataclass(frozen=True)
class StepResult:
    """How one migration went."""

    version: str
    name: str
    direction: str
    phase: str
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    lock_wait_ms: int
    """Time lost to lock timeouts: failed attempts plus the backoff between them."""
    attempts: int
    attempt_seconds: tuple[float, ...]
    """How long each attempt took, the successful last one included."""


@dataclass(frozen=True)
class RunResult:
    plan: Plan
    """The plan as computed under the runner lock (what was actually run)."""
    results: tuple[StepResult, ...]


# ------------------------------------------------------------------------------ entry points


def read_applied(url: str, *, application_name: str = "lockstep") -> list[AppliedMigration]:
    """The ledger rows, without creating the ledger or taking any lock."""
    with connect(url, application_name=application_name) as conn:
        return ledger.applied(conn)


def plan(
    url: str,
    source: Sequence[Migration],
    *,
    up_lint: Mapping[str, LintedSql],
    down_lint: Mapping[str, LintedSql] | None = None,
    policy: MigrationPolicy,
    target: str | None = None,
    allow_contract: bool = False,
    application_name: str = "lockstep",
) -> Plan:
    """What `apply` would do now (a dry run): reads the ledger, changes nothing."""
    return make_plan(
        source,
        read_applied(url, application_name=application_name),
        target=target,
        up_lint=up_lint,
        down_lint=down_lint,
        policy=policy,
        allow_contract=allow_contract,
    )


def apply(
    url: str,
    source: Sequence[Migration],
    *,
    up_lint: Mapping[str, LintedSql],
    down_lint: Mapping[str, LintedSql] | None = None,
    policy: MigrationPolicy,
    applied_by: str,
    target: str | None = None,
    allow_contract: bool = False,
    wait: Wait | None = None,
    on_event: OnEvent | None = None,
    uniform: Callable[[], float] = random.random,
    application_name: str = "lockstep",
    direction: Literal["up", "down"] | None = None,
) -> RunResult:
    """Bring the database to `target` (None = latest) under the runner lock.

    The plan is made again once the lock is held, from the ledger as it is then, so a
    migration applied by another runner meanwhile is not applied twice. With `direction`,
    a plan that would go the other way is refused (an apply that must never roll back).
    """
    runner = _Runner(
        settings=Settings.from_policy(policy),
        applied_by=applied_by,
        wait=wait or threading.Event().wait,
        on_event=on_event,
        uniform=uniform,
    )
    with (
        connect(url, application_name=f"{application_name}:lock") as lock_conn,
        runner.holding_lock(lock_conn),
        connect(url, application_name=application_name) as conn,
    ):
        ledger.ensure(conn)
        _prepare_session(conn)
        current = make_plan(
            source,
            ledger.applied(conn),
            target=target,
            up_lint=up_lint,
            down_lint=down_lint,
            policy=policy,
            allow_contract=allow_contract,
        )
        if direction is not None and current.direction not in (direction, "none"):
            raise PlanError(
                f"the target {current.target_version} is "
                f"{'below' if current.direction == 'down' else 'above'} the current version "
                f"{current.current_version or '(none)'}: this run only goes {direction}"
            )
        blocked = current.lint_blocked
        if blocked:
            raise PlanError(
                "the lint found errors in "
                + ", ".join(f"{s.label} ({'; '.join(s.lint_errors)})" for s in blocked)
                + ": fix them, or lower or ignore the rules in the lint policy"
            )
        if current.held_back:
            runner.emit("held-back", current.held_back[0].version, current.verdict)
        results = []
        for step in current.steps:
            runner.check_lock(lock_conn, step)
            results.append(runner.run_step(conn, step))
        return RunResult(plan=current, results=tuple(results))


# ------------------------------------------------------------------------------------ runner


class _StatementFailed(Exception):
    """Internal: a statement of the current attempt failed."""

    def __init__(self, statement: str | None, line: int | None, error: DatabaseError) -> None:
        self.statement = statement
        self.line = line
        self.error = error


@dataclass
class _Attempts:
    """The running tally of one step's tries."""

    started_at: datetime
    started: float
    count: int = 0
    lock_wait: float = 0.0
    durations: tuple[float, ...] = ()

    def run(self, step: Step, applied_by: str) -> ledger.Run:
        return ledger.Run(
            version=step.version,
            name=step.name,
            direction=step.direction,
            checksum=step.sql_checksum,
            started_at=self.started_at,
            duration_ms=round((time.monotonic() - self.started) * 1000),
            lock_wait_ms=round(self.lock_wait * 1000),
            attempts=self.count,
            applied_by=applied_by,
        )


class _Runner:
    def __init__(
        self,
        *,
        settings: Settings,
        applied_by: str,
        wait: Wait,
        on_event: OnEvent | None,
        uniform: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.applied_by = applied_by
        self.wait = wait
        self.on_event = on_event
        self.uniform = uniform

    def emit(self, kind: EventKind, version: str | None, detail: str) -> None:
        detail = redact(detail)
        log.info("%s%s: %s", kind, f" {version}" if version else "", detail)
        if self.on_event is None:
            return
        try:
            self.on_event(kind, version, detail)
        except Exception:  # reporting progress must never break a migration half-way
            log.exception("progress callback failed on %s", kind)

    # -- the runner lock --------------------------------------------------------------------

    @contextmanager
    def holding_lock(self, lock_conn: Connection) -> Iterator[None]:
        self.acquire(lock_conn)
        try:
            yield
        finally:
            # if this fails the session is gone, and the lock with it
            with contextlib.suppress(DatabaseError):
                lock_conn.advisory_unlock(RUNNER_LOCK_KEY)

    def acquire(self, lock_conn: Connection) -> None:
        timeout = self.settings.runner_lock_timeout
        deadline = time.monotonic() + timeout
        announced = False
        while not lock_conn.try_advisory_lock(RUNNER_LOCK_KEY):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not announced:
                holder = lock_conn.advisory_lock_holder(RUNNER_LOCK_KEY) or "a session gone since"
            if remaining <= 0:
                raise RunnerLockTimeout(
                    f"another runner holds the migration lock on this database ({holder}); "
                    f"gave up after waiting {timeout:g}s (runnerLockTimeout). Nothing was "
                    "applied; try again when it has finished"
                )
            if not announced:
                self.emit(
                    "runner-lock-waiting",
                    None,
                    f"another runner holds the migration lock ({holder}); waiting up to "
                    f"{timeout:g}s",
                )
                announced = True
            if self.wait(min(RUNNER_LOCK_POLL, remaining)):
                raise Cancelled("cancelled while waiting for the migration lock")
        self.emit("runner-lock-acquired", None, "holding the migration lock")

    def check_lock(self, lock_conn: Connection, step: Step) -> None:
        try:
            held = lock_conn.holds_advisory_lock(RUNNER_LOCK_KEY)
        except DatabaseError:
            held = False
        if not held:
            raise EngineError(
                f"lost the migration lock (its connection broke) before {step.label}; "
                "stopped so that no other runner can apply at the same time"
            )

    # -- one step -----------------------------------------------------------------------------

    def run_step(self, conn: Connection, step: Step) -> StepResult:
        tally = _Attempts(started_at=datetime.now(UTC), started=time.monotonic())
        mode = "in one transaction" if step.transactional else "outside a transaction"
        self.emit(
            "started",
            step.version,
            f"{'applying' if step.direction == 'up' else 'reverting'} {step.label}: "
            f"{len(step.statements)} statement(s) {mode}",
        )
        while True:
            tally.count += 1
            attempt_started = time.monotonic()
            try:
                if step.transactional:
                    self._attempt_in_transaction(conn, step, tally)
                else:
                    self._attempt_outside_transaction(conn, step, tally)
            except _StatementFailed as failure:
                elapsed = time.monotonic() - attempt_started
                tally.durations += (elapsed,)
                _reset_session(conn)
                self._after_failure(conn, step, tally, failure, elapsed)
                continue
            tally.durations += (time.monotonic() - attempt_started,)
            # every migration starts from a clean session: a SET search_path in one must
            # not change what the next one does
            _reset_session(conn)
            break
        finished_at = datetime.now(UTC)
        result = StepResult(
            version=step.version,
            name=step.name,
            direction=step.direction,
            phase=step.phase,
            started_at=tally.started_at,
            finished_at=finished_at,
            duration_ms=round((time.monotonic() - tally.started) * 1000),
            lock_wait_ms=round(tally.lock_wait * 1000),
            attempts=tally.count,
            attempt_seconds=tally.durations,
        )
        retries = f" after {tally.count} attempts" if tally.count > 1 else ""
        self.emit(
            "applied" if step.direction == "up" else "reverted",
            step.version,
            f"{'applied' if step.direction == 'up' else 'reverted'} {step.label} in "
            f"{result.duration_ms} ms{retries}",
        )
        return result

    def _after_failure(
        self,
        conn: Connection,
        step: Step,
        tally: _Attempts,
        failure: _StatementFailed,
        elapsed: float,
    ) -> None:
        """Retry after a backoff (returns), or record the failure and raise."""
        error = failure.error
        retryable = error.sqlstate in _RETRYABLE
        if retryable:
            tally.lock_wait += elapsed
        if retryable and tally.count <= self.settings.lock_timeout_retries:
            pause = backoff.delay(
                tally.count,
                base=self.settings.retry_backoff,
                cap=self.settings.max_retry_backoff,
                uniform=self.uniform,
            )
            self.emit(
                "retrying",
                step.version,
                f"attempt {tally.count} of {step.label} gave up after {elapsed:.2f}s: "
                f"{error.message} at {_where(failure)}; rolled back, retrying in {pause:.2f}s "
                f"(retry {tally.count} of {self.settings.lock_timeout_retries})",
            )
            waited_from = time.monotonic()
            stop = self.wait(pause)
            tally.lock_wait += time.monotonic() - waited_from
            if not stop:
                return
            self._log_failure(conn, step, tally, "cancelled", failure)
            raise Cancelled(
                f"cancelled while waiting to retry {step.label}; nothing of it was applied"
                if step.transactional
                else f"cancelled while waiting to retry {step.label}"
            )
        self._log_failure(conn, step, tally, "failed", failure)
        summary = self._failure_summary(step, tally, failure, retryable)
        self.emit("failed", step.version, summary)
        raise MigrationFailed(
            step.version,
            failure.statement,
            error.sqlstate,
            error.message,
            summary=summary,
            attempts=tally.count,
            lock_wait_ms=round(tally.lock_wait * 1000),
        )

    def _failure_summary(
        self, step: Step, tally: _Attempts, failure: _StatementFailed, retryable: bool
    ) -> str:
        error = failure.error
        verb = "migration" if step.direction == "up" else "down migration"
        if error.sqlstate == LOCK_NOT_AVAILABLE:
            what = (
                f"{verb} {step.label} gave up after {tally.count} attempt(s): each waited "
                f"lock_timeout ({self.settings.lock_timeout:g}s) for a lock at "
                f"{_where(failure)} and did not get it ({error.message}, SQLSTATE "
                f"{error.sqlstate}). A long transaction or a busy table holds a conflicting "
                "lock; find it in pg_stat_activity, or retry later"
            )
        elif retryable:
            what = (
                f"{verb} {step.label} gave up after {tally.count} attempt(s), the last ended "
                f"at {_where(failure)}: {error.message} (SQLSTATE {error.sqlstate})"
            )
        else:
            sqlstate = f" (SQLSTATE {error.sqlstate})" if error.sqlstate else ""
            detail = f"; {error.detail}" if error.detail else ""
            hint = f"; hint: {error.hint}" if error.hint else ""
            what = f"{verb} {step.label} failed at {_where(failure)}: {error.message}{sqlstate}"
            what += detail + hint
        if isinstance(error, ConnectionFailed):
            return (
                f"{what}. The connection broke: if the migration had reached COMMIT it may be "
                "applied; the ledger says which, and the next run continues from there"
            )
        if step.transactional:
            return f"{what}. It was rolled back: nothing of it was applied"
        return (
            f"{what}. It runs outside a transaction: the statements before this one are done "
            "and recorded, and the next run continues from this statement"
        )

    def _log_failure(
        self,
        conn: Connection,
        step: Step,
        tally: _Attempts,
        outcome: Literal["failed", "cancelled"],
        failure: _StatementFailed,
    ) -> None:
        try:
            with conn.transaction():
                ledger.record_failure(
                    conn,
                    tally.run(step, self.applied_by),
                    outcome=outcome,
                    statement=redact(shorten(failure.statement)) if failure.statement else None,
                    sqlstate=failure.error.sqlstate,
                    error=failure.error.message,
                )
        except DatabaseError as exc:  # the audit row is best effort; the error matters more
            log.warning("could not log the failure of %s: %s", step.label, exc)

    # -- attempts -------------------------------------------------------------------------

    def _attempt_in_transaction(self, conn: Connection, step: Step, tally: _Attempts) -> None:
        try:
            with conn.transaction():
                conn.set_local_timeouts(
                    lock_timeout=self.settings.lock_timeout,
                    statement_timeout=self.settings.statement_timeout,
                )
                for statement in step.statements:
                    _execute(conn, statement)
                self._record(conn, step, tally)
        except DatabaseError as error:  # COMMIT itself failed (deferred constraint, ...)
            raise _StatementFailed(None, None, error) from None

    def _attempt_outside_transaction(self, conn: Connection, step: Step, tally: _Attempts) -> None:
        total = len(step.statements)
        _call(
            lambda: conn.set_session_timeouts(
                lock_timeout=self.settings.lock_timeout,
                statement_timeout=self.settings.statement_timeout,
            )
        )
        done = self._resume_point(conn, step)
        for statement in step.statements[done:]:
            if statement.concurrent_index:
                self._drop_invalid_index(conn, step, statement)
            try:
                _execute(conn, statement)
            except _StatementFailed:
                if statement.concurrent_index:
                    # an INVALID index still slows every write to the table: do not leave it
                    # until the next run if it can go now
                    self._drop_invalid_index(conn, step, statement, best_effort=True)
                raise
            done += 1
            _save(conn, step, done, total)
        try:
            with conn.transaction():
                self._record(conn, step, tally)
        except DatabaseError as error:
            raise _StatementFailed(None, None, error) from None

    def _resume_point(self, conn: Connection, step: Step) -> int:
        """How many statements an earlier, interrupted run of this step already finished."""
        progress = _call(lambda: ledger.progress(conn, step.version))
        if progress is None:
            return 0
        if progress.checksum != step.sql_checksum or progress.direction != step.direction:
            raise _StatementFailed(
                None,
                None,
                DatabaseError(
                    f"an earlier {progress.direction} run of {step.label} finished "
                    f"{progress.statements_done} of {progress.statements_total} statements "
                    "from different SQL than the current source; restore that SQL to finish "
                    "it, or undo its statements by hand and delete its row from "
                    "lockstep.migration_progress"
                ),
            )
        done = progress.statements_done
        if done:
            self.emit(
                "resumed",
                step.version,
                f"continuing {step.label} after statement {done} of {len(step.statements)}, "
                "finished by an earlier run",
            )
            # settings made by the skipped statements (SET statement_timeout ...) still apply
            for statement in step.statements[:done]:
                if is_session_setting(statement):
                    _execute(conn, statement)
        return done

    def _drop_invalid_index(
        self,
        conn: Connection,
        step: Step,
        statement: PlannedStatement,
        *,
        best_effort: bool = False,
    ) -> None:
        """Drop an INVALID index of this name, left by a failed concurrent build."""
        name = statement.concurrent_index
        assert name is not None
        try:
            state = conn.index_state(name)
            if state is None or state.valid:
                return
            conn.drop_index_concurrently(state.schema, state.name)
        except DatabaseError as error:
            if best_effort:
                log.warning("could not drop the INVALID index %s: %s", name, error)
                return
            raise _StatementFailed(
                f"DROP INDEX CONCURRENTLY IF EXISTS {name}", statement.line, error
            ) from None
        self.emit(
            "invalid-index-dropped",
            step.version,
            f"dropped the INVALID index {state.schema}.{state.name} left by a failed build"
            + (" just now" if best_effort else "; building it again"),
        )

    def _record(self, conn: Connection, step: Step, tally: _Attempts) -> None:
        run = tally.run(step, self.applied_by)
        if step.direction == "up":
            ledger.record_applied(
                conn,
                run,
                phase=step.phase,
                transactional=step.transactional,
                statements=len(step.statements),
            )
        else:
            ledger.record_reverted(conn, run)


def _execute(conn: Connection, statement: PlannedStatement) -> None:
    try:
        conn.execute_text(statement.text)
    except DatabaseError as error:
        raise _StatementFailed(statement.text, statement.line, error) from None


def _save(conn: Connection, step: Step, done: int, total: int) -> None:
    _call(
        lambda: ledger.save_progress(
            conn,
            version=step.version,
            direction=step.direction,
            checksum=step.sql_checksum,
            done=done,
            total=total,
        )
    )


def _call(action: Callable[[], _T]) -> _T:
    try:
        return action()
    except DatabaseError as error:
        raise _StatementFailed(None, None, error) from None


def _prepare_session(conn: Connection) -> None:
    """The session every migration starts from."""
    conn.set_client_connection_check(CLIENT_CHECK_INTERVAL)
    # unqualified names in migrations must never create objects in the ledger's schema
    conn.keep_schema_out_of_search_path(ledger.SCHEMA)


def _reset_session(conn: Connection) -> None:
    """Undo session settings made by the policy or the migration itself."""
    try:
        conn.reset_session()
        _prepare_session(conn)
    except DatabaseError as error:
        log.warning("could not reset the session after a migration: %s", error)


def _where(failure: _StatementFailed) -> str:
    if failure.statement is None:
        return "the ledger update or the commit"
    line = f"line {failure.line}: " if failure.line else ""
    return f"statement {line}{shorten(redact(failure.statement), 80)}"
