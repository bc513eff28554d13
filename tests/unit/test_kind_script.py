"""hack/kind/up.sh (docs/kind.md) cannot run here (no Docker), so what can be checked is: the
shell is clean for shellcheck, the sample objects it applies are ones lockstep accepts, the three
releases differ as the story says, and the analysis query is valid PromQL."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockstep.api.migration import DatabaseMigration
from lockstep.api.release import FeatureRelease
from lockstep.release.analysis import render_query
from lockstep.release.machine import revision_of

REPO = Path(__file__).resolve().parents[2]
KIND = REPO / "hack" / "kind"
SCRIPTS = [KIND / "up.sh", REPO / "tests" / "env" / "gitops" / "build.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_shell_scripts_are_clean_for_shellcheck(script: Path) -> None:
    checked = subprocess.run(
        ["shellcheck", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def sample() -> list[dict[str, Any]]:
    printed = subprocess.run(
        [str(KIND / "up.sh"), "manifests"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return [d for d in yaml.safe_load_all(printed) if d]


def test_the_sample_objects_are_ones_lockstep_accepts() -> None:
    migration_v1, migration_v2, *releases = sample()
    for migration in (migration_v1, migration_v2):
        DatabaseMigration.model_validate({"spec": migration["spec"]})
    assert [m["version"] for m in migration_v2["spec"]["source"]["migrations"]] == ["001", "002"]
    models = [FeatureRelease.model_validate({"spec": r["spec"]}) for r in releases]
    assert [m.spec.release for m in models] == ["v1", "v2", "v3"]
    assert [m.spec.migration.target_version for m in models if m.spec.migration] == [
        "001",
        "002",
        "002",
    ]
    # three revisions: a new image, then the same image answering one request in three with 500
    assert len({revision_of(m.spec) for m in models}) == 3
    env = [r["spec"]["template"]["spec"]["containers"][0]["env"] for r in releases]
    assert [e[0]["value"] for e in env] == ["false", "false", "true"]


def test_the_sample_analysis_query_is_valid_promql(tmp_path: Path) -> None:
    release = sample()[-1]
    query = render_query(
        release["spec"]["analysis"]["metrics"][0]["query"],
        {"color": "green", "revision": "r", "release": "v3", "name": "web", "namespace": "shop"},
    )
    assert 'lockstep_dev_color="green"' in query
    rules = {"groups": [{"name": "sample", "rules": [{"record": "sample:error", "expr": query}]}]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_supporting_manifests_are_for_the_shop_namespace() -> None:
    for name in ("postgres.yaml", "shop.yaml"):
        documents = [d for d in yaml.safe_load_all((KIND / name).read_text()) if d]
        assert documents
        assert {d["metadata"]["namespace"] for d in documents} == {"shop"}
