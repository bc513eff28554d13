"""A real PostgreSQL server (Debian package) in a temporary directory on a free loopback port."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from .processes import Process, chown_tree, free_port, unprivileged, wait_until

SUPERUSER = "lockstep"


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL server's bin directory."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    if not candidates:
        raise RuntimeError(
            "no PostgreSQL server found under /usr/lib/postgresql: run `make deps` "
            "(apt-get install postgresql)"
        )
    return candidates[-1].parent


class PostgresServer:
    """initdb + postgres, run as an unprivileged user, with password authentication over TCP."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "socket"
        self.bindir = postgres_bindir()
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.process: Process | None = None

    @property
    def version(self) -> int:
        return int(self.bindir.parent.name)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        owner = unprivileged()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        chown_tree(self.base_dir, owner)
        initdb = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=False,
            capture_output=True,
            text=True,
            user=owner[0] if owner else None,
            group=owner[1] if owner else None,
            extra_groups=[] if owner else None,
        )
        pwfile.unlink()
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr.strip()}")
        self.process = Process(
            "postgres",
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"port={self.port}",
                "-c",
                f"unix_socket_directories={self.socket_dir}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
                "-c",
                "log_min_messages=warning",
            ],
            self.base_dir,
            owner=owner,
        )
        wait_until(self._ready, timeout=60, what="PostgreSQL to accept connections")

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server as an operator or a failover would (a fast shutdown: sessions are
        cut, committed work is kept), stay down `down_seconds`, and start it again on the same
        port and data."""
        assert self.process is not None, "start() the server first"
        self.process.popen.send_signal(signal.SIGINT)  # SIGTERM would wait for every client
        self.process.popen.wait(30)
        self.process.stop()
        time.sleep(down_seconds)  # the outage itself
        self.process = Process("postgres", self.process.argv, self.base_dir, owner=unprivileged())
        wait_until(self._ready, timeout=60, what="PostgreSQL to accept connections again")

    def _ready(self) -> bool:
        assert self.process is not None
        self.process.check_alive()
        with psycopg.connect(self.url(), connect_timeout=2) as conn:
            conn.execute("select 1")
        return True

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
