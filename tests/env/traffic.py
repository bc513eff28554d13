"""The test traffic process: simulated clients of applications, counted per colour and version.

`python -m tests.env.traffic --port P --kubeconfig K` serves, on 127.0.0.1:P,

- `/metrics`: the prometheus-client counter
  `http_requests_total{namespace, app, color, version, code}` (code "200" or "500");
- `PUT /apps/<namespace>/<app>` with `{"service": "<active Service>", "rps": 50,
  "errorRatio": {"<version>": 0.5}, "defaultErrorRatio": 0.0}`: register or update an app;
- `DELETE /apps/<namespace>/<app>`: forget it; `GET /apps`: the apps and what they hit now.

Every 100 ms each app sends its share of `rps` requests to whatever its Service selects at that
moment: the colour is the selector's `lockstep.dev/color` label ("none" without one), the
version is the `app.kubernetes.io/version` (or `version`) label of the pod template of the
Deployment `<app>-<color>`. A request fails (code 500) by the error ratio of that version, with
an accumulator rather than chance, so a ratio of 0.5 fails exactly every other request.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from .processes import Process, free_port, wait_until

COLOR_LABEL = "lockstep.dev/color"
VERSION_LABELS = ("app.kubernetes.io/version", "version")
NONE = "none"
TICK_SECONDS = 0.1
CACHE_SECONDS = 0.25  # below Prometheus' 1s scrape, so a selector switch shows in one scrape
REPO_ROOT = Path(__file__).resolve().parents[2]

log = logging.getLogger("traffic")


# ---------------------------------------------------------------------------------- apps


@dataclass
class App:
    """One simulated application's clients."""

    namespace: str
    app: str
    service: str
    rps: float = 50.0
    error_ratio: dict[str, float] = field(default_factory=dict)
    default_error_ratio: float = 0.0
    # Fractions of a request and of an error carried over to the next tick.
    pending: float = 0.0
    failing: float = 0.0
    last_tick: float | None = None
    target: tuple[str, str] | None = None
    problem: str = ""

    def ratio(self, version: str) -> float:
        return self.error_ratio.get(version, self.default_error_ratio)

    def describe(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "app": self.app,
            "service": self.service,
            "rps": self.rps,
            "errorRatio": self.error_ratio,
            "defaultErrorRatio": self.default_error_ratio,
            "color": self.target[0] if self.target else None,
            "version": self.target[1] if self.target else None,
            "problem": self.problem,
        }


