"""An in-memory stand-in for `lockstep.kube.Kube`, for unit tests of the reconcilers' glue.

It keeps the objects the reconcilers write (statuses with resourceVersions, Deployments, the
Service selector, Jobs, Events) and records every call in order, so that tests can say what
was done, in which order, and what was refused. The end-to-end tests run the same code against
the real API server.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from lockstep.kube import Conflict, NotFound, ObjectRef
from lockstep.objects import apply_merge_patch


@dataclass
class FakeKube:
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    selectors: dict[str, dict[str, str]] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    applied: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    termination: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    rv: int = 100

    # ------------------------------------------------------------------ our objects

    def add(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        self.objects[(plural, obj["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        self.calls.append("patch_status")
        obj = self.objects.get((plural, name))
        if obj is None:
            raise NotFound(name)
        if resource_version and obj["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(name)
        obj["status"] = apply_merge_patch(obj.get("status") or {}, status)
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(obj)

    def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("get_custom")
        obj = self.objects.get((plural, name))
        return copy.deepcopy(obj) if obj else None

    def list_custom(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        self.calls.append("list_custom")
        return [copy.deepcopy(o) for (p, _), o in self.objects.items() if p == plural]

    def event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    # ------------------------------------------------------------------ children

    def apply(self, body: dict[str, Any]) -> None:
        self.calls.append(f"apply {body['kind']} {body['metadata']['name']}")
        self.applied.append(body)
        if body["kind"] == "Service":
            self.selectors[body["metadata"]["name"]] = dict(body["spec"]["selector"])

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.calls.append(f"scale {name} {replicas}")
        self.replicas[name] = replicas

    def create_job(self, body: dict[str, Any]) -> bool:
        name = body["metadata"]["name"]
        self.calls.append(f"create_job {name}")
        if name in self.jobs:
            return False
        self.jobs[name] = body
        return True

    def job_termination_message(self, namespace: str, job: str) -> str | None:
        return self.termination.get(job)

    def orphan(self, namespace: str, deployment: str) -> None:
        self.calls.append(f"orphan {deployment}")
        self.orphaned.append(deployment)

    def service_selector(self, namespace: str, service: str) -> dict[str, str] | None:
        self.calls.append(f"read service {service}")
        found = self.selectors.get(service)
        return dict(found) if found is not None else None

    def service_selects(self, namespace: str, service: str, color: str) -> bool:
        return (self.service_selector(namespace, service) or {}).get("lockstep.dev/color") == color

    def available_pods(self, namespace: str, deployment: str) -> int:
        self.calls.append(f"read deployment {deployment}")
        return self.available.get(deployment, 0)

    @staticmethod
    def namespace_terminating(exc: Exception) -> bool:
        return False

    # ------------------------------------------------------------------ reads

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        self.calls.append(f"read secret {name}")
        if (name, key) not in self.secrets:
            raise NotFound(f"Secret {name} not found in namespace {namespace}")
        return self.secrets[(name, key)]

    def configmap_data(self, namespace: str, name: str) -> dict[str, str]:
        if name not in self.configmaps:
            raise NotFound(f"ConfigMap {name} not found in namespace {namespace}")
        return dict(self.configmaps[name])
