"""The one module that writes to Kubernetes (reads come from kopf's watch-fed indexes).

Everything here is a small, idempotent call: server-side apply with our field manager for
objects we own (colour Deployments) and for the one field we own on user objects (a Service's
selector), plain creates for Jobs (an existing Job counts as created), merge patches of our
status, and Events. Messages pass through `redact` on their way out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from . import API_VERSION, GROUP, VERSION
from .api.base import now as utcnow
from .redact import redact

FIELD_MANAGER = "lockstep"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
log = logging.getLogger(__name__)


class NotFound(Exception):
    """The object does not exist."""


class Conflict(Exception):
    """The object changed since the version a write was conditioned on."""


@dataclass(frozen=True)
class ObjectRef:
    """Enough of an object to own children and post Events about it."""

    kind: str
    namespace: str
    name: str
    uid: str
    api_version: str = API_VERSION

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def load_api_client(pool_size: int = 32, retry: bool = True) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig. Without `retry`, a
    request that fails or times out is not sent again by urllib3 (the caller decides)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    if not retry:
        configuration.retries = False
    return client.ApiClient(configuration)


class Kube:
    """Kubernetes writes (and the few reads that are not worth an index)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # ------------------------------------------------------------------ our objects

    def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch our status subresource (keys set to None are removed); with
        `resource_version`, only if the object is still at that version (else Conflict).
        Returns the object as written."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            result = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, body, _content_type=MERGE
            )
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"{plural}/{name}") from None
            if exc.status == 409:
                raise Conflict(
                    f"{plural}/{name} changed since version {resource_version}"
                ) from None
            raise
        return cast(dict[str, Any], result)

    def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One of our objects as it is now (None when it is gone)."""
        try:
            result = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], result)

    def list_custom(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        """Our objects of one kind in a namespace, as they are now."""
        result = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        return list(cast(dict[str, Any], result).get("items") or [])

    def orphan(self, namespace: str, deployment: str) -> None:
        """Remove a Deployment's owner references, so that it outlives its owner."""
        try:
            self.apps.patch_namespaced_deployment(
                deployment,
                namespace,
                {"metadata": {"ownerReferences": None}},
                _content_type=MERGE,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def service_selector(self, namespace: str, service: str) -> dict[str, str] | None:
        """The Service's selector as it is now (None when there is no such Service)."""
        try:
            found = self.core.read_namespaced_service(service, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict((found.spec.selector if found.spec else None) or {})

    def service_selects(self, namespace: str, service: str, color: str) -> bool:
        """Whether the Service, as it is now, selects pods of `color`."""
        selector = self.service_selector(namespace, service) or {}
        return selector.get("lockstep.dev/color") == color

    def available_pods(self, namespace: str, deployment: str) -> int:
        """Available pods of a Deployment as it is now (0 when it does not exist)."""
        try:
            found = self.apps.read_namespaced_deployment(deployment, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return 0
            raise
        return int((found.status.available_replicas if found.status else 0) or 0)

    @staticmethod
    def namespace_terminating(exc: Exception) -> bool:
        """A namespace being deleted refuses new objects: nothing to do, nothing to report."""
        if not isinstance(exc, ApiException) or exc.status != 403:
            return False
        try:
            details = json.loads(exc.body or "{}").get("details") or {}
        except ValueError:
            return False
        return any(c.get("reason") == "NamespaceTerminating" for c in details.get("causes") or [])

    def annotate(
        self, plural: str, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        body = {"metadata": {"annotations": annotations}}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, body, _content_type=MERGE
        )

    def event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about `ref` (never raises: Events are best effort)."""
        moment = utcnow()
        now = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "type": type_,
            "reason": reason,
            "message": redact(message)[:1024],
            "source": {"component": "lockstep"},
            "reportingComponent": "lockstep.dev/operator",
            "reportingInstance": "lockstep",
            "action": reason,
            # microseconds: Events of one reconciliation sort in the order they happened
            "eventTime": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(ref.namespace, cast(Any, body))
        except ApiException as exc:
            log.warning(
                "Posting event %s on %s/%s failed: %s", reason, ref.namespace, ref.name, exc.reason
            )

    # ------------------------------------------------------------------ children

    def apply(self, body: dict[str, Any]) -> None:
        """Server-side apply an apps/v1 Deployment or a v1 Service fragment we own fields of."""
        kind, namespace, name = (
            body["kind"],
            body["metadata"]["namespace"],
            body["metadata"]["name"],
        )
        if kind == "Deployment":
            self.apps.patch_namespaced_deployment(
                name, namespace, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
            )
        elif kind == "Service":
            self.core.patch_namespaced_service(
                name, namespace, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
            )
        else:
            raise ValueError(f"cannot apply {kind}")

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        try:
            self.apps.patch_namespaced_deployment_scale(
                name, namespace, {"spec": {"replicas": replicas}}, _content_type=MERGE
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def create_job(self, body: dict[str, Any]) -> bool:
        """Create a Job; False when it already exists (created by an earlier run)."""
        try:
            # plain dicts go to the API as they are; the client's models would only copy them
            self.batch.create_namespaced_job(body["metadata"]["namespace"], cast(Any, body))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(
                name, namespace, body=cast(Any, {"propagationPolicy": "Background"})
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def job_termination_message(self, namespace: str, job: str) -> str | None:
        """The termination message of the (last) pod of a Job."""
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
        pods.sort(key=lambda p: str(p.metadata.creation_timestamp if p.metadata else ""))
        for pod in reversed(pods):
            for status in (pod.status.container_statuses if pod.status else None) or []:
                terminated = status.state.terminated if status.state else None
                if terminated is not None and terminated.message:
                    return str(terminated.message)
        return None

    # ------------------------------------------------------------------ reads

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        import base64

        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"Secret {name} not found in namespace {namespace}") from None
            raise
        data = secret.data or {}
        if key not in data:
            raise NotFound(f"Secret {name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()

    def configmap_data(self, namespace: str, name: str) -> dict[str, str]:
        try:
            configmap = self.core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"ConfigMap {name} not found in namespace {namespace}") from None
            raise
        return dict(configmap.data or {})
