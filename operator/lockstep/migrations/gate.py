"""Pure decisions of the DatabaseMigration reconciler: when contract migrations may run,
which backup a plan needs, and what a rollback request asks for."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ReleaseGate:
    """What one FeatureRelease referencing the migration says about contract migrations."""

    name: str
    settled: bool  # only its stable colour runs, and it has seen its latest spec
    contract_through: str | None  # contract migrations its stable release tolerates


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
    """May the first held-back contract migration run now, and how far?

    A contract migration removes what older application versions need, so it runs only when
    every release using the database has said its running version tolerates it
    (`migration.contractVersion`) and only that version runs (the old colour is gone).
    `allowBreaking` skips the check.
    """
    if not blocked_contract:
        return ContractDecision(False, None, "")
    first = blocked_contract[0]
    if allow_breaking:
        return ContractDecision(True, spec_target, "policy.allowBreaking is set")
    if not gates:
        return ContractDecision(
            False,
            None,
            f"contract migration {first} waits: no FeatureRelease references this "
            "DatabaseMigration to say the old application version is gone; set "
            "policy.allowBreaking to apply it anyway",
        )
    waiting = sorted(g.name for g in gates if not g.settled)
    if waiting:
        return ContractDecision(
            False,
            None,
            f"contract migration {first} waits until FeatureRelease {', '.join(waiting)} runs "
            "only its promoted release",
        )
    short = sorted(g.name for g in gates if (g.contract_through or "") < first)
    if short:
        return ContractDecision(
            False,
            None,
            f"contract migration {first} waits until FeatureRelease {', '.join(short)} declares "
            f"migration.contractVersion {first} or later (its running release must tolerate it)",
        )
    through = min(g.contract_through or "" for g in gates)
    allowed = [v for v in versions if v <= through]
    target = allowed[-1] if allowed else None
    if spec_target is not None and target is not None:
        target = min(target, spec_target)
    return ContractDecision(
        True, target, f"FeatureRelease {', '.join(sorted(g.name for g in gates))} tolerates it"
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


def parse_rollback_request(text: str | None) -> RollbackRequest | str | None:
    """The request, None when there is none, or an error message for a malformed one."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return "the rollback request annotation is not JSON"
    if (
        not isinstance(data, dict)
        or not data.get("id")
        or data.get("mode") not in ("down", "restore")
    ):
        return "the rollback request needs an id and a mode of down or restore"
    to_version = data.get("toVersion")
    return RollbackRequest(
        id=str(data["id"]),
        mode=data["mode"],
        to_version=str(to_version) if to_version is not None else None,
        requested_by=str(data.get("requestedBy", "")),
    )
