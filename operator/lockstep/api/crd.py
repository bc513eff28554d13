"""CustomResourceDefinitions generated from the pydantic models: the models are the one source.

The JSON schema pydantic emits is turned into a Kubernetes structural schema: references are
inlined, `anyOf [T, null]` becomes `nullable`, titles go, and defaults move into the
descriptions (the operator applies defaults when it reads an object, so the API server does not
rewrite what users and GitOps tools wrote).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .. import GROUP, VERSION
from .migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from .release import FeatureReleaseSpec, FeatureReleaseStatus

CATEGORY = "lockstep"
READY = '.status.conditions[?(@.type=="Ready")].status'


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions)


def _convert(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    node = copy.deepcopy(node)
    if "$ref" in node:
        target = definitions[node.pop("$ref").split("/")[-1]]
        merged = {**copy.deepcopy(target), **node}  # the field's own description wins
        return _convert(merged, definitions)

    nullable = False
    for key in ("anyOf", "oneOf"):
        if key in node:
            variants = node.pop(key)
            options = [o for o in variants if o.get("type") != "null"]
            nullable = len(options) < len(variants)
            if len(options) != 1:
                raise ValueError(f"unions other than Optional[T] are not supported: {options}")
            node = {**_convert(options[0], definitions), **_strip_type(node)}
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**_convert(node.pop("allOf")[0], definitions), **node}

    result: dict[str, Any] = {}
    description = node.get("description")
    if "default" in node and description:
        description = f"{description.rstrip('.')}. Defaults to {_show(node['default'])}."
    if description:
        result["description"] = description
    if "const" in node:
        result["type"] = "string"
        result["enum"] = [node["const"]]
    for key in (
        "type",
        "enum",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "format",
    ):
        if key in node:
            result[key] = node[key]
    if "exclusiveMinimum" in node:
        result["minimum"], result["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if "exclusiveMaximum" in node:
        result["maximum"], result["exclusiveMaximum"] = node["exclusiveMaximum"], True
    if result.get("type") == "integer" and "format" not in result:
        result["format"] = "int64"
    if "enum" in result and "type" not in result:
        result["type"] = "string"

    if node.get("type") == "object" or "properties" in node:
        result["type"] = "object"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            result["x-kubernetes-preserve-unknown-fields"] = True
        elif "properties" in node:
            result["properties"] = {
                name: _convert(prop, definitions) for name, prop in node["properties"].items()
            }
            if node.get("required"):
                result["required"] = list(node["required"])
        elif isinstance(node.get("additionalProperties"), dict):
            result["additionalProperties"] = _convert(node["additionalProperties"], definitions)
        else:
            result["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("type") == "array":
        result["items"] = _convert(node["items"], definitions)
    for key, value in node.items():
        if key.startswith("x-kubernetes-") and key != "x-kubernetes-preserve-unknown-fields":
            result[key] = value
    if nullable:
        result["nullable"] = True
    return result


def _strip_type(node: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in ("type", "default", "title")}


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _crd(
    kind: str,
    plural: str,
    short: str,
    spec: type[BaseModel],
    status: type[BaseModel],
    description: str,
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    spec_schema = structural(spec)
    # Until lockstep first writes a status, the API server shows `observedGeneration: 0`, so
    # kstatus (Flux) and Argo CD read a new object as in progress, never as current.
    status_schema = {**structural(status), "default": {"observedGeneration": 0}}
    schema = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "lockstep",
                "app.kubernetes.io/part-of": "lockstep",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        *columns,
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def feature_release_crd() -> dict[str, Any]:
    return _crd(
        "FeatureRelease",
        "featurereleases",
        "fr",
        FeatureReleaseSpec,
        FeatureReleaseStatus,
        "A FeatureRelease releases one application blue-green, gated on its database migration, "
        "analysed with Prometheus and rolled back automatically.",
        [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Active", "type": "string", "jsonPath": ".status.activeColor"},
            {"name": "Release", "type": "string", "jsonPath": ".status.release"},
            {"name": "Ready", "type": "string", "jsonPath": READY},
            {"name": "Step", "type": "string", "jsonPath": ".status.step", "priority": 1},
            {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
        ],
    )


def database_migration_crd() -> dict[str, Any]:
    return _crd(
        "DatabaseMigration",
        "databasemigrations",
        "dbm",
        DatabaseMigrationSpec,
        DatabaseMigrationStatus,
        "A DatabaseMigration brings one PostgreSQL database to a schema version: lint, backup, "
        "apply with bounded locks, and roll back.",
        [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Version", "type": "string", "jsonPath": ".status.currentVersion"},
            {"name": "Target", "type": "string", "jsonPath": ".status.targetVersion"},
            {"name": "Ready", "type": "string", "jsonPath": READY},
            {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
        ],
    )


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, as written to crds/."""
    return {
        "lockstep.dev_featurereleases.yaml": feature_release_crd(),
        "lockstep.dev_databasemigrations.yaml": database_migration_crd(),
    }


HEADER = "# Generated from the pydantic models in operator/lockstep/api by `lockstep crds`.\n"


def render(crd: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=100)


def write_crds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, crd in all_crds().items():
        path = directory / name
        path.write_text(render(crd))
        written.append(path)
    return written
