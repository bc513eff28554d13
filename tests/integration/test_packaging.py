"""The package builds into a wheel that carries the operator, its CLIs and its typing marker,
and the locked runtime requirements export for the image (the Dockerfile's two steps)."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _uv_cache() -> dict[str, str]:
    """Keep using the caches the environment points at (CI keeps them between runs)."""
    keep = ("UV_CACHE_DIR", "XDG_CACHE_HOME", "SSL_CERT_FILE", "PIP_CERT", "UV_INDEX_URL")
    return {key: os.environ[key] for key in keep if key in os.environ}


def uv(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["python3", "-m", "uv", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={
            "UV_PYTHON_DOWNLOADS": "never",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(Path.home()),
            **_uv_cache(),
        },
    )


def test_the_wheel_holds_the_operator_and_both_commands(tmp_path: Path) -> None:
    built = uv("build", "--wheel", "--out-dir", str(tmp_path))
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("lockstep-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    for module in (
        "operator.py",
        "cli.py",
        "plugin.py",
        "py.typed",
        "lint/__init__.py",
        "migrations/engine.py",
        "release/machine.py",
        "api/crd.py",
    ):
        assert f"lockstep/{module}" in names
    assert not any(n.startswith("tests/") for n in names)
    assert "lockstep = lockstep.cli:entry" in scripts
    assert "kubectl-lockstep = lockstep.plugin:main" in scripts


def test_the_locked_runtime_requirements_export_without_development_tools(tmp_path: Path) -> None:
    exported = uv(
        "export",
        "--frozen",
        "--no-dev",
        "--no-emit-project",
        "--no-hashes",
        "-o",
        str(tmp_path / "requirements.txt"),
    )
    assert exported.returncode == 0, exported.stderr
    requirements = (tmp_path / "requirements.txt").read_text()
    for runtime in (
        "kopf==",
        "kubernetes==",
        "psycopg==",
        "pgparse==",
        "pydantic==",
        "prometheus-client==",
    ):
        assert runtime in requirements
    for tool in ("pytest==", "mypy==", "ruff=="):
        assert tool not in requirements
