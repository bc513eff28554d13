"""Running a Markdown tutorial as written: its shell blocks, in order, in one bash session.

- A ```sh block is a script: it runs as a whole, under `set -e -o pipefail`, and must succeed.
- A ```console block is a terminal transcript: each `$ ` line is a command (a line ending in
  a backslash continues it), the lines up to the next command are its expected output. The
  command must exit 0, unless the next command is `echo $?`, whose output then states the exit
  code. Expected lines must appear in the output in that order (other lines may come between);
  whitespace runs count as one space and `...` matches any text.
- Other blocks (yaml, text, ...) are not run. Shell blocks in another dialect (bash, shell)
  are refused, so that no command is left untested by mistake.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

RUN = {"sh", "console"}
REFUSED = {"bash", "shell", "zsh", "shell-session"}
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass
class Step:
    """One thing to type: a script or a console command, and what it should print."""

    line: int
    text: str
    script: bool
    expected: list[str] = field(default_factory=list)
    may_fail: bool = False


def steps(markdown: str) -> list[Step]:
    """The tutorial's commands, in order."""
    found: list[Step] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        language, start = fence.group(1), index + 1
        end = start
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        body = lines[start:end]
        if language in REFUSED:
            raise ValueError(f"line {start}: use ```sh or ```console, not ```{language}")
        if language == "sh":
            found.append(Step(start + 1, "\n".join(body), script=True))
        elif language == "console":
            found += console_steps(body, start + 1)
        index = end + 1
    for step, following in itertools.pairwise(found):
        step.may_fail = following.text.strip() == "echo $?"
    return found


def console_steps(body: list[str], first_line: int) -> list[Step]:
    found: list[Step] = []
    index = 0
    while index < len(body):
        line = body[index]
        if not line.startswith("$ "):
            if not found:
                raise ValueError(f"line {first_line + index}: console output before a command")
            found[-1].expected.append(line)
            index += 1
            continue
        command, number = line[2:], first_line + index
        while command.endswith("\\") and index + 1 < len(body):
            index += 1
            command += "\n" + body[index]
        found.append(Step(number, command, script=False))
        index += 1
    return found


def normalise(line: str) -> str:
    return " ".join(line.split())


def pattern(expected: str) -> re.Pattern[str]:
    pieces = normalise(expected).split("...")
    return re.compile(".*".join(re.escape(piece) for piece in pieces))


def missing_lines(expected: list[str], output: str) -> list[str]:
    """The expected lines not found, in order, in `output` (empty when all are there)."""
    actual = [normalise(line) for line in output.splitlines()]
    position = 0
    for number, line in enumerate(line for line in expected if line.strip()):
        wanted = pattern(line)
        while position < len(actual) and not wanted.fullmatch(actual[position]):
            position += 1
        if position == len(actual):
            return [e for e in expected if e.strip()][number:]
        position += 1
    return []


class Shell:
    """One bash process that commands are typed into, as in a terminal."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            self._lines.put(line)
        self._lines.put(None)

    def run(self, text: str, *, script: bool, timeout: float) -> tuple[str, int | None]:
        """Type `text`; its output (stdout and stderr, as a terminal shows them) and exit code,
        or None for the code if the shell exited (a failed script under `set -e`)."""
        assert self.process.stdin is not None
        marker = f"__step_done_{uuid.uuid4().hex}"
        before = "set -e -o pipefail\n" if script else ""
        # $? is restored afterwards, so that a following `echo $?` reports the command's code
        after = f'__rc=$?; set +e +o pipefail; printf "\\n{marker} %s\\n" "$__rc"; (exit $__rc)\n'
        self.process.stdin.write(f"{before}{text}\n{after}".encode())
        self.process.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                raw = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise TimeoutError(
                    f"no answer within {timeout:.0f}s; output so far:\n{''.join(output)}"
                ) from None
            if raw is None:
                return "".join(output), None
            line = raw.decode(errors="replace")
            if line.startswith(marker):
                text_out = "".join(output)
                return text_out[:-1] if text_out.endswith("\n") else text_out, int(line.split()[1])
            output.append(line)

    def close(self) -> None:
        with_suppressed_kill(self.process.pid)
        self.process.wait(10)


def with_suppressed_kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
