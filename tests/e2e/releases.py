"""The application "web" released by a FeatureRelease, and what end-to-end tests observe of it.

- `release_manifest` / `template` / `error_ratio_analysis` write FeatureReleases the way a user
  would: v1 and v2 differ in their pod template (`app.kubernetes.io/version`) and `release`.
- `Timeline` watches the namespace's Services, Deployments and FeatureReleases from background
  threads. A watch delivers every version of every object in order, so a selector that pointed
  at green even for a millisecond shows up in it.
- `WebApp` ties both to the test traffic process: it creates the Services, registers the app's
  simulated clients, and applies releases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client, config, watch
from tests.env.cluster import FAIL, Cluster
from tests.env.traffic import TrafficClient, error_ratio_query

if TYPE_CHECKING:  # conftest imports this module for its `web` fixture
    from tests.e2e.conftest import Kubectl

APP = "web"
PREVIEW = "web-preview"
COLOR_LABEL = "lockstep.dev/color"
CHECK_LABEL = "lockstep.dev/check"
VERSION_LABEL = "app.kubernetes.io/version"
GROUP, VERSION, PLURAL = "lockstep.dev", "v1alpha1", "featurereleases"
PLUGIN = Path(sys.executable).parent / "kubectl-lockstep"

Status = dict[str, Any]


# ------------------------------------------------------------------------------ manifests


def template(version: str, **labels: str) -> dict[str, Any]:
    """The pod template of `version` (extra pod labels steer kwok, see tests/env/cluster.py)."""
    return {
        "metadata": {"labels": {"app": APP, VERSION_LABEL: version, **labels}},
        "spec": {"containers": [{"name": APP, "image": f"example/web:{version}"}]},
    }


def release_manifest(
    version: str, *, replicas: int = 2, pod_labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    """The FeatureRelease "web" releasing `version` (also its human release name)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FeatureRelease",
        "metadata": {"name": APP},
        "spec": {
            "selector": {"matchLabels": {"app": APP}},
            "replicas": replicas,
            "template": template(version, **(pod_labels or {})),
            "service": APP,
            "release": version,
            **spec,
        },
    }


def service_manifest(name: str) -> dict[str, Any]:
    """A Service as its owner writes it; lockstep adds the colour to its selector."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": APP}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def error_ratio_analysis(
    namespace: str,
    prometheus_url: str,
    *,
    interval: str = "1s",
    duration: str = "5s",
    failure_limit: int = 2,
    consecutive_error_limit: int = 3,
) -> dict[str, Any]:
    """At most 5 % of the colour's requests may fail."""
    return {
        "prometheus": {"address": prometheus_url, "timeout": "2s"},
        "interval": interval,
        "duration": duration,
        "failureLimit": failure_limit,
        "consecutiveErrorLimit": consecutive_error_limit,
        "metrics": [
            {"name": "error-ratio", "query": error_ratio_query(namespace, APP), "max": 0.05}
        ],
    }


def check(name: str, *, fail: bool = False) -> dict[str, Any]:
    """A check Job; kwok completes its pod, or fails it when `fail`."""
    labels = {FAIL: "true"} if fail else {}
    return {
        "name": name,
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": name, "image": "example/smoke:1"}]},
        },
    }


def blue_green(**settings: Any) -> dict[str, Any]:
    """`strategy.blueGreen` with camelCase settings, e.g. scaleDownDelaySeconds=2."""
    return {"blueGreen": settings}


# ------------------------------------------------------------------------------ timeline


@dataclass(frozen=True)
class Change:
    """One version of one object, as a watch delivered it."""

    at: float  # time.time() when it arrived
    kind: str
    name: str
    body: dict[str, Any]

    @property
    def selector_color(self) -> str | None:
        return ((self.body.get("spec") or {}).get("selector") or {}).get(COLOR_LABEL)

    @property
    def replicas(self) -> int:
        return int((self.body.get("spec") or {}).get("replicas", 1))

    @property
    def status(self) -> Status:
        return self.body.get("status") or {}


