"""docs/reference.md, generated from the CRD schemas (and so from the models)."""

from __future__ import annotations

from typing import Any

from .crd import all_crds

INTRO = """# API reference

Generated from the pydantic models by `python -m lockstep.api.reference > docs/reference.md`
(a test fails when it drifts). Group `lockstep.dev`, version `v1alpha1`, both kinds namespaced
and in the category `lockstep` (`kubectl get lockstep`).

Manual controls never touch the spec (GitOps owns it); they are annotations:
"""

CONTROLS = [
    (
        "`lockstep.dev/request: ACTION@ID`",
        "FeatureRelease",
        "one-shot `promote`, `abort` or `retry`; answered once in `status.lastRequest` "
        "(`kubectl lockstep promote\\|abort\\|retry NAME` writes it)",
    ),
    (
        '`lockstep.dev/paused: "true"`',
        "FeatureRelease",
        "hold the release at its current step (`kubectl lockstep pause\\|resume NAME`)",
    ),
    (
        "`lockstep.dev/request: retry@ID`",
        "DatabaseMigration",
        "take a fresh backup after a failed backup Job",
    ),
    (
        "`lockstep.dev/rollback-request`",
        "DatabaseMigration",
        "written by a FeatureRelease whose `rollback.database` is `down` or `restore`",
    ),
]


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "object")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return "object (free-form)"
    if kind == "array":
        return f"[]{_type(node.get('items', {}))}"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    return str(kind)


def _rows(node: dict[str, Any], prefix: str, required: set[str]) -> list[str]:
    rows = []
    for name, prop in (node.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        description = (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
        if "pattern" in prop:
            description += " Pattern: `" + prop["pattern"].replace("|", "\\|") + "`."
        if "minimum" in prop or "maximum" in prop:
            description += f" Range: {prop.get('minimum', '-')} to {prop.get('maximum', '-')}."
        mark = " (required)" if name in required else ""
        rows.append(f"| `{path}`{mark} | {_type(prop)} | {description} |")
        child = prop.get("items", prop) if prop.get("type") == "array" else prop
        if child.get("properties"):
            rows += _rows(
                child,
                path + ("[]" if prop.get("type") == "array" else ""),
                set(child.get("required", [])),
            )
    return rows


def rules_of(node: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for rule in node.get("x-kubernetes-validations") or []:
        found.append(f"- `{prefix or 'spec'}`: {rule['message']} (`{rule['rule']}`)")
    for name, prop in (node.get("properties") or {}).items():
        child = prop.get("items", prop) if prop.get("type") == "array" else prop
        found += rules_of(child, f"{prefix}.{name}" if prefix else name)
    return found


def reference_markdown() -> str:
    parts = [INTRO, "| annotation | on | meaning |", "|---|---|---|"]
    parts += [f"| {what} | {kind} | {meaning} |" for what, kind, meaning in CONTROLS]
    for crd in all_crds().values():
        names = crd["spec"]["names"]
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        spec, status = schema["properties"]["spec"], schema["properties"]["status"]
        parts.append(
            f"\n## {names['kind']} (`{names['shortNames'][0]}`)\n\n{schema['description']}\n"
        )
        parts.append("### spec\n\n| field | type | description |\n|---|---|---|")
        parts += _rows(spec, "", set(spec.get("required", [])))
        cel = rules_of(spec)
        if cel:
            parts.append("\nValidation rules the API server enforces:\n")
            parts += cel
        parts.append("\n### status\n\n| field | type | description |\n|---|---|---|")
        parts += _rows(status, "", set())
        columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
        parts.append(f"\nPrinter columns: {', '.join(columns)}.")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
