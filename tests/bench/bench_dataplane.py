"""How fast does lockstep roll back a version whose real errors its clients see, and what does a
switch cost the clients?

Run: .venv/bin/python tests/bench/bench_dataplane.py [--trials 10] [--switches 20] [--rps 200]

It starts its own environment (the local control plane, PostgreSQL, Prometheus scraping every
second, the pod executor running the sample application's pods as processes, and the operator
with the ServiceAccount and RBAC of manifests/) in a temporary directory and stops all of it at
the end. Requests come from the load generator through the router (kube-proxy's part).

1. Rollback reaction on real requests (--trials, a fresh namespace and database each): v1 of
   the shop live in blue under 100 requests/s; v3, whose reads fail with PostgreSQL's
   UndefinedColumn error, released into green with an error-ratio analysis (interval 2s,
   failureLimit 2, the 1 s scrape). Measured: from the first failed request the load generator
   saw to the Service selecting blue again. Target: p50 <= 10 s. Beside it, the figure of
   tests/bench/bench_release.py, where the errors were dialled into a counter.
2. Switches under load (--switches, one namespace): --rps requests/s while the shop is released
   again and again (blue-green, no analysis, scale-down after 2 s). Measured: requests failed
   over all the switches (target 0), and the p99 latency of requests sent from 1 s before to
   3 s after each switch against the p99 of the others (the latency the switch adds).

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for tests.* when run as a script

from tests.campaign.kinds import BY_NAME  # noqa: E402
from tests.campaign.trial import Stage, environment, trial_app  # noqa: E402
from tests.e2e.dataplane import BUGGY, V1, ShopApp  # noqa: E402
from tests.e2e.releases import APP  # noqa: E402
from tests.env.loadgen import LoadReport, is_success  # noqa: E402
from tests.env.processes import reap_strays  # noqa: E402
from tests.env.samples import ShopVersion  # noqa: E402

ROLLBACK_TARGET_P50 = 10.0
DIALLED_P50, DIALLED_MAX = 3.89, 5.30  # docs/benchmarks-release.md, the traffic process
BEFORE_SWITCH, AFTER_SWITCH = 1.0, 3.0


def selector_back_at(app: ShopApp) -> float | None:
    """When the Service selected blue again after selecting green."""
    switched = False
    for change in app.timeline.of("Service", APP):
        if change.selector_color == "green":
            switched = True
        elif switched and change.selector_color == "blue":
            return change.at
    return None


def rollback_trial(stage: Stage, index: int) -> tuple[float, LoadReport]:
    with trial_app(stage, index, BY_NAME["buggy"]) as app:
        app.go_live(V1, ("001",))
        app.start_load(rps=100, seed=index, wait_for="v1")
        app.release(BUGGY, ("001", "002"), analysis=app.analysis(duration="10m"))
        app.wait_for_phase("RolledBack", timeout=180)
        report = app.stop_load()
        first, back = report.first_failure(), selector_back_at(app)
        if first is None or back is None:
            raise RuntimeError(f"trial {index}: no failure ({first}) or no way back ({back})")
        return back - first, report


def switch_times(app: ShopApp) -> list[float]:
    """When the Service's selector changed colour, after the first one."""
    times, last = [], None
    for change in app.timeline.of("Service", APP):
        color = change.selector_color
        if last is not None and color != last:
            times.append(change.at)
        last = color
    return times


def switches(stage: Stage, count: int, rps: float) -> tuple[LoadReport, list[float], int]:
    with trial_app(stage, 0, BY_NAME["good"]) as app:
        app.go_live(V1, ("001",))
        app.start_load(rps=rps, seed=7, wait_for="v1")
        for n in range(1, count + 1):
            version = ShopVersion(f"v1.{n}", schema=1)
            app.k.apply(app.manifest(version, "001", analysis=None, scale_down_delay=2))
            app.wait_for_phase("Ready", release=version.name, timeout=120)
            app.wait_until_served_by(version.name, count=50)
            print(f"  switch {n}/{count}: {version.name} serving", flush=True)
        report = app.stop_load()
        return report, switch_times(app), len(report.lost_writes(app.database_url))


def near_a_switch(t: float, times: list[float]) -> bool:
    return any(s - BEFORE_SWITCH <= t <= s + AFTER_SWITCH for s in times)


def p99(records: list[dict[str, object]]) -> float:
    return LoadReport([r for r in records if is_success(r)]).latency_ms(99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--rps", type=float, default=200.0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    reap_strays()
    base = Path(tempfile.mkdtemp(prefix="lockstep-bench-dataplane-"))
    base.chmod(0o755)
    missed: list[str] = []
    figures: dict[str, object] = {}
    try:
        with environment(base) as stage:
            print(f"Rollback reaction on real requests, {args.trials} trials:", flush=True)
            reactions = []
            for index in range(1, args.trials + 1):
                reaction, report = rollback_trial(stage, index)
                reactions.append(reaction)
                print(
                    f"  trial {index}: {reaction:.2f}s; {len(report.failed)} failed requests, "
                    f"all from {sorted(report.failed_by_version())}",
                    flush=True,
                )
            p50, worst = statistics.median(reactions), max(reactions)
            print(
                f"  p50 {p50:.2f}s  max {worst:.2f}s  (target p50 <= {ROLLBACK_TARGET_P50:g}s)\n"
                f"  dialled error ratio (bench_release.py): p50 {DIALLED_P50}s  max {DIALLED_MAX}s"
            )
            if p50 > ROLLBACK_TARGET_P50:
                missed.append(f"rollback reaction p50 {p50:.2f}s > {ROLLBACK_TARGET_P50:g}s")
            figures["rollbackReaction"] = {
                "trials": [round(r, 3) for r in reactions],
                "p50": round(p50, 3),
                "max": round(worst, 3),
            }

            print(f"\n{args.switches} switches at {args.rps:g} requests/s:", flush=True)
            report, times, lost = switches(stage, args.switches, args.rps)
            near = [r for r in report.records if near_a_switch(r["t"], times)]
            far = [r for r in report.records if not near_a_switch(r["t"], times)]
            added = p99(near) - p99(far)
            print(
                f"  {len(report.records)} requests, {len(report.failed)} failed (target 0), "
                f"{lost} of {len(report.acknowledged)} acknowledged writes lost, "
                f"{len(times)} switches seen\n"
                f"  p99 latency within {BEFORE_SWITCH:g}s before to {AFTER_SWITCH:g}s after a "
                f"switch {p99(near):.1f} ms, elsewhere {p99(far):.1f} ms: the switch adds "
                f"{added:.1f} ms\n  p50 everywhere {report.latency_ms(50):.1f} ms; "
                f"downtime {report.downtime_seconds():.2f}s"
            )
            if lost:
                missed.append(f"{lost} acknowledged writes lost")
            if report.failed:
                missed.append(f"{len(report.failed)} requests failed across the switches")
                print(report.describe_failures())
            figures["switches"] = {
                "switches": len(times),
                "requests": len(report.records),
                "failed": len(report.failed),
                "p99NearSwitchMs": p99(near),
                "p99ElsewhereMs": p99(far),
                "p99AddedMs": round(added, 2),
                "acknowledgedWrites": len(report.acknowledged),
                "lostWrites": lost,
                "downtimeSeconds": report.downtime_seconds(),
            }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    for line in missed:
        print(f"MISSED: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
