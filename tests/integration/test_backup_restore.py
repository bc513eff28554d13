"""The backup and restore Jobs' own commands, run on this machine against a real PostgreSQL.

Each test takes the container command and env of a Job built by `lockstep.backup`, points the
env's paths at a temporary directory (as a node would point them at its volumes), resolves the
Secret reference to the test database's URL and runs the command with `sh -c`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.env.postgres import PostgresServer
from tests.env.processes import free_port, wait_until

from lockstep.api.base import SecretKeyRef
from lockstep.api.migration import BackupRecord, BackupSpec
from lockstep.backup import (
    BACKUP_MOUNT,
    BackupResult,
    backup_job,
    backup_job_name,
    parse_result,
    restore_job,
    restore_job_name,
)

pytestmark = pytest.mark.postgres

MIGRATION = "shop"
SECRET = SecretKeyRef(name="shop-db", key="url")
OWNER = {
    "apiVersion": "lockstep.dev/v1alpha1",
    "kind": "DatabaseMigration",
    "name": MIGRATION,
    "uid": "0b5c1a36-0000-4000-8000-000000000001",
    "controller": True,
}


@dataclass
class Node:
    """A temporary directory standing in for the pod's volumes and termination log.

    With `busybox`, the commands run in busybox's sh with only busybox's tools and the
    PostgreSQL clients on PATH, as in the postgres alpine image.
    """

    root: Path
    bindir: Path
    busybox: Path | None = None

    @property
    def volume(self) -> Path:
        return self.root / "volume"

    @property
    def termination_log(self) -> Path:
        return self.root / "termination-log"

    def run(self, job: dict[str, Any], database_url: str) -> subprocess.CompletedProcess[str]:
        """Run the Job's container command like a kubelet would, with local paths."""
        container = job["spec"]["template"]["spec"]["containers"][0]
        mounts = {
            BACKUP_MOUNT: self.volume,
            "/tmp": self.root / "tmp",
        }
        for local in mounts.values():
            local.mkdir(parents=True, exist_ok=True)
        self.termination_log.write_text("")
        command = list(container["command"])
        env = {"PATH": f"{self.bindir}:{os.environ['PATH']}"}
        if self.busybox is not None:
            assert command[0] == "/bin/sh"
            command[0] = str(self.busybox / "sh")
            env["PATH"] = f"{self.bindir}:{self.busybox}"
        for item in container["env"]:
            if "valueFrom" in item:
                assert item["valueFrom"]["secretKeyRef"] == {"name": SECRET.name, "key": SECRET.key}
                env[item["name"]] = database_url
            else:
                env[item["name"]] = local_path(item["value"], mounts)
        env["TERMINATION_LOG"] = str(self.termination_log)
        return subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def message(self) -> str:
        return self.termination_log.read_text()


def local_path(value: str, mounts: dict[str, Path]) -> str:
    for mount, local in mounts.items():
        if value == mount or value.startswith(mount + "/"):
            return str(local) + value[len(mount) :]
    return value


@pytest.fixture(params=["sh", "busybox"])
def node(request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer) -> Node:
    if request.param == "sh":
        return Node(tmp_path, postgres.bindir)
    busybox = shutil.which("busybox")
    # `make deps` installs busybox: the default backup image is alpine, whose sh is busybox's
    assert busybox is not None, "busybox is not installed: run `make deps`"
    applets = tmp_path / "busybox"
    applets.mkdir()
    subprocess.run([busybox, "--install", "-s", str(applets)], check=True)
    return Node(tmp_path, postgres.bindir, applets)


def spec(retention: int = 5, sub_path: str = "shop/main") -> BackupSpec:
    return BackupSpec.model_validate(
        {
            "destination": {"persistentVolumeClaim": {"claimName": "backups", "subPath": sub_path}},
            "retention": retention,
        }
    )


def backup(token: str, *, retention: int = 5) -> dict[str, Any]:
    return backup_job(
        migration_name=MIGRATION,
        namespace="shop",
        owner=OWNER,
        url_secret=SECRET,
        spec=spec(retention),
        backup_name=backup_job_name(MIGRATION, token),
        schema_version="20260101000000",
    )


