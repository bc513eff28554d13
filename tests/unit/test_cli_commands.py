"""The command line builds only the command it is asked for, and that parser is the one the
full command line has: `lockstep lint` starts without the other commands' modules."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from lockstep.cli import COMMANDS, MODULES, build_parser, configure_logging, named_command

REPO = Path(__file__).resolve().parents[2]


def commands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_listed_with_the_module_that_adds_it() -> None:
    added = {name: module for module in MODULES for name in import_module(module).SUBCOMMANDS}
    assert added == COMMANDS
    assert set(commands_of(build_parser())) == set(COMMANDS)


def test_a_named_command_gets_the_same_parser_alone() -> None:
    full = commands_of(build_parser())
    for name in COMMANDS:
        alone = commands_of(build_parser(name))
        assert list(alone) == [name]
        assert alone[name].format_help() == full[name].format_help()


def test_the_command_is_the_first_word_unless_help_comes_first() -> None:
    assert named_command(["lint", "a.sql"]) == "lint"
    assert named_command(["-vv", "plan", "dir"]) == "plan"
    assert named_command(["--help", "lint"]) is None
    assert named_command(["-h"]) is None
    assert named_command([]) is None
    assert named_command(["nonsense"]) == "nonsense"


def test_the_top_level_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lockstep", "--help", "lint"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_an_unknown_command_is_refused_with_the_list_of_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lockstep", "nonsense"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "invalid choice: 'nonsense'" in result.stderr
    assert "'lint'" in result.stderr and "'run'" in result.stderr


def test_lint_loads_neither_the_other_commands_nor_asyncio_nor_logging(tmp_path: Path) -> None:
    migration = tmp_path / "001_add.up.sql"
    migration.write_text("ALTER TABLE public.t ADD COLUMN c integer;\n")
    script = (
        "import sys\n"
        "from lockstep.cli import main\n"
        f"main(['lint', '--no-cache', {str(migration)!r}])\n"
        "print(sorted(m for m in ('asyncio', 'lockstep.commands.operator', "
        "'lockstep.commands.schema', 'lockstep.migrations.source', 'pydantic', 'logging') "
        "if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert result.stdout.splitlines()[-1] == "[]"


CORPUS = REPO / "tests" / "data" / "concourse" / "migrations"


def test_the_executable_prints_and_exits_as_main_returns() -> None:
    def run(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, "lint", "--no-cache", *map(str, sorted(CORPUS.glob("*")))],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
        )

    returned = run("import sys\nfrom lockstep.cli import main\nsys.exit(main())")
    fast = run("from lockstep.cli import entry\nentry()")
    assert returned.returncode == fast.returncode == 1
    assert len(fast.stdout) > 100_000  # all of it, flushed before the process ends
    assert fast.stdout == returned.stdout
    assert fast.stderr == returned.stderr


def test_the_executable_runs_the_exit_handlers(tmp_path: Path) -> None:
    migration = tmp_path / "001_add.up.sql"
    migration.write_text("ALTER TABLE public.t ADD COLUMN c integer;\n")
    mark = tmp_path / "ran"
    script = (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(mark)!r}, 'w').write('ran'))\n"
        f"sys.argv = ['lockstep', 'lint', '--no-cache', {str(migration)!r}]\n"
        "from lockstep.cli import entry\n"
        "entry()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert result.returncode == 0
    assert mark.read_text() == "ran"


def test_the_command_line_log_hides_a_connection_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(0)
        try:
            raise RuntimeError("cannot reach postgresql://app:s3cret@db/app")
        except RuntimeError:
            logging.getLogger("lockstep.test").exception("connect to postgresql://u:hunter22@h/d")
    finally:
        root.handlers, root.level = saved[0], saved[1]
    logged = capsys.readouterr().err
    assert "ERROR lockstep.test: connect to postgresql://u:***@h/d" in logged
    assert "app:***@db" in logged
    assert "hunter22" not in logged and "s3cret" not in logged
