"""Reading the API server's audit log (tests/env/cluster.py, `audit_log=True`): who sent what.

One JSON line per request and stage, at Metadata level. A request is its `ResponseComplete`
event; a watch also has a `ResponseStarted` one when it starts. A ServiceAccount token's
request carries the token's id in `user.extra["authentication.kubernetes.io/credential-id"]`,
so the replicas of one ServiceAccount are told apart by their tokens, as pods are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})
CREDENTIAL = "authentication.kubernetes.io/credential-id"


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Request:
    received: datetime
    completed: datetime
    user: str
    credential: str
    user_agent: str
    verb: str
    resource: str  # "leases", "featurereleases/status", ...
    namespace: str
    name: str
    code: int

    @classmethod
    def of(cls, event: dict[str, Any]) -> Request:
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        user = event.get("user") or {}
        return cls(
            received=_time(event["requestReceivedTimestamp"]),
            completed=_time(event["stageTimestamp"]),
            user=user.get("username", ""),
            credential=((user.get("extra") or {}).get(CREDENTIAL) or [""])[0],
            user_agent=event.get("userAgent", ""),
            verb=event.get("verb", ""),
            resource=resource,
            namespace=ref.get("namespace", ""),
            name=ref.get("name", ""),
            code=int((event.get("responseStatus") or {}).get("code") or 0),
        )

    @property
    def write(self) -> bool:
        return self.verb in WRITES

    @property
    def succeeded(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.received:%H:%M:%S.%f} {self.verb} {self.resource} {where} -> {self.code}"


class AuditLog:
    """The requests logged from the moment of `mark()` on (by default: from construction)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.mark()

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def requests(self, user: str | None = None) -> list[Request]:
        """Completed requests since the mark (of `user` only, when given), in log order."""
        return self._read(user)[0]

    def take(self, user: str | None = None) -> list[Request]:
        """Like `requests`, then marks after the last line read: each request is taken once."""
        found, self.offset = self._read(user)
        return found

    def _read(self, user: str | None) -> tuple[list[Request], int]:
        found = []
        offset = self.offset
        with self.path.open("rb") as lines:
            lines.seek(offset)
            for line in lines:
                if not line.endswith(b"\n"):
                    break  # a line the API server is still writing
                offset += len(line)
                event = json.loads(line)
                if event.get("stage") != "ResponseComplete":
                    continue
                if user is not None and (event.get("user") or {}).get("username") != user:
                    continue
                found.append(Request.of(event))
        return found, offset
