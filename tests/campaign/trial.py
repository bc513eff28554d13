"""One trial of the campaign: the shop live at v1 under load, one release of a kind, judged.

A trial runs in its own namespace and database. It releases v1 at schema 001, starts the load
generator, waits until v1 answers, then carries out the kind (kinds.py): the release, and the
fault it injects at a random moment. It waits until the release settles (Ready at the new
release, RolledBack, or Blocked), lets the load run two more seconds, stops it, and counts.
"""

from __future__ import annotations

import contextlib
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.campaign.kinds import BLOCKED, PROMOTED, ROLLED_BACK, Kind, Trial, judge
from tests.e2e.conftest import Kubectl
from tests.e2e.dataplane import BUGGY, NEVER_READY, SLOW, V1, V2, ShopApp
from tests.e2e.releases import APP, Timeline, at_step
from tests.env.cluster import EXEC, Cluster
from tests.env.executor import LocalPodExecutor
from tests.env.loadgen import LoadReport, is_success
from tests.env.operator_runner import (
    OperatorProcess,
    install_rbac,
    service_account_kubeconfig,
)
from tests.env.postgres import PostgresServer
from tests.env.prometheus import PrometheusServer

SETTLE_TIMEOUT = 240.0
BLOCKED_HOLD_SECONDS = (
    30.0  # a stalled DatabaseMigration retries an unreachable database every 10 s
)
AFTER_OUTCOME_SECONDS = 2.0
OUTAGE_RECOVERY_SECONDS = 4.0  # readiness probes pass again, the router syncs
RENAME_ITEM = {
    "version": "004",
    "name": "rename_item",
    "up": "ALTER TABLE orders RENAME COLUMN item TO product;",
}


@dataclass
class Stage:
    """The environment trials run in (started by the caller, shared by all trials)."""

    cluster: Cluster
    postgres: PostgresServer
    prometheus: PrometheusServer
    executor: LocalPodExecutor
    operator: OperatorProcess
    work_dir: Path
    restart_operator: Callable[[], None] | None = None

    def start_operator(self) -> None:
        if self.restart_operator is not None:
            self.restart_operator()
        else:
            self.operator.start()


@dataclass
class Faults:
    """What a trial injected, for the accounting."""

    outages: list[tuple[float, float]] = field(default_factory=list)  # PostgreSQL down
    started_at: float | None = None  # Prometheus outage start
    notes: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def later(self, action: Callable[[], None]) -> None:
        thread = threading.Thread(target=action, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)


def failing_check() -> dict[str, Any]:
    """A pre-promotion smoke test that runs for real (the executor) and fails."""
    code = "import sys; sys.exit('smoke test: the checkout page answered 500')"
    return {
        "name": "smoke",
        "template": {
            "metadata": {"labels": {EXEC: "true"}},
            "spec": {
                "containers": [
                    {
                        "name": "smoke",
                        "image": "example/smoke:1",
                        "command": [sys.executable, "-c", code],
                    }
                ]
            },
        },
    }


def act(kind: Kind, app: ShopApp, stage: Stage, rng: random.Random, faults: Faults) -> None:
    """Release the kind's version and inject its fault."""
    migrations = ("001", "002")
    if kind.name == "buggy":
        app.release(BUGGY, migrations)
    elif kind.name == "slow":
        app.release(SLOW, migrations)
    elif kind.name == "never-ready":
        app.release(
            NEVER_READY,
            migrations,
            strategy={"blueGreen": {"scaleDownDelaySeconds": 2, "progressDeadlineSeconds": 15}},
        )
    elif kind.name == "failing-check":
        app.release(V2, migrations, checks={"prePromotion": [failing_check()]})
    elif kind.name == "breaking-migration":
        app.release(V2, migrations, extra=[RENAME_ITEM])
    elif kind.name == "lock-wait":
        hold = rng.uniform(3.0, 7.0)
        held = threading.Event()
        faults.later(lambda: hold_lock(app.database_url, hold, held))
        held.wait(10)
        faults.notes.append(f"a transaction held ACCESS SHARE on orders for {hold:.1f}s")
        app.release(V2, migrations, policy={"lockTimeout": "1s", "lockTimeoutRetries": 20})
    elif kind.name == "operator-kill":
        delay, down = rng.uniform(0.0, 15.0), rng.uniform(0.5, 3.0)
        app.release(V2, migrations)
        faults.notes.append(f"operator SIGKILL {delay:.1f}s after the release, down {down:.1f}s")
        faults.later(lambda: kill_operator(stage, delay, down))
    elif kind.name == "postgres-restart":
        delay, down = rng.uniform(0.3, 2.5), rng.uniform(1.0, 4.0)
        app.release(V2, migrations)
        faults.notes.append(
            f"PostgreSQL restarted {delay:.1f}s after the release, down {down:.1f}s"
        )
        faults.later(lambda: restart_postgres(stage, delay, down, faults))
    elif kind.name == "prometheus-outage":
        down = rng.uniform(9.0, 12.0)
        faults.notes.append(f"Prometheus down {down:.1f}s from the start of the analysis")
        outage = app.timeline.when(
            at_step("Analysis", release="v2"), lambda: stop_prometheus(stage, down, faults)
        )
        app.release(V2, migrations)
        faults.later(lambda: outage.wait(timeout=120))
    elif kind.name == "apiserver-restart":
        delay, down = rng.uniform(0.0, 12.0), rng.uniform(1.0, 4.0)
        app.release(V2, migrations)
        faults.notes.append(
            f"kube-apiserver restarted {delay:.1f}s after the release, down {down:.1f}s"
        )
        faults.later(lambda: restart_apiserver(stage, delay, down))
    else:
        app.release(V2, migrations)


