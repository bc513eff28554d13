"""Database commands: lint, new, plan, apply, rollback.

Database URLs are read only from an environment variable named by `--database-url-env` or
from a file named by `--database-url-file`, never from the command line, and never printed.
Exit codes: 0 done, 1 the migrations or the database said no (lint errors, drift, a failed
migration, a busy runner lock, no connection), 2 the command was used wrongly or a file could
not be read.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from lockstep.commands import mask
from lockstep.redact import remember

if TYPE_CHECKING:  # imported where used: `lockstep lint` loads only the lint
    from lockstep.api.migration import LintPolicy, MigrationPolicy
    from lockstep.lint import LintConfig
    from lockstep.lint.checks.base import FileState
    from lockstep.migrations.engine import RunResult
    from lockstep.migrations.linting import LintedSource
    from lockstep.migrations.plan import Plan, Step
    from lockstep.migrations.source import Migration

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UsageError(Exception):
    """The command was used wrongly, or a file it needs cannot be read (exit 2)."""


class CommandFailed(Exception):
    """The command ran and the answer is no (exit 1)."""


# ---------------------------------------------------------------------------- registration


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    for add in SUBCOMMANDS.values():
        add(subparsers)


def _register_lint(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "lint",
        help="lint migration files",
        description="Lint migrations (files, or directories of migrations) for statements "
        "that lock or break a live application. Exit 1 when there are error-level findings.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", type=Path)
    parser.add_argument("--format", choices=("text", "json", "github"), default="text")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="do not read or write the statement cache ($LOCKSTEP_CACHE_DIR, else "
        "~/.cache/lockstep), which lets a re-lint skip parsing statements it has seen",
    )
    parser.add_argument(
        "--include-down",
        action="store_true",
        help="in directories, lint the down migrations too (a file named on the command "
        "line is always linted)",
    )
    _add_lint_options(parser)
    group = parser.add_argument_group(
        "live facts (optional): table sizes, existing constraints and the server version"
    )
    add_url_options(group, required=False)
    group.add_argument(
        "--blocking-budget",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="with a database: a finding whose estimated time under its lock is below this "
        "is a warning, not an error (default: 1)",
    )
    # only the live facts' connection may log: a lint of files starts without logging
    parser.set_defaults(handler=_guarded("lint", run_lint), configures_logging=True)


def _register_new(subparsers: argparse._SubParsersAction[Any]) -> None:
    from lockstep.migrations.source import NEW_NAME_RULE

    parser = subparsers.add_parser(
        "new",
        help="scaffold a new migration",
        description="Create <UTC timestamp>_<name>.up.sql and .down.sql in DIR.",
    )
    parser.add_argument("name", metavar="NAME", help=f"short name: {NEW_NAME_RULE}")
    parser.add_argument("--dir", required=True, type=Path, metavar="DIR")
    parser.set_defaults(handler=_guarded("new", run_new))


def _register_plan(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show what apply would do",
        description="Lint, read the ledger and show the pending migrations with their phase "
        "and lock level per statement, whether a backup is needed, and the compatibility "
        "verdict. Changes nothing. Exit 1 when apply would refuse.",
    )
    _add_database_options(parser)
    parser.add_argument("--target", metavar="VERSION", help="version to reach (default: latest)")
    parser.add_argument("--allow-contract", action="store_true", help=_ALLOW_CONTRACT)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="run each pending statement on a schema-only scratch copy of the database and "
        "show the lock it really takes (the target is not touched)",
    )
    add_scratch_options(parser)
    _add_lint_options(parser)
    _add_policy_options(parser)
    parser.set_defaults(handler=_guarded("plan", run_plan))


_ALLOW_CONTRACT = (
    "also apply contract migrations (they break the application version that is running now)"
)


def _register_apply(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="apply pending migrations",
        description="Lint, then apply the pending migrations in version order, each in its own "
        "transaction with bounded locks. Stops before the first contract migration unless "
        "--allow-contract is given.",
    )
    _add_database_options(parser)
    parser.add_argument("--target", metavar="VERSION", help="version to reach (default: latest)")
    parser.add_argument("--allow-contract", action="store_true", help=_ALLOW_CONTRACT)
    parser.add_argument("--dry-run", action="store_true", help="plan only; apply nothing")
    parser.add_argument("--applied-by", metavar="WHO", help="recorded in the ledger")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    _add_lint_options(parser)
    _add_policy_options(parser)
    parser.set_defaults(handler=_guarded("apply", run_apply))


def _register_rollback(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "rollback",
        help="revert migrations with their down SQL",
        description="Run the down migrations of every applied version above --to, newest "
        "first, each in its own transaction.",
    )
    _add_database_options(parser)
    parser.add_argument("--to", required=True, metavar="VERSION", help="version to return to")
    parser.add_argument("--dry-run", action="store_true", help="plan only; revert nothing")
    parser.add_argument("--applied-by", metavar="WHO", help="recorded in the ledger's log")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    _add_lint_options(parser)
    _add_policy_options(parser)
    parser.set_defaults(handler=_guarded("rollback", run_rollback))


SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction[Any]], None]] = {
    "lint": _register_lint,
    "new": _register_new,
    "plan": _register_plan,
    "apply": _register_apply,
    "rollback": _register_rollback,
}


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", type=Path, help="the migrations directory")
    add_url_options(parser, required=True)


def add_url_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """--database-url-env VAR | --database-url-file PATH (never the URL itself)."""
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument(
        "--database-url-env",
        "--database-url-from-env",
        dest="database_url_env",
        metavar="VAR",
        help="name of the environment variable that holds the database URL",
    )
    source.add_argument(
        "--database-url-file",
        metavar="PATH",
        type=Path,
        help="file that holds the database URL (a mounted Secret, for example)",
    )


def add_scratch_options(parser: argparse.ArgumentParser) -> None:
    """Where and how the schema-only scratch copy of the probe is made."""
    add_dev_url_option(parser)
    parser.add_argument(
        "--scratch-from",
        choices=("dump", "migrations"),
        default="dump",
        help="build the schema-only scratch copy from a pg_dump --schema-only of the target "
        "(default), or by replaying the applied migrations of DIR",
    )


def add_dev_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dev-database-url-env",
        metavar="VAR",
        help="environment variable with the URL of a development server where lockstep may "
        "create and drop scratch databases (default: the target's own server)",
    )


def _add_lint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pg-version",
        metavar="MAJOR[.MINOR]",
        help="PostgreSQL version the rules assume (default: the server's when a database is "
        "given, else 15)",
    )
    parser.add_argument("--error", action="append", default=[], metavar="RULE")
    parser.add_argument("--warn", action="append", default=[], metavar="RULE")
    parser.add_argument("--ignore", action="append", default=[], metavar="RULE")


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "policy (durations like 500ms, 2s, 1m30s; defaults as in a DatabaseMigration's policy)"
    )
    group.add_argument("--lock-timeout", help="default 2s")
    group.add_argument("--statement-timeout", help="default 10m")
    group.add_argument("--lock-timeout-retries", type=int, metavar="N", help="default 10")
    group.add_argument("--retry-backoff", help="default 500ms")
    group.add_argument("--max-retry-backoff", help="default 30s")
    group.add_argument("--runner-lock-timeout", help="default 30s")
    group.add_argument(
        "--backup",
        choices=("auto", "always", "never"),
        help="when plan reports a backup as needed (this command takes none); default auto",
    )


# ---------------------------------------------------------------------------------- handlers


def run_lint(args: argparse.Namespace) -> int:
    from lockstep.lint import format_github, format_json, format_text, lint_set, lint_sql
    from lockstep.lint.reading import cache_directory, use_disk_cache

    cache = use_disk_cache(None if args.no_cache else cache_directory())
    config = _lint_config(args)
    known = None
    url = optional_database_url(args)
    if url is not None:
        from lockstep.cli import configure_logging

        configure_logging(args.verbose)
        config, known = _live_lint_config(args, url, config)
    inputs = [
        item for path in args.paths for item in _lint_inputs(path, include_down=args.include_down)
    ]
    # The up migrations (and files named on the command line) are one set, in the order
    # given: what an earlier one establishes counts in the later ones. Downs stand alone.
    ups = [(text, origin) for text, origin, is_down in inputs if not is_down]
    up_results = iter(lint_set(ups, config, known))
    results: list[tuple[str | None, Any]] = [
        (origin, lint_sql(text, config, path=origin) if is_down else next(up_results))
        for text, origin, is_down in inputs
    ]
    if cache is not None:
        cache.save()
    if args.format == "json":
        rendered = format_json(results)
    elif args.format == "github":
        rendered = format_github(results)
    else:
        rendered = "".join(format_text(result, origin) for origin, result in results)
    sys.stdout.write(rendered)
    return EXIT_FAILED if any(result.has_errors for _, result in results) else EXIT_OK


def run_new(args: argparse.Namespace) -> int:
    from lockstep.migrations.source import check_new_name

    name: str = args.name
    problem = check_new_name(name)
    if problem:
        raise UsageError(f"{name!r} is not a valid migration name: {problem}")
    directory: Path = args.dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {directory}: {exc.strerror or exc}") from None
    from datetime import UTC, datetime

    version = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    stem = f"{version}_{name}"
    up, down = directory / f"{stem}.up.sql", directory / f"{stem}.down.sql"
    for path in (up, down):
        if path.exists():
            raise UsageError(f"{path} already exists")
    try:
        up.write_text(_UP_TEMPLATE.format(stem=stem), encoding="utf-8")
        down.write_text(_DOWN_TEMPLATE.format(stem=stem), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write in {directory}: {exc.strerror or exc}") from None
    print(up)
    print(down)
    return EXIT_OK


class _Inputs:
    """What every database command starts from: the migrations, linted, and where to go."""

    __slots__ = ("linted", "policy", "source", "url")

    def __init__(
        self, source: list[Migration], policy: MigrationPolicy, linted: LintedSource, url: str
    ) -> None:
        self.source = source
        self.policy = policy
        self.linted = linted
        self.url = url

    def plan(self, target: str | None, allow_contract: bool) -> Plan:
        from lockstep.migrations import engine

        return engine.plan(
            self.url,
            self.source,
            up_lint=self.linted.up,
            down_lint=self.linted.down,
            policy=self.policy,
            target=target,
            allow_contract=allow_contract,
            application_name="lockstep:plan",
        )

    def apply(
        self,
        args: argparse.Namespace,
        target: str | None,
        allow_contract: bool,
        direction: Literal["up", "down"],
    ) -> RunResult:
        from lockstep.migrations import engine

        return engine.apply(
            self.url,
            self.source,
            up_lint=self.linted.up,
            down_lint=self.linted.down,
            policy=self.policy,
            applied_by=args.applied_by or _default_applier(),
            target=target,
            allow_contract=allow_contract,
            on_event=_print_event,
            direction=direction,
        )


def _inputs(args: argparse.Namespace) -> _Inputs:
    from lockstep.migrations.linting import lint_source

    source = _load(args.directory)
    policy = _policy(args)
    linted = lint_source(source, _lint_config(args, policy.lint))
    return _Inputs(source, policy, linted, _database_url(args))


def run_plan(args: argparse.Namespace) -> int:
    inputs = _inputs(args)
    plan = inputs.plan(args.target, args.allow_contract)
    if args.probe:
        plan = _probed(args, inputs, plan)
    _show_plan(plan, args.format)
    _refuse_lint_errors(plan, inputs)
    return EXIT_OK


def _probed(args: argparse.Namespace, inputs: _Inputs, plan: Plan) -> Plan:
    """The plan with the locks observed on a schema-only scratch copy (see schema.probe)."""
    from lockstep.migrations.plan import with_observations
    from lockstep.schema.probe import probe
    from lockstep.schema.scratch import scratch_copy

    steps = [*plan.steps, *plan.held_back]
    if plan.direction != "up" or not steps:
        return plan
    applied = set(plan.applied_versions)
    history = [(m.up, m.origin or m.label) for m in inputs.source if m.version in applied]
    with scratch_copy(
        inputs.url,
        server_url=dev_database_url(args),
        migrations=history if args.scratch_from == "migrations" else None,
    ) as copy:
        probes = probe(copy, [(s.version, inputs.linted.up[s.version].statements) for s in steps])
    for result in probes:
        if result.error:
            stopped = f"probe stopped at {result.version} {result.error}"
            print(f"lockstep plan: {mask(stopped)}", file=sys.stderr)
    return with_observations(plan, {p.version: p.observations for p in probes})


def run_apply(args: argparse.Namespace) -> int:
    """`plan` and `apply --dry-run` make the same decision: both print the plan, and both
    refuse (exit 1) exactly when apply would."""
    inputs = _inputs(args)
    plan = inputs.plan(args.target, args.allow_contract)
    if args.dry_run:
        _show_plan(plan, args.format, dry_run=True)
    _refuse_lint_errors(plan, inputs)
    if args.dry_run:
        return EXIT_OK
    result = inputs.apply(args, args.target, args.allow_contract, "up")
    _show_result(result, args.format)
    return EXIT_OK


def run_rollback(args: argparse.Namespace) -> int:
    inputs = _inputs(args)
    plan = inputs.plan(args.to, allow_contract=True)
    if plan.direction == "up":
        current = (
            f"the current version {plan.current_version}"
            if plan.current_version
            else "the database, which has no migrations applied"
        )
        raise CommandFailed(
            f"--to {args.to} is above {current}: rollback only goes down; use apply to go up"
        )
    if args.dry_run:
        _show_plan(plan, args.format, dry_run=True)
        return EXIT_OK
    result = inputs.apply(args, args.to, True, "down")
    _show_result(result, args.format)
    return EXIT_OK


# ----------------------------------------------------------------------------------- helpers


def _guarded(command: str, handler: Handler) -> Handler:
    """Turn the expected failures into a message on stderr and an exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except Exception as exc:
            expected = _expected(exc)
            if expected is None:
                raise
            code, label = expected
            _error(command, str(exc), label=label)
            return code

    return run