def restore(
    result: BackupResult,
    *,
    sha256: str | None = None,
    lock_timeout_ms: int = 2000,
    retries: int = 10,
) -> dict[str, Any]:
    record = BackupRecord(
        name=backup_job_name(MIGRATION, "t1"),
        path=result.path,
        size_bytes=result.size_bytes,
        sha256=sha256 or result.sha256,
    )
    return restore_job(
        migration_name=MIGRATION,
        namespace="shop",
        owner=OWNER,
        url_secret=SECRET,
        spec=spec(),
        backup=record,
        job_name=restore_job_name(MIGRATION, "r1"),
        lock_timeout_ms=lock_timeout_ms,
        lock_retries=retries,
    )


def take_backup(node: Node, database_url: str, token: str = "t1", **kwargs: Any) -> BackupResult:
    done = node.run(backup(token, **kwargs), database_url)
    assert done.returncode == 0, f"{done.stderr}\n{node.message()}"
    return parse_result(node.message())


# ------------------------------------------------------------------------------ the data


SCHEMA = """
CREATE SCHEMA audit;
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    joined date NOT NULL
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    total numeric(10, 2) NOT NULL,
    note text
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE SEQUENCE invoice_numbers START 1000;
CREATE TABLE invoices (
    number bigint PRIMARY KEY DEFAULT nextval('invoice_numbers'),
    order_id bigint NOT NULL REFERENCES orders (id)
);
CREATE TABLE audit.events (id bigserial PRIMARY KEY, payload jsonb NOT NULL);
CREATE VIEW customer_totals AS
    SELECT c.email, sum(o.total) AS total
    FROM customers c JOIN orders o ON o.customer_id = c.id
    GROUP BY c.email;
INSERT INTO customers (email, joined)
    SELECT 'c' || i || '@example.com', date '2025-01-01' + i FROM generate_series(1, 1000) i;
INSERT INTO orders (customer_id, total, note)
    SELECT 1 + i % 1000, (i * 7 % 10000) / 100.0, CASE WHEN i % 3 = 0 THEN 'gift, "wrapped"' END
    FROM generate_series(1, 3000) i;
INSERT INTO invoices (order_id) SELECT i FROM generate_series(1, 2000) i;
INSERT INTO audit.events (payload)
    SELECT jsonb_build_object('n', i, 'tags', jsonb_build_array('a', i))
    FROM generate_series(1, 500) i;
"""

DAMAGE = """
DROP TABLE invoices;
DELETE FROM orders WHERE id % 2 = 0;
INSERT INTO customers (email, joined) VALUES ('junk@example.com', date '2030-01-01');
UPDATE audit.events SET payload = '{}' WHERE id < 100;
DROP INDEX orders_customer_idx;
SELECT nextval('invoice_numbers') FROM generate_series(1, 50);
"""

TABLES = ["public.customers", "public.orders", "public.invoices", "audit.events"]


def fill(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)


def run_sql(database_url: str, statements: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(statements)


def snapshot(database_url: str) -> dict[str, Any]:
    """Per-table row counts and checksums, sequence positions and the schema's objects."""
    with psycopg.connect(database_url) as conn:
        tables = {}
        for table in TABLES:
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()
            if not exists or not exists[0]:
                continue
            tables[table] = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
                f" FROM {table} t"
            ).fetchone()
        sequence = conn.execute("SELECT last_value, is_called FROM invoice_numbers").fetchone()
        objects = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('public', 'audit') ORDER BY 1, 2"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE connamespace::regnamespace::text IN ('public', 'audit')"
            " ORDER BY 1, 2"
        ).fetchall()
        indexes = conn.execute(
            "SELECT schemaname, indexname, indexdef FROM pg_indexes"
            " WHERE schemaname IN ('public', 'audit') ORDER BY 1, 2"
        ).fetchall()
        view = conn.execute("SELECT pg_get_viewdef('customer_totals'::regclass)").fetchone()
    return {
        "tables": tables,
        "sequence": sequence,
        "objects": objects,
        "constraints": constraints,
        "indexes": indexes,
        "view": view,
    }


# ---------------------------------------------------------------------------------- tests


