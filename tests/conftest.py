"""Shared fixtures: the real servers of the local test environment (see tests/env)."""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.env.postgres import PostgresServer
from tests.env.processes import reap_strays


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    """A temporary directory that the unprivileged server user can enter too."""
    reap_strays()
    path = Path(tempfile.mkdtemp(prefix="lockstep-env-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(session_dir: Path) -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session."""
    server = PostgresServer(session_dir / "postgres")
    server.start()
    yield server
    server.remove()


@pytest.fixture
def database_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for one test; its URL (with the password)."""
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)