def hold_lock(url: str, seconds: float, held: threading.Event) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE orders IN ACCESS SHARE MODE")
        held.set()
        time.sleep(seconds)  # the long transaction a reporting query would be
        conn.rollback()


def kill_operator(stage: Stage, delay: float, down: float) -> None:
    time.sleep(delay)
    if stage.operator.process is not None and stage.operator.process.alive():
        stage.operator.kill()
    time.sleep(down)
    stage.start_operator()


def restart_postgres(stage: Stage, delay: float, down: float, faults: Faults) -> None:
    time.sleep(delay)
    began = time.time()
    stage.postgres.restart(down_seconds=down)
    faults.outages.append((began, time.time()))


def stop_prometheus(stage: Stage, down: float, faults: Faults) -> None:
    faults.started_at = time.time()
    stage.prometheus.stop()

    def back() -> None:
        time.sleep(down)
        stage.prometheus.start()

    faults.later(back)


def restart_apiserver(stage: Stage, delay: float, down: float) -> None:
    time.sleep(delay)
    stage.cluster.restart_apiserver(down_seconds=down)


def settled(app: ShopApp, kind: Kind) -> tuple[str, str]:
    """Wait until the release ends: (outcome, reason)."""

    def ended(status: dict[str, Any]) -> bool:
        phase = status.get("phase")
        if phase == "Blocked" or (phase == "RolledBack" and status.get("settled")):
            return True
        return phase == "Ready" and status.get("release") != "v1" and bool(status.get("settled"))

    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        left = max(1.0, deadline - time.monotonic())
        status = app.timeline.wait_for_release("the release to end", ended, timeout=left)
        if status.get("phase") != "Blocked":
            break
        try:  # Blocked is an end only if it lasts: a stalled dependency may recover
            app.timeline.wait_for_release(
                "the release to move on",
                lambda s: s.get("phase") != "Blocked",
                timeout=BLOCKED_HOLD_SECONDS,
            )
        except TimeoutError:
            break
    history = status.get("history") or [{}]
    if status["phase"] == "Ready":
        return PROMOTED, str(history[0].get("reason", ""))
    if status["phase"] == "Blocked":
        return BLOCKED, str(status.get("message", ""))
    return ROLLED_BACK, str(history[0].get("reason", "") or status.get("abortReason", ""))


def blocked_seconds(app: ShopApp) -> float:
    """How long the release showed Blocked (Stalled) on its way, in all."""
    total, since = 0.0, None
    for change in app.timeline.of("FeatureRelease", APP):
        blocked = change.status.get("phase") == "Blocked"
        if blocked and since is None:
            since = change.at
        elif not blocked and since is not None:
            total, since = total + change.at - since, None
    return round(total + (time.time() - since if since is not None else 0.0), 1)


def rollback_seconds(kind: Kind, app: ShopApp, report: LoadReport, faults: Faults) -> float | None:
    """From the fault showing to the Service selecting the stable colour again."""
    if not kind.fault_shows:
        return None
    colors = [(c.at, c.selector_color) for c in app.timeline.of("Service", APP)]
    switched = next((at for at, color in colors if color == "green"), None)
    if switched is None:
        return None
    back = next((at for at, color in colors if at > switched and color == "blue"), None)
    if kind.fault_shows == "failure":
        shown = report.first_failure()
    elif kind.fault_shows == "answer":
        new = [r["t"] for r in report.records if r.get("version") not in ("v1", None)]
        shown = min(new) if new else None
    else:
        shown = faults.started_at
    if back is None or shown is None:
        return None
    return max(0.0, back - shown)


def account(trial: Trial, kind: Kind, report: LoadReport, faults: Faults, url: str) -> None:
    """Count the requests, charging each failure to its cause."""

    def in_outage(start: float, end: float) -> bool:
        """Whether [start, end] overlaps an outage (or the recovery after it)."""
        return any(
            start <= down_end + OUTAGE_RECOVERY_SECONDS and end >= down_start
            for down_start, down_end in faults.outages
        )

    failed = report.failed
    bug = [
        r for r in failed if kind.name == "buggy" and r.get("version") == "v3" and r["code"] == 500
    ]
    outage = [
        r for r in failed if r not in bug and in_outage(r["t"], r["t"] + r.get("ms", 0) / 1000)
    ]
    trial.requests = len(report.records)
    trial.failed = len(failed)
    trial.failed_by_version_bug = len(bug)
    trial.failed_by_outage = len(outage)
    trial.failed_by_machinery = len(failed) - len(bug) - len(outage)
    trial.acknowledged_writes = len(report.acknowledged)
    trial.lost_writes = len(report.lost_writes(url))
    for start, end in report.outages:
        if in_outage(start, end):
            trial.downtime_by_outage_seconds += end - start
        else:
            trial.downtime_seconds += end - start
    machinery = [r for r in failed if r not in bug and r not in outage]
    if machinery:
        trial.details["machineryFailures"] = report.__class__(machinery).describe_failures(3)
    trial.details["latencyP99Ms"] = report.latency_ms(99)
    trial.details["servedByVersion"] = dict(report.served_by_version())
    trial.details["successes"] = sum(is_success(r) for r in report.records)


