"""shop: a small order service that lockstep releases in its demo and its tests.

It keeps orders in PostgreSQL (the URL comes from the environment, as a Kubernetes Secret gives
it) and serves

    POST /orders          {"ref": "...", "item": "...", "quantity": 1}  -> 201 {"id": ...}
    GET  /orders/<id>     one order                                      -> 200, or 404
    GET  /orders?limit=N  the newest orders                              -> 200
    GET  /healthz         the process is alive
    GET  /ready           it can reach the database and the schema it needs is there
    GET  /metrics         Prometheus metrics, labelled with its version

Every response carries `X-Shop-Version`. A write is acknowledged (201) only once it is
committed; `ref` is the client's idempotency key, so a retried write is stored once.

What a version does is chosen by its arguments (or the environment):

    --version NAME    the name it reports (metrics, headers)                 SHOP_VERSION
    --schema 1|2      1 stores a `coupon` (dropped by migration 003);         SHOP_SCHEMA
                      2 stores a `note` (added by migration 002)
    --bug             reads a column that no migration creates: reads fail    SHOP_BUG=1
                      with PostgreSQL's error, as HTTP 500
    --slow SECONDS    adds latency to every request                           SHOP_SLOW_SECONDS
    --never-ready     never reports ready (waits for a dependency that        SHOP_NEVER_READY=1
                      never comes)

On SIGTERM it stops reporting ready, keeps serving for --drain-seconds (the time a load balancer
needs to notice), stops accepting connections, finishes the requests in flight and exits 0.

Run it: `DATABASE_URL=postgresql://... python shop.py --version v1 --schema 1` (port 8080 or
$PORT). It needs psycopg 3 and prometheus-client.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

log = logging.getLogger("shop")

# The columns of `orders` each schema generation reads and writes.
COLUMNS = {
    1: ("id", "ref", "item", "quantity", "coupon"),
    2: ("id", "ref", "item", "quantity", "note"),
}
MISSING_COLUMN = "discount"  # what the buggy version reads; no migration creates it
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ROUTES = (("POST", "/orders"), ("GET", "/orders"), ("GET", "/orders/{id}"))
ORDER_PATH = re.compile(r"^/orders/(\d{1,18})$")
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Config:
    version: str
    schema: int
    bug: bool
    slow_seconds: float
    never_ready: bool
    port: int
    host: str
    database_url: str
    drain_seconds: float
    pool_size: int


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def parse_config(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(prog="shop", description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=os.environ.get("SHOP_VERSION", "dev"))
    parser.add_argument(
        "--schema",
        type=int,
        choices=sorted(COLUMNS),
        default=int(os.environ.get("SHOP_SCHEMA", "1")),
    )
    parser.add_argument("--bug", action="store_true", default=_flag("SHOP_BUG"))
    parser.add_argument(
        "--slow", type=float, default=float(os.environ.get("SHOP_SLOW_SECONDS") or "0")
    )
    parser.add_argument("--never-ready", action="store_true", default=_flag("SHOP_NEVER_READY"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104
    parser.add_argument(
        "--drain-seconds", type=float, default=float(os.environ.get("SHOP_DRAIN_SECONDS", "1"))
    )
    parser.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        parser.error("DATABASE_URL is not set (the PostgreSQL URL, from the app's Secret)")
    return Config(
        version=args.version,
        schema=args.schema,
        bug=args.bug,
        slow_seconds=max(0.0, args.slow),
        never_ready=args.never_ready,
        port=args.port,
        host=args.host,
        database_url=url,
        drain_seconds=max(0.0, args.drain_seconds),
        pool_size=max(1, args.pool_size),
    )


# ------------------------------------------------------------------------------ database


class Database:
    """A small pool of autocommit connections; a connection that broke is thrown away."""

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def _connect(self) -> psycopg.Connection[Any]:
        # A statement never waits longer than a client would: a stuck query is an error.
        return psycopg.connect(
            self.url, autocommit=True, connect_timeout=3, options="-c statement_timeout=5000"
        )

    @contextlib.contextmanager
    def connection(self, fresh: bool = False) -> Iterator[psycopg.Connection[Any]]:
        if not self._slots.acquire(timeout=5):
            raise psycopg.OperationalError("no database connection free within 5s")
        conn: psycopg.Connection[Any] | None = None
        try:
            if not fresh:
                with contextlib.suppress(queue.Empty):
                    conn = self._idle.get_nowait()
            if conn is None:
                conn = self._connect()
            yield conn
        except psycopg.OperationalError:
            if conn is not None:
                conn.close()
            conn = None
            raise
        finally:
            if conn is not None:
                if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.close()
                else:
                    self._idle.put(conn)
            self._slots.release()

    def run(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """`work` on a pooled connection; once more on a new connection if the pooled one had
        broken (after a database restart). Writes are idempotent (by ref), so this is safe."""
        try:
            with self.connection() as conn:
                return work(conn)
        except psycopg.OperationalError:
            with self.connection(fresh=True) as conn:
                return work(conn)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


# ------------------------------------------------------------------------------ the shop


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Shop:
    """What the routes do, apart from HTTP."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = Database(config.database_url, config.pool_size)
        self.columns = COLUMNS[config.schema]
        self.draining = threading.Event()

    def readiness(self) -> tuple[bool, str]:
        if self.draining.is_set():
            return False, "shutting down"
        if self.config.never_ready:
            return False, "waiting for the recommendations service (it never comes)"
        try:
            found = self.db.run(
                lambda conn: {
                    row[0]
                    for row in conn.execute(
                        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('orders') "
                        "AND attnum > 0 AND NOT attisdropped"
                    )
                }
            )
        except psycopg.Error as error:
            return False, f"database unreachable: {type(error).__name__}"
        missing = [c for c in self.columns if c not in found]
        if missing:
            return False, f"schema not ready: orders lacks {', '.join(missing)}"
        return True, "ready"

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        ref, item, quantity = body.get("ref"), body.get("item"), body.get("quantity", 1)
        if not isinstance(ref, str) or not 0 < len(ref) <= 100:
            raise HttpError(HTTPStatus.BAD_REQUEST, "ref: a string of 1 to 100 characters")
        if not isinstance(item, str) or not 0 < len(item) <= 200:
            raise HttpError(HTTPStatus.BAD_REQUEST, "item: a string of 1 to 200 characters")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 < quantity < 1000:
            raise HttpError(HTTPStatus.BAD_REQUEST, "quantity: an integer from 1 to 999")
        extra = self.columns[-1]  # coupon (schema 1) or note (schema 2)
        value = body.get(extra) or (f"from {self.config.version}" if extra == "note" else None)

        def insert(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                f"INSERT INTO orders (ref, item, quantity, {extra}) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (ref) DO NOTHING RETURNING id",
                (ref, item, quantity, value),
            ).fetchone()
            if row is None:  # stored before: the client retried
                row = conn.execute("SELECT id FROM orders WHERE ref = %s", (ref,)).fetchone()
            assert row is not None
            return int(row[0])

        return {"id": self.db.run(insert), "ref": ref}

    def _select(self) -> str:
        columns = list(self.columns)
        if self.config.bug:
            columns.append(MISSING_COLUMN)
        return f"SELECT {', '.join(columns)} FROM orders"

    def _order(self, row: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.columns, row, strict=False))

    def get(self, order_id: int) -> dict[str, Any]:
        row = self.db.run(
            lambda conn: conn.execute(f"{self._select()} WHERE id = %s", (order_id,)).fetchone()
        )
        if row is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no order {order_id}")
        return self._order(row)

    def newest(self, limit: int) -> list[dict[str, Any]]:
        rows = self.db.run(
            lambda conn: conn.execute(
                f"{self._select()} ORDER BY id DESC LIMIT %s", (limit,)
            ).fetchall()
        )
        return [self._order(row) for row in rows]


