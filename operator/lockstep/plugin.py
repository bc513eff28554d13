"""`kubectl lockstep`: status, history and manual controls of FeatureReleases.

Controls never edit the spec (GitOps owns it): `promote`, `abort` and `retry` write a one-shot
request annotation the operator answers once (`status.lastRequest`), `pause` and `resume` set or
remove the `lockstep.dev/paused` annotation. Each control is first judged against the release's
status (`judge`), so one that cannot apply is refused with the reason and nothing is written.
kubectl's `-n/--namespace`, `--context` and `--kubeconfig` work anywhere on the line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError

from . import GROUP, VERSION
from .api.base import parse_timestamp
from .release.machine import (
    ANALYSIS,
    AWAIT_ABORT,
    AWAIT_PROMOTION,
    DONE,
    ROLL_BACK,
    ROLLED_BACK,
    SETTLED_STEPS,
)
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


def colours(status: dict[str, Any]) -> str:
    """Which colour serves, which is stable, and which runs the release in flight (if any)."""
    active = status.get("activeColor") or "-"
    stable = (status.get("stable") or {}).get("color") or active
    new = status.get("previewColor")
    in_flight = status.get("step") not in (None, "Done") and new and new != stable
    text = f"active {active}, stable {stable}"
    return text + (f", new {new}" if in_flight else "")


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
        f"Colours:     {colours(status)}",
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


# ------------------------------------------------------------------------------ manual controls


@dataclass(frozen=True)
class Verdict:
    """What a manual control would do to a release, judged from its status before writing."""

    refusal: str | None = None  # why it is refused; nothing is written
    note: str | None = None  # what it does, said before it is written
    lift_pause: bool = False  # abort on a paused release also removes the pause
    done: str | None = None  # nothing to write: the release is already so


def is_paused(obj: dict[str, Any]) -> bool:
    annotations = obj["metadata"].get("annotations") or {}
    return str(annotations.get(PAUSED_ANNOTATION, "")).lower() == "true"


def _settled(status: dict[str, Any]) -> str | None:
    """Why nothing is in progress, or None while a release is in progress."""
    step = status.get("step")
    release = status.get("release") or status.get("stableRelease") or "the release"
    if step == DONE:
        return f"{release} is released and settled (phase {status.get('phase', 'Ready')})"
    if step == ROLLED_BACK:
        return f"{release} was rolled back (phase {status.get('phase', 'RolledBack')})"
    return None


def judge(action: str, obj: dict[str, Any], now: datetime | None = None) -> Verdict:
    """Whether `action` applies to the release as its status shows it, and what it does.

    The operator decides again when it answers (the status may be a moment old); this only
    keeps a control that cannot apply from being written and left unanswered.
    """
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    step = status.get("step") or "-"
    paused = is_paused(obj) and step not in SETTLED_STEPS
    settled = _settled(status)
    if action in ("pause", "pause-next"):
        if settled and action == "pause":
            return Verdict(
                refusal=f"nothing to pause: {settled}; pause holds a release in progress "
                f"(kubectl lockstep pause {name} --next holds the next one before it starts)"
            )
        if is_paused(obj):
            return Verdict(done="already paused" + ("" if settled else f" at step {step}"))
        if settled:
            return Verdict(note="the next release waits before its first step until resumed")
        return Verdict()
    if action == "resume":
        return Verdict() if is_paused(obj) else Verdict(done="not paused")
    if action == "promote":
        if paused:
            return Verdict(
                refusal=f"paused at step {step}: resume it first "
                f"(kubectl lockstep resume {name}), then promote"
            )
        if settled:
            return Verdict(refusal=f"nothing to promote: {settled}")
        if step == ANALYSIS:
            analysis = status.get("analysis") or {}
            duration = ((obj.get("spec") or {}).get("analysis") or {}).get("duration", "5m")
            return Verdict(
                note="promote skips the rest of the analysis (running for "
                f"{age(analysis.get('startedAt'), now)} of {duration}, "
                f"{analysis.get('successful', 0)} successful measurements)"
            )
        if step == AWAIT_PROMOTION:
            return Verdict(note=f"promote switches traffic to {status.get('previewColor', '-')}")
        if step == AWAIT_ABORT:
            return Verdict(
                note=f"promote goes on despite the failure ({status.get('abortReason', '-')})"
            )
        return Verdict(
            refusal=f"nothing to promote at step {step}: promote applies while a release "
            "awaits promotion, is being analysed or awaits an abort"
        )
    if action == "abort":
        if settled:
            return Verdict(refusal=f"nothing to abort: {settled}")
        if step == ROLL_BACK:
            return Verdict(refusal="nothing to abort: the release is already rolling back")
        if paused:
            return Verdict(note=f"abort lifts the pause (at step {step})", lift_pause=True)
        return Verdict()
    if action == "retry":
        if step not in (ROLLED_BACK, AWAIT_ABORT):
            return Verdict(
                refusal=f"nothing to retry at step {step}: retry releases the current spec "
                "again after a rollback"
            )
        if step == AWAIT_ABORT and status.get("activeColor") == status.get("previewColor"):
            return Verdict(
                refusal=f"traffic already moved to {status.get('activeColor')}: abort rolls it "
                "back, promote goes on"
            )
        if paused:
            return Verdict(
                refusal=f"paused at step {step}: resume it first (kubectl lockstep resume {name})"
            )
        return Verdict()
    raise ValueError(f"unknown control {action!r}")


# ------------------------------------------------------------------------------ the API


class NotFound(Exception):
    """The object does not exist in that namespace."""


class Client:
    """The Kubernetes API as kubectl would reach it: `--kubeconfig` (else $KUBECONFIG, else
    ~/.kube/config), `--context` (else the current one), and that context's namespace."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        # read now, not when the client library was imported; a list of files is merged
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
        api = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        self.custom = client.CustomObjectsApi(api)
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        chosen = (
            next((c for c in contexts if c["name"] == context), current) if context else current
        )
        self.default_namespace = (chosen or {}).get("context", {}).get("namespace") or "default"

    def get(self, namespace: str, name: str, plural: str = "featurereleases") -> dict[str, Any]:
        try:
            found = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(
                    f'{plural[:-1]} "{name}" not found in namespace "{namespace}"'
                ) from None
            raise
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


