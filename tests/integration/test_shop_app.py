"""The sample application (examples/shop) against a real PostgreSQL: readiness follows the
schema it needs, writes are acknowledged once stored, its bug is a real PostgreSQL error, and
SIGTERM finishes the requests in flight."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.env.processes import free_port, wait_until
from tests.env.samples import SHOP_PROGRAM, ShopVersion, shop_migrations

pytestmark = pytest.mark.postgres


class Shop:
    """One shop process on a free port."""

    def __init__(self, url: str, version: ShopVersion, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(SHOP_PROGRAM), *version.args(), *extra],
            env={**os.environ, "DATABASE_URL": url, "PORT": str(self.port)},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self.request("GET", "/healthz")[0] == 200, timeout=20, what="shop")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=payload, headers={"Connection": "close"})
            response = connection.getresponse()
            text = response.read().decode()
            parsed = (
                json.loads(text)
                if response.getheader("Content-Type") == "application/json"
                else text
            )
            return response.status, parsed, response.getheader("X-Shop-Version") or ""
        finally:
            connection.close()

    def ready(self) -> bool:
        return self.request("GET", "/ready")[0] == 200

    def metric(self, name: str, **labels: str) -> float:
        text = self.request("GET", "/metrics")[1]
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        for line in text.splitlines():
            if line.startswith(name + "{") and all(w in line for w in wanted):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Shop]]:
    started: list[Shop] = []

    def run(url: str, version: ShopVersion, *extra: str) -> Shop:
        shop = Shop(url, version, tmp_path / f"{version.name}.log", *extra)
        started.append(shop)
        return shop

    yield run
    for shop in started:
        shop.stop()


def migrate(url: str, *versions: str) -> None:
    migrations = shop_migrations()
    with psycopg.connect(url, autocommit=True) as conn:
        for version in versions:
            conn.execute(migrations[version]["up"])


V1, V2 = ShopVersion("v1", schema=1), ShopVersion("v2", schema=2)


def test_it_is_ready_only_while_the_columns_it_uses_exist(
    database_url: str, start: Callable[..., Shop]
) -> None:
    migrate(database_url, "001")
    v1, v2 = start(database_url, V1), start(database_url, V2)
    wait_until(v1.ready, timeout=10, what="v1 ready on schema 001")
    assert v2.request("GET", "/ready")[:2] == (503, "schema not ready: orders lacks note\n")
    migrate(database_url, "002")
    wait_until(v2.ready, timeout=10, what="v2 ready once 002 added the note")
    migrate(database_url, "003")
    assert v1.request("GET", "/ready")[:2] == (503, "schema not ready: orders lacks coupon\n")
    assert v2.ready()


def test_it_is_not_ready_while_the_database_is_unreachable(start: Callable[..., Shop]) -> None:
    shop = start(f"postgresql://nobody:x@127.0.0.1:{free_port()}/none", V1)
    status, body, _ = shop.request("GET", "/ready")
    assert (status, body) == (503, "database unreachable: OperationalError\n")
    assert "nobody" not in body  # no part of the URL leaks


def test_an_acknowledged_write_is_stored_once_with_what_its_schema_writes(
    database_url: str, start: Callable[..., Shop]
) -> None:
    migrate(database_url, "001", "002")
    shop = start(database_url, V2)
    first = shop.request("POST", "/orders", {"ref": "r-1", "item": "lamp", "quantity": 2})
    again = shop.request("POST", "/orders", {"ref": "r-1", "item": "lamp", "quantity": 2})
    assert first[0] == again[0] == 201 and first[1]["id"] == again[1]["id"]
    assert first[2] == "v2"
    status, order, _ = shop.request("GET", f"/orders/{first[1]['id']}")
    assert (status, order["item"], order["note"]) == (200, "lamp", "from v2")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*), max(note) FROM orders").fetchone() == (1, "from v2")
    assert shop.request("POST", "/orders", {"ref": "", "item": "lamp"})[0] == 400
    assert shop.request("GET", "/orders/999")[0] == 404


def test_the_buggy_version_answers_500_with_the_real_postgresql_error(
    database_url: str, start: Callable[..., Shop]
) -> None:
    migrate(database_url, "001", "002")
    shop = start(database_url, ShopVersion("v3", schema=2, bug=True))
    wait_until(shop.ready, timeout=10, what="the buggy version passes its readiness probe")
    created = shop.request("POST", "/orders", {"ref": "r-2", "item": "pen"})
    assert created[0] == 201  # writes work: the bug is in the read path
    status, body, version = shop.request("GET", f"/orders/{created[1]['id']}")
    assert (status, version) == (500, "v3")
    assert 'UndefinedColumn: column "discount" does not exist' in body["error"]
    assert (
        shop.metric("shop_http_requests_total", route="/orders/{id}", code="500", version="v3") == 1
    )
    assert shop.metric("shop_http_requests_total", route="/orders", code="201", version="v3") == 1


def test_the_slow_version_shows_its_latency_in_the_histogram(
    database_url: str, start: Callable[..., Shop]
) -> None:
    migrate(database_url, "001")
    shop = start(database_url, ShopVersion("v4", schema=1, slow_seconds=0.3))
    began = time.monotonic()
    assert shop.request("GET", "/orders")[0] == 200
    assert time.monotonic() - began >= 0.3
    labels = {"route": "/orders", "method": "GET", "version": "v4"}
    assert shop.metric("shop_http_request_duration_seconds_bucket", le="0.25", **labels) == 0
    assert shop.metric("shop_http_request_duration_seconds_bucket", le="0.5", **labels) == 1


def test_the_never_ready_version_serves_but_never_reports_ready(
    database_url: str, start: Callable[..., Shop]
) -> None:
    migrate(database_url, "001")
    shop = start(database_url, ShopVersion("v5", schema=1, never_ready=True))
    assert shop.request("GET", "/orders")[0] == 200
    assert shop.request("GET", "/ready")[0] == 503


def test_sigterm_stops_readiness_then_finishes_every_request_in_flight(
    database_url: str, start: Callable[..., Shop]
) -> None:
    migrate(database_url, "001")
    shop = start(
        database_url, ShopVersion("v1", schema=1, slow_seconds=1.0), "--drain-seconds", "0.5"
    )
    with ThreadPoolExecutor(8) as pool:
        in_flight = [
            pool.submit(shop.request, "POST", "/orders", {"ref": f"t-{i}", "item": "mug"})
            for i in range(8)
        ]
        wait_until(
            lambda: shop.metric("shop_http_requests_in_flight") == 8,
            timeout=5,
            what="the requests inside their handler",
        )
        shop.process.send_signal(signal.SIGTERM)
        wait_until(lambda: shop.request("GET", "/ready")[0] == 503, timeout=2, what="draining")
        assert [f.result()[0] for f in in_flight] == [201] * 8
    assert shop.process.wait(10) == 0
    with pytest.raises(ConnectionRefusedError):
        shop.request("GET", "/healthz")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (8,)
