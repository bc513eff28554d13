"""When contract migrations may run: a pure decision from what the releases say."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReleaseGate:
    """What one FeatureRelease referencing the migration says about contract migrations."""

    name: str
    settled: bool  # only its promoted revision runs
    contract_through: str | None  # contract migrations its promoted revision tolerates
    current: bool = True  # its status describes its latest spec


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
    every release using the database is settled on a promoted revision (the old colour is gone)
    that declared it tolerates it (`migration.contractVersion`). `allowBreaking` skips the
    check. The reason names what each waiting release lacks.
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
    blockers = []
    for gate in sorted(gates, key=lambda g: g.name):
        if not gate.current:
            blockers.append(f"FeatureRelease {gate.name} has not acted on its latest spec yet")
        elif not gate.settled:
            blockers.append(
                f"FeatureRelease {gate.name} is releasing (its previous version still runs)"
            )
        elif gate.contract_through is None:
            blockers.append(
                f"FeatureRelease {gate.name}'s promoted revision declares no "
                "migration.contractVersion"
            )
        elif gate.contract_through < first:
            blockers.append(
                f"FeatureRelease {gate.name}'s promoted revision tolerates contract "
                f"migrations only up to {gate.contract_through}"
            )
    if blockers:
        return ContractDecision(
            False, None, f"contract migration {first} waits: {'; '.join(blockers)}"
        )
    through = min(g.contract_through or "" for g in gates)
    allowed = [v for v in versions if v <= through]
    target = allowed[-1] if allowed else None
    if spec_target is not None and target is not None:
        target = min(target, spec_target)
    return ContractDecision(
        True, target, f"FeatureRelease {', '.join(sorted(g.name for g in gates))} tolerates it"
    )
