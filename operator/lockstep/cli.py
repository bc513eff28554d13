"""The `lockstep` command line: one argparse parser, subcommands registered by modules.

Each module in `MODULES` exposes `register(subparsers)`, which adds all its subcommands, and
`SUBCOMMANDS`, the function that adds each one; the subparsers set a `handler(args) -> int`
default. `COMMANDS` says which module has which command, so that a command line naming one
imports and builds only that one (`lockstep lint` starts without the operator's or the schema
commands' modules). `main` returns the exit code; `entry`, the console script and
`python -m lockstep`, makes it the process exit status.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from collections.abc import Callable
from importlib import import_module
from typing import Any, NoReturn

from lockstep import __version__
from lockstep.commands import mask

Handler = Callable[[argparse.Namespace], int]

MODULES = ("lockstep.commands.db", "lockstep.commands.schema", "lockstep.commands.operator")
"""Modules that add subcommands, in the order `--help` lists them; add one to add its commands
(and its commands to `COMMANDS`)."""

COMMANDS = {
    "lint": "lockstep.commands.db",
    "new": "lockstep.commands.db",
    "plan": "lockstep.commands.db",
    "apply": "lockstep.commands.db",
    "rollback": "lockstep.commands.db",
    "analyze": "lockstep.commands.schema",
    "check-compatibility": "lockstep.commands.schema",
    "diff": "lockstep.commands.schema",
    "run": "lockstep.commands.operator",
    "crds": "lockstep.commands.operator",
}
"""Each command and the module that adds it."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """An argument parser that never echoes a connection string back in its errors.

    Abbreviated long options are off, so that `--database-url` is not taken for
    `--database-url-env`; a URL typed on the command line is refused, not half-used.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {mask(message)}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or (given a command's name) with that one only: it
    parses that command's arguments as the whole parser does."""
    parser = Parser(
        prog="lockstep",
        description="Release an application and its PostgreSQL schema change together.",
    )
    parser.add_argument("--version", action="version", version=f"lockstep {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    if command in COMMANDS:
        import_module(COMMANDS[command]).SUBCOMMANDS[command](subparsers)
    else:
        for name in MODULES:
            import_module(name).register(subparsers)
    return parser


def entry() -> NoReturn:
    """The `lockstep` executable: run `main`, then leave without the interpreter's teardown.

    Freeing every object and module one by one takes a short command (a lint of a few
    hundred files) about a tenth of its time, and nothing is left to do by then: the output
    is flushed and the exit handlers (coverage's, logging's) are run here. With threads
    still running, or when a standard stream cannot be flushed, the interpreter exits as
    usual (it joins the threads, and reports the stream).
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    os._exit(code)


def named_command(argv: list[str]) -> str | None:
    """The command `argv` names, unless it asks for the top-level help first (which lists
    every command). The top-level options take no value, so the first other word is it."""
    for arg in argv:
        if arg in ("-h", "--help", "--"):
            return None
        if not arg.startswith("-"):
            return arg
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(named_command(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return _exit_code(exc.code)
    if not getattr(args, "configures_logging", False):
        configure_logging(args.verbose)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("lockstep: interrupted", file=sys.stderr)
        return 130


def _exit_code(code: Any) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_USAGE


def configure_logging(verbosity: int) -> None:
    """Log records to stderr, redacted. Before every command's handler, except those that
    say `configures_logging` (and call this where they may log)."""
    import logging

    from lockstep.redact import RedactingFilter

    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
