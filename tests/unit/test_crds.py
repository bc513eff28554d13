"""The CRDs are generated from the pydantic models and never drift from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lockstep.api.crd import all_crds, render

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("directory", ["crds", "helm/lockstep/crds"])
def test_checked_in_crds_match_the_models(directory: str) -> None:
    for name, crd in all_crds().items():
        path = REPO / directory / name
        assert path.read_text() == render(crd), f"{path} drifted: run `lockstep crds`"


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for name, prop in (schema.get("properties") or {}).items():
        nodes += walk(prop, f"{path}.{name}")
    if "items" in schema:
        nodes += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("crd", all_crds().values(), ids=lambda c: c["metadata"]["name"])
def test_every_field_has_a_description(crd: dict[str, Any]) -> None:
    missing = [
        path
        for path, node in walk(schema_of(crd))
        if path.count(".") >= 1
        and not path.endswith("[]")
        and not path.endswith("{}")
        and not path.startswith(".metadata")
        and "description" not in node
    ]
    assert missing == []


@pytest.mark.parametrize("crd", all_crds().values(), ids=lambda c: c["metadata"]["name"])
def test_the_schema_is_structural(crd: dict[str, Any]) -> None:
    text = yaml.safe_dump(crd)
    for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "title:", "$defs"):
        assert forbidden not in text
    for path, node in walk(schema_of(crd)):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path


@pytest.mark.parametrize("crd", all_crds().values(), ids=lambda c: c["metadata"]["name"])
def test_the_api_server_defaults_only_the_status_to_not_yet_observed(crd: dict[str, Any]) -> None:
    """What users write is never rewritten; a new object's status reads as not yet observed
    (kstatus and Argo CD compare observedGeneration with metadata.generation)."""
    defaults = {path: node["default"] for path, node in walk(schema_of(crd)) if "default" in node}
    assert defaults == {".status": {"observedGeneration": 0}}


def test_names_short_names_categories_and_status_subresource() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in all_crds().values()}
    assert set(crds) == {"FeatureRelease", "DatabaseMigration"}
    assert crds["FeatureRelease"]["spec"]["names"]["shortNames"] == ["fr"]
    assert crds["DatabaseMigration"]["spec"]["names"]["shortNames"] == ["dbm"]
    for crd in crds.values():
        assert crd["spec"]["group"] == "lockstep.dev"
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["categories"] == ["lockstep"]
        version = crd["spec"]["versions"][0]
        assert version["name"] == "v1alpha1"
        assert version["subresources"] == {"status": {}}


def test_release_printer_columns_show_phase_active_colour_release_ready_and_age() -> None:
    crd = all_crds()["lockstep.dev_featurereleases.yaml"]
    columns = [
        c["name"]
        for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
        if not c.get("priority")
    ]
    assert columns == ["Phase", "Active", "Release", "Ready", "Age"]


def test_observed_generation_is_an_integer_for_kstatus() -> None:
    for crd in all_crds().values():
        status = schema_of(crd)["properties"]["status"]["properties"]
        assert status["observedGeneration"]["type"] == "integer"
        conditions = status["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_cel_rules_guard_what_the_schema_alone_cannot() -> None:
    text = yaml.safe_dump(all_crds())
    assert "has(self.migrations), has(self.configMapRef), has(self.desiredSchema)" in text
    assert "self.min <= self.max" in text
    assert "previewService != self.service" in text


def test_the_api_reference_is_generated_from_the_models() -> None:
    from lockstep.api.reference import reference_markdown

    assert (REPO / "docs" / "reference.md").read_text() == reference_markdown(), (
        "docs/reference.md drifted: run `python -m lockstep.api.reference > docs/reference.md`"
    )
