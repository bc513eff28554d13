"""Subcommands of the `lockstep` command line; each module exposes `register(subparsers)`."""

from __future__ import annotations

import re

from lockstep.redact import redact

_CONNECTION_STRING = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*|\b\S*password\s*=\s*\S+", re.I)


def mask(text: str) -> str:
    """Hide anything that looks like a connection string, not only its password.

    For text that may echo the command line back (argparse errors, paths): a URL passed where it
    does not belong must not reach the terminal or a CI log.
    """
    return _CONNECTION_STRING.sub("<connection string hidden>", redact(text))
