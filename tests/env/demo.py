"""`make demo`: a whole release of a real application on the local cluster, then an
automatic rollback caused by a real bug.

It starts the local environment (Kubernetes control plane with kwok, PostgreSQL, Prometheus),
runs the operator under the RBAC of manifests/ and the pod executor, which runs the pods of the
sample application (examples/shop) as local processes, and a load generator that sends 60
requests/s through the Service as kube-proxy would. Then:
1. releases v1 of `web` with its first migration (a backup Job runs pg_dump for real);
2. releases v2, which writes a column that the expand migration 002 adds before the switch;
   the contract migration 003 drops a column only v1 used, after v1 is gone; analysed on its
   own metrics in Prometheus: promoted;
3. releases v3, which reads a column that does not exist: PostgreSQL's errors become real 500s,
   the analysis sees them and traffic goes back to v2 automatically.
At the end it counts every request and checks every acknowledged write against the database.
Everything it started is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from .cluster import Cluster
from .executor import LocalPodExecutor, make_backup_volume
from .loadgen import LoadProcess
from .operator_runner import OperatorProcess, install_rbac, service_account_kubeconfig
from .postgres import PostgresServer
from .processes import reap_strays, wait_until
from .prometheus import PrometheusServer
from .samples import (
    ShopVersion,
    shop_analysis,
    shop_database_migration,
    shop_objects,
    shop_release,
)

NAMESPACE = "shop"
V1 = ShopVersion("v1", schema=1)
V2 = ShopVersion("v2", schema=2)
BUGGY = ShopVersion("v3", schema=2, bug=True)


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


class Demo:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.cluster = Cluster(base / "cluster")
        self.postgres = PostgresServer(base / "postgres")
        self.prometheus = PrometheusServer(base / "prometheus")
        self.started: list[Any] = []

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl("-n", NAMESPACE, *args, input=input).stdout

    def show(self, *args: str) -> None:
        print(self.kubectl(*args), end="", flush=True)

    def plugin(self, *args: str) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        out = subprocess.run(
            [sys.executable, "-m", "lockstep.plugin", "-n", NAMESPACE, *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        print(out.stdout + out.stderr, end="", flush=True)

    def apply(self, *docs: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-o", "json")).get("status") or {}  # type: ignore[no-any-return]

    def follow(self, until: str, timeout: float = 300) -> None:
        """Print the release's steps as they change until its phase is `until`."""
        seen = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fr, dbm = self.status("fr", "web"), self.status("dbm", "shop-db")
            line = (
                f"  fr/web {fr.get('phase', '-'):<12} step={fr.get('step', '-'):<20} "
                f"{fr.get('message', '')[:90]}\n  dbm/shop-db {dbm.get('phase', '-'):<19} "
                f"version={dbm.get('currentVersion', '-')}"
            )
            if line != seen:
                print(line, flush=True)
                seen = line
            if fr.get("phase") == until and fr.get("observedGeneration"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"the release did not reach {until}")

    def release(
        self, version: ShopVersion, target: str, contract: str | None = None
    ) -> dict[str, Any]:
        migration = {"targetVersion": target}
        if contract:
            migration["contractVersion"] = contract
        return shop_release(
            version,
            migration=migration,
            replicas=3,
            scale_down_delay=5,
            analysis=shop_analysis(NAMESPACE, self.prometheus.url, interval="2s", duration="10s"),
            rollback={"automatic": True, "database": "none"},
        )

    def migration(self, versions: int) -> dict[str, Any]:
        return shop_database_migration(["001", "002", "003"][:versions], backup={"retention": 3})

    def run(self) -> None:
        say(
            "Starting the local cluster (etcd, kube-apiserver, controller-manager, scheduler, "
            "kwok), PostgreSQL and Prometheus"
        )
        self.started += [self.cluster, self.postgres, self.prometheus]
        self.cluster.start()
        self.postgres.start()
        self.prometheus.start()
        install_rbac(self.cluster)
        operator = OperatorProcess(
            service_account_kubeconfig(self.cluster, self.base / "sa.kubeconfig"), self.base
        )
        executor = LocalPodExecutor(
            self.cluster.kubeconfig, self.base / "executor", [self.postgres.bindir], self.prometheus
        )
        self.started += [operator, executor]
        operator.start()
        executor.start()
        print(self.cluster.kubectl("get", "nodes").stdout, end="")

        say("1. Release v1 of web (examples/shop) with migration 001 (a backup Job runs pg_dump)")
        self.cluster.kubectl("create", "namespace", NAMESPACE)
        url = self.postgres.create_database("shop")
        make_backup_volume(self.cluster, NAMESPACE, "backups")
        self.apply(*shop_objects(url), self.migration(1), self.release(V1, "001"))
        self.follow("Ready")
        self.show("get", "fr,dbm,deploy,svc,pods", "-o", "wide")
        load = LoadProcess(self.cluster.kubeconfig, NAMESPACE, self.base / "load", rps=60)
        self.started.append(load)
        load.start()
        wait_until(
            lambda: load.report().served_by_version()["v1"] >= 30, timeout=60, what="v1 answering"
        )
        print(
            f"\n  load generator: 60 requests/s, {load.report().served_by_version()['v1']} "
            "answered by v1 so far"
        )

        say(
            "2. Release v2: expand 002 (the note v2 writes) before the switch, analysis on its "
            "own metrics, contract 003 after v1 is gone"
        )
        self.apply(self.migration(3), self.release(V2, "002", contract="003"))
        self.follow("Ready")
        self.show("get", "fr,dbm")
        self.plugin("status", "web")
        print(
            f"\n  backups: {[b['name'] for b in self.status('dbm', 'shop-db').get('backups', [])]}"
        )

        say(
            "3. Release v3: it reads a column that does not exist -> real 500s -> "
            "automatic rollback"
        )
        self.apply(self.migration(3), self.release(BUGGY, "003"))
        self.follow("RolledBack")
        self.show("get", "fr", "-o", "wide")
        self.plugin("status", "web")
        print()
        self.plugin("history", "web")
        say("Events of fr/web")
        self.show(
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web",
            "--sort-by=.eventTime",
            "-o",
            "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
        )
        say("What the clients saw")
        report = load.stop()
        lost = report.lost_writes(url)
        failed = report.failed
        print(
            f"  {len(report.records)} requests: answered by {dict(report.served_by_version())}\n"
            f"  failed: {len(failed)}, by version {dict(report.failed_by_version())}"
            + (f", e.g. {failed[0].get('error', '')[:100]!r}" if failed else "")
            + f"\n  acknowledged writes: {len(report.acknowledged)}, missing from the database: "
            f"{len(lost)}\n  time without a Ready endpoint: {report.downtime_seconds():.2f}s"
        )
        say("The demo is over: everything it started is stopped")

    def stop(self) -> None:
        for part in reversed(self.started):
            try:
                part.stop()
            except Exception as exc:  # keep stopping the rest
                print(f"stopping {type(part).__name__}: {exc}", file=sys.stderr)


def main() -> int:
    reap_strays()
    base = Path(tempfile.mkdtemp(prefix="lockstep-demo-"))
    base.chmod(0o755)
    demo = Demo(base)
    try:
        demo.run()
        return 0
    except Exception as exc:
        print(f"\ndemo failed: {exc}\nlogs are in {base}", file=sys.stderr)
        base = Path()  # keep the logs
        return 1
    finally:
        demo.stop()
        if base != Path():
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