@contextlib.contextmanager
def trial_app(stage: Stage, index: int, kind: Kind) -> Iterator[ShopApp]:
    """A namespace and a database for one trial, removed afterwards."""
    suffix = uuid.uuid4().hex[:5]
    namespace = f"c{index:03d}-{kind.name}-{suffix}"[:63]
    database = re.sub(r"[^a-z0-9_]", "_", f"campaign_{index}_{suffix}")
    stage.cluster.kubectl("create", "namespace", namespace)
    url = stage.postgres.create_database(database)
    k = Kubectl(stage.cluster, namespace)
    out = stage.work_dir / namespace
    out.mkdir(parents=True, exist_ok=True)
    try:
        with Timeline(stage.cluster.kubeconfig, namespace) as timeline:
            app = ShopApp(
                stage.cluster,
                k,
                None,
                stage.prometheus.url,
                timeline,
                database_url=url,
                out_dir=out,
            )
            try:
                yield app
            finally:
                app.stop()
    finally:
        stage.cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        with contextlib.suppress(Exception):
            stage.postgres.drop_database(database)


def run_trial(stage: Stage, index: int, kind: Kind, seed: int) -> Trial:
    rng = random.Random(seed)
    trial = Trial(index=index, kind=kind.name, seed=seed, expected=kind.expected)
    began = time.monotonic()
    faults = Faults()
    try:
        with trial_app(stage, index, kind) as app:
            phases = trial.details.setdefault("phaseSeconds", {})
            mark = time.monotonic()

            def lap(name: str) -> None:
                nonlocal mark
                phases[name] = round(time.monotonic() - mark, 1)
                mark = time.monotonic()

            app.go_live(V1, ("001",))
            lap("goLive")
            rps = rng.choice((50, 100, 150))
            trial.details["rps"] = rps
            app.start_load(rps=rps, seed=seed, wait_for="v1")
            lap("loadStarted")
            act(kind, app, stage, rng, faults)
            try:
                trial.outcome, trial.reason = settled(app, kind)
            except TimeoutError as error:
                trial.outcome, trial.reason = "", str(error)[:500]
            lap("release")
            faults.join()
            time.sleep(AFTER_OUTCOME_SECONDS)  # requests after the outcome count too
            report = app.stop_load()
            account(trial, kind, report, faults, app.database_url)
            trial.rollback_seconds = rollback_seconds(kind, app, report, faults)
            trial.details["steps"] = app.timeline.steps()
            trial.details["blockedSeconds"] = blocked_seconds(app)
    except Exception as error:  # a broken trial is a wrong outcome, with its reason
        trial.reason = trial.reason or f"the trial failed: {error!r}"[:500]
    finally:
        faults.join()
    trial.details["faults"] = faults.notes
    trial.correct, trial.why_wrong = judge(kind, trial.outcome, trial.reason)
    if trial.correct and (trial.failed_by_machinery or trial.lost_writes or trial.downtime_seconds):
        trial.correct = False
        trial.why_wrong = (
            f"{trial.failed_by_machinery} requests failed by the machinery, "
            f"{trial.lost_writes} acknowledged writes lost, {trial.downtime_seconds:.2f}s downtime"
        )
    trial.duration_seconds = round(time.monotonic() - began, 1)
    return trial


@contextlib.contextmanager
def environment(base: Path) -> Iterator[Stage]:
    """Everything trials need, started in `base` and stopped in reverse order at the end."""
    with contextlib.ExitStack() as stack:
        cluster = Cluster(base / "cluster")
        stack.callback(cluster.stop)
        cluster.start()
        postgres = PostgresServer(base / "postgres")
        stack.callback(postgres.stop)
        postgres.start()
        prometheus = PrometheusServer(base / "prometheus")
        stack.callback(prometheus.stop)
        prometheus.start()
        executor = LocalPodExecutor(
            cluster.kubeconfig, base / "executor", [postgres.bindir], prometheus
        )
        stack.callback(executor.stop)
        executor.start()
        install_rbac(cluster)
        log_dir = base / "operator"
        log_dir.mkdir()
        operator = OperatorProcess(
            service_account_kubeconfig(cluster, base / "sa.kubeconfig"), log_dir
        )
        stack.callback(operator.stop)
        operator.start()
        yield Stage(cluster, postgres, prometheus, executor, operator, base / "trials")
