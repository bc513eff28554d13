"""`kubectl lockstep`: status, history and manual controls of FeatureReleases.

Controls never edit the spec (GitOps owns it): `promote`, `abort` and `retry` write a one-shot
request annotation the operator answers once (`status.lastRequest`), `pause` and `resume` set or
remove the `lockstep.dev/paused` annotation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from . import GROUP, VERSION
from .api.base import parse_timestamp
from .release.reconcile import PAUSED_ANNOTATION, REQUEST_ANNOTATION

PLURALS = {"fr": "featurereleases", "dbm": "databasemigrations"}


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def age(when: str | None, now: datetime | None = None) -> str:
    if not when:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - parse_timestamp(when)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def condition(status: dict[str, Any], kind: str) -> str:
    for item in status.get("conditions") or []:
        if item.get("type") == kind:
            return str(item.get("status"))
    return "-"


def render_status(obj: dict[str, Any], now: datetime | None = None) -> str:
    """The readable summary of a FeatureRelease."""
    meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status") or {}
    lines = [
        f"Name:        {meta['namespace']}/{meta['name']}",
        f"Phase:       {status.get('phase', '-')}   Ready: {condition(status, 'Ready')}"
        f"   Degraded: {condition(status, 'Degraded')}",
        f"Message:     {status.get('message', '-')}",
        f"Step:        {status.get('step', '-')} (for {age(status.get('stepStartedAt'), now)})",
        f"Release:     {status.get('release') or '-'} "
        f"(revision {status.get('updatedRevision', '-')})",
        f"Stable:      {status.get('stableRelease') or '-'} "
        f"(revision {status.get('stableRevision', '-')})",
        f"Colours:     active {status.get('activeColor', '-')}, "
        f"new {status.get('previewColor', '-')}",
        f"Service:     {spec.get('service', '-')}"
        + (f", preview {spec['previewService']}" if spec.get("previewService") else ""),
    ]
    if status.get("abortReason"):
        lines.append(f"Aborted:     {status['abortReason']}")
    paused = (meta.get("annotations") or {}).get(PAUSED_ANNOTATION) == "true"
    if paused:
        lines.append("Paused:      yes (kubectl lockstep resume to continue)")
    analysis = status.get("analysis")
    if analysis:
        lines += [
            "",
            f"Analysis:    {analysis.get('successful', 0)} successful, {analysis.get('failed', 0)} "
            f"failed, {analysis.get('errors', 0)} errors "
            f"(started {age(analysis.get('startedAt'), now)} ago)",
        ]
        rows = [
            [
                m["metric"],
                m["phase"],
                "-" if m.get("value") is None else f"{m['value']:g}",
                age(m.get("at"), now),
                m.get("message", ""),
            ]
            for m in (analysis.get("measurements") or [])[-8:]
        ]
        if rows:
            lines.append(table(rows, ["METRIC", "PHASE", "VALUE", "AGE", "MESSAGE"]))
    checks = status.get("checks") or []
    if checks:
        lines += [
            "",
            table(
                [
                    [c["stage"], c["name"], c["phase"], c["job"], c.get("message", "")]
                    for c in checks
                ],
                ["STAGE", "CHECK", "PHASE", "JOB", "MESSAGE"],
            ),
        ]
    request = status.get("lastRequest")
    if request:
        lines += [
            "",
            f"Last request: {request['action']} -> {request['outcome']}: "
            f"{request.get('message', '')} ({age(request['at'], now)} ago)",
        ]
    return "\n".join(lines)


def render_history(obj: dict[str, Any], now: datetime | None = None) -> str:
    rows = [
        [
            h.get("release") or "-",
            h["revision"],
            h.get("color") or "-",
            h["outcome"],
            age(h.get("finishedAt"), now),
            h.get("reason", "")[:80],
        ]
        for h in (obj.get("status") or {}).get("history") or []
    ]
    return table(rows, ["RELEASE", "REVISION", "COLOUR", "OUTCOME", "AGE", "REASON"])


class Client:
    def __init__(self, context: str | None) -> None:
        config.load_kube_config(context=context)  # type: ignore[no-untyped-call]
        self.custom = client.CustomObjectsApi()
        _, active = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        self.default_namespace = active.get("context", {}).get("namespace", "default")

    def get(self, namespace: str, name: str, plural: str = "featurereleases") -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        return cast(dict[str, Any], found)

    def annotate(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "featurereleases",
            name,
            {"metadata": {"annotations": annotations}},
            _content_type="application/merge-patch+json",
        )


def request(api: Client, namespace: str, name: str, action: str, wait: float) -> int:
    ident = f"{action}@{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"
    api.annotate(namespace, name, {REQUEST_ANNOTATION: ident})
    print(f"featurerelease/{name}: {action} requested")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        last = (api.get(namespace, name).get("status") or {}).get("lastRequest") or {}
        if last.get("id") == ident:
            print(f"featurerelease/{name}: {last['outcome']}: {last.get('message', '')}")
            return 0 if last["outcome"] == "Accepted" else 1
        time.sleep(0.5)
    print(f"featurerelease/{name}: the operator has not answered within {wait:g}s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubectl lockstep", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    parser.add_argument("--context", help="kubeconfig context")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, text in [
        ("status", "phase, colours, step, analysis and checks"),
        ("history", "past releases"),
        ("promote", "switch traffic now (skips the rest of the analysis)"),
        ("abort", "roll back the release in progress"),
        ("retry", "release the current spec again after a rollback"),
        ("pause", "hold the release at its current step"),
        ("resume", "continue a paused release"),
    ]:
        cmd = sub.add_parser(command, help=text)
        cmd.add_argument("name")
        if command == "status":
            cmd.add_argument("-o", "--output", choices=["text", "json"], default="text")
        if command in ("promote", "abort", "retry"):
            cmd.add_argument(
                "--wait",
                type=float,
                default=30.0,
                help="seconds to wait for the operator's answer (default 30)",
            )
    args = parser.parse_args(argv)
    try:
        api = Client(args.context)
        namespace = args.namespace or api.default_namespace
        if args.command == "status":
            obj = api.get(namespace, args.name)
            print(
                json.dumps(obj.get("status") or {}, indent=2)
                if args.output == "json"
                else render_status(obj)
            )
            return 0
        if args.command == "history":
            print(render_history(api.get(namespace, args.name)))
            return 0
        if args.command in ("promote", "abort", "retry"):
            api.get(namespace, args.name)
            return request(api, namespace, args.name, args.command, args.wait)
        paused = "true" if args.command == "pause" else None
        api.annotate(namespace, args.name, {PAUSED_ANNOTATION: paused})
        print(f"featurerelease/{args.name}: {'paused' if paused else 'resumed'}")
        return 0
    except ApiException as exc:
        reason = "not found" if exc.status == 404 else exc.reason
        print(f"kubectl lockstep: featurerelease {args.name}: {reason}", file=sys.stderr)
        return 1
    except config.ConfigException as exc:
        print(f"kubectl lockstep: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
