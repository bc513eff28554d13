"""How far does one operator go? N FeatureReleases and N DatabaseMigrations released at once.

Run: .venv/bin/python tests/bench/bench_scale.py [--releases 2000] [--namespaces 10]
     [--idle-minutes 60]            (make bench-scale; the short form --releases 200
                                     --idle-minutes 2 runs in make bench)

It starts its own environment in a temporary directory and stops all of it at the end: the
local control plane with an audit log, PostgreSQL, Prometheus scraping every second, the test
traffic process, and one operator process (leader election on, as the chart installs it; the
ServiceAccount and RBAC of manifests/).

1. Setup: N databases, and in --namespaces namespaces N Secrets, N DatabaseMigrations (one
   inline migration 001, no backup), N Services and N FeatureReleases (1 replica, v1, needing
   migration 001 of their own DatabaseMigration). Measured: until all are settled.
2. Release of all at once: every DatabaseMigration gets migration 002 (an added column) and
   every FeatureRelease v2 needing 002, in one burst. Measured: until all are settled again
   (every release Ready at v2, every migration Ready at 002), the operator's peak RSS (VmHWM)
   and its API requests.
3. Rollback reaction of one more release while the others are busy: `canary`, in a namespace of
   its own with simulated clients and an error-ratio analysis (interval 2s, failureLimit 2), is
   released to v2 in the same burst; once its analysis has measured v2 once, half of v2's
   requests fail. Measured: from then to its Service selecting blue again, and how many of the
   others were still unsettled at that moment.
4. Idle: once the operator has sent no write for 10 s, for --idle-minutes: its RSS
   every 30 s (it must not grow), its API requests per second (its Lease renewals apart), new
   database sessions per second (pg_stat_database.sessions), its CPU, and the reconciliations
   it ran.

Exits 1 when the release does not settle within --settle-timeout or RSS grows by more than
10 % over the idle window.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for tests.env when run as a script

import psycopg  # noqa: E402
from kubernetes import client, config  # noqa: E402
from tests.bench.bench_release import (  # noqa: E402
    App,
    Environment,
    analysing,
    error_ratio_analysis,
    memory_mib,
    poll,
    raw,
    start_servers,
    wait_for_quiet,
)
from tests.env.audit import AuditLog, Request  # noqa: E402
from tests.env.operator_runner import (  # noqa: E402
    OPERATOR_NAMESPACE,
    SERVICE_ACCOUNT,
    OperatorProcess,
    install_rbac,
    service_account_kubeconfig,
)
from tests.env.postgres import PostgresServer  # noqa: E402
from tests.env.processes import wait_until  # noqa: E402

GROUP, VERSION = "lockstep.dev", "v1alpha1"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
MIGRATIONS = [
    {
        "version": "001",
        "name": "create_items",
        "up": "CREATE TABLE items (id bigint PRIMARY KEY);",
        "down": "DROP TABLE items;",
    },
    {
        "version": "002",
        "name": "add_note",
        "up": "ALTER TABLE items ADD COLUMN note text;",
        "down": "ALTER TABLE items DROP COLUMN note;",
    },
]
SAMPLE_SECONDS = 30.0
RSS_GROWTH_LIMIT = 0.10
CLIENT_THREADS = 16
FLEET = "fleet-"  # namespaces fleet-00, fleet-01, ...; the canary has its own


# ---------------------------------------------------------------------------- environment


@dataclass
class Bench:
    env: Environment
    postgres: PostgresServer
    audit: AuditLog


@contextlib.contextmanager
def environment(base: Path) -> Iterator[Bench]:
    with contextlib.ExitStack() as stack:
        cluster, prometheus, traffic = start_servers(stack, base)
        postgres = PostgresServer(base / "postgres")
        stack.callback(postgres.remove)
        postgres.start()
        install_rbac(cluster)
        (base / "operator").mkdir()
        operator = OperatorProcess(
            service_account_kubeconfig(cluster, base / "sa.kubeconfig"),
            base / "operator",
            args=["--leader-elect", "--identity=lockstep-bench"],
        )
        stack.callback(operator.stop)
        operator.start()
        api = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        api.configuration.connection_pool_maxsize = CLIENT_THREADS * 2
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = CLIENT_THREADS * 2
        stack.callback(api.close)
        env = Environment(
            cluster,
            prometheus,
            traffic,
            operator,
            client.CoreV1Api(api),
            client.AppsV1Api(api),
            client.CustomObjectsApi(api),
        )
        yield Bench(env, postgres, AuditLog(cluster.audit_log_path))


# ---------------------------------------------------------------------------- the fleet


@dataclass(frozen=True)
class Member:
    """One app: its FeatureRelease, Service, DatabaseMigration, Secret and database."""

    namespace: str
    name: str

    @property
    def database(self) -> str:
        return f"{self.namespace}_{self.name}".replace("-", "_")


def fleet(count: int, namespaces: int) -> list[Member]:
    return [Member(f"{FLEET}{i % namespaces:02d}", f"app-{i:04d}") for i in range(count)]


def in_parallel(work: Callable[[Any], object], items: Iterable[Any]) -> None:
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(work, items))


def template(member: Member, version: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": member.name, "app.kubernetes.io/version": version}},
        "spec": {"containers": [{"name": "app", "image": f"example/{member.name}:{version}"}]},
    }


def migration_body(member: Member, migrations: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DatabaseMigration",
        "metadata": {"name": member.name},
        "spec": {
            "database": {"urlFrom": {"secretKeyRef": {"name": member.name, "key": "url"}}},
            "source": {"migrations": migrations},
            "policy": {"backup": "never"},
        },
    }


def release_body(member: Member) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FeatureRelease",
        "metadata": {"name": member.name},
        "spec": {
            "selector": {"matchLabels": {"app": member.name}},
            "replicas": 1,
            "template": template(member, "v1"),
            "service": member.name,
            "release": "v1",
            "migration": {"ref": member.name, "targetVersion": "001"},
            "strategy": {"blueGreen": {"scaleDownDelaySeconds": 0}},
        },
    }


def create_fleet(bench: Bench, members: list[Member]) -> None:
    env, postgres = bench.env, bench.postgres

    def create_database(member: Member) -> None:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{member.database}" STRATEGY FILE_COPY')

    for namespace in sorted({m.namespace for m in members}):
        env.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    in_parallel(create_database, members)

    def create_objects(member: Member) -> None:
        ns = member.namespace
        env.core.create_namespaced_secret(
            ns,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=member.name),
                string_data={"url": postgres.url(member.database)},
            ),
        )
        env.core.create_namespaced_service(
            ns,
            client.V1Service(
                metadata=client.V1ObjectMeta(name=member.name),
                spec=client.V1ServiceSpec(
                    selector={"app": member.name}, ports=[client.V1ServicePort(port=80)]
                ),
            ),
        )
        env.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "databasemigrations", migration_body(member, MIGRATIONS[:1])
        )
        env.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "featurereleases", release_body(member)
        )

    in_parallel(create_objects, members)


def release_all(bench: Bench, members: list[Member]) -> None:
    """Migration 002 for every database and v2 needing it for every release, in one burst."""
    custom = bench.env.custom

    def release(member: Member) -> None:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            member.namespace,
            "databasemigrations",
            member.name,
            {"spec": {"source": {"migrations": MIGRATIONS}}},
        )
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            member.namespace,
            "featurereleases",
            member.name,
            {
                "spec": {
                    "template": template(member, "v2"),
                    "release": "v2",
                    "migration": {"ref": member.name, "targetVersion": "002"},
                }
            },
        )

    in_parallel(release, members)


def current(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    return bool(status.get("observedGeneration") == item["metadata"]["generation"])


def unsettled(bench: Bench, release: str, version: str) -> int:
    """How many of the fleet's releases and migrations have not settled at (release, version)."""
    custom = bench.env.custom
    releases = raw(custom.list_cluster_custom_object, GROUP, VERSION, "featurereleases")["items"]
    migrations = raw(custom.list_cluster_custom_object, GROUP, VERSION, "databasemigrations")
    waiting = 0
    for item in releases:
        if not item["metadata"]["namespace"].startswith(FLEET):
            continue  # the canary
        status = item.get("status") or {}
        waiting += not (
            current(item)
            and status.get("phase") == "Ready"
            and status.get("stableRelease") == release
            and status.get("settled")
        )
    for item in migrations["items"]:
        status = item.get("status") or {}
        waiting += not (
            current(item)
            and status.get("phase") == "Ready"
            and status.get("currentVersion") == version
        )
    return waiting