def _ratio(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{what} must be a number from 0 to 1")
    return float(value)


def parse_app(namespace: str, app: str, body: object) -> App:
    """Validate a PUT body."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    service = body.get("service")
    if not isinstance(service, str) or not service:
        raise ValueError("service (the name of the app's active Service) is required")
    rps = body.get("rps", 50)
    if isinstance(rps, bool) or not isinstance(rps, int | float) or rps < 0:
        raise ValueError("rps must be a number >= 0")
    ratios = body.get("errorRatio") or {}
    if not isinstance(ratios, dict):
        raise ValueError("errorRatio must map versions to ratios")
    return App(
        namespace=namespace,
        app=app,
        service=service,
        rps=float(rps),
        error_ratio={str(k): _ratio(v, f"errorRatio[{k}]") for k, v in ratios.items()},
        default_error_ratio=_ratio(body.get("defaultErrorRatio", 0.0), "defaultErrorRatio"),
    )


# ------------------------------------------------------------------------------ cluster


class Cache:
    """Values fetched from the API, kept for CACHE_SECONDS."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, ...], tuple[float, Any]] = {}

    def get(self, key: tuple[str, ...], fetch: Callable[[], Any]) -> Any:
        moment = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and moment - entry[0] < CACHE_SECONDS:
            return entry[1]
        value = fetch()
        self._entries[key] = (moment, value)
        return value


class ClusterView:
    """What an app's Service selects, read from the API."""

    def __init__(self, kubeconfig: Path) -> None:
        api = config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.cache = Cache()

    def target(self, namespace: str, app: str, service: str) -> tuple[str, str]:
        """(colour, version) of what the Service selects now."""
        selector = self.cache.get(
            ("service", namespace, service), lambda: self._selector(namespace, service)
        )
        color = selector.get(COLOR_LABEL)
        if not color:
            return NONE, NONE
        deployment = f"{app}-{color}"
        version = self.cache.get(
            ("deployment", namespace, deployment), lambda: self._version(namespace, deployment)
        )
        return color, version

    def _selector(self, namespace: str, service: str) -> dict[str, str]:
        found = self.core.read_namespaced_service(service, namespace, _request_timeout=2)
        return dict((found.spec and found.spec.selector) or {})

    def _version(self, namespace: str, deployment: str) -> str:
        try:
            found = self.apps.read_namespaced_deployment(deployment, namespace, _request_timeout=2)
        except ApiException as error:
            if error.status == 404:
                return NONE
            raise
        metadata = found.spec.template.metadata if found.spec else None
        labels = (metadata and metadata.labels) or {}
        return next((labels[key] for key in VERSION_LABELS if labels.get(key)), NONE)


# ------------------------------------------------------------------------------ traffic


class Traffic:
    """The apps, the counter, and one tick of simulated requests."""

    def __init__(self, cluster: ClusterView) -> None:
        self.cluster = cluster
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "Requests sent by the simulated clients, by what served them.",
            ["namespace", "app", "color", "version", "code"],
            registry=self.registry,
        )
        self.lock = threading.Lock()
        self.apps: dict[tuple[str, str], App] = {}

    def put(self, app: App) -> App:
        with self.lock:
            previous = self.apps.get((app.namespace, app.app))
            if previous is not None:  # keep the carried fractions: no jump in the counts
                app.pending, app.failing = previous.pending, previous.failing
                app.last_tick, app.target = previous.last_tick, previous.target
            self.apps[(app.namespace, app.app)] = app
        return app

    def delete(self, namespace: str, app: str) -> bool:
        with self.lock:
            return self.apps.pop((namespace, app), None) is not None

    def describe(self) -> list[dict[str, Any]]:
        with self.lock:
            return [app.describe() for app in self.apps.values()]

    def tick(self, moment: float) -> None:
        with self.lock:
            apps = list(self.apps.values())
        for app in apps:
            self._send(app, moment)

    def _send(self, app: App, moment: float) -> None:
        elapsed = 0.0 if app.last_tick is None else moment - app.last_tick
        app.last_tick = moment
        wanted = app.pending + app.rps * elapsed
        count = math.floor(wanted)
        app.pending = wanted - count
        try:
            app.target = self.cluster.target(app.namespace, app.app, app.service)
            app.problem = ""
        except Exception as error:  # the API is briefly unreachable: keep the last target
            app.problem = f"cannot read the Service: {error}"
            log.warning("%s/%s: %s", app.namespace, app.app, app.problem)
        if app.target is None or count == 0:
            return
        color, version = app.target
        failing = app.failing + count * app.ratio(version)
        errors = min(count, math.floor(failing + 1e-9))
        app.failing = failing - errors
        labels = {"namespace": app.namespace, "app": app.app, "color": color, "version": version}
        # Both codes exist from the first request on, so an error ratio reads 0 rather than
        # "no data".
        self.requests.labels(**labels, code="500").inc(errors)
        self.requests.labels(**labels, code="200").inc(count - errors)

    def run(self, stop: threading.Event) -> None:
        start = time.monotonic()
        ticks = 0
        while not stop.is_set():
            self.tick(time.monotonic())
            ticks += 1
            stop.wait(max(0.0, start + ticks * TICK_SECONDS - time.monotonic()))


# --------------------------------------------------------------------------------- http

_APP_PATH = re.compile(r"^/apps/([a-z0-9][-a-z0-9.]*)/([a-z0-9][-a-z0-9.]*)$")


