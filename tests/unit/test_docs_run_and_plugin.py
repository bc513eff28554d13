"""docs/cli.md documents every flag of `lockstep run`, every setting it reads from the
environment, and every command of `kubectl lockstep`: a new one cannot go undocumented."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from lockstep import plugin
from lockstep.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
CLI_DOC = (REPO / "docs" / "cli.md").read_text()


def section(title: str) -> str:
    start = CLI_DOC.index(f"## {title}")
    end = CLI_DOC.find("\n## ", start + 1)
    return CLI_DOC[start : end if end != -1 else None]


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = action.choices[name]
    return found


def test_every_flag_of_run_is_documented() -> None:
    text = section("Running the operator: `lockstep run`")
    flags = [
        option
        for action in subcommand("run")._actions
        for option in action.option_strings
        if option not in ("-h", "--help")
    ]
    assert flags
    for flag in flags:
        assert f"`{flag}" in text or f"{flag}`" in text, flag


def test_every_environment_setting_the_operator_reads_is_documented() -> None:
    text = section("Running the operator: `lockstep run`")
    sources = [
        REPO / "operator/lockstep/operator.py",
        REPO / "operator/lockstep/commands/operator.py",
    ]
    names = {
        name
        for source in sources
        for name in re.findall(r"environ(?:\.get)?\(\s*\"(LOCKSTEP_[A-Z_]+)\"", source.read_text())
    }
    assert "LOCKSTEP_WORKERS" in names
    for name in names:
        assert f"`{name}`" in text, name


def test_every_plugin_command_is_documented() -> None:
    text = section("`kubectl lockstep`: the kubectl plugin")
    for command, _ in plugin.COMMANDS:
        assert f"| `{command} NAME" in text, command
    assert "`pause NAME --next`" in text
