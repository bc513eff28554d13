"""The sample application's files work as its README says: the manifests are valid lockstep
objects whose container arguments the program accepts, and its migrations read as a ConfigMap
lint clean with 002 an expand and 003 a contract."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from lockstep.api.migration import DatabaseMigrationSpec
from lockstep.api.release import FeatureReleaseSpec
from lockstep.migrations.linting import lint_config, lint_source
from lockstep.migrations.source import from_configmap

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def shop_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shop_example", SHOP / "shop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def manifests() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all((SHOP / "manifests.yaml").read_text()) if d}


def test_the_manifests_are_valid_lockstep_objects() -> None:
    found = manifests()
    release = FeatureReleaseSpec.model_validate(found["FeatureRelease"]["spec"])
    migration = DatabaseMigrationSpec.model_validate(found["DatabaseMigration"]["spec"])
    assert release.service == found["Service"]["metadata"]["name"]
    assert release.migration is not None and release.migration.ref == "shop-db"
    assert migration.source.config_map_ref is not None
    assert {m.name for m in release.analysis.metrics} == {"error-ratio", "latency-p90"}  # type: ignore[union-attr]


def test_the_program_accepts_the_arguments_of_the_manifest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = manifests()["FeatureRelease"]["spec"]["template"]["spec"]["containers"][0]
    monkeypatch.setenv("DATABASE_URL", "postgresql://shop@db/shop")
    config = shop_module().parse_config(container["args"])
    assert (config.version, config.schema, config.drain_seconds) == ("v1", 1, 5.0)
    assert config.port == container["ports"][0]["containerPort"]


def test_the_program_refuses_to_start_without_a_database_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        shop_module().parse_config(["--version", "v1"])
    assert exited.value.code == 2
    assert "DATABASE_URL is not set" in capsys.readouterr().err


def test_the_migrations_read_as_a_configmap_and_lint_as_expand_expand_contract() -> None:
    data = {p.name: p.read_text() for p in (SHOP / "migrations").iterdir()}
    migrations = from_configmap(data)
    assert [(m.version, m.name, m.down is not None) for m in migrations] == [
        ("001", "create_orders", True),
        ("002", "add_note", True),
        ("003", "drop_coupon", True),
    ]
    linted = lint_source(migrations, lint_config())
    assert not linted.has_errors
    assert [linted.up[v].phase for v in ("001", "002", "003")] == ["expand", "expand", "contract"]