def test_a_restore_brings_back_exactly_what_the_backup_saw(node: Node, database_url: str) -> None:
    fill(database_url)
    before = snapshot(database_url)
    assert before["tables"]["public.orders"][0] == 3000

    result = take_backup(node, database_url)

    assert result.path == f"shop/main/{backup_job_name(MIGRATION, 't1')}.dump"
    dump = node.volume / result.path
    assert dump.stat().st_size == result.size_bytes
    assert dump.read_bytes().startswith(b"PGDMP"), "a custom-format dump"
    assert list(dump.parent.iterdir()) == [dump], "no temporary file is left beside the dump"

    run_sql(database_url, DAMAGE)
    assert snapshot(database_url) != before

    done = node.run(restore(result), database_url)

    assert done.returncode == 0, f"{done.stderr}\n{node.message()}"
    restored = parse_result(node.message())
    assert (restored.path, restored.size_bytes, restored.sha256) == (
        result.path,
        result.size_bytes,
        result.sha256,
    )
    assert result.at is not None and restored.at is not None and restored.at > result.at
    assert snapshot(database_url) == before


def test_restore_removes_objects_created_after_the_backup(node: Node, database_url: str) -> None:
    # a migration applied after the backup added a table and a schema: the restore takes the
    # database back to the dump, so neither is left behind to clash with a re-run
    fill(database_url)
    before = snapshot(database_url)
    result = take_backup(node, database_url)
    run_sql(
        database_url,
        "CREATE TABLE added_later (id int); CREATE SCHEMA later; "
        "CREATE TABLE later.log (id int); DELETE FROM invoices;",
    )

    done = node.run(restore(result), database_url)

    assert done.returncode == 0, node.message()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('added_later') IS NULL").fetchone() == (True,)
        assert conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'later'"
        ).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM invoices").fetchone() == (2000,)
    assert snapshot(database_url) == before


def test_a_backup_of_an_unreachable_database_fails_with_a_reason_and_no_password(
    node: Node, postgres: PostgresServer
) -> None:
    password = "s3cret-Pa55word"
    url = f"postgresql://lockstep:{password}@127.0.0.1:{free_port()}/shop"

    done = node.run(backup("t1"), url)

    assert done.returncode != 0
    message = node.message()
    assert message.startswith("backup failed: cannot take a snapshot:")
    assert "Connection refused" in message
    assert password not in message
    assert password not in done.stderr
    assert url not in message
    assert not list((node.volume / "shop/main").iterdir()), "no dump and no partial file"


def test_a_backup_with_a_wrong_password_fails_without_echoing_it(
    node: Node, postgres: PostgresServer
) -> None:
    password = "wrong-Pa55word-123"
    url = f"postgresql://lockstep:{password}@127.0.0.1:{postgres.port}/postgres"

    done = node.run(backup("t1"), url)

    assert done.returncode != 0
    assert "password authentication failed" in node.message()
    assert password not in node.message() + done.stderr + done.stdout


def test_a_restore_refuses_a_dump_whose_sha256_differs(node: Node, database_url: str) -> None:
    fill(database_url)
    result = take_backup(node, database_url)
    run_sql(database_url, DAMAGE)
    damaged = snapshot(database_url)

    done = node.run(restore(result, sha256="0" * 64), database_url)

    assert done.returncode != 0
    assert "sha256" in node.message()
    assert "not restoring" in node.message()
    assert snapshot(database_url) == damaged, "nothing changed"


def test_a_restore_of_a_missing_dump_fails_and_says_so(node: Node, database_url: str) -> None:
    fill(database_url)
    result = take_backup(node, database_url)
    (node.volume / result.path).unlink()

    done = node.run(restore(result), database_url)

    assert done.returncode != 0
    assert "not found" in node.message()


def test_retention_keeps_the_newest_dumps_of_this_migration_only(
    node: Node, database_url: str
) -> None:
    fill(database_url)
    directory = node.volume / "shop/main"
    directory.mkdir(parents=True)
    # Files that are not this migration's dumps, however alike they look.
    strangers = [
        "notes.txt",
        "shop.dump",
        f"{backup_job_name('shop-backup-x', 'a1')}.dump",
        "shop-backup-hand-made.dump",
    ]
    for name in strangers:
        (directory / name).write_text("keep me")

    # Dumps are ordered by modification time, in whole seconds with busybox: space them out.
    an_hour_ago = time.time() - 3600
    for index, token in enumerate(["t1", "t2", "t3", "t4"]):
        result = take_backup(node, database_url, token, retention=2)
        taken = an_hour_ago + 60 * index
        os.utime(node.volume / result.path, (taken, taken))

    dumps = sorted(p.name for p in directory.iterdir() if p.name not in strangers)
    assert dumps == [f"{backup_job_name(MIGRATION, t)}.dump" for t in ["t3", "t4"]]
    assert all((directory / name).read_text() == "keep me" for name in strangers)


