"""`lockstep run` (the operator process) and `lockstep crds` (CRDs from the models)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the operator",
        description="Run the lockstep operator (kopf) against the current Kubernetes context "
        "or the in-cluster service account.",
    )
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument(
        "--liveness",
        default=os.environ.get("LOCKSTEP_LIVENESS", "http://0.0.0.0:8081/healthz"),
        help="liveness endpoint URL (default: %(default)s)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of the Prometheus /metrics endpoint (default 8080; 0 turns it off)",
    )
    run.add_argument("--log-format", choices=["plain", "full", "json"], default="full")
    run.set_defaults(handler=run_operator)

    crds = subparsers.add_parser(
        "crds",
        help="write the CustomResourceDefinitions generated from the models",
        description="Generate the CRD YAML from the pydantic models.",
    )
    crds.add_argument(
        "--output",
        type=Path,
        action="append",
        default=None,
        help="directory, repeatable (default: crds and helm/lockstep/crds)",
    )
    crds.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the files differ from the models",
    )
    crds.set_defaults(handler=write_crds)


def run_operator(args: argparse.Namespace) -> int:
    import kopf

    from lockstep import operator  # noqa: F401  (registers the handlers)
    from lockstep.redact import install_log_redaction

    if args.metrics_port is not None:
        os.environ["LOCKSTEP_METRICS_PORT"] = str(args.metrics_port)
    logging.getLogger().handlers.clear()  # kopf installs its own handler; one line per record
    kopf.configure(
        verbose=args.verbose > 0,
        debug=args.verbose > 1,
        log_format={
            "plain": kopf.LogFormat.PLAIN,
            "full": kopf.LogFormat.FULL,
            "json": kopf.LogFormat.JSON,
        }[args.log_format],
    )
    logging.getLogger().setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO)
    install_log_redaction()
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0


def write_crds(args: argparse.Namespace) -> int:
    from lockstep.api.crd import all_crds, render

    stale = []
    outputs: list[Path] = args.output or [Path("crds"), Path("helm/lockstep/crds")]
    for name, crd in all_crds().items():
        text = render(crd)
        for directory in outputs:
            path = directory / name
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
                continue
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(
            "CRDs differ from the models: " + ", ".join(stale) + " (run `lockstep crds`)",
            file=sys.stderr,
        )
        return 1
    return 0