def wait_settled(bench: Bench, release: str, version: str, timeout: float) -> tuple[float, int]:
    """Seconds until everything settled at (release, version), and how many had not when
    `timeout` passed (0: all settled). Fails if the operator exits."""
    began = time.monotonic()
    for round_ in itertools.count(1):
        left = unsettled(bench, release, version)
        if left == 0 or time.monotonic() - began > timeout:
            return time.monotonic() - began, left
        if not bench.env.operator.alive():
            raise RuntimeError(f"the operator exited:\n{bench.env.operator.logs()[-3000:]}")
        if round_ % 10 == 0:
            print(f"    {time.monotonic() - began:6.0f}s: {left} not settled", flush=True)
        time.sleep(2.0)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------- measuring


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_sessions(postgres: PostgresServer) -> int:
    """Sessions opened so far on the server (all databases), this query's own excluded."""
    with psycopg.connect(postgres.url()) as conn:
        row = conn.execute("SELECT sum(sessions)::bigint FROM pg_stat_database").fetchone()
    return int(row[0] if row and row[0] is not None else 0)


def reconciliations(operator: OperatorProcess) -> int:
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith("lockstep_reconciles_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def mean_pass_seconds(operator: OperatorProcess) -> dict[str, float]:
    """Mean duration of one reconciliation so far, by kind (lockstep_reconcile_duration_seconds)."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in operator.metrics().splitlines():
        for suffix, into in (("_sum{", sums), ("_count{", counts)):
            if line.startswith(f"lockstep_reconcile_duration_seconds{suffix}"):
                kind = line.split('kind="', 1)[1].split('"', 1)[0]
                into[kind] = float(line.rsplit(" ", 1)[1])
    return {kind: sums[kind] / counts[kind] for kind in sums if counts.get(kind)}


def requests_between(requests: list[Request], start: datetime, end: datetime) -> list[Request]:
    return [r for r in requests if start <= r.received < end]


def by_kind(requests: list[Request]) -> Counter[str]:
    return Counter(f"{r.verb} {r.resource}" for r in requests)


@dataclass
class RssSampler:
    """The operator's RSS every SAMPLE_SECONDS, on a thread."""

    pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), memory_mib(self.pid, "VmRSS")))

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), memory_mib(self.pid, "VmRSS")))
            if self._stop.wait(SAMPLE_SECONDS):
                return


