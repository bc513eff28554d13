"""`lockstep run` (the operator process: leader election, sharding, kopf) and `lockstep crds`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # the other commands start faster without kopf, aiohttp and the client
    from aiohttp import web

    from lockstep.leader import ElectionConfig, Elector, Leadership
    from lockstep.shard import Shard

log = logging.getLogger("lockstep.run")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def register(subparsers: Any) -> None:
    for add in SUBCOMMANDS.values():
        add(subparsers)


def _register_run(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the operator",
        description="Run the lockstep operator (kopf) against the current Kubernetes context "
        "or the in-cluster service account. With --leader-elect, several replicas may run: the "
        "one holding the Lease acts, the others wait to take over.",
    )
    shard = run.add_argument_group(
        "what this instance owns (sharding; instances must own disjoint objects)"
    )
    shard.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=_env_list("LOCKSTEP_NAMESPACES"),
        help="watch only this namespace (repeatable; env LOCKSTEP_NAMESPACES, comma-separated); "
        "default: all namespaces",
    )
    shard.add_argument(
        "-l",
        "--selector",
        default=os.environ.get("LOCKSTEP_SELECTOR", ""),
        help="reconcile only FeatureReleases and DatabaseMigrations with these labels, a label "
        "selector such as 'lockstep.dev/shard=a' (env LOCKSTEP_SELECTOR); default: all",
    )
    shard.add_argument(
        "--instance",
        default=os.environ.get("LOCKSTEP_INSTANCE", "lockstep"),
        help="name of this operator instance: the name of its Lease and, with --selector, part "
        "of its finalizer (env LOCKSTEP_INSTANCE; default: %(default)s)",
    )
    election = run.add_argument_group("leader election (a coordination.k8s.io/v1 Lease)")
    election.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("LOCKSTEP_LEADER_ELECT"),
        help="act only while holding the Lease named by --instance (env LOCKSTEP_LEADER_ELECT)",
    )
    election.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("LOCKSTEP_LEADER_ELECTION_NAMESPACE", ""),
        help="namespace of the Lease (env LOCKSTEP_LEADER_ELECTION_NAMESPACE); default: the "
        "pod's namespace, else the kubeconfig context's",
    )
    election.add_argument(
        "--identity",
        default=os.environ.get("LOCKSTEP_IDENTITY", ""),
        help="this replica's name in the Lease (env LOCKSTEP_IDENTITY; default: host_pid)",
    )
    election.add_argument(
        "--lease-duration",
        type=int,
        default=int(os.environ.get("LOCKSTEP_LEASE_DURATION", "15")),
        help="seconds a standby waits for a silent leader before taking over (default 15)",
    )
    election.add_argument(
        "--renew-deadline",
        type=float,
        default=float(os.environ.get("LOCKSTEP_RENEW_DEADLINE", "10")),
        help="seconds a leader keeps acting without a successful renewal (default 10; must be "
        "shorter than the lease duration)",
    )
    election.add_argument(
        "--retry-period",
        type=float,
        default=float(os.environ.get("LOCKSTEP_RETRY_PERIOD", "2")),
        help="seconds between two renewals, or two looks of a standby (default 2)",
    )
    run.add_argument(
        "--liveness",
        default=os.environ.get("LOCKSTEP_LIVENESS", "http://0.0.0.0:8081/healthz"),
        help="liveness endpoint URL, served by leaders and standbys (default: %(default)s)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of the Prometheus /metrics endpoint (default 8080; 0 turns it off)",
    )
    run.add_argument("--log-format", choices=["plain", "full", "json"], default="full")
    run.set_defaults(handler=run_operator)


def _register_crds(subparsers: Any) -> None:
    crds = subparsers.add_parser(
        "crds",
        help="write the CustomResourceDefinitions generated from the models",
        description="Generate the CRD YAML from the pydantic models.",
    )
    crds.add_argument(
        "--output",
        type=Path,
        action="append",
        default=None,
        help="directory, repeatable (default: crds and helm/lockstep/crds)",
    )
    crds.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the files differ from the models",
    )
    crds.set_defaults(handler=write_crds)


SUBCOMMANDS: dict[str, Callable[[Any], None]] = {"run": _register_run, "crds": _register_crds}


EXIT_USAGE = 2
EXIT_LOST_LEASE = 1
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Liveness:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Liveness:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.port:
            raise ValueError(f"--liveness {url!r}: give http://HOST:PORT/PATH")
        return cls(parts.hostname or "0.0.0.0", parts.port, parts.path or "/")  # noqa: S104


def lease_namespace(given: str) -> str:
    """The namespace of the Lease: given, else the pod's, else the kubeconfig context's."""
    if given:
        return given
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    from kubernetes import config

    try:
        _, context = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        context = None
    namespace = ((context or {}).get("context") or {}).get("namespace")
    if not namespace:
        raise ValueError(
            "--leader-elect needs the Lease's namespace: give --leader-election-namespace"
        )
    return str(namespace)


@dataclass(frozen=True)
class RunPlan:
    """`lockstep run`'s arguments, checked before anything starts."""

    shard: Shard
    election: ElectionConfig | None
    identity: str
    liveness: Liveness

    @classmethod
    def of(cls, args: argparse.Namespace) -> RunPlan:
        from lockstep.leader import ElectionConfig, Timing
        from lockstep.shard import Shard

        shard = Shard(args.instance, tuple(dict.fromkeys(args.namespace)), args.selector)
        identity = args.identity or f"{socket.gethostname()}_{os.getpid()}"
        election = None
        if args.leader_elect:
            timing = Timing(args.lease_duration, args.renew_deadline, args.retry_period)
            namespace = lease_namespace(args.leader_election_namespace)
            election = ElectionConfig(shard.instance, namespace, identity, timing)
        return cls(shard, election, identity, Liveness.parse(args.liveness))


