"""The load generator: clients of one Service of the sample application (`examples/shop`).

`python -m tests.env.loadgen --kubeconfig K --namespace NS --service web --out DIR` sends a
steady, open-loop stream of requests (`--rps`, evenly spaced) through the router (`router.py`,
kube-proxy's part): each request picks an endpoint as kube-proxy would and opens a new
connection to it. The mix: `--write-share` of them write an order (`POST /orders` with a unique
`ref`), `--list-share` list the newest orders, the rest read back an order this generator
wrote and saw acknowledged. Open loop: a slow answer does not slow the sending down (up to
`--rps` x `--timeout` requests may wait at once; one more is recorded as failed, "saturated").
Until SIGTERM; then it waits for the requests in flight and exits.

Every request's outcome goes to DIR/requests.jsonl, one JSON object per line:
`{"t": start (epoch s), "ms": latency, "op": "write"|"read"|"list", "code": HTTP status (0 when
no response came), "version": what answered (the X-Shop-Version header, else the pod's version
label), "pod": the endpoint's pod, "ref"/"id": the order, "error": why it failed}`.
DIR/summary.json has the counts and the Service's outages (intervals without a usable endpoint).

`LoadReport` reads them back for tests: failed requests, by version, and every acknowledged
write checked against the database (`lost_writes`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from .processes import Process, wait_until
from .router import Backend, Router

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSION_HEADER = "X-Shop-Version"
ITEMS = ("book", "lamp", "chair", "mug", "pen", "kettle")

log = logging.getLogger("loadgen")


# ---------------------------------------------------------------------------- generating


@dataclass
class Mix:
    rps: float = 100.0
    write_share: float = 0.3
    list_share: float = 0.1
    timeout: float = 5.0

    @property
    def max_in_flight(self) -> int:
        """Enough for every request of a whole timeout to be waiting at once (a database
        lock can hold all of them), so the clients never run out before the server answers."""
        return max(32, min(2000, int(self.rps * self.timeout) + 1))


class Recorder:
    """Appends request records to a JSON-lines file, flushed every half second."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", buffering=1 << 16)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.last_flush = time.monotonic()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self.lock:
            self.file.write(line + "\n")
            self.counts[record["op"]] += 1
            if not is_success(record):
                self.counts["failed"] += 1
            if time.monotonic() - self.last_flush > 0.5:
                self.file.flush()
                self.last_flush = time.monotonic()

    def close(self) -> None:
        with self.lock:
            self.file.close()


