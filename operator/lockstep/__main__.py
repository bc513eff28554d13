"""`python -m lockstep`: the lockstep command line."""

import sys

from lockstep.cli import main

if __name__ == "__main__":
    sys.exit(main())
