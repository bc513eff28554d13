"""Pure decisions of the DatabaseMigration reconciler: when contract migrations may run,
which backup a plan needs, and what a rollback request asks for."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ReleaseGate:
    """What one FeatureRelease referencing the migration reports about the versions it runs."""

    name: str
    settled: bool  # only its stable colour runs
    schema_version: str | None  # the schema version its stable release was built for


@dataclass(frozen=True)
class ContractDecision:
    allowed: bool
    target: str | None  # apply up to here (None: as far as the spec's target)
    reason: str


def contract_decision(
    versions: list[str],
    blocked_contract: tuple[str, ...],
    gates: list[ReleaseGate],
    allow_breaking: bool,
    spec_target: str | None,
) -> ContractDecision:
    """May the first held-back contract migration run now?

    A contract migration removes what older application versions need, so it runs only when
    every release using the database runs nothing older than the version just before it:
    each referencing FeatureRelease is settled (its old colour scaled to zero) on a stable
    release built for at least that version. `allowBreaking` skips the check.
    """
    if not blocked_contract:
        return ContractDecision(False, None, "")
    first = blocked_contract[0]
    earlier = [v for v in versions if v < first]
    needed = earlier[-1] if earlier else None
    later = [v for v in blocked_contract[1:] if v > first]
    # one contract step at a time: stop before the next contract migration
    target = max((v for v in versions if v < later[0]), default=None) if later else spec_target
    if allow_breaking:
        return ContractDecision(True, target, "policy.allowBreaking is set")
    if not gates:
        return ContractDecision(
            False, None,
            f"contract migration {first} waits: no FeatureRelease references this "
            "DatabaseMigration to say the old application version is gone; set "
            "policy.allowBreaking to apply it anyway",
        )
    waiting = [
        g.name for g in gates
        if not g.settled or (needed is not None and (g.schema_version or "") < needed)
    ]
    if waiting:
        return ContractDecision(
            False, None,
            f"contract migration {first} waits until FeatureRelease {', '.join(sorted(waiting))} "
            f"runs only releases built for {needed or 'the current schema'} or later",
        )
    return ContractDecision(
        True, target, f"FeatureRelease {', '.join(sorted(g.name for g in gates))} settled"
    )


def backup_token(source_hash: str, current_version: str | None, attempt: int) -> str:
    """A short, stable token naming the backup taken before one plan (so a restart reuses it)."""
    digest = hashlib.sha256(f"{source_hash}:{current_version}:{attempt}".encode()).hexdigest()
    return digest[:12]


@dataclass(frozen=True)
class RollbackRequest:
    """A FeatureRelease's request to take the database back (annotation, JSON)."""

    id: str
    mode: Literal["down", "restore"]
    to_version: str | None
    requested_by: str


def parse_rollback_request(text: str | None) -> RollbackRequest | None | str:
    """The request, None when there is none, or an error message for a malformed one."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return "the rollback request annotation is not JSON"
    if not isinstance(data, dict) or not data.get("id") or data.get("mode") not in ("down", "restore"):
        return "the rollback request needs an id and a mode of down or restore"
    to_version = data.get("toVersion")
    return RollbackRequest(
        id=str(data["id"]),
        mode=data["mode"],
        to_version=str(to_version) if to_version is not None else None,
        requested_by=str(data.get("requestedBy", "")),
    )