# ---------------------------------------------------------------------------- the canary


def canary_rollback(bench: Bench, started: threading.Event, results: dict[str, Any]) -> None:
    """Release `canary` to v2 when `started` is set; make v2 fail once it has measured; time the
    switch back to blue. Runs on its own thread during the mass release."""
    app = App(bench.env, "canary", "web")  # the name error_ratio_query measures
    try:
        started.wait()
        app.release("v2")
        wait_until(
            lambda: analysing(app.status()),
            timeout=1800,
            interval=0.5,
            what="a first successful measurement of canary v2",
        )
        if app.selected_color() != "green":  # it ended before the errors came: say how
            status = app.status()
            ready = next(
                (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
            )
            raise RuntimeError(
                f"canary v2 left green before its errors began: phase {status.get('phase')}, "
                f"{ready.get('reason')}: {ready.get('message')}"
            )
        results["busy"] = unsettled(bench, "v2", "002")
        raised = time.monotonic()
        bench.env.traffic.set_app(
            app.namespace, app.name, service=app.name, rps=50, error_ratio={"v2": 0.5}
        )
        back = poll(lambda: app.selected_color() == "blue", 600, "the canary's switch back")
        results["rollback"] = back - raised
    except Exception as exc:
        results["error"] = exc


def prepare_canary(bench: Bench) -> App:
    app = App(bench.env, "canary", "web")  # the name error_ratio_query measures
    app.create_namespace()
    app.create_service()
    bench.env.traffic.set_app(app.namespace, app.name, service=app.name, rps=50)
    spec = {
        "analysis": error_ratio_analysis(app.namespace, bench.env.prometheus.url),
        "strategy": {"blueGreen": {"scaleDownDelaySeconds": 0}},
    }
    spec["analysis"]["duration"] = "30m"  # measuring until the errors come
    # Prometheus shares two busy cores with thousands of objects: a query may take seconds,
    # and an analysis that errors out would end the canary before its errors are injected.
    spec["analysis"]["prometheus"]["timeout"] = "10s"
    app.create_release("v1", replicas=1, **spec)
    app.wait_ready("v1", timeout=600)
    return app


# ---------------------------------------------------------------------------- the run


@dataclass
class Figures:
    releases: int = 0
    namespaces: int = 0
    setup_seconds: float = 0.0
    initial_seconds: float = 0.0
    release_seconds: float = 0.0
    release_unsettled: int = 0
    release_cpu_seconds: float = 0.0
    pass_seconds: dict[str, float] = field(default_factory=dict)
    rollback_seconds: float = 0.0
    busy_at_rollback: int = 0
    rss_started: float = 0.0
    rss_peak: float = 0.0
    release_requests: int = 0
    idle_seconds: float = 0.0
    idle_rss: list[float] = field(default_factory=list)
    idle_requests: Counter[str] = field(default_factory=Counter)
    idle_lease_requests: int = 0
    idle_sessions: int = 0
    idle_cpu_seconds: float = 0.0
    idle_reconciles: int = 0


def run(
    bench: Bench, count: int, namespaces: int, idle_minutes: float, settle_timeout: float
) -> Figures:
    figures = Figures(releases=count, namespaces=namespaces)
    env = bench.env
    pid = env.operator.pid()
    assert pid is not None
    figures.rss_started = memory_mib(pid, "VmRSS")
    members = fleet(count, namespaces)

    print(f"1. setup: {count} databases, releases and migrations", flush=True)
    began = time.monotonic()
    prepare_canary(bench)
    create_fleet(bench, members)
    figures.setup_seconds = time.monotonic() - began
    figures.initial_seconds, left = wait_settled(bench, "v1", "001", timeout=settle_timeout)
    if left:
        raise TimeoutError(f"{left} objects not settled at v1 after {settle_timeout:g}s")

    print("2. release of all at once, 3. the canary's rollback meanwhile", flush=True)
    burst, results = threading.Event(), dict[str, Any]()
    canary = threading.Thread(target=canary_rollback, args=(bench, burst, results), daemon=True)
    canary.start()
    release_start, cpu = datetime.now(UTC), cpu_seconds(pid)
    burst.set()
    release_all(bench, members)
    figures.release_seconds, figures.release_unsettled = wait_settled(
        bench, "v2", "002", timeout=settle_timeout
    )
    release_end = datetime.now(UTC)
    figures.release_cpu_seconds = cpu_seconds(pid) - cpu
    figures.pass_seconds = mean_pass_seconds(env.operator)
    canary.join(timeout=600)
    if "error" in results:  # the other figures still count; the report says what happened
        print(f"   canary: {results['error']}", flush=True)
    figures.rollback_seconds = results.get("rollback", float("nan"))
    figures.busy_at_rollback = results.get("busy", -1)
    figures.rss_peak = memory_mib(pid, "VmHWM")
    print(  # before the idle window, so that a long window cut short still leaves these
        f"   settled after {figures.release_seconds:.0f}s ({figures.release_unsettled} left); "
        f"canary rolled back in {figures.rollback_seconds:.2f}s with "
        f"{figures.busy_at_rollback} objects unsettled; peak RSS {figures.rss_peak:.0f} MiB",
        flush=True,
    )

    print(f"4. idle for {idle_minutes:g} minutes", flush=True)
    wait_for_quiet(env.cluster.audit_log_path)
    idle_start = datetime.now(UTC)
    sessions, cpu, passes = (
        database_sessions(bench.postgres),
        cpu_seconds(pid),
        reconciliations(env.operator),
    )
    began = time.monotonic()
    with RssSampler(pid) as sampler:
        time.sleep(idle_minutes * 60)
    figures.idle_seconds = time.monotonic() - began
    idle_end = datetime.now(UTC)
    figures.idle_rss = [rss for _, rss in sampler.samples]
    figures.idle_sessions = database_sessions(bench.postgres) - sessions - 1
    figures.idle_cpu_seconds = cpu_seconds(pid) - cpu
    figures.idle_reconciles = reconciliations(env.operator) - passes

    requests = bench.audit.requests(OPERATOR_USER)
    figures.release_requests = len(requests_between(requests, release_start, release_end))
    idle = requests_between(requests, idle_start, idle_end)
    figures.idle_lease_requests = sum(1 for r in idle if r.resource == "leases")
    figures.idle_requests = by_kind([r for r in idle if r.resource != "leases"])
    return figures


def report(figures: Figures) -> list[str]:
    f = figures
    growth = (f.idle_rss[-1] - f.idle_rss[0]) / f.idle_rss[0]
    idle_requests = sum(f.idle_requests.values())
    lines = [
        f"Scale, {f.releases} FeatureReleases and {f.releases} DatabaseMigrations in "
        f"{f.namespaces} namespaces, one operator process:",
        f"  created in {f.setup_seconds:.0f}s; all settled at v1/001 after "
        f"{f.initial_seconds:.0f}s",
        "  release of all at once (002 and v2): "
        + (
            f"all settled after {f.release_seconds:.0f}s; "
            if not f.release_unsettled
            else f"{f.release_unsettled} NOT settled after {f.release_seconds:.0f}s; "
        )
        + f"operator CPU {f.release_cpu_seconds:.0f}s; mean pass "
        + ", ".join(f"{kind} {1000 * s:.0f} ms" for kind, s in sorted(f.pass_seconds.items())),
        f"  rollback reaction of one release meanwhile: {f.rollback_seconds:.2f}s "
        f"({f.busy_at_rollback} objects still unsettled then)",
        f"  operator RSS: {f.rss_started:.0f} MiB at start, peak (VmHWM) {f.rss_peak:.0f} MiB",
        f"  operator API requests during the release: {f.release_requests}",
        f"  idle for {f.idle_seconds / 60:.0f} min ({f.idle_reconciles} reconciliations, "
        f"{f.idle_reconciles / (2 * f.releases + 1):.0f} per object):",
        f"    RSS {f.idle_rss[0]:.0f} MiB -> {f.idle_rss[-1]:.0f} MiB ({growth:+.1%}), max "
        f"{max(f.idle_rss):.0f} MiB",
        f"    API requests: {idle_requests / f.idle_seconds:.2f}/s (Lease renewals apart: "
        f"{f.idle_lease_requests / f.idle_seconds:.2f}/s)",
        f"    new database sessions: {f.idle_sessions / f.idle_seconds:.2f}/s",
        f"    CPU: {100 * f.idle_cpu_seconds / f.idle_seconds:.0f}% of one core",
    ]
    lines += [f"      {n:7d}  {kind}" for kind, n in f.idle_requests.most_common(6)]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=2000, help="of each kind (2000)")
    parser.add_argument("--namespaces", type=int, default=10, help="to spread them over (10)")
    parser.add_argument("--idle-minutes", type=float, default=60, help="idle window (60)")
    parser.add_argument(
        "--settle-timeout", type=float, default=7200, help="seconds to wait for a release (7200)"
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="lockstep-bench-scale-"))
    base.chmod(0o755)  # the servers may run as an unprivileged user
    started = time.monotonic()
    try:
        with environment(base) as bench:
            figures = run(
                bench, args.releases, args.namespaces, args.idle_minutes, args.settle_timeout
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print()
    for line in report(figures):
        print(line)
    print(f"(total {time.monotonic() - started:.0f}s)")
    print(json.dumps({"figures": figures.__dict__}, default=str), file=sys.stderr)
    growth = (figures.idle_rss[-1] - figures.idle_rss[0]) / figures.idle_rss[0]
    missed = []
    if figures.release_unsettled:
        missed.append(f"{figures.release_unsettled} objects did not settle")
    if growth > RSS_GROWTH_LIMIT:
        missed.append(f"RSS grew {growth:.0%} while idle")
    if missed:
        print(f"MISSED: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
