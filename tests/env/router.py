"""The router: what kube-proxy does for a Service, for clients on this machine.

A `Router` watches one namespace's EndpointSlices (which the real kube-controller-manager
computes from each Service's selector and its pods' readiness) and the pods that the local
executor runs (`executor.py`), and answers "where does a request to Service S go now": a random
endpoint among those kube-proxy would use, translated from `<pod IP>:<port>` to the local port
the pod's process listens on (the pod's `lockstep.dev/test-ports` annotation).

Which endpoints kube-proxy uses (`usable`): the `ready` ones; when none is ready, the ones
that are `serving` and `terminating` (a pod that is shutting down but still answers, so a
scale-down to zero does not drop requests that have nowhere else to go); otherwise none, and
the request fails as kube-proxy's REJECT rule makes it fail.

Like kube-proxy (`--iptables-min-sync-period`, 1 s by default), the router applies changes at
most once per `sync_period`: the first change after a quiet period at once, later ones batched.
A request already sent is not affected by a later change (kube-proxy's conntrack entries keep
an established connection on its endpoint).

Weights between Services (a Gateway API HTTPRoute's `backendRefs`) go through `pick_weighted`:
a backend is chosen by weight first, then an endpoint of it; a chosen backend with no usable
endpoint fails the request, as the Gateway API specifies. The router keeps, per Service, the
intervals during which it had no usable endpoint after it first had one (`outages`).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from .executor import PORTS_ANNOTATION, SELECTOR, api_client
from .informer import Informer

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
VERSION_LABELS = ("app.kubernetes.io/version", "version")
SYNC_PERIOD_SECONDS = 1.0

log = logging.getLogger("router")


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of a Service port, where it listens on this machine."""

    pod: str
    ip: str
    local_port: int
    version: str
    ready: bool
    serving: bool
    terminating: bool


@dataclass(frozen=True)
class Backend:
    """A Service and its weight (a backendRef of an HTTPRoute rule)."""

    service: str
    weight: int = 1