def run_operator(args: argparse.Namespace) -> int:
    try:
        plan = RunPlan.of(args)
    except ValueError as exc:
        print(f"lockstep run: {exc}", file=sys.stderr)
        return EXIT_USAGE

    import kopf
    from prometheus_client import start_http_server

    from lockstep import __version__, operator  # noqa: F401  (operator registers the handlers)
    from lockstep.redact import install_log_redaction

    logging.getLogger().handlers.clear()  # kopf installs its own handler; one line per record
    kopf.configure(
        verbose=args.verbose > 0,
        debug=args.verbose > 1,
        log_format={
            "plain": kopf.LogFormat.PLAIN,
            "full": kopf.LogFormat.FULL,
            "json": kopf.LogFormat.JSON,
        }[args.log_format],
    )
    logging.getLogger().setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO)
    install_log_redaction()
    # Metrics are served from the start, so that a standby reports lockstep_leader 0 too; the
    # operator's startup handler then finds the port taken care of.
    port = args.metrics_port
    if port is None:
        port = int(os.environ.get("LOCKSTEP_METRICS_PORT", "8080"))
    if port:
        start_http_server(port, addr=os.environ.get("LOCKSTEP_METRICS_ADDRESS", "0.0.0.0"))  # noqa: S104
    os.environ["LOCKSTEP_METRICS_PORT"] = "0"
    registry = kopf.get_default_registry()
    plan.shard.restrict(registry)
    log.info("lockstep %s (%s) owns %s", __version__, plan.identity, plan.shard.describe())
    return asyncio.run(serve(plan, registry))


async def serve(plan: RunPlan, registry: Any) -> int:
    """Stand by until this replica leads (at once without an election), then run kopf."""
    import kopf

    from lockstep.kube import load_api_client
    from lockstep.leader import Elector, Leadership, user_agent
    from lockstep.operator import FINALIZER

    loop = asyncio.get_running_loop()
    leading, stopping = asyncio.Event(), asyncio.Event()
    elector: Elector | None = None
    if plan.election is None:
        leadership = Leadership.unconditional(plan.identity)
        leading.set()
    else:
        # its own client: renewals never queue behind passes; each attempt is sent once
        api = load_api_client(pool_size=2, retry=False)
        api.user_agent = user_agent(plan.identity)

        def acquired() -> None:  # called on the election thread
            loop.call_soon_threadsafe(leading.set)

        elector = Elector(api, plan.election, on_acquired=acquired, on_lost=stop_at_once)
        leadership = elector.leadership
        elector.start()
    health = await serve_health(plan.liveness, leadership, elector)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await first_of(leading.wait(), stopping.wait())
        if stopping.is_set():  # stopped while standing by
            return 0
        for signum in (signal.SIGINT, signal.SIGTERM):  # kopf stops gracefully on these
            loop.remove_signal_handler(signum)
        await kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=not plan.shard.namespaces,
            namespaces=list(plan.shard.namespaces),
            memo=kopf.Memo(leadership=leadership, finalizer=plan.shard.finalizer(FINALIZER)),
        )
        return 0
    finally:
        if elector is not None:
            if leadership.acting():  # passes under way finish while this replica leads
                await loop.shutdown_default_executor()
            elector.stop()  # then the Lease is handed over
        await health.cleanup()


async def first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def stop_at_once(reason: str) -> None:
    """The Lease is lost: stop acting now. The process exits without unwinding (a pass in a
    worker thread dies with it, its database session with the connection), as a
    controller-runtime manager does, and the kubelet restarts it as a standby."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_LOST_LEASE)


async def serve_health(
    liveness: Liveness, leadership: Leadership, elector: Elector | None
) -> web.AppRunner:
    """The liveness endpoint, from the event loop (a stuck loop fails it) of leaders and
    standbys alike; 500 once the election thread has died."""
    from aiohttp import web

    async def healthz(_: web.Request) -> web.Response:
        alive = elector is None or elector.alive()
        body = {"identity": leadership.identity, "leader": leadership.acting(), "ok": alive}
        return web.json_response(body, status=200 if alive else 500)

    app = web.Application()
    app.router.add_get(liveness.path, healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, liveness.host, liveness.port).start()
    return runner


def write_crds(args: argparse.Namespace) -> int:
    from lockstep.api.crd import all_crds, render

    stale = []
    outputs: list[Path] = args.output or [Path("crds"), Path("helm/lockstep/crds")]
    for name, crd in all_crds().items():
        text = render(crd)
        for directory in outputs:
            path = directory / name
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
                continue
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(
            "CRDs differ from the models: " + ", ".join(stale) + " (run `lockstep crds`)",
            file=sys.stderr,
        )
        return 1
    return 0