def request(
    api: Client,
    namespace: str,
    name: str,
    action: str,
    wait: float,
    also: dict[str, str | None] | None = None,
) -> int:
    """Write the one-shot request annotation and print the operator's answer."""
    ident = f"{action}@{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"
    api.annotate(namespace, name, {REQUEST_ANNOTATION: ident, **(also or {})})
    print(f"featurerelease/{name}: {action} requested", flush=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        last = (api.get(namespace, name).get("status") or {}).get("lastRequest") or {}
        if last.get("id") == ident:
            outcome, message = str(last.get("outcome", "")), last.get("message", "")
            print(f"featurerelease/{name}: the operator answered: {outcome}: {message}")
            return 0 if outcome == "Accepted" else 1
        time.sleep(0.5)
    print(
        f"featurerelease/{name}: the operator has not answered within {wait:g}s; the request "
        f"stays pending (annotation {REQUEST_ANNOTATION}={ident}) and is carried out when the "
        "operator sees it: is it running?",
        file=sys.stderr,
    )
    return 1


def control(api: Client, namespace: str, name: str, action: str, wait: float) -> int:
    obj = api.get(namespace, name)
    verdict = judge(action, obj)
    if verdict.refusal:
        print(f"kubectl lockstep: featurerelease/{name}: {verdict.refusal}", file=sys.stderr)
        return 1
    if verdict.done:
        print(f"featurerelease/{name}: {verdict.done}")
        return 0
    if verdict.note:
        print(f"featurerelease/{name}: {verdict.note}")
    if action in ("pause", "pause-next"):
        api.annotate(namespace, name, {PAUSED_ANNOTATION: "true"})
        step = (obj.get("status") or {}).get("step") or "-"
        print(f"featurerelease/{name}: paused" + (f" at step {step}" if action == "pause" else ""))
        return 0
    if action == "resume":
        api.annotate(namespace, name, {PAUSED_ANNOTATION: None})
        print(f"featurerelease/{name}: resumed")
        return 0
    also: dict[str, str | None] = {PAUSED_ANNOTATION: None} if verdict.lift_pause else {}
    return request(api, namespace, name, action, wait, also)


# ------------------------------------------------------------------------------ command line

COMMANDS = [
    ("status", "phase, colours, step, analysis and checks"),
    ("history", "past releases"),
    ("promote", "switch traffic now, or end the analysis now (skips the rest of it)"),
    ("abort", "roll back the release in progress (lifts a pause)"),
    ("retry", "release the current spec again after a rollback"),
    ("pause", "hold the release in progress at its current step"),
    ("resume", "continue a paused release"),
]


def kubectl_flags() -> argparse.ArgumentParser:
    """kubectl's flags, accepted before or after the command (`-n NS`, `--namespace=NS`, ...)."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default: the context's)"
    )
    flags.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    flags.add_argument(
        "--kubeconfig",
        default=argparse.SUPPRESS,
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    )
    return flags


def parser() -> argparse.ArgumentParser:
    flags = kubectl_flags()
    main_parser = argparse.ArgumentParser(
        prog="kubectl lockstep", description=__doc__.splitlines()[0], parents=[flags]
    )
    sub = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, text in COMMANDS:
        cmd = sub.add_parser(command, help=text, description=text, parents=[flags])
        cmd.add_argument("name", help="the FeatureRelease")
        if command == "status":
            cmd.add_argument("-o", "--output", choices=["text", "json"], default="text")
        if command == "pause":
            cmd.add_argument(
                "--next",
                action="store_true",
                help="on a settled release: hold the next release before its first step",
            )
        if command in ("promote", "abort", "retry"):
            cmd.add_argument(
                "--wait",
                type=float,
                default=30.0,
                help="seconds to wait for the operator's answer (default 30)",
            )
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        api = Client(getattr(args, "kubeconfig", None), getattr(args, "context", None))
        namespace = getattr(args, "namespace", None) or api.default_namespace
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
        action = "pause-next" if getattr(args, "next", False) else args.command
        return control(api, namespace, args.name, action, getattr(args, "wait", 30.0))
    except NotFound as exc:
        print(f"kubectl lockstep: {exc}", file=sys.stderr)
        return 1
    except ApiException as exc:
        print(f"kubectl lockstep: featurerelease {args.name}: {exc.reason}", file=sys.stderr)
        return 1
    except (config.ConfigException, FileNotFoundError) as exc:
        print(f"kubectl lockstep: {exc}", file=sys.stderr)
        return 2
    except MaxRetryError as exc:
        print(f"kubectl lockstep: cannot reach the API server: {exc.reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