class LoadGenerator:
    """Open-loop clients of `backends` through `router`."""

    def __init__(
        self, router: Router, backends: list[Backend], mix: Mix, recorder: Recorder, seed: int
    ) -> None:
        self.router = router
        self.backends = backends
        self.mix = mix
        self.recorder = recorder
        self.run_id = uuid.uuid4().hex[:8]
        self.sequence = 0
        self.acked: list[int] = []
        self.lock = threading.Lock()
        self.in_flight = threading.Semaphore(mix.max_in_flight)
        self.rng = router.rng
        self.rng.seed(seed)

    def run(self, stop: threading.Event) -> None:
        pool = ThreadPoolExecutor(max_workers=self.mix.max_in_flight, thread_name_prefix="req")
        interval = 1.0 / self.mix.rps
        next_at = time.monotonic()
        while not stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            next_at += interval
            if not self.in_flight.acquire(blocking=False):
                self.recorder.write(
                    {"t": time.time(), "ms": 0, "op": "skip", "code": 0, "error": "saturated"}
                )
                continue
            pool.submit(self._one)
        pool.shutdown(wait=True)

    def _choose(self) -> tuple[str, str, bytes | None, dict[str, Any]]:
        """(method, path, body, what the record keeps) of the next request."""
        draw = self.rng.random()
        with self.lock:
            self.sequence += 1
            sequence = self.sequence
            known = self.rng.choice(self.acked) if self.acked else None
        if draw < self.mix.write_share:
            ref = f"{self.run_id}-{sequence}"
            body = {"ref": ref, "item": self.rng.choice(ITEMS), "quantity": 1 + sequence % 5}
            return "POST", "/orders", json.dumps(body).encode(), {"op": "write", "ref": ref}
        if known is None or draw < self.mix.write_share + self.mix.list_share:
            return "GET", "/orders?limit=10", None, {"op": "list"}
        return "GET", f"/orders/{known}", None, {"op": "read", "id": known}

    def _one(self) -> None:
        try:
            method, path, body, record = self._choose()
            started = time.time()
            began = time.perf_counter()
            _, endpoint = self.router.pick_weighted(self.backends)
            record["t"] = started
            if endpoint is None:
                record.update(code=0, error="no endpoint", ms=0.0)
                self.recorder.write(record)
                return
            record["pod"] = endpoint.pod
            code, version, payload, error = self._send(endpoint.local_port, method, path, body)
            record.update(
                code=code,
                ms=round((time.perf_counter() - began) * 1000, 2),
                version=version or endpoint.version,
            )
            if error:
                record["error"] = error
            if record["op"] == "write" and code == 201:
                order_id = int(json.loads(payload)["id"])
                record["id"] = order_id
                with self.lock:
                    self.acked.append(order_id)
            self.recorder.write(record)
        except Exception as exc:  # a bug here must show in the records, not vanish
            log.exception("request failed in the generator")
            self.recorder.write(
                {"t": time.time(), "ms": 0, "op": "bug", "code": 0, "error": repr(exc)}
            )
        finally:
            self.in_flight.release()

    def _send(
        self, port: int, method: str, path: str, body: bytes | None
    ) -> tuple[int, str, bytes, str]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=self.mix.timeout)
        headers = {"Connection": "close"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            error = "" if response.status < 500 else payload.decode(errors="replace")[:300]
            return response.status, response.getheader(VERSION_HEADER) or "", payload, error
        except (OSError, http.client.HTTPException) as exc:
            return 0, "", b"", f"{type(exc).__name__}: {exc}"[:300]
        finally:
            connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--service", default="web")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--write-share", type=float, default=0.3)
    parser.add_argument("--list-share", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--sync-period", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    router = Router(args.kubeconfig, args.namespace, sync_period=args.sync_period, seed=args.seed)
    router.start()
    recorder = Recorder(args.out / "requests.jsonl")
    mix = Mix(args.rps, args.write_share, args.list_share, args.timeout)
    generator = LoadGenerator(router, [Backend(args.service)], mix, recorder, args.seed)
    (args.out / "started").write_text(str(time.time()))
    log.info("sending %g requests/s to %s/%s", args.rps, args.namespace, args.service)
    try:
        generator.run(stop)
    finally:
        ended = time.time()
        recorder.close()
        summary = {
            "counts": dict(recorder.counts),
            "outages": router.outages(args.service, until=ended),
            "ended": ended,
        }
        router.stop()
        (args.out / "summary.json").write_text(json.dumps(summary))
    return 0


# ------------------------------------------------------------------------------ reading


def is_success(record: dict[str, Any]) -> bool:
    """A request succeeded: an answer below 500, except a 404 for an order this generator
    wrote and saw acknowledged (that order is lost)."""
    code = int(record.get("code", 0))
    if record.get("op") == "read" and code == 404:
        return False
    return 0 < code < 500


@dataclass
class LoadReport:
    """What a run of the load generator recorded."""

    records: list[dict[str, Any]]
    outages: list[tuple[float, float]] = field(default_factory=list)

    @classmethod
    def read(cls, out: Path) -> LoadReport:
        records = []
        path = out / "requests.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue  # a line cut short by a flush in progress
        records.sort(key=lambda r: r["t"])
        outages: list[tuple[float, float]] = []
        summary = out / "summary.json"
        if summary.exists():
            outages = [tuple(o) for o in json.loads(summary.read_text())["outages"]]  # type: ignore[misc]
        return cls(records, outages)

    def between(self, start: float, end: float) -> LoadReport:
        return LoadReport([r for r in self.records if start <= r["t"] < end], self.outages)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if not is_success(r)]

    def failed_by_version(self) -> Counter[str]:
        return Counter(r.get("version") or "?" for r in self.failed)

    def served_by_version(self) -> Counter[str]:
        return Counter(r.get("version") or "?" for r in self.records if is_success(r))

    @property
    def acknowledged(self) -> list[dict[str, Any]]:
        """The writes answered 201."""
        return [r for r in self.records if r["op"] == "write" and r.get("code") == 201]

    def lost_writes(self, database_url: str) -> list[dict[str, Any]]:
        """The acknowledged writes whose order is not in the database."""
        acked = self.acknowledged
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            present = {
                row[0]
                for row in conn.execute(
                    "SELECT ref FROM orders WHERE ref = ANY(%s)", ([r["ref"] for r in acked],)
                )
            }
        return [r for r in acked if r["ref"] not in present]

    def first_failure(self, versions: Iterable[str] | None = None) -> float | None:
        wanted = set(versions) if versions is not None else None
        for record in self.failed:
            if wanted is None or record.get("version") in wanted:
                return float(record["t"])
        return None

    def latency_ms(self, percentile: float) -> float:
        values = sorted(float(r["ms"]) for r in self.records if is_success(r))
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(percentile / 100 * len(values)))]

    def downtime_seconds(self) -> float:
        return sum(end - start for start, end in self.outages)

    def describe_failures(self, limit: int = 5) -> str:
        """The failures, counted by version, code and error, and the first few in full."""
        kinds = Counter(
            (r.get("version") or "?", r.get("code"), (r.get("error") or "")[:80])
            for r in self.failed
        )
        lines = [f"{n} x {kind}" for kind, n in kinds.most_common(10)]
        lines += [json.dumps(r) for r in self.failed[:limit]]
        return "\n".join(lines)


class LoadProcess:
    """The load generator as its own process (its own CPU share, its own GIL)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        out: Path,
        *,
        service: str = "web",
        rps: float = 100.0,
        write_share: float = 0.3,
        seed: int = 1,
    ) -> None:
        self.out = out
        self.argv = [
            sys.executable,
            "-m",
            "tests.env.loadgen",
            f"--kubeconfig={kubeconfig}",
            f"--namespace={namespace}",
            f"--service={service}",
            f"--out={out}",
            f"--rps={rps}",
            f"--write-share={write_share}",
            f"--seed={seed}",
        ]
        self.process: Process | None = None

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.process = Process("loadgen", self.argv, self.out, cwd=REPO_ROOT)
        wait_until(self._started, timeout=60, what="the load generator to start")

    def _started(self) -> bool:
        assert self.process is not None
        self.process.check_alive()
        return (self.out / "started").exists()

    def report(self) -> LoadReport:
        """What it recorded so far (flushed every half second)."""
        return LoadReport.read(self.out)

    def stop(self) -> LoadReport:
        """Stop sending, wait for the requests in flight, and read everything back."""
        if self.process is not None:
            self.process.stop(timeout=30)
            self.process = None
        return LoadReport.read(self.out)


if __name__ == "__main__":
    sys.exit(main())
