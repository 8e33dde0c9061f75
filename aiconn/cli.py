"""The `aiconn` command: one binary, deployed as separate processes (operator, gateway, api),
plus the local stack (`dev up` / `dev down`), CRD rendering and offline placement (`plan`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _crds(args: argparse.Namespace) -> int:
    from aiconn import crdgen

    if args.write:
        for path in crdgen.write_all(Path(args.dir)):
            print(f"wrote {path}")
        return 0
    stale = [
        str(crdgen.crd_path(Path(args.dir), info))
        for info in crdgen.RESOURCES
        if not crdgen.crd_path(Path(args.dir), info).exists()
        or crdgen.crd_path(Path(args.dir), info).read_text() != crdgen.render_yaml(info)
    ]
    for info in crdgen.RESOURCES:
        if not args.check:
            print("---")
            print(crdgen.render_yaml(info), end="")
    if args.check and stale:
        print(f"out of date (run `aiconn crds --write`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


def _operator(args: argparse.Namespace) -> int:
    from aiconn.operator.run import run

    run(verbose=args.verbose)
    return 0


def _gateway(args: argparse.Namespace) -> int:
    from aiconn.gateway.server import run

    run()
    return 0


def _api(args: argparse.Namespace) -> int:
    from aiconn.api.server import run
    from aiconn.api.settings import ApiSettings

    run(ApiSettings())
    return 0


def _dev(args: argparse.Namespace) -> int:
    from aiconn.devstack import demo, stack

    state = Path(args.state_dir) if args.state_dir else None
    if args.action == "down":
        stopped = stack.down(state)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    if args.cluster or args.real_node:
        from aiconn.devstack import devcluster

        devcluster.up(state_dir=state, real_node=args.real_node)
    elif args.demo:
        demo.run(state_dir=state)
    else:
        endpoints = stack.up(demo.SAMPLE, state_dir=state)
        stack.apply_sla(endpoints.kubeconfig, demo.demo_sla(), keys_dir=endpoints.gateway_keys_dir)
        print(f"stack up; endpoints in {(state or stack.default_state_dir()) / 'endpoints.json'}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    import json

    from aiconn import planning
    from aiconn.inference.placement import default_tiers

    try:
        tiers = planning.load_tiers(Path(args.tiers)) if args.tiers else default_tiers()
        name, spec = planning.load_sla(Path(args.file))
    except planning.ManifestError as err:
        for field, reason in err.problems:
            print(f"aiconn plan: {err.path}: {field}: {reason}", file=sys.stderr)
        return 2
    report = planning.plan_sla(name, spec, tiers)
    if args.output == "json":
        print(json.dumps(planning.to_json(report), indent=2))
    else:
        print(planning.render_text(report), end="")
    return 0 if report.decision.placed else 1


def _export(args: argparse.Namespace) -> int:
    from aiconn.export import cli as export_cli

    return export_cli.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiconn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    crds = sub.add_parser("crds", help="render the CustomResourceDefinitions from the models")
    crds.add_argument("--dir", default="crds")
    mode = crds.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write crds/*.yaml")
    mode.add_argument("--check", action="store_true", help="fail when crds/ is out of date")
    crds.set_defaults(func=_crds)

    operator = sub.add_parser("operator", help="run the Kopf operator (settings: AICONN_* env)")
    operator.add_argument("-v", "--verbose", action="store_true")
    operator.set_defaults(func=_operator)

    plan = sub.add_parser(
        "plan",
        help="placement, GPUs, latency split, charges and credit exposure of an SLA manifest,"
        " without a cluster (exit 1: no tier fits; 2: bad manifest)",
    )
    plan.add_argument("file", help="an AIInferenceSLA manifest")
    plan.add_argument("--tiers", help="InferenceTier manifests to plan on (default: shipped)")
    plan.add_argument("--output", choices=["text", "json"], default="text")
    plan.set_defaults(func=_plan)

    export = sub.add_parser(
        "export", help="usage and settlements as CloudEvents; an SLA's SLOs as OpenSLO or Sloth"
    )
    from aiconn.export.cli import add_arguments

    add_arguments(export)
    export.set_defaults(func=_export)

    gateway = sub.add_parser(
        "gateway", help="run the token gateway sidecar (settings: AICONN_* env)"
    )
    gateway.set_defaults(func=_gateway)

    api = sub.add_parser("api", help="run the reporting API and NOC page (AICONN_API_* env)")
    api.set_defaults(func=_api)

    dev = sub.add_parser("dev", help="the whole stack on this machine (`dev up --demo`)")
    dev.add_argument("action", choices=["up", "down"])
    dev.add_argument("--demo", action="store_true", help="run the demo scenario after `up`")
    dev.add_argument(
        "--cluster",
        action="store_true",
        help="only the cluster: control plane, scheduler, KWOK nodes for the tiers' sites",
    )
    dev.add_argument(
        "--real-node",
        action="store_true",
        help="with --cluster: one real node (containerd, kubelet, kube-proxy) as well",
    )
    dev.add_argument("--state-dir", help="where PIDs, logs and data go (default .aiconn/dev)")
    dev.set_defaults(func=_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
