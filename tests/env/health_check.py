"""What Flux, kubectl and Argo CD make of lockstep's objects, asked of their own libraries.

`tests/env/gitops` is a small Go program built from the Go module proxy (cached like the control
plane): kstatus (`sigs.k8s.io/cli-utils`, `status.Compute`), Argo CD's Lua health engine
(`github.com/yuin/gopher-lua`, the object passed as Argo CD passes it) and the check of
`kubectl wait --for=condition=Ready`. This module builds and runs it, and reads the documented
mapping from docs/gitops.md: one row per case, naming the object captured from the end-to-end
tests (gitops/argocd/testdata) and what each tool reads.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = Path(__file__).resolve().parent / "gitops" / "build.sh"
ARGOCD = REPO / "gitops" / "argocd"
HEALTH_SCRIPT = ARGOCD / "health.lua"
FLUX_KUSTOMIZATION = REPO / "gitops" / "flux" / "kustomization.yaml"
FIXTURES = ARGOCD / "testdata"
DOCS = REPO / "docs" / "gitops.md"
KINDS = ("lockstep.dev/FeatureRelease", "lockstep.dev/DatabaseMigration")
# The message Argo CD shows until lockstep has observed the latest spec (health.lua).
NOT_OBSERVED = "Waiting for lockstep to observe the latest spec"
# The manual controls (kept in fixtures; kopf's bookkeeping annotations are not).
CONTROL_ANNOTATIONS = ("lockstep.dev/paused", "lockstep.dev/request")


@dataclass(frozen=True)
class Verdicts:
    kstatus: str
    kstatus_message: str
    argocd: str
    argocd_message: str
    ready: bool  # `kubectl wait --for=condition=Ready` returns (else it waits)
    flux: str  # Flux with the healthCheckExprs of gitops/flux/kustomization.yaml

    @property
    def waits(self) -> str:
        return "returns" if self.ready else "waits"

    def observed(self) -> tuple[str, str, str, str]:
        """In the order of a documented case's `expected()`."""
        return self.kstatus, self.flux, self.argocd, self.waits


def build() -> Path:
    result = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, timeout=900
    )
    if result.returncode != 0:
        raise RuntimeError(f"building the health checker failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def flux_health_check_exprs() -> dict[str, dict[str, str]]:
    """The healthCheckExprs of the Flux example, by "<group>/<Kind>"."""
    spec = yaml.safe_load(FLUX_KUSTOMIZATION.read_text())["spec"]
    found = {}
    for entry in spec["healthCheckExprs"]:
        group = entry["apiVersion"].split("/")[0]
        exprs = {k: v for k, v in entry.items() if k in ("current", "failed", "inProgress")}
        found[f"{group}/{entry['kind']}"] = exprs
    return found


def check(objects: list[dict[str, Any]], script: str | None = None) -> list[Verdicts]:
    """kstatus, Argo CD (with `script`, default gitops/argocd/health.lua), kubectl wait and
    Flux with the example's healthCheckExprs (kstatus where it has none), per object."""
    lua = script if script is not None else HEALTH_SCRIPT.read_text()
    request = {
        "scripts": dict.fromkeys(KINDS, lua),
        "useOpenLibs": False,
        "healthCheckExprs": flux_health_check_exprs(),
        "objects": objects,
    }
    result = subprocess.run(
        [str(build())],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"health-check failed: {result.stderr}")
    verdicts = []
    for obj, answer in zip(objects, json.loads(result.stdout), strict=True):
        if answer["errors"]:
            raise AssertionError(f"{obj['kind']}: {answer['errors']}")
        verdicts.append(
            Verdicts(
                kstatus=answer["kstatus"]["status"],
                kstatus_message=answer["kstatus"]["message"],
                argocd=answer["argocd"]["status"],
                argocd_message=answer["argocd"]["message"],
                ready=answer["kubectlWaitReady"],
                flux=(answer["flux"] or answer["kstatus"])["status"],
            )
        )
    return verdicts


# ------------------------------------------------------------------------- the documented mapping


@dataclass(frozen=True)
class Case:
    """One row of the table in docs/gitops.md."""

    kind: str
    case: str
    fixture: str
    kstatus: str
    flux: str  # with the healthCheckExprs of gitops/flux/kustomization.yaml
    argocd: str
    kubectl_wait: str  # "returns" or "waits"

    def expected(self) -> tuple[str, str, str, str]:
        return self.kstatus, self.flux, self.argocd, self.kubectl_wait

    @property
    def path(self) -> Path:
        return FIXTURES / self.fixture

    def load(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(self.path.read_text())
        return loaded


def documented_cases() -> list[Case]:
    """The rows of the health table between the `health-mapping` markers of docs/gitops.md."""
    text = DOCS.read_text()
    match = re.search(r"<!-- health-mapping -->\n(.*?)<!-- /health-mapping -->", text, re.S)
    if match is None:
        raise AssertionError("docs/gitops.md has no <!-- health-mapping --> table")
    cases = []
    for line in match.group(1).splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[0] in ("object", "") or set(cells[0]) <= {"-"}:
            continue
        cases.append(Case(*cells))
    return cases


def documented_case(fixture: str) -> Case:
    return next(c for c in documented_cases() if c.fixture == fixture)


def argocd_configmap_scripts() -> dict[str, str]:
    """The health scripts in the argocd-cm example of docs/gitops.md, by ConfigMap key."""
    text = DOCS.read_text()
    match = re.search(r"```yaml\n(apiVersion: v1\nkind: ConfigMap\n.*?)```", text, re.S)
    if match is None:
        raise AssertionError("docs/gitops.md has no argocd-cm ConfigMap example")
    data: dict[str, str] = yaml.safe_load(match.group(1))["data"]
    return data


def fixture_of(obj: dict[str, Any], namespace: str) -> str:
    """An object as a fixture: without server bookkeeping, in the namespace "shop"."""
    obj = json.loads(json.dumps(obj))
    meta = obj["metadata"]
    for key in ("managedFields", "resourceVersion", "uid", "selfLink"):
        meta.pop(key, None)
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k in CONTROL_ANNOTATIONS
    }
    meta.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    text = json.dumps(obj).replace(namespace, "shop")
    return yaml.safe_dump(json.loads(text), sort_keys=False, width=100)
