"""A real Prometheus server (Debian package) scraping test targets every second."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
import yaml

from .processes import Process, free_port, wait_until

SCRAPE_INTERVAL = "1s"


def prometheus_binary() -> Path:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if not found:
        raise RuntimeError("prometheus not found: run `make deps` (apt-get install prometheus)")
    return Path(found)


class PrometheusServer:
    """Prometheus with a file-based target list that tests edit (`set_targets`); it also
    scrapes the targets of every `targets/*.json` file (Prometheus' file_sd format), which a
    user of the environment writes."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.port = free_port()
        self.targets_file = base_dir / "targets.json"
        self.targets_dir = base_dir / "targets"
        self.process: Process | None = None
        self._targets: dict[str, list[str]] = {}
        self._groups: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.targets_dir.mkdir(exist_ok=True)
        if not self.targets_file.exists():
            self._write_targets()
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {
                    "job_name": "test",
                    "scrape_interval": SCRAPE_INTERVAL,
                    "scrape_timeout": SCRAPE_INTERVAL,
                    "file_sd_configs": [
                        {
                            "files": [str(self.targets_file), str(self.targets_dir / "*.json")],
                            "refresh_interval": "1s",
                        }
                    ],
                }
            ],
        }
        config_file = self.base_dir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.process = Process(
            "prometheus",
            [
                str(prometheus_binary()),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.base_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            self.base_dir,
        )
        wait_until(self._ready, timeout=60, what="Prometheus /-/ready")

    def _ready(self) -> bool:
        assert self.process is not None
        self.process.check_alive()
        return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def running(self) -> bool:
        return self.process is not None and self.process.alive()

    def set_targets(self, name: str, addresses: list[str]) -> None:
        """Scrape `addresses` (host:port) as the group `name`; an empty list removes it."""
        with self._lock:
            if addresses:
                self._targets[name] = addresses
            else:
                self._targets.pop(name, None)
            self._write_targets()

    def set_target_groups(self, name: str, groups: list[dict[str, Any]]) -> None:
        """Scrape file_sd target groups (`{"targets": [...], "labels": {...}}`, where a label
        `__metrics_path__` sets the path) under `name`; an empty list removes them."""
        with self._lock:
            if groups:
                self._groups[name] = groups
            else:
                self._groups.pop(name, None)
            self._write_targets()

    def _write_targets(self) -> None:
        groups = [
            {"targets": addresses, "labels": {"group": name}}
            for name, addresses in sorted(self._targets.items())
        ]
        for _, more in sorted(self._groups.items()):
            groups += more
        tmp = self.targets_file.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)

    def query(self, promql: str) -> list[dict[str, object]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        result: list[dict[str, object]] = response.json()["data"]["result"]
        return result

    def target_up(self, address: str) -> bool:
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=5)
        response.raise_for_status()
        return any(
            t["labels"].get("instance") == address and t["health"] == "up"
            for t in response.json()["data"]["activeTargets"]
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
