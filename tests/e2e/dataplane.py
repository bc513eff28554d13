"""The sample application released by a FeatureRelease, with real pods and real clients.

`ShopApp` is `WebApp` (releases.py) for the real program of examples/shop: its pods run as local
processes (the executor), the load generator (tests/env/loadgen.py) sends requests through the
router as kube-proxy would, and at the end every acknowledged write is looked up in PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.releases import Status, WebApp
from tests.env.executor import make_backup_volume
from tests.env.loadgen import LoadProcess, LoadReport
from tests.env.samples import (
    ShopVersion,
    shop_analysis,
    shop_database_migration,
    shop_objects,
    shop_release,
)

V1 = ShopVersion("v1", schema=1)
V2 = ShopVersion("v2", schema=2)  # writes the note that migration 002 adds
BUGGY = ShopVersion("v3", schema=2, bug=True)
SLOW = ShopVersion("v4", schema=2, slow_seconds=0.4)
NEVER_READY = ShopVersion("v5", schema=2, never_ready=True)


@dataclass
class ShopApp(WebApp):
    """The shop as the FeatureRelease `web` in the test namespace, with the database behind it."""

    database_url: str = ""
    out_dir: Path = Path()
    load: LoadProcess | None = None
    reports: list[LoadReport] = field(default_factory=list)

    def analysis(self, **overrides: Any) -> dict[str, Any]:
        return shop_analysis(self.namespace, self.prometheus_url, **overrides)

    def manifest(
        self, version: ShopVersion, target: str, contract: str | None = None, **spec: Any
    ) -> dict[str, Any]:
        gate = {"targetVersion": target} | ({"contractVersion": contract} if contract else {})
        spec.setdefault("analysis", self.analysis())
        return shop_release(version, migration=gate, **spec)

    def go_live(  # type: ignore[override]
        self, version: ShopVersion = V1, migrations: tuple[str, ...] = ("001",), **spec: Any
    ) -> Status:
        """Release the first version with its schema and wait until it serves in blue."""
        make_backup_volume(self.cluster, self.namespace, "backups")
        self.k.apply(
            *shop_objects(self.database_url),
            shop_database_migration(list(migrations)),
            self.manifest(version, migrations[-1], **spec),
        )
        return self.wait_for_phase("Ready", release=version.name, timeout=120)

    def release(
        self,
        version: ShopVersion,
        migrations: tuple[str, ...],
        *,
        contract: str | None = None,
        target: str | None = None,
        policy: dict[str, Any] | None = None,
        extra: list[dict[str, Any]] | None = None,
        **spec: Any,
    ) -> int:
        """Apply the DatabaseMigration with `migrations` and the release of `version` (needing
        schema `target`, by default the last expand migration given)."""
        expand = target or (migrations[-2] if contract else migrations[-1])
        if extra and not target:
            expand = extra[-1]["version"]
        self.k.apply(
            shop_database_migration(list(migrations), extra, **(policy or {})),
            self.manifest(version, expand, contract, **spec),
        )
        return int(self.k.get("featurerelease", "web")["metadata"]["generation"])

    # ------------------------------------------------------------------ clients

    def start_load(self, rps: float = 100, seed: int = 1, wait_for: str | None = None) -> None:
        """Start the load generator; with `wait_for`, until that version has answered."""
        self.load = LoadProcess(
            self.cluster.kubeconfig,
            self.namespace,
            self.out_dir / f"load-{len(self.reports)}",
            rps=rps,
            seed=seed,
        )
        self.load.start()
        if wait_for:
            self.wait_until_served_by(wait_for)

    def wait_until_served_by(self, version: str, count: int = 20, timeout: float = 60) -> None:
        assert self.load is not None
        load = self.load
        self.k.wait_for(
            f"{count} answers from {version}",
            lambda: load.report().served_by_version()[version] >= count,
            timeout=timeout,
            interval=0.5,
        )

    def stop_load(self) -> LoadReport:
        assert self.load is not None
        report = self.load.stop()
        self.load = None
        self.reports.append(report)
        return report

    def verdict(self, report: LoadReport) -> str:
        """The counts a data-plane test asserts on, in one line for failure messages."""
        return (
            f"{len(report.records)} requests, {len(report.failed)} failed "
            f"{dict(report.failed_by_version())}, served {dict(report.served_by_version())}, "
            f"{len(report.acknowledged)} acknowledged writes, "
            f"downtime {report.downtime_seconds():.2f}s"
        )

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()
            self.load = None