def usable(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """The endpoints kube-proxy sends new connections to: the ready ones, else the serving
    terminating ones, else none."""
    listed = list(endpoints)
    ready = [e for e in listed if e.ready]
    if ready:
        return ready
    return [e for e in listed if e.serving and e.terminating]


def endpoints_of_slice(
    endpoint_slice: dict[str, Any], pods: dict[str, dict[str, Any]], port_name: str = ""
) -> list[Endpoint]:
    """The endpoints of one EndpointSlice for the Service port `port_name` ("" for an unnamed
    port), mapped to local ports through the pods' annotations; endpoints whose pod is unknown
    or carries no mapping for the port are left out (nothing listens for them here)."""
    numbers = [
        p.get("port")
        for p in endpoint_slice.get("ports") or []
        if (p.get("name") or "") == port_name and p.get("port")
    ]
    if not numbers or endpoint_slice.get("addressType", "IPv4") != "IPv4":
        return []
    number = int(numbers[0])
    found = []
    for endpoint in endpoint_slice.get("endpoints") or []:
        ref = endpoint.get("targetRef") or {}
        pod = pods.get(ref.get("name", "")) if ref.get("kind") == "Pod" else None
        addresses = endpoint.get("addresses") or []
        if pod is None or not addresses:
            continue
        if (pod.get("status") or {}).get("podIP") != addresses[0]:
            continue  # the pod object is older or newer than the slice
        mapping = json.loads((pod["metadata"].get("annotations") or {}).get(PORTS_ANNOTATION, "{}"))
        local = mapping.get(str(number))
        if local is None:
            continue
        conditions = endpoint.get("conditions") or {}
        ready = conditions.get("ready") is not False  # unset means ready
        labels = pod["metadata"].get("labels") or {}
        found.append(
            Endpoint(
                pod=pod["metadata"]["name"],
                ip=addresses[0],
                local_port=int(local),
                version=next((labels[k] for k in VERSION_LABELS if labels.get(k)), ""),
                ready=ready,
                serving=conditions.get("serving", ready) is not False,
                terminating=bool(conditions.get("terminating", False)),
            )
        )
    return found


def pick_weighted(
    backends: Sequence[Backend], table: dict[str, list[Endpoint]], rng: random.Random
) -> tuple[str, Endpoint | None]:
    """A backend by weight, then one of its usable endpoints (None: the request fails)."""
    weighted = [b for b in backends if b.weight > 0]
    if not weighted:
        return "", None
    chosen = rng.choices(weighted, weights=[b.weight for b in weighted])[0]
    candidates = usable(table.get(chosen.service, []))
    return chosen.service, rng.choice(candidates) if candidates else None


class Router:
    """The routing table of one namespace's Services, kept up to date from the API."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        *,
        port_name: str = "",
        sync_period: float = SYNC_PERIOD_SECONDS,
        seed: int | None = None,
    ) -> None:
        self.namespace = namespace
        self.port_name = port_name
        self.sync_period = sync_period
        self.rng = random.Random(seed)
        self._api = api_client(kubeconfig)
        core = client.CoreV1Api(self._api)
        discovery = client.DiscoveryV1Api(self._api)
        self._slices: dict[str, dict[str, Any]] = {}
        self._pods: dict[str, dict[str, Any]] = {}
        self._table: dict[str, list[Endpoint]] = {}
        self._down_since: dict[str, float | None] = {}
        self._outages: dict[str, list[tuple[float, float]]] = {}
        self._changed = threading.Condition()
        self._dirty = False
        self._stop = threading.Event()
        self._informers = [
            Informer(
                "endpointslices",
                discovery.list_namespaced_endpoint_slice,
                self._on_slice,
                log,
                namespace,
            ),
            Informer(
                "pods",
                core.list_namespaced_pod,
                self._on_pod,
                log,
                namespace,
                label_selector=SELECTOR,
            ),
        ]
        self._syncer = threading.Thread(target=self._sync_loop, name="router-sync", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for informer in self._informers:
            informer.start()
        self._sync()
        self._syncer.start()

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        for informer in self._informers:
            informer.stop()
        self._syncer.join(timeout=5)
        self._api.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ queries

    def endpoints(self, service: str) -> list[Endpoint]:
        """The Service's endpoints as of the last sync, usable or not."""
        with self._changed:
            return list(self._table.get(service, []))

    def pick(self, service: str) -> Endpoint | None:
        """Where a new connection to `service` goes now (None: nowhere, it is rejected)."""
        return self.pick_weighted([Backend(service)])[1]

    def pick_weighted(self, backends: Sequence[Backend]) -> tuple[str, Endpoint | None]:
        with self._changed:
            return pick_weighted(backends, self._table, self.rng)

    def outages(self, service: str, until: float | None = None) -> list[tuple[float, float]]:
        """Intervals (epoch seconds) without a usable endpoint, after the Service first had
        one; an outage still going on ends at `until` (default: now)."""
        with self._changed:
            intervals = list(self._outages.get(service, []))
            since = self._down_since.get(service)
        if since is not None:
            intervals.append((since, until if until is not None else time.time()))
        return intervals

    # ------------------------------------------------------------------ watching

    def _on_slice(self, kind: str, endpoint_slice: dict[str, Any]) -> None:
        name = endpoint_slice["metadata"]["name"]
        with self._changed:
            if kind == "DELETED":
                self._slices.pop(name, None)
            else:
                self._slices[name] = endpoint_slice
            self._dirty = True
            self._changed.notify_all()

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        with self._changed:
            if kind == "DELETED":
                self._pods.pop(name, None)
            else:
                self._pods[name] = pod
            self._dirty = True
            self._changed.notify_all()

    def _sync_loop(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            with self._changed:
                while not self._dirty and not self._stop.is_set():
                    self._changed.wait(1.0)
            wait = last + self.sync_period - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            self._sync()
            last = time.monotonic()

    def _sync(self) -> None:
        with self._changed:
            self._dirty = False
            table: dict[str, list[Endpoint]] = {}
            for endpoint_slice in self._slices.values():
                service = (endpoint_slice["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
                if service:
                    table.setdefault(service, []).extend(
                        endpoints_of_slice(endpoint_slice, self._pods, self.port_name)
                    )
            self._table = table
            moment = time.time()
            for service in set(table) | set(self._down_since):
                up = bool(usable(table.get(service, [])))
                since = self._down_since.get(service)
                if up and since is not None:
                    self._outages.setdefault(service, []).append((since, moment))
                if up:
                    self._down_since[service] = None
                elif service in self._down_since and since is None:
                    self._down_since[service] = moment  # had endpoints before: an outage
