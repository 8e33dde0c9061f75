"""The `aiconn` command: one binary, deployed as separate processes (operator, gateway, api),
plus the local stack (`dev up` / `dev down`), CRD rendering and offline placement (`plan`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from aiconn.planning import ManifestError
    from aiconn.sla.verify import LedgerFigures


DEV_SWITCHES = {
    "--demo": "the demo in a real cluster (what `make demo` runs), not the process-based stack",
    "--cluster": "only the cluster: control plane, scheduler, KWOK nodes for the tiers' sites",
    "--real-node": "with --cluster: one real node (containerd, kubelet, kube-proxy) as well",
}
"""The switches of `aiconn dev`, each with its --help line."""


def _add_write_or_check(parser: argparse.ArgumentParser, files: str) -> None:
    """The options `_generated` reads: write `files`, or check them."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {files}")
    mode.add_argument(
        "--check", action="store_true", help=f"fail when --write would change {files}"
    )


def _generated(
    args: argparse.Namespace, files: Mapping[Path, str], *, document_start: str = ""
) -> int:
    """Files rendered from the code: `--write` them, `--check` that those on disk are the same
    (exit 1 naming the others), or print them, each after `document_start`."""
    if args.write:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    elif args.check:
        stale = [str(p) for p, text in files.items() if not p.exists() or p.read_text() != text]
        if stale:
            print(
                f"out of date (run `aiconn {args.command} --write`): {', '.join(stale)}",
                file=sys.stderr,
            )
            return 1
    else:
        for text in files.values():
            print(document_start + text, end="")
    return 0


def _crds(args: argparse.Namespace) -> int:
    from aiconn.resources.v1alpha1 import crds

    files = {crds.crd_path(Path(args.dir), i): crds.render_yaml(i) for i in crds.RESOURCES}
    return _generated(args, files, document_start="---\n")


def _prometheusrule(args: argparse.Namespace) -> int:
    from aiconn.sla import alertrules

    text = alertrules.render_yaml(args.window or alertrules.DEFAULT_RULE_WINDOWS)
    return _generated(args, {Path(args.file): text})


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

    settings = ApiSettings()
    try:
        settings.serving_tls()
    except ValueError as err:
        print(f"aiconn api: {err}", file=sys.stderr)
        return 2
    run(settings)
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


def _aware_time(text: str) -> datetime:
    """An RFC 3339 time with its zone, in UTC (argparse prints the reason with the option)."""
    from datetime import UTC

    from aiconn.sla.timestamps import parse_iso

    try:
        parsed = parse_iso(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from err
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"give a time zone, e.g. 2027-01-01T00:00:00Z, got {text!r}"
        )
    return parsed.astimezone(UTC)


def _plan(args: argparse.Namespace) -> int:
    import json

    from aiconn import planning
    from aiconn.inference.placement import default_tiers

    try:
        tiers = planning.load_tiers(Path(args.tiers)) if args.tiers else default_tiers()
        name, spec = planning.load_sla(Path(args.file))
    except planning.ManifestError as err:
        return _manifest_problems(err)
    priced = None
    if args.at is not None and not args.offer:
        print("aiconn plan: --at: prices a plan period, so it needs --offer", file=sys.stderr)
        return 2
    if args.offer:
        from datetime import UTC, datetime

        from aiconn.sla.offer import OfferViolation, effective_spec

        at = datetime.now(UTC) if args.at is None else args.at
        if spec.offer is None:
            print(f"aiconn plan: {args.file}: spec.offer: required with --offer", file=sys.stderr)
            return 2
        try:
            offer = planning.load_offer(Path(args.offer), spec.offer)
            spec = effective_spec(spec, offer, at=at)
        except planning.ManifestError as err:
            return _manifest_problems(err)
        except OfferViolation as err:
            print(f"aiconn plan: {args.file}: {err}", file=sys.stderr)
            return 2
        found = offer.model_class(spec.model.name)
        assert found is not None  # effective_spec refuses a model outside the catalogue
        priced = planning.price_plan(offer, found[0].name, spec.tokens.monthly_commitment, at)
    report = planning.plan_sla(name, spec, tiers, plan_price=priced)
    if args.output == "json":
        print(json.dumps(planning.to_json(report), indent=2))
    else:
        print(planning.render_text(report), end="")
    return 0 if report.decision.placed else 1


def _manifest_problems(err: ManifestError) -> int:
    """Print each problem of a manifest `plan` cannot read, one line each; exit status 2."""
    for field, reason in err.problems:
        print(f"aiconn plan: {err.path}: {field}: {reason}", file=sys.stderr)
    return 2