@dataclass
class Trigger:
    """An action armed to run once, on the first change that meets a condition."""

    condition: Callable[[Change], bool]
    action: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def fire(self) -> None:
        try:
            self.action()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout: float = 60) -> None:
        if not self.done.wait(timeout):
            raise TimeoutError(f"the condition of {self.action} did not happen in {timeout}s")
        if self.error is not None:
            raise self.error


def at_step(step: str, release: str) -> Callable[[Change], bool]:
    """A FeatureRelease status at `step` of `release`."""
    return lambda c: (
        c.kind == "FeatureRelease"
        and c.status.get("step") == step
        and c.status.get("release") == release
    )


def selecting(service: str, color: str) -> Callable[[Change], bool]:
    """A version of `service` that selects `color`."""
    return lambda c: c.kind == "Service" and c.name == service and c.selector_color == color


class Timeline:
    """Every change of the namespace's Services, Deployments and FeatureReleases, in order."""

    KINDS = ("Service", "Deployment", "FeatureRelease")

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.changes: list[Change] = []
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._listed = threading.Semaphore(0)
        self._triggers: list[Trigger] = []
        self._threads = [
            threading.Thread(
                target=self._follow, args=(kind,), name=f"timeline-{kind}", daemon=True
            )
            for kind in self.KINDS
        ]

    def __enter__(self) -> Timeline:
        for thread in self._threads:
            thread.start()
        for _ in self._threads:  # every kind listed: nothing that happens next is missed
            if not self._listed.acquire(timeout=30):
                raise TimeoutError(f"the timeline could not list the namespace: {self.errors}")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _lister(self, api: client.ApiClient, kind: str) -> Callable[..., Any]:
        if kind == "Service":
            return client.CoreV1Api(api).list_namespaced_service
        if kind == "Deployment":
            return client.AppsV1Api(api).list_namespaced_deployment
        custom = client.CustomObjectsApi(api)

        def list_releases(namespace: str, **kwargs: Any) -> Any:
            return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kwargs)

        return list_releases

    def _follow(self, kind: str) -> None:
        api = config.new_client_from_config(str(self.kubeconfig))  # type: ignore[no-untyped-call]
        lister = self._lister(api, kind)
        first = True
        try:
            while not self._stop.is_set():
                try:
                    listed = api.sanitize_for_serialization(lister(self.namespace))
                    for body in listed["items"]:
                        self._record(Change(time.time(), kind, body["metadata"]["name"], body))
                    version = listed["metadata"]["resourceVersion"]
                    if first:
                        self._listed.release()
                        first = False
                    while not self._stop.is_set():
                        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                            lister,
                            self.namespace,
                            resource_version=version,
                            timeout_seconds=1,
                            _request_timeout=10,
                        )
                        for event in stream:
                            body = event["raw_object"]
                            if event["type"] == "ERROR":
                                raise RuntimeError(f"{kind} watch failed: {body}")
                            version = body["metadata"]["resourceVersion"]
                            self._record(Change(time.time(), kind, body["metadata"]["name"], body))
                except Exception as exc:
                    # Reported by `check`: a gap voids a test's proof. The timeline goes on
                    # (listing again) so that a test of an API server outage still sees the end.
                    self.errors.append(f"{kind}: {exc}")
                    self._stop.wait(0.5)
        finally:
            api.close()

    def _record(self, change: Change) -> None:
        with self._changed:
            self.changes.append(change)
            self._changed.notify_all()
            fired = [t for t in self._triggers if t.condition(change)]
            self._triggers = [t for t in self._triggers if t not in fired]
        for trigger in fired:
            trigger.fire()

    def when(self, condition: Callable[[Change], bool], action: Callable[[], None]) -> Trigger:
        """Run `action` on the watch thread as soon as a change meets `condition`: within
        milliseconds, before the test thread would even have looked."""
        trigger = Trigger(condition, action)
        with self._changed:
            self._triggers.append(trigger)
        return trigger

    def check(self) -> None:
        assert not self.errors, f"the timeline has gaps: {self.errors}"

    def of(self, kind: str, name: str) -> list[Change]:
        with self._changed:
            return [c for c in self.changes if c.kind == kind and c.name == name]

    def selector_colors(self, service: str = APP) -> list[str | None]:
        """The colours the Service selected, in order, without repeats."""
        colors: list[str | None] = []
        for change in self.of("Service", service):
            if not colors or colors[-1] != change.selector_color:
                colors.append(change.selector_color)
        return colors

    def first_selecting(self, service: str, color: str) -> int:
        """The position in the timeline where `service` first selected `color`."""
        selects = selecting(service, color)
        with self._changed:
            return next(i for i, change in enumerate(self.changes) if selects(change))

    def steps(self) -> list[str]:
        """The steps the FeatureRelease went through, in order, without repeats."""
        steps: list[str] = []
        for change in self.of("FeatureRelease", APP):
            step = change.status.get("step")
            if step and (not steps or steps[-1] != step):
                steps.append(step)
        return steps

    def wait_until(self, condition: Callable[[], Any], timeout: float) -> Any:
        """Block until `condition()` is truthy after some change arrives (checked at once too)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = condition()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {condition}")
                self._changed.wait(min(left, 0.2))

    def wait_for_release(
        self, what: str, condition: Callable[[Status], bool], timeout: float = 60
    ) -> Status:
        """The status of "web" if it meets `condition` now, else the first one from now on that
        does (even if it has been overwritten by the time this thread looks)."""
        start = len(self.changes)

        def seen() -> Status | None:
            latest = self.of("FeatureRelease", APP)
            if latest and condition(latest[-1].status):
                return latest[-1].status
            for change in self.changes[start:]:  # held only briefly, between two looks
                if change.kind == "FeatureRelease" and condition(change.status):
                    return change.status
            return None

        try:
            return self.wait_until(seen, timeout)  # type: ignore[no-any-return]
        except TimeoutError:
            latest = self.of("FeatureRelease", APP)
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {what}; last status: "
                f"{latest[-1].status if latest else None}"
            ) from None


# ------------------------------------------------------------------------------ the app


@dataclass(frozen=True)
class Outcome:
    """What a finished release leaves behind."""

    phase: str
    active_color: str
    selector_color: str | None
    replicas: dict[str, int]
    history: list[tuple[str, str]]  # (release, outcome), newest first


FIRST_RELEASE_STEPS = ["Deploy", "Switch", "Done"]  # no checks, no analysis for the first one

PROMOTED = Outcome(
    "Ready", "green", "green", {"blue": 0, "green": 2}, [("v2", "Promoted"), ("v1", "Promoted")]
)
ROLLED_BACK = Outcome(
    "RolledBack",
    "blue",
    "blue",
    {"blue": 2, "green": 0},
    [("v2", "RolledBack"), ("v1", "Promoted")],
)


@dataclass
class WebApp:
    """The app "web" in the test namespace: its Services, clients and FeatureRelease."""

    cluster: Cluster
    k: Kubectl
    traffic: TrafficClient | None  # None for the real application (tests/e2e/dataplane.py)
    prometheus_url: str
    timeline: Timeline

    @property
    def namespace(self) -> str:
        return self.k.namespace

    def analysis(self, **overrides: Any) -> dict[str, Any]:
        return error_ratio_analysis(self.namespace, self.prometheus_url, **overrides)

    def start_clients(self, rps: float = 50, error_ratio: dict[str, float] | None = None) -> None:
        """Simulated clients of the active Service, failing by the ratio of each version."""
        assert self.traffic is not None
        self.traffic.set_app(self.namespace, APP, service=APP, rps=rps, error_ratio=error_ratio)

    def apply(self, version: str, **spec: Any) -> int:
        """Apply the FeatureRelease for `version`; its new metadata.generation."""
        self.k.apply(release_manifest(version, **spec))
        return int(self.k.get("featurerelease", APP)["metadata"]["generation"])

    def go_live(self, version: str = "v1", **spec: Any) -> Status:
        """Release the first version and wait until it is Ready in blue."""
        self.k.apply(service_manifest(APP))
        if spec.get("previewService"):
            self.k.apply(service_manifest(spec["previewService"]))
        self.start_clients()
        generation = self.apply(version, **spec)
        return self.wait_for_phase("Ready", generation, release=version)

    def status(self) -> Status:
        return self.k.status("featurerelease", APP)

    def wait_for_phase(
        self,
        phase: str,
        generation: int | None = None,
        release: str | None = None,
        timeout: float = 90,
    ) -> Status:
        """Wait until the release settles in `phase` (Ready, RolledBack) at `generation`."""

        def reached(status: Status) -> bool:
            return (
                status.get("phase") == phase
                and (generation is None or status.get("observedGeneration") == generation)
                and (release is None or status.get("release") == release)
                and bool(status.get("settled"))
            )

        return self.timeline.wait_for_release(f"phase {phase}", reached, timeout)

    def wait_for_step(self, step: str, release: str, timeout: float = 60) -> Status:
        """Wait until the release of `release` is at `step`."""
        return self.timeline.wait_for_release(
            f"{release} at step {step}",
            lambda s: s.get("step") == step and s.get("release") == release,
            timeout,
        )

    def replicas(self) -> dict[str, int]:
        """spec.replicas of each colour's Deployment (-1: there is none)."""
        found = {}
        for color in ("blue", "green"):
            deployment = self.k.maybe("deployment", f"{APP}-{color}")
            found[color] = int(deployment["spec"]["replicas"]) if deployment else -1
        return found

    def selector_color(self, service: str = APP) -> str | None:
        selector = self.k.get("service", service)["spec"].get("selector") or {}
        return selector.get(COLOR_LABEL)

    def outcome(self) -> Outcome:
        status = self.status()
        return Outcome(
            phase=status.get("phase", ""),
            active_color=status.get("activeColor", ""),
            selector_color=self.selector_color(),
            replicas=self.replicas(),
            history=[(h.get("release", ""), h["outcome"]) for h in status.get("history", [])],
        )

    def served_by(self) -> tuple[str, str] | None:
        """(colour, version) that the simulated clients reach now, as the traffic process sees
        it."""
        assert self.traffic is not None
        for app in self.traffic.apps():
            if (app["namespace"], app["app"]) == (self.namespace, APP):
                return app["color"], app["version"]
        return None

    def spec_and_generation(self) -> tuple[dict[str, Any], int]:
        """What only the user changes: the spec, and its generation."""
        obj = self.k.get("featurerelease", APP)
        return obj["spec"], int(obj["metadata"]["generation"])

    def event_reasons(self) -> list[str]:
        return [e["reason"] for e in self.k.events(APP)]

    def warnings(self) -> list[dict[str, Any]]:
        return [e for e in self.k.events(APP) if e["type"] == "Warning"]

    def check_jobs(self) -> list[dict[str, Any]]:
        out = self.k("get", "jobs", "-l", CHECK_LABEL, "-o", "json")
        jobs: list[dict[str, Any]] = json.loads(out)["items"]
        return jobs

    def plugin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kubectl lockstep ARGS` against the test namespace, as the cluster admin."""
        result = subprocess.run(
            [str(PLUGIN), "--context", "lockstep-test", "-n", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl lockstep {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result


def holds_for(seconds: float, what: str, condition: Callable[[], bool]) -> None:
    """Assert that `condition` stays true for `seconds` (a hold, not a wait: it fails at once
    when the condition breaks)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), f"{what} stopped holding"
        time.sleep(0.1)
