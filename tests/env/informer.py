"""List-then-watch of one kind of Kubernetes object, as client-go's informers do it.

`Informer` lists the objects (plain dicts, camelCase as the API writes them), then follows a
watch from the list's resourceVersion, relisting when the watch expires (410) or breaks (the API
server restarted). Each change is handed to `on_event(kind, object)` with kind ADDED, MODIFIED
or DELETED; after a relist, objects that vanished meanwhile are handed over as DELETED, so the
caller never keeps one that is gone. `on_event` runs on the informer's thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from .processes import wait_until

WATCH_SECONDS = 30
RETRY_SECONDS = 1.0

Object = dict[str, Any]
Lister = Callable[..., Any]  # a list_* method of the kubernetes client (namespaced or not)


class Informer:
    """Keeps `on_event` told of every change of the objects `lister` returns."""

    def __init__(
        self,
        name: str,
        lister: Lister,
        on_event: Callable[[str, Object], None],
        log: logging.Logger,
        *args: Any,
        **selector: Any,
    ) -> None:
        self.name = name
        self._lister = lister
        self._args = args
        self._selector = selector
        self._on_event = on_event
        self._log = log
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._known: dict[str, Object] = {}
        self._response: Any = None
        self._thread = threading.Thread(target=self._loop, name=f"informer-{name}", daemon=True)

    def start(self, timeout: float = 60) -> None:
        self._thread.start()
        wait_until(self._synced.is_set, timeout=timeout, what=f"the first list of {self.name}")

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            if self._response is not None:
                self._response.shutdown()
        self._thread.join(timeout=10)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _loop(self) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                    self._synced.set()
                resource_version = self._watch(resource_version)
            except ApiException as error:
                if error.status != 410:  # 410: the resource version expired, list again
                    self._log.warning("%s watch failed: %s", self.name, error.reason)
                    self._stop.wait(RETRY_SECONDS)
                resource_version = None
            except Exception as error:
                if self._stop.is_set():
                    return
                self._log.warning("%s watch failed: %r", self.name, error)
                resource_version = None
                self._stop.wait(RETRY_SECONDS)

    def _deliver(self, kind: str, obj: Object) -> None:
        uid = obj["metadata"]["uid"]
        if kind == "DELETED":
            self._known.pop(uid, None)
        else:
            self._known[uid] = obj
        try:
            self._on_event(kind, obj)
        except Exception:
            self._log.exception("%s: handling %s %s failed", self.name, kind, _name(obj))

    def _list(self) -> str:
        response: Any = self._lister(
            *self._args, **self._selector, _preload_content=False, _request_timeout=30
        )
        listed = json.loads(response.data)
        present = {obj["metadata"]["uid"] for obj in listed["items"]}
        for uid, obj in list(self._known.items()):
            if uid not in present:  # deleted while the watch was down
                self._deliver("DELETED", obj)
        for obj in listed["items"]:
            self._deliver("ADDED" if obj["metadata"]["uid"] not in self._known else "MODIFIED", obj)
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str) -> str:
        response: Any = self._lister(
            *self._args,
            **self._selector,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=(10, WATCH_SECONDS + 15),
        )
        self._response = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    break
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                resource_version = obj["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    self._deliver(kind, obj)
        finally:
            self._response = None
            response.release_conn()
        return resource_version


def _name(obj: Object) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
