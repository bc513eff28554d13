"""Commands that know the database: analyze, check-compatibility, diff.

They read the target (read-only) and create scratch databases on its server, or on the
server named by --dev-database-url-env; the target itself is never written to. Exit codes as
for the other database commands: 0 done, 1 the answer is no, 2 wrong usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lockstep.commands import mask
from lockstep.commands.db import (
    EXIT_FAILED,
    EXIT_OK,
    CommandFailed,
    UsageError,
    _add_lint_options,
    _guarded,
    _lint_config,
    _load,
    add_dev_url_option,
    add_scratch_options,
    add_url_options,
    database_url,
    dev_database_url,
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    for add in SUBCOMMANDS.values():
        add(subparsers)


def _register_analyze(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="facts of the live database, and each pending statement's verdict",
        description="Read the target database (read-only): server version, tables with row "
        "estimate, size and indexes, constraints and whether they are validated, sessions "
        "that would block a migration; with DIR, each pending statement's verdict in the "
        "light of these facts, and with --probe the lock it really takes on a scratch copy.",
    )
    parser.add_argument("directory", metavar="DIR", type=Path, nargs="?", help="migrations")
    add_url_options(parser, required=True)
    parser.add_argument("--probe", action="store_true", help="observe each statement's locks")
    parser.add_argument(
        "--long-transaction",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="report transactions open longer than this (default: 30)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_scratch_options(parser)
    _add_lint_options(parser)
    parser.set_defaults(handler=_guarded("analyze", run_analyze))


def _register_check_compatibility(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "check-compatibility",
        help="which pending statements break the running version",
        description="Run the pending migrations statement by statement on a scratch copy of "
        "the schema the running version needs, and report what each takes away from it "
        "(tables, views, columns, enum values, privileges) or changes incompatibly (types, "
        "NOT NULL without a default). Exit 1 when an expand migration (one that runs while "
        "that version is live) breaks it.",
    )
    parser.add_argument("directory", metavar="DIR", type=Path, help="migrations")
    add_url_options(parser, required=True)
    parser.add_argument(
        "--running-version",
        metavar="VERSION",
        help="the schema version the running release needs (default: the ledger's current)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_dev_url_option(parser)
    _add_lint_options(parser)
    parser.set_defaults(handler=_guarded("check-compatibility", run_check_compatibility))


def _register_diff(subparsers: argparse._SubParsersAction[Any]) -> None:
    from lockstep.schema.hazards import HAZARDS

    parser = subparsers.add_parser(
        "diff",
        help="generate migrations from a desired schema",
        description="Load the desired schema (SQL files) into a scratch database, compare it "
        "with the target's catalog and write ordered, online-safe expand/contract migrations "
        "with up and down. Destructive changes need --allow-hazard KIND; renames are drop + "
        "add unless --rename says otherwise.",
        epilog="hazard kinds: "
        + "; ".join(f"{kind}: {what}" for kind, what in sorted(HAZARDS.items())),
    )
    parser.add_argument(
        "desired", metavar="DESIRED", type=Path, nargs="+", help="SQL files or directories"
    )
    add_url_options(parser, required=True)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--out", metavar="DIR", type=Path, help="write migration files here")
    output.add_argument(
        "--configmap", metavar="NAME", help="print a ConfigMap NAME holding the migrations"
    )
    parser.add_argument("--name", default="schema", help="migration name prefix (default: schema)")
    parser.add_argument(
        "--version-start",
        metavar="YYYYMMDDHHMMSS",
        help="version of the first migration (default: now, UTC); the next ones follow by "
        "one second",
    )
    parser.add_argument(
        "--allow-hazard", action="append", default=[], metavar="KIND", help="allow a hazard"
    )
    parser.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="table.old_column=new_column, or old_table=new_table: a rename, not drop + add",
    )
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when there is a difference (like git diff --exit-code)",
    )
    add_dev_url_option(parser)
    parser.set_defaults(handler=_guarded("diff", run_diff))


SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction[Any]], None]] = {
    "analyze": _register_analyze,
    "check-compatibility": _register_check_compatibility,
    "diff": _register_diff,
}

# ---------------------------------------------------------------------------------- analyze


def run_analyze(args: argparse.Namespace) -> int:
    from lockstep.schema.analysis import analysis_document, analyze

    url = database_url(args)
    source = _load(args.directory) if args.directory is not None else []
    analysis = analyze(
        url,
        source,
        _lint_config(args),
        run_probe=args.probe,
        server_url=dev_database_url(args),
        replay=args.scratch_from == "migrations",
        long_seconds=args.long_transaction,
    )
    if args.format == "json":
        print(json.dumps(analysis_document(analysis), indent=2))
    else:
        _print_analysis(analysis)
    errors = any(item.lint.has_errors for item in analysis.pending)
    return EXIT_FAILED if errors or analysis.probe_error else EXIT_OK


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _print_analysis(analysis: Any) -> None:
    from lockstep.schema.analysis import verdict

    facts = analysis.facts
    catalog = facts.catalog
    print(f"server: PostgreSQL {facts.version[0]}.{facts.version[1]}")
    print(f"tables: {len(catalog.tables)}")
    for table in catalog.tables:
        print(f"  {table.name}  ~{table.rows:,.0f} rows, {_size(table.bytes)}")
        for index in table.indexes:
            state = "" if index.valid else "  INVALID (a failed concurrent build)"
            print(f"    index {index.name} ({_size(index.bytes)}){state}")
        for constraint in table.constraints:
            if not constraint.validated:
                print(f"    constraint {constraint.name} ({constraint.kind}) NOT VALIDATED")
    if facts.sessions:
        print("sessions that would block a migration's locks:")
        for session in facts.sessions:
            print(
                f"  pid {session.pid} ({session.application or 'no application name'}), "
                f"{session.state}, transaction open {session.seconds:.0f} s: "
                f"{mask(' '.join(session.query.split()))}"
            )
    else:
        print("sessions that would block a migration's locks: none")
    if analysis.applied:
        print(f"applied: {analysis.applied[-1]} ({len(analysis.applied)} migrations)")
    if not analysis.pending:
        print("pending migrations: none")
    for item in analysis.pending:
        print(f"pending {item.migration.label}: {item.lint.phase}")
        for statement in item.lint.statements:
            observed = item.observation(statement.index)
            lock = statement.lock
            extra = ""
            if observed is not None and observed.observed:
                lock = observed.lock
                if observed.rewrites:
                    extra += f" rewrites {', '.join(observed.rewrites)};"
                for difference in observed.differences:
                    extra += f" ({difference})"
            elif observed is not None:
                extra = f" (not observed: {observed.note})"
            summary = " ".join(statement.text.split())[:70]
            print(f"  line {statement.line:<4} {lock:<22} {mask(summary)}{extra}")
            print(f"    {mask(verdict(item, statement.index))}")
    if analysis.probe_error:
        print(f"probe stopped: {mask(analysis.probe_error)}")


# ----------------------------------------------------------------------- check-compatibility


def run_check_compatibility(args: argparse.Namespace) -> int:
    from lockstep.lint.engine import lint_set
    from lockstep.schema import scratch
    from lockstep.schema.analysis import applied_versions
    from lockstep.schema.compat import check

    url = database_url(args)
    source = _load(args.directory)
    applied = applied_versions(url)
    running = args.running_version or (applied[-1] if applied else None)
    known = {m.version for m in source}
    if running is not None and running not in known:
        raise UsageError(f"--running-version {running}: no such migration in {args.directory}")
    ordered = sorted(source, key=lambda m: m.version)
    history = [m for m in ordered if running is not None and m.version <= running]
    pending = [m for m in ordered if running is None or m.version > running]
    linted = lint_set([(m.up, m.origin or None) for m in ordered], _lint_config(args))
    by_version = dict(zip((m.version for m in ordered), linted, strict=True))
    # the running version's schema: the target itself when it is at that version, else the
    # migrations up to it replayed
    at_running = bool(applied) and applied[-1] == running
    with scratch.scratch_copy(
        url,
        server_url=dev_database_url(args),
        migrations=None if at_running else [(m.up, m.origin or m.label) for m in history],
        purpose="compat",
    ) as copy:
        report = check(
            copy,
            [
                (m.version, by_version[m.version].phase, by_version[m.version].statements)
                for m in pending
            ],
            running,
        )
    blocking = [b for b in report.breaks if b.while_running]
    if args.format == "json":
        print(
            json.dumps(
                {
                    "runningVersion": running,
                    "checkedStatements": report.checked,
                    "breaks": [
                        {
                            "version": b.version,
                            "line": b.line,
                            "phase": b.phase,
                            "statement": mask(" ".join(b.statement.split())[:120]),
                            "breaks": b.what,
                        }
                        for b in report.breaks
                    ],
                    "error": report.error,
                },
                indent=2,
            )
        )
    else:
        print(f"running version: {running or 'none (empty ledger)'}")
        print(f"pending statements checked: {report.checked}")
        for b in report.breaks:
            when = (
                "BREAKS the running version"
                if b.while_running
                else "contract: runs after the running version is gone"
            )
            summary = mask(" ".join(b.statement.split())[:70])
            print(f"  {b.version} line {b.line}: {summary}\n    {b.what} ({when})")
        if not report.breaks:
            print("compatible: no pending statement breaks the running version")
    if report.error:
        raise CommandFailed(f"a pending statement failed on the scratch copy: {report.error}")
    if blocking:
        raise CommandFailed(
            f"{len(blocking)} change(s) in expand migrations break the running version "
            f"{running or ''}; move them to a contract migration"
        )
    return EXIT_OK


# ------------------------------------------------------------------------------------- diff


def run_diff(args: argparse.Namespace) -> int:
    from lockstep.schema import generate as gen
    from lockstep.schema.scratch import sql_files

    url = database_url(args)
    files = [path for given in args.desired for path in sql_files(given)]
    missing = [str(path) for path in files if not path.exists()]
    if missing or not files:
        raise UsageError(f"no desired schema SQL at {', '.join(missing) or args.desired}")
    start = None
    if args.version_start:
        try:
            start = datetime.strptime(args.version_start, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            raise UsageError("--version-start takes a UTC timestamp YYYYMMDDHHMMSS") from None
    hints = [gen.parse_rename(text) for text in args.rename]
    result = gen.generate(
        url,
        files,
        allow=args.allow_hazard,
        renames=hints,
        server_url=dev_database_url(args),
    )
    if result.empty:
        print("no difference: the database matches the desired schema")
        for note in result.notes:
            print(f"note: {note}")
        return EXIT_OK
    named = gen.file_names(result.migrations, args.name, start)
    if args.configmap:
        sys.stdout.write(gen.configmap_yaml(args.configmap, named))
    elif args.out:
        written = gen.write_directory(args.out, named)
        print(f"wrote {len(written)} files to {args.out}:")
        for line, (stem, _, _) in zip(gen.describe(result), named, strict=True):
            print(f"  {stem}: {line.split(': ', 1)[1]}")
    else:
        for stem, up, down in named:
            print(f"-- ===== {stem}.up.sql\n{up}")
            if down is not None:
                print(f"-- ===== {stem}.down.sql\n{down}")
    for kind, what in result.hazards:
        print(f"hazard allowed: {kind}: {what}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_FAILED if args.exit_code else EXIT_OK
