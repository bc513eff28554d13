"""A default StorageClass whose volumes are directories on this machine, like kind's.

kind ships rancher's local-path provisioner: a claim of the default class waits for its first
pod (WaitForFirstConsumer), then gets a hostPath PersistentVolume pinned to the node the
scheduler chose. `LocalPathProvisioner` does the same against the local control plane:

- it provisions a claim once the real PersistentVolume controller has handed it over
  (the `volume.kubernetes.io/storage-provisioner` annotation names this provisioner) and, for
  a WaitForFirstConsumer class, once the real scheduler has picked a node
  (`volume.kubernetes.io/selected-node`);
- the volume is a directory under `root` and a PersistentVolume `pvc-<claim uid>` pre-bound
  to the claim (`claimRef` with its uid), with node affinity to that node; the PersistentVolume
  controller completes the binding, as it does for any external provisioner;
- when a claim of a `Delete` class is deleted, the controller marks its volume Released; the
  provisioner then removes the directory and the PersistentVolume.

Watches wake it; each pass lists claims and volumes and decides from what it sees, so a missed
event only delays the next pass (at most `RESYNC_SECONDS`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from .executor import api_client
from .processes import wait_until

PROVISIONER = "lockstep.dev/local-path"
STORAGE_CLASS = "standard"
PROVISIONER_ANNOTATIONS = (
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
)
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
RESYNC_SECONDS = 10.0
WATCH_SECONDS = 30


def storage_class() -> dict[str, Any]:
    """The default StorageClass, shaped like kind's `standard`."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def volume_for(claim: dict[str, Any], klass: dict[str, Any], path: Path) -> dict[str, Any]:
    """The PersistentVolume for `claim`, pre-bound to it, as an external provisioner writes it."""
    meta, spec = claim["metadata"], claim["spec"]
    node = (meta.get("annotations") or {}).get(SELECTED_NODE)
    volume_spec: dict[str, Any] = {
        "capacity": {"storage": spec["resources"]["requests"]["storage"]},
        "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
        "volumeMode": spec.get("volumeMode") or "Filesystem",
        "persistentVolumeReclaimPolicy": klass.get("reclaimPolicy") or "Delete",
        "storageClassName": klass["metadata"]["name"],
        "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
        "claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        },
    }
    if node:
        volume_spec["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                        ]
                    }
                ]
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name(claim),
            "annotations": {PROVISIONED_BY: PROVISIONER},
        },
        "spec": volume_spec,
    }


def volume_name(claim: dict[str, Any]) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def wants_volume(claim: dict[str, Any], classes: dict[str, dict[str, Any]]) -> bool:
    """A Pending claim of one of our classes, handed to us, and placed if the class waits."""
    meta, spec = claim["metadata"], claim["spec"]
    annotations = meta.get("annotations") or {}
    klass = classes.get(spec.get("storageClassName") or "")
    if klass is None or spec.get("volumeName") or meta.get("deletionTimestamp"):
        return False
    if (claim.get("status") or {}).get("phase") != "Pending":
        return False
    if not any(annotations.get(key) == PROVISIONER for key in PROVISIONER_ANNOTATIONS):
        return False
    waits = klass.get("volumeBindingMode") == "WaitForFirstConsumer"
    return not waits or bool(annotations.get(SELECTED_NODE))


def released(volume: dict[str, Any]) -> bool:
    """Our volume whose claim is gone, to be deleted by its class's reclaim policy."""
    annotations = volume["metadata"].get("annotations") or {}
    return (
        annotations.get(PROVISIONED_BY) == PROVISIONER
        and (volume.get("status") or {}).get("phase") == "Released"
        and volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
        and not volume["metadata"].get("deletionTimestamp")
    )


class LocalPathProvisioner:
    """Provisions the claims of every StorageClass whose provisioner is `PROVISIONER`."""

    def __init__(self, kubeconfig: Path, root: Path) -> None:
        self.root = root
        self.api = api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.storage = client.StorageV1Api(self.api)
        self.log = logging.getLogger("lockstep.env.provisioner")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._passes = 0

    def install(self) -> None:
        """Create the default StorageClass (kept if it exists)."""
        try:
            self.storage.create_storage_class(storage_class())
        except ApiException as error:
            if error.status != 409:
                raise

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._threads = [
            threading.Thread(target=self._loop, name="provisioner", daemon=True),
            threading.Thread(
                target=self._watch,
                args=(self.core.list_persistent_volume_claim_for_all_namespaces,),
                name="provisioner-claims",
                daemon=True,
            ),
            threading.Thread(
                target=self._watch,
                args=(self.core.list_persistent_volume,),
                name="provisioner-volumes",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()
        wait_until(lambda: self._passes > 0, timeout=60, what="the provisioner's first pass")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        loop, *watches = self._threads or [None]
        if loop is not None:
            loop.join(timeout=30)
        # a watch notices the stop at its next event or timeout; nothing waits for it
        for thread in watches:
            thread.join(timeout=0.5)

    # ------------------------------------------------------------------ waking

    def _watch(self, lister: Any) -> None:
        """Wake the loop on every change of what `lister` lists."""
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for _ in stream.stream(lister, timeout_seconds=WATCH_SECONDS):
                    self._wake.set()
                    if self._stop.is_set():
                        break
            except Exception as error:  # a restarted watch lists again: nothing is lost
                self.log.debug("watch ended: %r", error)
                self._stop.wait(1.0)
            finally:
                stream.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.sync()
            except Exception:
                self.log.exception("provisioning pass failed")
            self._passes += 1
            self._wake.wait(RESYNC_SECONDS)

    # ------------------------------------------------------------------ deciding

    def _items(self, response: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.sanitize_for_serialization(response)["items"]
        return items

    def sync(self) -> None:
        """One pass: provision what waits for a volume, delete what was released."""
        classes = {
            c["metadata"]["name"]: c
            for c in self._items(self.storage.list_storage_class())
            if c.get("provisioner") == PROVISIONER
        }
        volumes = self._items(self.core.list_persistent_volume())
        existing = {v["metadata"]["name"] for v in volumes}
        for claim in self._items(self.core.list_persistent_volume_claim_for_all_namespaces()):
            if wants_volume(claim, classes) and volume_name(claim) not in existing:
                self.provision(claim, classes[claim["spec"]["storageClassName"]])
        for volume in volumes:
            if released(volume):
                self.delete(volume)

    def path_for(self, claim: dict[str, Any]) -> Path:
        meta = claim["metadata"]
        return self.root / f"{volume_name(claim)}_{meta['namespace']}_{meta['name']}"

    def provision(self, claim: dict[str, Any], klass: dict[str, Any]) -> None:
        path = self.path_for(claim)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # any pod user may write, as local-path's directories allow
        try:
            self.core.create_persistent_volume(volume_for(claim, klass, path))
        except ApiException as error:
            if error.status != 409:
                raise
        meta = claim["metadata"]
        self.log.info(
            "provisioned %s for %s/%s at %s",
            volume_name(claim),
            meta["namespace"],
            meta["name"],
            path,
        )

    def delete(self, volume: dict[str, Any]) -> None:
        host_path = Path((volume["spec"].get("hostPath") or {}).get("path", ""))
        if host_path.is_relative_to(self.root) and host_path != self.root:
            shutil.rmtree(host_path, ignore_errors=True)
        with contextlib.suppress(ApiException):
            self.core.delete_persistent_volume(volume["metadata"]["name"])
        self.log.info("deleted %s and %s", volume["metadata"]["name"], host_path)
