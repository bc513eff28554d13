"""The operator's dashboard and alerts (monitoring/), where they are installed from, and what
they query.

monitoring/ holds the sources: `alerts.yaml` (Prometheus rule groups), `alerts_test.yaml`
(promtool unit tests) and `grafana-dashboard.json`. `python -m tests.env.monitoring` copies
them where installs take them from: the Helm chart's files/ (templates render a PrometheusRule
and a dashboard ConfigMap from them) and manifests/monitoring/ (kustomize). A test fails when
a copy drifts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "monitoring"
ALERTS = SOURCES / "alerts.yaml"
ALERT_TESTS = SOURCES / "alerts_test.yaml"
DASHBOARD = SOURCES / "grafana-dashboard.json"
CHART_FILES = REPO / "helm" / "lockstep" / "files"
MANIFESTS = REPO / "manifests" / "monitoring"
LABELS = {"app.kubernetes.io/name": "lockstep", "app.kubernetes.io/part-of": "lockstep"}
GENERATED = "# Generated from monitoring/ by `python -m tests.env.monitoring`; edit those files.\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (queries, the dashboard) as literal blocks, as a person writes them."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def _dump(*documents: dict[str, Any]) -> str:
    return GENERATED + "---\n".join(
        yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=1000) for d in documents
    )


def rendered() -> dict[Path, str]:
    """Every generated file and its content."""
    alerts = ALERTS.read_text()
    dashboard = DASHBOARD.read_text()
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "lockstep", "namespace": "lockstep-system", "labels": LABELS},
        "spec": yaml.safe_load(alerts),
    }
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "lockstep", "namespace": "lockstep-system", "labels": LABELS},
        "spec": {
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "lockstep",
                    "app.kubernetes.io/component": "operator",
                }
            },
            "endpoints": [{"port": "http-metrics", "interval": "30s"}],
        },
    }
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "lockstep-grafana-dashboard",
            "namespace": "lockstep-system",
            "labels": {**LABELS, "grafana_dashboard": "1"},
        },
        "data": {"lockstep.json": dashboard},
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["servicemonitor.yaml", "prometheusrule.yaml", "grafana-dashboard.yaml"],
    }
    return {
        CHART_FILES / "alerts.yaml": alerts,
        CHART_FILES / "grafana-dashboard.json": dashboard,
        MANIFESTS / "kustomization.yaml": _dump(kustomization),
        MANIFESTS / "servicemonitor.yaml": _dump(monitor),
        MANIFESTS / "prometheusrule.yaml": _dump(rule),
        MANIFESTS / "grafana-dashboard.yaml": _dump(configmap),
    }


def write() -> list[Path]:
    written = []
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


# ---------------------------------------------------------------------------- what they query


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: panels, variables and annotations."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    queries += [a["expr"] for a in dashboard["annotations"]["list"]]
    return queries


def as_promql(query: str) -> str:
    """A dashboard query as plain PromQL: Grafana's variables and label_values() resolved."""
    query = query.replace("$__rate_interval", "5m").replace("$__range", "1h")
    query = re.sub(r"\$\{?namespace\}?", ".*", query)
    values = re.fullmatch(r"label_values\((.+),\s*\w+\)", query.strip())
    return values.group(1) if values else query


KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression selects (a small lexer: strings, label matchers,
    ranges and grouping clauses go first; what remains and is not called is a metric)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', promql)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        if match.group(2) or match.group(1) in KEYWORDS:
            continue
        names.add(match.group(1))
    return names


def label_matchers(promql: str) -> dict[str, set[str]]:
    """Label names matched on each metric name (`metric{label=...}`)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)
    found: dict[str, set[str]] = {}
    for metric, matchers in _SELECTOR.findall(text):
        labels = {m.split("=")[0].strip(" !~") for m in matchers.split(",") if m.strip()}
        found.setdefault(metric, set()).update(labels)
    return found


if __name__ == "__main__":
    for written in write():
        print(f"wrote {written.relative_to(REPO)}")
    sys.exit(0)