def handler_for(traffic: Traffic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(HTTPStatus.OK, generate_latest(traffic.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", "text/plain")
            elif self.path == "/apps":
                self._json(HTTPStatus.OK, {"apps": traffic.describe()})
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})

        def do_PUT(self) -> None:
            match = _APP_PATH.match(self.path)
            if not match:
                self._json(HTTPStatus.NOT_FOUND, {"error": "use /apps/<namespace>/<app>"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                app = traffic.put(parse_app(match.group(1), match.group(2), body))
            except ValueError as error:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
                return
            log.info("app %s/%s: %s", app.namespace, app.app, json.dumps(app.describe()))
            self._json(HTTPStatus.OK, app.describe())

        def do_DELETE(self) -> None:
            match = _APP_PATH.match(self.path)
            if match and traffic.delete(match.group(1), match.group(2)):
                log.info("app %s/%s removed", match.group(1), match.group(2))
                self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no app at {self.path}"})

        def _json(self, status: HTTPStatus, body: object) -> None:
            self._send(status, json.dumps(body).encode() + b"\n", "application/json")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every second would drown the log; changes are logged above

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    traffic = Traffic(ClusterView(args.kubeconfig))
    stop = threading.Event()
    threading.Thread(target=traffic.run, args=(stop,), name="ticker", daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(traffic))
    log.info("serving on 127.0.0.1:%d", args.port)
    try:
        server.serve_forever()
    finally:
        stop.set()
        server.server_close()


# ------------------------------------------------------------------------ test helpers


def error_ratio_query(namespace: str, app: str = "web") -> str:
    """PromQL for the share of an app's requests that failed over the last 5 s, for the colour
    under analysis (lockstep fills in {{color}})."""
    selected = f'namespace="{namespace}",app="{app}",color="{{{{color}}}}"'
    errors = f'sum(rate(http_requests_total{{{selected},code="500"}}[5s]))'
    return f"{errors} / sum(rate(http_requests_total{{{selected}}}[5s]))"


class TrafficProcess:
    """The traffic process, started in its own process group."""

    def __init__(self, kubeconfig: Path, log_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.port = free_port()
        self.process: Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.process = Process(
            "traffic",
            [
                sys.executable,
                "-m",
                "tests.env.traffic",
                "--port",
                str(self.port),
                "--kubeconfig",
                str(self.kubeconfig),
            ],
            self.log_dir,
            cwd=REPO_ROOT,
        )
        wait_until(self._healthy, timeout=30, what="the traffic process")

    def _healthy(self) -> bool:
        assert self.process is not None
        self.process.check_alive()
        return httpx.get(f"http://{self.address}/healthz", timeout=2).status_code == 200

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class TrafficClient:
    """Steers a running traffic process."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._http = httpx.Client(base_url=f"http://{address}", timeout=5)

    def set_app(
        self,
        namespace: str,
        app: str,
        *,
        service: str,
        rps: float = 50,
        error_ratio: dict[str, float] | None = None,
        default_error_ratio: float = 0.0,
    ) -> dict[str, Any]:
        """Register or update an app; its error ratio per version (else the default)."""
        body = {
            "service": service,
            "rps": rps,
            "errorRatio": error_ratio or {},
            "defaultErrorRatio": default_error_ratio,
        }
        response = self._http.put(f"/apps/{namespace}/{app}", json=body)
        if response.status_code != 200:
            raise ValueError(f"traffic refused the app: {response.text.strip()}")
        result: dict[str, Any] = response.json()
        return result

    def remove_app(self, namespace: str, app: str) -> None:
        response = self._http.delete(f"/apps/{namespace}/{app}")
        if response.status_code not in (204, 404):
            response.raise_for_status()

    def apps(self) -> list[dict[str, Any]]:
        response = self._http.get("/apps")
        response.raise_for_status()
        apps: list[dict[str, Any]] = response.json()["apps"]
        return apps

    def close(self) -> None:
        self._http.close()


if __name__ == "__main__":
    main()
