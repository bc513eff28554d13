"""docs/tutorial.md works as written: every command in it, in order, in one shell, from
`make up` to `make down`, with the outputs and exit codes it shows."""

from __future__ import annotations

import contextlib
import os
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.tutorial import Shell, missing_lines, steps
from tests.env.environment import (
    DEFAULT_DIR,
    Layout,
    group_alive,
    process_groups_of,
    read_state,
)
from tests.env.operator_runner import REPO

pytestmark = pytest.mark.cluster

TUTORIAL = REPO / "docs" / "tutorial.md"
STEP_TIMEOUT = 300.0


@pytest.fixture
def home() -> Iterator[Path]:
    """A home directory with the clone at ~/lockstep; the environment in ~/env (the server
    user must be able to enter it)."""
    path = Path(tempfile.mkdtemp(prefix="lockstep-tutorial-"))
    path.chmod(0o755)
    (path / "lockstep").symlink_to(REPO)
    yield path
    env_dir = Layout(path / "env")
    if env_dir.root.exists():  # the tutorial stopped before `make down`
        subprocess.run(
            [sys.executable, "-m", "tests.env", "down", str(env_dir.root)],
            cwd=REPO,
            check=False,
            timeout=120,
        )
    stand_in = path / "ledger" / "traffic.pid"
    if stand_in.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(stand_in.read_text()), 9)
    shutil.rmtree(path, ignore_errors=True)


def shell_environment(home: Path) -> dict[str, str]:
    """This user's terminal, before the tutorial: no lockstep, no KUBECONFIG."""
    hidden = ("lockstep", "kubectl-lockstep")
    path = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and not any((Path(entry) / name).exists() for name in hidden)
    ]
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LOCKSTEP_", "KUBECONFIG", "VIRTUAL_ENV", "PYTEST_"))
    }
    env.update(
        {
            "HOME": str(home),
            "PATH": os.pathsep.join(path),
            "LOCKSTEP_ENV": str(home / "env"),
            # the control-plane build and uv's cache are shared with the rest of the machine
            "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"),
            "PYTHONUSERBASE": site.getuserbase(),
        }
    )
    return env


DIAGNOSTICS = """
kubectl get fr,dbm,deploy,svc,pvc,jobs -o wide
kubectl lockstep status ledger
kubectl get events --sort-by=.eventTime | tail -40
tail -40 "$LOCKSTEP_ENV/operator/lockstep-operator.log"
cat ~/ledger/bugs.json
"""


def diagnostics(shell: Shell) -> str:
    """What the cluster looked like when a step failed (the shell has the tutorial's exports)."""
    try:
        output, _ = shell.run(DIAGNOSTICS, script=False, timeout=60)
    except Exception as error:
        return f"(no diagnostics: {error})"
    return output


def test_every_shell_block_of_the_tutorial_is_run() -> None:
    found = steps(TUTORIAL.read_text())
    commands = [s.text for s in found]
    assert commands[:2] == ["cd ~/lockstep            # your clone of lockstep", "make up"]
    assert "make down" in commands[-1]
    assert sum(bool(s.expected) for s in found) >= 20  # outputs checked along the way


def test_the_tutorial_runs_as_written(home: Path) -> None:
    shell = Shell(home, shell_environment(home))
    env_dir = str(home / "env")
    try:
        for step in steps(TUTORIAL.read_text()):
            where = f"docs/tutorial.md line {step.line}: {step.text.splitlines()[0]}"
            output, code = shell.run(step.text, script=step.script, timeout=STEP_TIMEOUT)
            # the tutorial shows the default directory; this run has its own
            shown = output.replace(env_dir, str(DEFAULT_DIR)).replace(
                f"make -s env LOCKSTEP_ENV={DEFAULT_DIR}", "make -s env"
            )
            assert code is not None, f"{where}: the script failed:\n{shown}"
            if not step.may_fail:
                assert code == 0, f"{where}: exit code {code}:\n{shown}\n{diagnostics(shell)}"
            missing = missing_lines(step.expected, shown)
            assert not missing, (
                f"{where}: expected lines not found, from:\n"
                + "\n".join(missing)
                + f"\n--- in the output:\n{shown}\n--- the cluster:\n{diagnostics(shell)}"
            )
            if step.text == "make up":
                state = read_state(Layout(home / "env"))
                assert state is not None
                started_by_up = process_groups_of(int(state["pid"]))
                assert len(started_by_up) >= 8  # control plane, servers, operator
    finally:
        shell.close()
    # `make down` stopped everything `make up` started, and removed the directory
    assert not (home / "env").exists()
    assert process_groups_of(int(state["pid"])) == []
    assert [g for g in started_by_up if group_alive(g)] == []
