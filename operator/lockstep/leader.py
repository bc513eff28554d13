"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

Several replicas of the operator run; the one holding the Lease leads and is the only one that
acts. A standby reads the Lease every retry period and takes it over once it has not changed for
the Lease's `leaseDurationSeconds`, measured on the standby's own monotonic clock from the moment
it first saw the current version (never from the timestamps written in it, so clock skew between
nodes does not matter). A replica that stops gracefully hands the Lease over at once (holder
cleared, duration 1 s), as client-go's `ReleaseOnCancel` does.

The leader renews every retry period. Its licence to act runs until the renew deadline after the
start of its last successful renewal; past it, every Kubernetes write of the operator's client is
refused (`guard_writes`) and the elector reports the loss, on which `lockstep run` exits as
controller-runtime's managers do: the kubelet restarts it as a standby. A standby's clock for
the same renewal starts no earlier than that renewal was sent, and the renew deadline is
strictly shorter than the lease duration, so the old leader has stopped before any standby may
take over. Reading the Lease and seeing another holder ends the licence at once.

The kubernetes client ships a `leaderelection` package, but it counts on wall-clock time, does
not keep `leaseTransitions`, never hands the Lease over, and stops leading only when its renew
loop gives up, some time after the deadline; hence this small module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import __version__, metrics

log = logging.getLogger("lockstep.leader")

