"""Exports for a tenant's billing and SLO tools, in the namespace the caller may read.

`/usage/cloudevents` pages through the ledger's transfers and settlements of the namespace as
CloudEvents (`aiconn.export.cloudevents`): a JSON array (CloudEvents' batch format) or JSON lines,
with the cursor to continue from in the `Next-Cursor` header. `/slas/{name}/slo` answers the SLA's
objectives as OpenSLO v1 or a Sloth spec (`aiconn.export.openslo`, `aiconn.export.sloth`).
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import yaml
from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response

from aiconn.api.deps import Parts, ReadableNamespace, ReadableSLA, page_size
from aiconn.api.routes.responses import TENANT, problem
from aiconn.export.cloudevents import START, BadCursor, Cursor, export_page
from aiconn.export.openslo import openslo_documents
from aiconn.export.sloth import UnsupportedWindow, sloth_spec

router = APIRouter(prefix="/v1/namespaces/{namespace}", tags=["export"], responses=TENANT)

BATCH_MEDIA_TYPE = "application/cloudevents-batch+json"
LINES_MEDIA_TYPE = "application/x-ndjson"
YAML_MEDIA_TYPE = "application/yaml"
NEXT_CURSOR = "Next-Cursor"
MORE = "More-Events"


@router.get(
    "/usage/cloudevents",
    summary="The namespace's ledger transfers and settlements as CloudEvents, oldest first",
    response_class=Response,
    responses={
        200: {
            "description": f"Events; the `{NEXT_CURSOR}` header continues after them.",
            "content": {BATCH_MEDIA_TYPE: {}, LINES_MEDIA_TYPE: {}},
            "headers": {
                NEXT_CURSOR: {
                    "description": "Pass as `after` for the events after these.",
                    "schema": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"},
                },
                MORE: {
                    "description": "Whether more events were there than this page held.",
                    "schema": {"type": "string", "enum": ["true", "false"]},
                },
            },
        }
    },
)
def usage_events(
    namespace: ReadableNamespace,
    parts: Parts,
    after: Annotated[
        str,
        Query(max_length=40, description="`Next-Cursor` of the previous page; 0.0 from the start."),
    ] = START,
    limit: Annotated[int | None, Query(ge=1, description="Events per page.")] = None,
    fmt: Annotated[
        Literal["json", "jsonl"],
        Query(alias="format", description="json: one array (batch mode); jsonl: one per line."),
    ] = "json",
) -> Response:
    size = page_size(parts.settings, limit, what="events", follow=NEXT_CURSOR)
    try:
        cursor = Cursor.parse(after)
    except BadCursor as err:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"query parameter 'after': {err}",
        ) from err
    page = export_page(parts.ledger, namespace=namespace, cursor=cursor, limit=size)
    headers = {NEXT_CURSOR: str(page.next_cursor), MORE: "true" if page.more else "false"}
    if fmt == "jsonl":
        body = "".join(json.dumps(e, sort_keys=True) + "\n" for e in page.events)
        return Response(content=body, media_type=LINES_MEDIA_TYPE, headers=headers)
    return Response(
        content=json.dumps(page.events, sort_keys=True),
        media_type=BATCH_MEDIA_TYPE,
        headers=headers,
    )


@router.get(
    "/slas/{name}/slo",
    summary="The SLA's objectives as OpenSLO v1 documents or a Sloth prometheus/v1 spec",
    response_class=Response,
    responses={
        200: {"content": {YAML_MEDIA_TYPE: {}}},
        400: problem("Sloth has no period for the SLA's window."),
    },
)
def slo(
    sla: ReadableSLA,
    fmt: Annotated[Literal["openslo", "sloth"], Query(alias="format")] = "openslo",
) -> Response:
    if fmt == "openslo":
        docs = openslo_documents(namespace=sla.namespace, name=sla.name, spec=sla.spec)
        body = yaml.safe_dump_all(docs, sort_keys=False)
    else:
        try:
            spec = sloth_spec(namespace=sla.namespace, name=sla.name, spec=sla.spec)
        except UnsupportedWindow as err:
            raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=str(err)) from err
        body = yaml.safe_dump(spec, sort_keys=False)
    return Response(content=body, media_type=YAML_MEDIA_TYPE)