def _verify(args: argparse.Namespace) -> int:
    import json

    from sqlalchemy.exc import SQLAlchemyError

    from aiconn.sla.evidence import EvidenceError
    from aiconn.sla.verify import from_download, verify

    figures: LedgerFigures | None
    try:
        if args.file is not None:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
            document, sha256, figures = from_download(json.loads(text))
        else:
            document, sha256, figures = _evidence_from_ledger(args)
        outcome = verify(document, sha256, ledger=figures)
    except (OSError, ValueError, SQLAlchemyError) as err:  # EvidenceError is a ValueError
        kind = "evidence" if isinstance(err, EvidenceError) else "input"
        print(f"aiconn verify: cannot read the {kind}: {err}", file=sys.stderr)
        return 2
    print(outcome.render())
    return 0 if outcome.ok else 1


def _evidence_from_ledger(
    args: argparse.Namespace,
) -> tuple[dict[str, Any], str, LedgerFigures | None]:
    """The evidence of `--sla NAMESPACE/NAME` (or `--uid`) for `--period`, read from the ledger."""
    from aiconn.sla.timestamps import as_utc, parse_iso
    from aiconn.sla.verify import LedgerFigures
    from aiconn.store.ledger import Ledger

    if args.sla is None or args.period is None or "/" not in args.sla:
        raise ValueError("without FILE, give --ledger, --sla NAMESPACE/NAME and --period")
    namespace, name = args.sla.split("/", 1)
    text = f"{args.period}-01T00:00:00" if len(args.period) == 7 else args.period
    start = as_utc(parse_iso(text))
    ledger = Ledger.open(args.ledger)
    try:
        found = [
            e
            for e in ledger.evidence_by_name(namespace, name, start)
            if args.uid is None or e.sla_uid == args.uid
        ]
        if len(found) != 1:
            which = "no" if not found else f"{len(found)} SLAs' (choose one with --uid)"
            raise ValueError(f"{which} evidence of {args.sla} for the period starting {start}")
        stored = found[0]
        settlement = ledger.settlement(stored.sla_uid, stored.period)
    finally:
        ledger.close()
    if settlement is None:
        # Evidence is written in the settlement's own transaction: without its row there is
        # nothing to compare the evidence with, which is a fault of the ledger, not a match.
        raise ValueError(f"the ledger has evidence but no settlement of {args.sla} for {start}")
    return stored.document, stored.sha256, LedgerFigures.of(settlement)


def _export(args: argparse.Namespace) -> int:
    from aiconn.export import cli as export_cli

    return export_cli.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiconn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    crds = sub.add_parser("crds", help="render the CustomResourceDefinitions from the models")
    crds.add_argument("--dir", default="crds")
    _add_write_or_check(crds, "the CRDs in --dir")
    crds.set_defaults(func=_crds)

    rule = sub.add_parser(
        "prometheusrule",
        help="render the burn-rate PrometheusRule from the operator's own alert windows",
    )
    rule.add_argument(
        "--window",
        action="append",
        help="an SLA window to add alerts for, e.g. 1M or 1d (repeatable; default: 1M, 1w, 1d)",
    )
    rule.add_argument("--file", default="manifests/monitoring/prometheusrule.yaml")
    _add_write_or_check(rule, "--file")
    rule.set_defaults(func=_prometheusrule)

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
    plan.add_argument(
        "--offer",
        help="the AIInferenceOffer manifest the SLA buys under: its terms, prices and token plan",
    )
    plan.add_argument(
        "--at",
        type=_aware_time,
        help="with --offer: when the month starts (RFC 3339 with a time zone; default now)",
    )
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

    verify = sub.add_parser(
        "verify",
        help="recompute a settled period's credit from its evidence alone and compare"
        " (exit 0: match, 1: mismatch, 2: unreadable)",
    )
    verify.add_argument(
        "file", nargs="?", help="evidence downloaded from GET .../slas/<name>/evidence (- stdin)"
    )
    verify.add_argument(
        "--ledger",
        default=os.environ.get("AICONN_LEDGER_URL", "sqlite:///aiconn-ledger.db"),
        help="without FILE: the ledger's SQLAlchemy URL (default $AICONN_LEDGER_URL)",
    )
    verify.add_argument("--sla", help="without FILE: NAMESPACE/NAME of the SLA")
    verify.add_argument("--period", help="without FILE: the period's start (RFC 3339, or YYYY-MM)")
    verify.add_argument("--uid", help="the SLA's uid, when the name was used by several SLAs")
    verify.set_defaults(func=_verify)

    dev = sub.add_parser("dev", help="the whole stack on this machine (`dev up --demo`)")
    dev.add_argument("action", choices=["up", "down"])
    for flag, meaning in DEV_SWITCHES.items():
        dev.add_argument(flag, action="store_true", help=meaning)
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