# ------------------------------------------------------------------------------ metrics


class Metrics:
    def __init__(self, version: str, schema: int) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.version = version
        self.requests = Counter(
            "shop_http_requests",
            "HTTP requests served, by route, method and status code.",
            ["route", "method", "code", "version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shop_http_request_duration_seconds",
            "Time to serve a request, by route and method.",
            ["route", "method", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "shop_http_requests_in_flight",
            "Requests being served now.",
            ["version"],
            registry=self.registry,
        ).labels(version)
        Gauge(
            "shop_info", "The running version.", ["version", "schema"], registry=self.registry
        ).labels(version, str(schema)).set(1)
        # Every series exists from the start: an error ratio reads 0, not "no data", and the
        # first error counts in rate().
        for method, route in ROUTES:
            for code in ("200", "201", "404", "500") if method == "GET" else ("201", "400", "500"):
                self.requests.labels(route, method, code, version)
            self.latency.labels(route, method, version)

    def observe(self, route: str, method: str, code: int, seconds: float) -> None:
        self.requests.labels(route, method, str(code), self.version).inc()
        self.latency.labels(route, method, self.version).observe(seconds)


# ------------------------------------------------------------------------------ HTTP


class Server(ThreadingHTTPServer):
    """Counts open connections, so that a shutdown can wait for the requests in flight."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], shop: Shop, metrics: Metrics) -> None:
        self.shop = shop
        self.metrics = metrics
        self.open_connections = 0
        self.connections_changed = threading.Condition()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_changed:
            self.open_connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self.connections_changed:
            self.open_connections -= 1
            self.connections_changed.notify_all()

    def wait_for_connections(self, timeout: float) -> int:
        """Wait until no connection is open (or `timeout`); how many are left."""
        deadline = time.monotonic() + timeout
        with self.connections_changed:
            while self.open_connections > 0 and time.monotonic() < deadline:
                self.connections_changed.wait(0.1)
            return self.open_connections


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection is closed after this long
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server_version = "shop"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain")
        elif path == "/ready":
            ready, why = self.server.shop.readiness()
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, why.encode() + b"\n", "text/plain")
        elif path == "/metrics":
            self._send(
                HTTPStatus.OK, generate_latest(self.server.metrics.registry), CONTENT_TYPE_LATEST
            )
        elif path == "/orders":
            self._route("/orders", self._list)
        elif ORDER_PATH.match(path):
            self._route("/orders/{id}", self._get)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no route {path}"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path == "/orders":
            self._route("/orders", self._create)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})

    # ------------------------------------------------------------------ routes

    def _list(self) -> tuple[HTTPStatus, Any]:
        query = parse_qs(urlsplit(self.path).query)
        try:
            limit = min(max(int(query.get("limit", ["20"])[0]), 1), 100)
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "limit: an integer") from None
        return HTTPStatus.OK, {"orders": self.server.shop.newest(limit)}

    def _get(self) -> tuple[HTTPStatus, Any]:
        match = ORDER_PATH.match(urlsplit(self.path).path)
        assert match is not None
        return HTTPStatus.OK, self.server.shop.get(int(match.group(1)))

    def _create(self) -> tuple[HTTPStatus, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return HTTPStatus.CREATED, self.server.shop.create(body)

    def _route(self, route: str, serve: Callable[[], tuple[HTTPStatus, Any]]) -> None:
        began = time.perf_counter()
        shop = self.server.shop
        try:
            with self.server.metrics.in_flight.track_inprogress():
                if shop.config.slow_seconds:
                    time.sleep(shop.config.slow_seconds)
                status, body = serve()
        except HttpError as error:
            status, body = error.status, {"error": str(error)}
        except psycopg.Error as error:
            # The real PostgreSQL error, as a 500 (the message names no secret).
            log.warning("%s %s: %s: %s", self.command, route, type(error).__name__, error)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            body = {"error": f"database error: {type(error).__name__}: {error}".strip()}
        self._json(status, body)
        self.server.metrics.observe(route, self.command, status, time.perf_counter() - began)

    # ------------------------------------------------------------------ plumbing

    def _json(self, status: HTTPStatus, body: Any) -> None:
        self._send(status, json.dumps(body, default=str).encode() + b"\n", "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        if self.server.shop.draining.is_set():
            self.close_connection = True  # clients reconnect, to a pod that is not stopping
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Shop-Version", self.server.shop.config.version)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the log; errors are logged above


# ------------------------------------------------------------------------------ main


def serve(config: Config) -> int:
    shop = Shop(config)
    metrics = Metrics(config.version, config.schema)
    server = Server((config.host, config.port), shop, metrics)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info(
        "shop %s (schema %d%s%s%s) serving on %s:%d",
        config.version,
        config.schema,
        ", bug" if config.bug else "",
        f", slow {config.slow_seconds:g}s" if config.slow_seconds else "",
        ", never ready" if config.never_ready else "",
        config.host,
        config.port,
    )
    # Wake up now and then: a signal that the kernel hands to another thread runs its Python
    # handler only once the main thread runs again.
    while not stop.wait(0.2):
        pass
    log.info("SIGTERM: not ready any more; serving %gs more, then stopping", config.drain_seconds)
    shop.draining.set()
    time.sleep(config.drain_seconds)
    server.shutdown()  # no new connections from here on
    server.socket.close()
    left = server.wait_for_connections(timeout=30)
    shop.db.close()
    log.info("stopped (%d connections still open)", left)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    config = parse_config(argv)
    try:
        return serve(config)
    except OSError as error:
        if error.errno in (98, socket.EADDRINUSE):
            log.error("port %d is taken", config.port)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