JITTER = 1.2  # client-go's JitterFactor: standbys spread their reads over retry x [1, 1.2)
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def microtime(moment: datetime) -> str:
    """A metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Timing:
    """client-go's three durations (controller-runtime's defaults: 15 s, 10 s, 2 s)."""

    lease_duration: int = 15
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if self.retry_period <= 0:
            raise ValueError("the retry period must be positive")
        if self.renew_deadline <= JITTER * self.retry_period:
            raise ValueError(
                f"the renew deadline ({self.renew_deadline:g}s) must be longer than "
                f"{JITTER:g} x the retry period ({self.retry_period:g}s)"
            )
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"the lease duration ({self.lease_duration}s) must be longer than the renew "
                f"deadline ({self.renew_deadline:g}s): a leader that cannot renew must stop "
                "acting before a standby may take over"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """The election record in a Lease's spec."""

    holder: str = ""
    duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def of(cls, lease: dict[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder or None,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


def claim(
    identity: str,
    current: LeaseRecord | None,
    unchanged_for: float,
    timing: Timing,
    now: str,
) -> LeaseRecord | None:
    """The record that takes or keeps the Lease for `identity`, or None while another holder's
    lease runs. `unchanged_for`: seconds since this replica first saw `current` as it is."""
    fresh = LeaseRecord(identity, timing.lease_duration, now, now, 0)
    if current is None:
        return fresh
    if current.holder == identity:
        return replace(current, duration_seconds=timing.lease_duration, renew_time=now)
    running = current.duration_seconds or timing.lease_duration
    if current.holder and unchanged_for < running:
        return None
    return replace(fresh, transitions=current.transitions + 1)


class NotLeading(Exception):
    """This replica does not lead (or no longer): it must not write."""


class Leadership:
    """Whether this replica may act now: true until the renew deadline of its last renewal."""

    def __init__(
        self, identity: str, renew_deadline: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.identity = identity
        self.renew_deadline = renew_deadline
        self.clock = clock
        self._until = float("-inf")

    @classmethod
    def unconditional(cls, identity: str) -> Leadership:
        """A replica that runs alone, without an election: it always acts."""
        leadership = cls(identity, float("inf"))
        leadership._until = float("inf")
        metrics.LEADER.set(1)
        return leadership

    def renewed(self, attempt_started: float) -> None:
        self._until = attempt_started + self.renew_deadline
        metrics.LEADER.set(1)

    def end(self) -> None:
        self._until = float("-inf")
        metrics.LEADER.set(0)

    def acting(self) -> bool:
        return self.clock() < self._until

    def remaining(self) -> float:
        return self._until - self.clock()

    def check(self, what: str) -> None:
        if not self.acting():
            raise NotLeading(f"{self.identity} does not lead: not {what}")


def guard_writes(api: client.ApiClient, leadership: Leadership) -> None:
    """Refuse every request of `api` but reads unless `leadership` is acting, checked as each
    request leaves (so also a pass that started while this replica still led)."""
    call_api = api.call_api

    def guarded(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() not in READS:
            leadership.check(f"sending {method} {url.split('?', 1)[0]}")
        return call_api(method, url, *args, **kwargs)

    api.call_api = guarded  # type: ignore[method-assign]


@dataclass(frozen=True)
class ElectionConfig:
    lease: str
    namespace: str
    identity: str
    timing: Timing = Timing()


class Elector:
    """Campaigns for the Lease, then keeps it, on a thread of its own (so a busy event loop
    or worker pool never delays a renewal)."""

    def __init__(
        self,
        api: client.ApiClient,
        config: ElectionConfig,
        on_acquired: Callable[[], None],
        on_lost: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.timing = config.timing
        self.coordination = client.CoordinationV1Api(api)
        self.core = client.CoreV1Api(api)
        self.leadership = Leadership(config.identity, config.timing.renew_deadline, clock)
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.clock = clock
        self.wall = wall
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lockstep-leader", daemon=True)
        # the Lease as last read or written, and since when (monotonic) it looked like that
        self._lease: dict[str, Any] | None = None
        self._record: LeaseRecord | None = None
        self._seen_at = 0.0
        self.last_attempt = 0.0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, release: bool = True) -> None:
        """Stop campaigning or renewing; hand the Lease over if this replica still holds it."""
        self._stop.set()
        self._thread.join(timeout=self.timing.renew_deadline + 1)  # a renewal under way ends
        if release and self.leadership.acting():
            self._release()
        self.leadership.end()

    def _run(self) -> None:
        try:
            if self._campaign():
                self._keep()
        except Exception:  # never silently: a dead elector must not look like a leader
            log.exception("Leader election failed")
            if self.leadership.acting() or not self._stop.is_set():
                self._lose("the leader election thread failed")

    def _campaign(self) -> bool:
        log.info(
            "%s is a candidate for Lease %s/%s",
            self.config.identity,
            self.config.namespace,
            self.config.lease,
        )
        while not self._stop.is_set():
            if self.try_acquire_or_renew():
                log.info("%s leads (Lease %s)", self.config.identity, self.config.lease)
                self._post_event(f"{self.config.identity} became leader")
                self.on_acquired()
                return True
            self._stop.wait(self.timing.retry_period * random.uniform(1, JITTER))  # noqa: S311
        return False

    def _keep(self) -> None:
        next_attempt = self.clock() + self.timing.retry_period
        while not self._stop.is_set():
            left = self.leadership.remaining()
            if left <= 0:
                self._lose(f"no renewal of the Lease succeeded for {self.timing.renew_deadline:g}s")
                return
            if self._stop.wait(max(0.0, min(next_attempt - self.clock(), left))):
                return
            if self.clock() < next_attempt or not self.leadership.acting():
                continue  # the deadline is checked at the top (also after a freeze)
            next_attempt = self.clock() + self.timing.retry_period
            self.try_acquire_or_renew()
            if self._record is not None and self._record.holder != self.config.identity:
                self._lose(f"the Lease is held by {self._record.holder or 'nobody'} now")
                return

    def _lose(self, reason: str) -> None:
        self.leadership.end()
        log.error("%s stops leading: %s", self.config.identity, reason)
        self.on_lost(reason)

    # ------------------------------------------------------------------ one attempt

    def try_acquire_or_renew(self) -> bool:
        """One round of client-go's tryAcquireOrRenew; True when this replica holds the Lease."""
        started = self.last_attempt = self.clock()
        # As client-go: a renewal may take until the renew deadline (an API server slow under
        # load is not a lost Lease); a standby's look, as long as a renewal may.
        timeout = self.timing.renew_deadline
        if self.leadership.acting():
            timeout = max(0.05, self.leadership.remaining())
        try:
            written = self._attempt(timeout)
        except ApiException as exc:
            if exc.status in (404, 409):  # deleted or written since we read it: read it again
                self._lease = None
            else:
                log.warning("Lease %s: %s %s", self.config.lease, exc.status, exc.reason)
            return False
        except Exception as exc:  # timeouts, refused connections: retried next period
            self._lease = None
            log.warning("Lease %s: %s", self.config.lease, exc)
            return False
        if written:
            self.leadership.renewed(started)
        return written

    def _attempt(self, timeout: float) -> bool:
        ns, name, me = self.config.namespace, self.config.lease, self.config.identity
        if self._lease is None or self._record is None or self._record.holder != me:
            self._read(timeout)
        now = microtime(self.wall())
        if self._lease is None:
            record = claim(me, None, 0.0, self.timing, now)
            assert record is not None
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": ns},
                "spec": record.spec(),
            }
            created: Any = self.coordination.create_namespaced_lease(
                ns, cast(Any, body), _preload_content=False, _request_timeout=timeout
            )
            self._observe(json.loads(created.data))
            return True
        record = claim(me, self._record, self.clock() - self._seen_at, self.timing, now)
        if record is None:
            return False
        body = {**self._lease, "spec": {**(self._lease.get("spec") or {}), **record.spec()}}
        replaced: Any = self.coordination.replace_namespaced_lease(
            name, ns, cast(Any, body), _preload_content=False, _request_timeout=timeout
        )
        self._observe(json.loads(replaced.data))
        return True

    def _read(self, timeout: float) -> None:
        try:
            response: Any = self.coordination.read_namespaced_lease(
                self.config.lease,
                self.config.namespace,
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._lease, self._record = None, None
            return
        self._observe(json.loads(response.data))

    def _observe(self, lease: dict[str, Any]) -> None:
        record = LeaseRecord.of(lease)
        if record != self._record:
            if self._record is not None and record.holder != self._record.holder:
                log.info("Lease %s is held by %s", self.config.lease, record.holder or "nobody")
            self._record, self._seen_at = record, self.clock()
        self._lease = lease

    def _release(self) -> None:
        """Hand the Lease over: no holder, a one-second duration (client-go's release)."""
        if self._lease is None or self._record is None:
            return
        now = microtime(self.wall())
        record = replace(self._record, holder="", duration_seconds=1, renew_time=now)
        body = {**self._lease, "spec": {**(self._lease.get("spec") or {}), **record.spec()}}
        try:
            self.coordination.replace_namespaced_lease(
                self.config.lease,
                self.config.namespace,
                cast(Any, body),
                _request_timeout=self.timing.retry_period,
            )
            log.info("%s released Lease %s", self.config.identity, self.config.lease)
        except Exception as exc:  # the standbys take over when it expires instead
            log.warning("Releasing Lease %s failed: %s", self.config.lease, exc)

    def _post_event(self, message: str) -> None:
        """client-go's LeaderElection Event on the Lease (best effort)."""
        lease = self._lease or {}
        moment = self.wall()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{self.config.lease}.",
                "namespace": self.config.namespace,
            },
            "involvedObject": {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "name": self.config.lease,
                "namespace": self.config.namespace,
                "uid": (lease.get("metadata") or {}).get("uid"),
            },
            "type": "Normal",
            "reason": "LeaderElection",
            "message": message,
            "source": {"component": "lockstep"},
            "reportingComponent": "lockstep.dev/operator",
            "reportingInstance": self.config.identity,
            "action": "LeaderElection",
            "eventTime": microtime(moment),
            "firstTimestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        with contextlib.suppress(Exception):
            self.core.create_namespaced_event(
                self.config.namespace, cast(Any, body), _request_timeout=self.timing.retry_period
            )


def user_agent(identity: str) -> str:
    return f"lockstep/{__version__} ({identity})"