class Writer(threading.Thread):
    """Commits one row at a time, each stamped with the database clock at its insert; keeps
    (id, stamp) and the moment the commit was acknowledged (same host, same clock)."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.url = database_url
        self.stop = threading.Event()
        self.acknowledged: list[tuple[int, datetime]] = []
        self.acknowledged_at: dict[tuple[int, datetime], datetime] = {}

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                try:
                    row = conn.execute(
                        "INSERT INTO writes (at) VALUES (clock_timestamp()) RETURNING id, at"
                    ).fetchone()
                except psycopg.Error:
                    continue  # a write refused while the restore replaces the table
                assert row is not None
                self.acknowledged_at[(row[0], row[1])] = datetime.now(UTC)
                self.acknowledged.append((row[0], row[1]))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_reported_window_is_exactly_the_writes_a_restore_discards(
    node: Node, database_url: str
) -> None:
    run_sql(database_url, "CREATE TABLE writes (id bigserial PRIMARY KEY, at timestamptz)")
    writer = Writer(database_url)
    writer.start()
    try:
        wait_until(lambda: len(writer.acknowledged) > 50, timeout=30, what="writes")
        taken = take_backup(node, database_url)
        count = len(writer.acknowledged)
        wait_until(lambda: len(writer.acknowledged) > count + 50, timeout=30, what="writes")
        done = node.run(restore(taken), database_url)
        assert done.returncode == 0, f"{done.stderr}\n{node.message()}"
        restored = parse_result(node.message())
    finally:
        writer.stop.set()
        writer.join()
    assert taken.at is not None and restored.at is not None
    start, end = parse_time(taken.at), parse_time(restored.at)
    with psycopg.connect(database_url) as conn:
        # (id, time): the restored sequence hands out the discarded ids again
        kept = {(row[0], row[1]) for row in conn.execute("SELECT id, at FROM writes")}
    lost = [write for write in writer.acknowledged if write not in kept]
    # Every write acknowledged before the snapshot survives, every one begun inside the window
    # and acknowledged before the restore is gone: the window reported is the one the data
    # shows. (A row is stamped at its insert and committed a little later, on a busy machine
    # many milliseconds later: a row stamped before the snapshot but committed after it is
    # rightly discarded; what counts for it is when it was acknowledged.)
    margin = timedelta(milliseconds=5)
    assert lost, "writes were made between the backup and the restore"
    for write in lost:
        assert writer.acknowledged_at[write] >= start - margin, write
        assert write[1] <= end, write
    inside = [
        w
        for w in writer.acknowledged
        if w[1] > start + margin and writer.acknowledged_at[w] < end - margin
    ]
    assert set(inside) <= set(lost)


def test_a_restore_waits_for_locks_only_as_long_as_its_lock_timeout(
    node: Node, database_url: str
) -> None:
    fill(database_url)
    taken = take_backup(node, database_url)
    holder = psycopg.connect(database_url)
    try:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE orders IN ACCESS SHARE MODE")  # a long reader
        started = time.monotonic()
        done = node.run(restore(taken, lock_timeout_ms=200, retries=1), database_url)
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert done.returncode == 1
    assert "lock timeout" in node.message()
    assert "restore: lock timeout (attempt 1)" in done.stderr
    assert elapsed < 10, "two attempts of 200 ms and one pause of 1 s"


def test_a_restore_behind_a_short_lock_is_tried_again_and_succeeds(
    node: Node, database_url: str
) -> None:
    fill(database_url)
    before = snapshot(database_url)
    taken = take_backup(node, database_url)
    run_sql(database_url, DAMAGE)
    holder = psycopg.connect(database_url)
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE orders IN ACCESS SHARE MODE")
    releaser = threading.Timer(1.5, holder.close)
    releaser.start()
    try:
        done = node.run(restore(taken, lock_timeout_ms=200, retries=10), database_url)
    finally:
        releaser.join()
    assert done.returncode == 0, f"{done.stderr}\n{node.message()}"
    assert "restore: lock timeout (attempt 1)" in done.stderr
    assert snapshot(database_url) == before
