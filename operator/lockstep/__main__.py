"""`python -m lockstep`: the lockstep command line."""

from lockstep.cli import entry

if __name__ == "__main__":
    entry()
