"""`python -m tests.env COMMAND [DIR]`: the local environment from the command line.

- `up [DIR]`: start the environment in the background and return once it is ready; print
  what to export and where everything is (`make up`). `up --foreground DIR` runs it in this
  terminal until Ctrl-C instead.
- `down [DIR]`: stop everything `up` started there and remove the directory (`make down`).
- `env [DIR]`: print the export lines, for `eval "$(python -m tests.env env)"` (`make env`).
- `build`: build (or find in the cache) the control-plane binaries; print their directory.

DIR defaults to $LOCKSTEP_ENV, else /tmp/lockstep-env. See tests/env/environment.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .environment import DEFAULT_DIR, down, env, supervise, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.env", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "env", "build"])
    parser.add_argument(
        "dir",
        nargs="?",
        type=Path,
        default=Path(os.environ.get("LOCKSTEP_ENV") or DEFAULT_DIR),
        help="the environment's directory (default: $LOCKSTEP_ENV, else %(default)s)",
    )
    parser.add_argument(
        "--foreground",
        action="store_true",
        help="up: run the environment in this process until interrupted",
    )
    args = parser.parse_intermixed_args(argv)
    if args.command == "build":
        from .cluster import build_controlplane

        print(build_controlplane())
        return 0
    if args.command == "up":
        return supervise(args.dir) if args.foreground else up(args.dir)
    if args.command == "down":
        return down(args.dir)
    return env(args.dir)


if __name__ == "__main__":
    sys.exit(main())