# Exceptions that end a command with a message, by the module that defines them; a module
# that was never imported cannot have raised its exception, so it is not imported to check.
_FAILURES: tuple[tuple[str, str], ...] = (
    ("lockstep.migrations.plan", "PlanError"),
    ("lockstep.migrations.engine", "EngineError"),
    ("lockstep.postgres", "DatabaseError"),
    ("lockstep.schema.diff", "DiffError"),
    ("lockstep.schema.scratch", "ScratchError"),
)


def _expected(exc: Exception) -> tuple[int, str] | None:
    from lockstep.migrations.source import SourceError

    if isinstance(exc, (UsageError, SourceError)):
        return EXIT_USAGE, "error"
    failures: list[type[Exception]] = [CommandFailed]
    for module_name, class_name in _FAILURES:
        module = sys.modules.get(module_name)
        if module is not None:
            failures.append(getattr(module, class_name))
    if not isinstance(exc, tuple(failures)):
        return None
    plan = sys.modules.get("lockstep.migrations.plan")
    drift = plan is not None and isinstance(exc, plan.DriftError)
    return EXIT_FAILED, "drift" if drift else "error"


def _error(command: str, message: str, *, label: str = "error") -> None:
    print(f"lockstep {command}: {label}: {mask(message)}", file=sys.stderr)


