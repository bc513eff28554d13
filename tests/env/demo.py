"""`make demo`: a whole release on the local cluster, then an automatic rollback.

It starts the local environment (Kubernetes control plane with kwok, PostgreSQL, Prometheus,
the test traffic process), runs the operator under the RBAC of manifests/, and then:
1. releases v1 of `web` with its first migration (a backup Job runs pg_dump for real);
2. releases v2 with an expand migration (before the switch) and a contract migration (after
   the old colour is gone), analysed with Prometheus: promoted;
3. releases v3, whose error ratio the traffic process raises: rolled back automatically.
Everything it started is stopped at the end.
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
from .operator_runner import OperatorProcess, install_rbac, service_account_kubeconfig
from .postgres import PostgresServer
from .processes import reap_strays, wait_until
from .prometheus import PrometheusServer
from .samples import SHOP_DROP_NAME, SHOP_EMAIL, SHOP_USERS, shop_migration, web_release
from .traffic import TrafficClient, TrafficProcess

NAMESPACE = "shop"


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

    def release(self, version: str, target: str, contract: str | None = None) -> dict[str, Any]:
        migration = {"targetVersion": target}
        if contract:
            migration["contractVersion"] = contract
        return web_release(
            version,
            namespace=NAMESPACE,
            prometheus_url=self.prometheus.url,
            migration=migration,
            replicas=3,
            scale_down_delay=5,
            interval="2s",
            duration="10s",
            rollback={"automatic": True, "database": "none"},
        )

    def migration(self, versions: int) -> dict[str, Any]:
        return shop_migration(
            [SHOP_USERS, SHOP_EMAIL, SHOP_DROP_NAME][:versions],
            lockTimeout="2s",
            backup={"retention": 3},
        )

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
            self.cluster.kubeconfig, self.base / "executor", [self.postgres.bindir]
        )
        traffic = TrafficProcess(self.cluster.kubeconfig, self.base / "traffic")
        self.started += [operator, executor, traffic]
        operator.start()
        executor.start()
        traffic.start()
        self.prometheus.set_targets("traffic", [traffic.address])
        wait_until(
            lambda: self.prometheus.target_up(traffic.address), timeout=60, what="traffic scraped"
        )
        client = TrafficClient(traffic.address)
        print(self.cluster.kubectl("get", "nodes").stdout, end="")

        say("1. Release v1 of web with migration 001 (a backup Job runs pg_dump first)")
        self.cluster.kubectl("create", "namespace", NAMESPACE)
        url = self.postgres.create_database("shop")
        make_backup_volume(self.cluster, NAMESPACE, "backups")
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "shop-db"},
                "stringData": {"url": url},
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
            },
            self.migration(1),
            self.release("v1", "001"),
        )
        client.set_app(NAMESPACE, "web", service="web", rps=40, error_ratio={"v3": 0.3})
        self.follow("Ready")
        self.show("get", "fr,dbm,deploy,svc", "-o", "wide")

        say(
            "2. Release v2: expand 002 before the switch, analysis, contract 003 after blue is gone"
        )
        self.apply(self.migration(3), self.release("v2", "002", contract="003"))
        self.follow("Ready")
        self.show("get", "fr,dbm")
        self.plugin("status", "web")
        print(
            f"\n  backups: {[b['name'] for b in self.status('dbm', 'shop-db').get('backups', [])]}"
        )

        say(
            "3. Release v3: the traffic process makes v3 fail 30% of requests -> automatic rollback"
        )
        self.apply(self.migration(3), self.release("v3", "003"))
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
