"""`aiconn export`: the provider's side of the exports, without a cluster.

`cloudevents` prints the ledger's events as JSON lines (all namespaces, or one) and the cursor to
continue from on stderr; `openslo FILE` and `sloth FILE` print an SLA manifest's SLOs as YAML.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

MAX_LIMIT = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `export` subcommands."""
    sub = parser.add_subparsers(dest="format", required=True)
    events = sub.add_parser("cloudevents", help="ledger transfers and settlements as JSON lines")
    events.add_argument("--ledger", required=True, help="the ledger's SQLAlchemy URL")
    events.add_argument("--namespace", help="only this namespace's events")
    events.add_argument("--after", default="0.0", help="the cursor a previous export printed")
    events.add_argument("--limit", type=int, default=1000, help=f"events (1..{MAX_LIMIT})")
    for name, what in (
        ("openslo", "OpenSLO v1 documents"),
        ("sloth", "a Sloth prometheus/v1 spec"),
    ):
        slo = sub.add_parser(name, help=f"an AIInferenceSLA manifest's objectives as {what}")
        slo.add_argument("file", help="an AIInferenceSLA manifest")
        slo.add_argument(
            "--namespace",
            help="the SLA's namespace (default: the manifest's metadata.namespace, else default)",
        )


def run(args: argparse.Namespace) -> int:
    """Exit 0, or 2 on bad input (the field named on stderr)."""
    if args.format == "cloudevents":
        return _cloudevents(args)
    return _slo(args)


def _cloudevents(args: argparse.Namespace) -> int:
    from aiconn.export.cloudevents import BadCursor, Cursor, export_page
    from aiconn.store.ledger import Ledger

    if not 1 <= args.limit <= MAX_LIMIT:
        print(f"aiconn export: --limit must be 1..{MAX_LIMIT}", file=sys.stderr)
        return 2
    try:
        cursor = Cursor.parse(args.after)
    except BadCursor as err:
        print(f"aiconn export: --after: {err}", file=sys.stderr)
        return 2
    ledger = Ledger.open(args.ledger)
    try:
        page = export_page(ledger, namespace=args.namespace, cursor=cursor, limit=args.limit)
    finally:
        ledger.close()
    for event in page.events:
        print(json.dumps(event, sort_keys=True))
    print(f"next cursor: {page.next_cursor}{' (more)' if page.more else ''}", file=sys.stderr)
    return 0


def _namespace(path: Path, given: str | None) -> str:
    if given:
        return given
    for doc in yaml.safe_load_all(path.read_text()):
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("namespace"), str):
            return str(meta["namespace"])
    return "default"


def _slo(args: argparse.Namespace) -> int:
    from aiconn import planning
    from aiconn.export.openslo import openslo_documents
    from aiconn.export.sloth import UnsupportedWindow, sloth_period, sloth_spec

    path = Path(args.file)
    try:
        name, spec = planning.load_sla(path)
    except planning.ManifestError as err:
        for field, reason in err.problems:
            print(f"aiconn export: {err.path}: {field}: {reason}", file=sys.stderr)
        return 2
    namespace = _namespace(path, args.namespace)
    if args.format == "openslo":
        docs = openslo_documents(namespace=namespace, name=name, spec=spec)
        print(yaml.safe_dump_all(docs, sort_keys=False), end="")
        return 0
    try:
        period = sloth_period(spec.objectives.window)
    except UnsupportedWindow as err:
        print(f"aiconn export: {path}: {err}", file=sys.stderr)
        return 2
    print(f"# sloth generate --default-slo-period {period}")
    print(yaml.safe_dump(sloth_spec(namespace=namespace, name=name, spec=spec), sort_keys=False))
    return 0