def _live_lint_config(
    args: argparse.Namespace, url: str, config: LintConfig
) -> tuple[LintConfig, FileState]:
    """The configuration with the live database's version and table sizes, and the facts its
    catalog proves (read in one read-only transaction)."""
    from lockstep.postgres import connect
    from lockstep.schema.live import read_live

    with connect(url, application_name="lockstep:lint") as conn:
        facts = read_live(conn)
    version = facts.version if args.pg_version is None else config.pg_version
    live = config.replace(
        pg_version=version, live=facts.tables(), blocking_budget=args.blocking_budget
    )
    return live, facts.file_state()


def _lint_config(args: argparse.Namespace, policy: LintPolicy | None = None) -> LintConfig:
    """The policy's rules plus the command line's (what linting.lint_config does with a
    policy, without loading the API models for a plain `lockstep lint`)."""
    from lockstep.lint.model import LintConfig

    try:
        return LintConfig(
            pg_version=_pg_version(args.pg_version or "15"),
            errors=frozenset([*(policy.errors if policy else []), *args.error]),
            warnings=frozenset([*(policy.warnings if policy else []), *args.warn]),
            ignore=frozenset([*(policy.ignore if policy else []), *args.ignore]),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _pg_version(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?", text.strip())
    if not match:
        raise UsageError(f"--pg-version {text!r}: use a major version like 15, or 15.4")
    return int(match.group(1)), int(match.group(2) or 0)


def _policy(args: argparse.Namespace) -> MigrationPolicy:
    from pydantic import ValidationError

    from lockstep.api.migration import MigrationPolicy

    given = {
        name: getattr(args, name)
        for name in (
            "lock_timeout",
            "statement_timeout",
            "lock_timeout_retries",
            "retry_backoff",
            "max_retry_backoff",
            "runner_lock_timeout",
            "backup",
        )
        if getattr(args, name) is not None
    }
    try:
        return MigrationPolicy(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}" for error in exc.errors()
        )
        raise UsageError(problems) from None


def _load(directory: Path) -> list[Migration]:
    from lockstep.migrations.source import from_directory

    if not directory.exists():
        raise UsageError(f"{directory}: no such directory")
    return from_directory(directory)


def _lint_inputs(path: Path, *, include_down: bool) -> list[tuple[str, str, bool]]:
    """(SQL, where it came from, whether it is a down migration) for each file under `path`.

    In a directory the down migrations are left out unless asked for: they undo on purpose
    (DROP TABLE reverting CREATE TABLE), and apply does not block on their findings either.
    """
    # Read first, look later: one system call for a file, not three (a lint is often handed
    # hundreds).
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        from lockstep.migrations.source import from_directory

        inputs: list[tuple[str, str, bool]] = []
        for migration in from_directory(path):
            inputs.append((migration.up, migration.origin, False))
            if include_down and migration.down is not None:
                inputs.append((migration.down, migration.down_origin, True))
        return inputs
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file or directory") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return [(text.removeprefix("\ufeff"), str(path), False)]


def optional_database_url(args: argparse.Namespace) -> str | None:
    if (
        getattr(args, "database_url_env", None) is None
        and getattr(args, "database_url_file", None) is None
    ):
        return None
    return _database_url(args)


def dev_database_url(args: argparse.Namespace) -> str | None:
    name = getattr(args, "dev_database_url_env", None)
    if name is None:
        return None
    if not _ENV_NAME.match(name):
        raise UsageError("--dev-database-url-env takes the NAME of an environment variable")
    url = os.environ.get(name, "").strip()
    if not url:
        raise UsageError(f"the environment variable {name} is not set or is empty")
    remember_url_secret(url)
    return url


def database_url(args: argparse.Namespace) -> str:
    return _database_url(args)


def _database_url(args: argparse.Namespace) -> str:
    if args.database_url_env is not None:
        name: str = args.database_url_env
        if not _ENV_NAME.match(name):
            looks_like_url = "://" in name or "@" in name or "=" in name
            if looks_like_url:
                remember_url_secret(name)
            raise UsageError(
                "--database-url-env takes the NAME of an environment variable that holds the "
                "database URL"
                + (", not the URL itself (it is not printed)" if looks_like_url else "")
                + "; for example: export DATABASE_URL=...; lockstep apply "
                "--database-url-env DATABASE_URL DIR"
            )
        url = os.environ.get(name, "").strip()
        if not url:
            raise UsageError(f"the environment variable {name} is not set or is empty")
    else:
        path: Path = args.database_url_file
        try:
            url = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(
                f"cannot read the database URL file {path}: {exc.strerror or exc}"
            ) from None
        if not url:
            raise UsageError(f"the database URL file {path} is empty")
    remember_url_secret(url)
    return url


def remember_url_secret(url: str) -> None:
    """Register a URL's password (and the URL) so that no output can carry them."""
    remember(url)
    match = re.match(r"^[a-z][a-z0-9+.-]*://[^/:@\s]*:([^@\s]*)@", url, re.I)
    if match:
        remember(match.group(1))


def _refuse_lint_errors(plan: Plan, inputs: _Inputs) -> None:
    """Stop on lint errors in the migrations not applied yet, up to the plan's target.

    Errors in migrations that are already applied are history: they cannot be fixed without
    changing an applied migration, so they do not block; nor do migrations above the target.
    """
    if plan.direction == "down":
        return
    applied = set(plan.applied_versions)
    target = plan.target_version
    pending = [
        m
        for m in inputs.source
        if m.version not in applied
        and (target is None or m.version <= target)
        and inputs.linted.up[m.version].has_errors
    ]
    if pending:
        from lockstep.lint import format_text

        for migration in pending:
            sys.stderr.write(format_text(inputs.linted.up[migration.version], migration.origin))
        raise CommandFailed(
            "the lint found errors in "
            + ", ".join(m.label for m in pending)
            + "; nothing was applied. Fix them, or lower or ignore the rules "
            "(--warn RULE, --ignore RULE)"
        )


def _default_applier() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def _print_event(kind: str, version: str | None, detail: str) -> None:
    if kind in {"started", "runner-lock-acquired"}:
        return  # the result says as much; keep the output to what matters
    prefix = f"[{version}] " if version else ""
    print(f"lockstep: {prefix}{mask(detail)}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ output


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data."""
    return {
        "currentVersion": plan.current_version,
        "targetVersion": plan.target_version,
        "direction": plan.direction,
        "backupNeeded": plan.backup_needed,
        "verdict": plan.verdict,
        "migrations": [_step_document(step) for step in plan.steps],
        "heldBack": [_step_document(step) for step in plan.held_back],
        "blockedContract": list(plan.blocked_contract),
    }


def _step_document(step: Step) -> dict[str, Any]:
    return {
        "version": step.version,
        "name": step.name,
        "direction": step.direction,
        "phase": step.phase,
        "phaseSource": step.phase_source,
        "transactional": step.transactional,
        "needsBackup": step.needs_backup,
        "lintErrors": list(step.lint_errors),
        "statements": [
            {
                "line": s.line,
                "summary": mask(s.summary),
                "lock": s.lock,
                "observed": s.observed,
                **({"ruleLock": s.rule_lock} if s.rule_lock else {}),
                **({"probeNotes": list(s.probe_notes)} if s.probe_notes else {}),
                "transactional": s.transactional,
                "classes": list(s.classes),
            }
            for s in step.statements
        ],
    }


def _show_plan(
    plan: Plan, output_format: str, *, dry_run: bool = False, out: TextIO | None = None
) -> None:
    out = out or sys.stdout
    if output_format == "json":
        document = plan_document(plan)
        if dry_run:
            document["dryRun"] = True
        import json

        print(json.dumps(document, indent=2), file=out)
        return
    current = plan.current_version or "none (empty ledger)"
    print(f"current version: {current}", file=out)
    print(f"target version:  {plan.target_version or '-'}", file=out)
    print(f"compatibility:   {plan.verdict}", file=out)
    print(f"backup needed:   {'yes' if plan.backup_needed else 'no'}", file=out)
    if plan.steps:
        heading = "to revert" if plan.direction == "down" else "to apply"
        print(f"{heading}:", file=out)
        for step in plan.steps:
            _print_step(step, out)
    if plan.held_back:
        print("held back (contract migrations need --allow-contract):", file=out)
        for step in plan.held_back:
            _print_step(step, out)
    if dry_run:
        print("dry run: nothing was changed", file=out)


def _print_step(step: Step, out: TextIO) -> None:
    mode = "one transaction" if step.transactional else "outside a transaction"
    source = "declared" if step.phase_source == "declared" else "from lint"
    print(f"  {step.label}  {step.phase} ({source}), {mode}", file=out)
    for statement in step.statements:
        lock = statement.lock or "-"
        seen = "  [observed]" if statement.observed else ""
        print(f"    line {statement.line:<4} {lock:<22} {mask(statement.summary)}{seen}", file=out)
        for note in statement.probe_notes:
            print(f"      probe: {note}", file=out)
    for error in step.lint_errors:
        print(f"    lint error: {error}", file=out)


def _show_result(result: RunResult, output_format: str) -> None:
    if output_format == "json":
        document = plan_document(result.plan)
        document["results"] = [
            {
                "version": r.version,
                "name": r.name,
                "direction": r.direction,
                "phase": r.phase,
                "durationMs": r.duration_ms,
                "lockWaitMs": r.lock_wait_ms,
                "attempts": r.attempts,
            }
            for r in result.results
        ]
        import json

        print(json.dumps(document, indent=2))
        return
    if not result.results and not result.plan.held_back:
        print(result.plan.verdict)
        return
    for r in result.results:
        verb = "applied " if r.direction == "up" else "reverted"
        extra = (
            f", {r.attempts} attempts, {r.lock_wait_ms} ms waiting for locks"
            if (r.attempts > 1)
            else ""
        )
        print(f"{verb} {r.version} ({r.name}) {r.phase} in {r.duration_ms} ms{extra}")
    if result.plan.held_back:
        print(
            "held back: "
            + ", ".join(s.label for s in result.plan.held_back)
            + " (contract: run apply --allow-contract once the old application version is gone)"
        )


_UP_TEMPLATE = """\
-- {stem}: up
--
-- lockstep runs this file in one transaction, with lock_timeout and statement_timeout set
-- from the policy, and retries it when a lock is not granted in time. Do not add BEGIN or
-- COMMIT. Statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY) need a
-- migration of their own.
--
-- `lockstep lint` decides whether this is an expand migration (safe while the running
-- application version is live) or a contract one (breaks it, so it waits until that version
-- is gone). To state it yourself, add a phase directive comment (see docs/cli.md).
--
-- Safe patterns: ADD COLUMN with a constant default; CHECK (...) NOT VALID, then VALIDATE
-- in a later migration; CREATE INDEX CONCURRENTLY; FOREIGN KEY ... NOT VALID, then VALIDATE.

"""

_DOWN_TEMPLATE = """\
-- {stem}: down
--
-- Reverts the up migration; `lockstep rollback --to VERSION` runs it, in one transaction.
-- Leave this file out if the change cannot be reverted (restore from a backup instead).

"""
