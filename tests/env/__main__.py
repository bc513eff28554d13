"""`python -m tests.env up DIR`: run the local test environment until interrupted.

Starts the control plane, PostgreSQL and Prometheus, writes DIR/env.json (kubeconfig path,
database URL, Prometheus URL) and waits; Ctrl-C or SIGTERM stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .cluster import Cluster
from .postgres import PostgresServer
from .processes import reap_strays
from .prometheus import PrometheusServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.env")
    parser.add_argument("command", choices=["up", "build"])
    parser.add_argument("dir", nargs="?", type=Path, default=Path("/tmp/lockstep-env"))
    args = parser.parse_args(argv)
    if args.command == "build":
        from .cluster import build_controlplane

        print(build_controlplane())
        return 0

    reap_strays()
    base: Path = args.dir
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    cluster = Cluster(base / "cluster")
    postgres = PostgresServer(base / "postgres")
    prometheus = PrometheusServer(base / "prometheus")
    try:
        cluster.start()
        postgres.start()
        prometheus.start()
        env = {
            "kubeconfig": str(cluster.kubeconfig),
            "kubectl": str(cluster.bin_dir / "kubectl"),
            "helm": str(cluster.bin_dir / "helm"),
            "databaseUrl": postgres.url(),
            "prometheusUrl": prometheus.url,
            "prometheusTargets": str(prometheus.targets_file),
        }
        (base / "env.json").write_text(json.dumps(env, indent=2))
        print(f"environment ready: {base / 'env.json'}", flush=True)
        stop.wait()
    finally:
        prometheus.stop()
        postgres.stop()
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
