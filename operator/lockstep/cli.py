"""The `lockstep` command line: one argparse parser, subcommands registered by modules.

Each module in `COMMANDS` exposes `register(subparsers)`; the subparsers it adds set a
`handler(args) -> int` default. `main` returns the exit code; the console script (which
calls `sys.exit(main())`) and `python -m lockstep` turn it into the process exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, NoReturn

from lockstep import __version__
from lockstep.commands import db, mask, operator, schema
from lockstep.redact import RedactingFilter

Handler = Callable[[argparse.Namespace], int]

COMMANDS: list[ModuleType] = [db, schema, operator]
"""Modules that add subcommands; append one to add its commands."""

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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lockstep",
        description="Release an application and its PostgreSQL schema change together.",
    )
    parser.add_argument("--version", action="version", version=f"lockstep {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return _exit_code(exc.code)
    _configure_logging(args.verbose)
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


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
