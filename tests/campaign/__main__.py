"""`python -m tests.campaign [--releases 100] [--seed 1] [--out campaign.json]`

Starts its own environment in a temporary directory (the local control plane, PostgreSQL,
Prometheus, the pod executor and the operator with the RBAC of manifests/), runs the releases
one after the other (tests/campaign/trial.py), prints a line per release and the table of
success metrics, writes everything as JSON to --out, and stops what it started. Exits 1 when a
release ended wrong (kinds.py says what right is).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for tests.* when run as a script

from tests.campaign.kinds import BY_NAME, KINDS, Trial, draw, summarise, table  # noqa: E402
from tests.campaign.trial import environment, run_trial  # noqa: E402
from tests.env.processes import reap_strays  # noqa: E402


def coverage_percent(path: Path | None) -> float | None:
    """The total from a coverage.py JSON report (`make coverage` writes one)."""
    if path is None or not path.exists():
        return None
    return float(json.loads(path.read_text())["totals"]["percent_covered"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.campaign", description=__doc__)
    parser.add_argument("--releases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", help="comma-separated kinds (default: all)")
    parser.add_argument("--out", type=Path, default=Path("campaign.json"))
    parser.add_argument("--coverage-json", type=Path, default=REPO / "coverage.json")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    kinds = [BY_NAME[k] for k in args.kinds.split(",")] if args.kinds else list(KINDS)
    plan = [k for k in draw(args.releases * len(KINDS), rng) if k in kinds][: args.releases]

    reap_strays()
    base = Path(tempfile.mkdtemp(prefix="lockstep-campaign-"))
    base.chmod(0o755)
    trials: list[Trial] = []
    began = time.monotonic()
    keep = False
    try:
        with environment(base) as env:
            for index, kind in enumerate(plan, start=1):
                trial = run_trial(env, index, kind, seed=rng.randrange(1 << 30))
                trials.append(trial)
                mark = "ok   " if trial.correct else "WRONG"
                rollback = trial.rollback_seconds
                rollback_text = f"{rollback:.2f}s" if rollback is not None else "-"
                print(
                    f"{mark} {index:3d}/{len(plan)} {kind.name:<19} {trial.outcome or '-':<10} "
                    f"{trial.duration_seconds:5.1f}s  failed {trial.failed} "
                    f"(machinery {trial.failed_by_machinery})  lost {trial.lost_writes}  "
                    f"rollback {rollback_text}"
                    + (f"  {trial.why_wrong}" if not trial.correct else ""),
                    flush=True,
                )
    except BaseException:
        keep = True
        print(f"the campaign stopped early; logs are in {base}", file=sys.stderr)
        raise
    finally:
        summary = summarise(trials, coverage_percent(args.coverage_json))
        summary["seed"] = args.seed
        summary["minutes"] = round((time.monotonic() - began) / 60, 1)
        summary["command"] = (
            f"python -m tests.campaign --releases {args.releases} --seed {args.seed}"
        )
        args.out.write_text(
            json.dumps({"summary": summary, "trials": [asdict(t) for t in trials]}, indent=2)
        )
        print()
        print(table(summary))
        print(f"\n{len(trials)} releases in {summary['minutes']} min; JSON in {args.out}")
        if any(not t.correct for t in trials):
            keep = True
            print(f"logs of the run are kept in {base}", file=sys.stderr)
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0 if all(t.correct for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
