"""The operator's one Event poster: every Event it writes (placement, slices, burn-rate alerts,
settlements, top-ups, offers) is a core/v1 Event built here, its message cut to the API's limit,
from the component `aiconn-operator`.

`post_event` writes it and returns; `post_event_soon` hands it to a task, for handlers that must
not wait on it (a reconcile's latency is the SLA's time to placement). Failing to post one never
fails the caller: it is logged and the work goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiconn.kube import KINDS, KubeError
from aiconn.operator.conditions import now_iso
from aiconn.operator.kubeapi import KubeApi, not_first_in_line
from aiconn.resources.v1alpha1.meta import API_VERSION

log = logging.getLogger(__name__)

COMPONENT = "aiconn-operator"
MAX_EVENT_MESSAGE = 1024
CLUSTER_EVENTS_NAMESPACE = "default"
"""Where Events on a cluster-scoped object (an offer, a tier) go, as kubectl looks for them."""

_in_flight: set[asyncio.Task[None]] = set()


def involved(body: Mapping[str, Any]) -> dict[str, str]:
    """The `involvedObject` of an Event on `body` (an object as the API server wrote it)."""
    meta = body["metadata"]
    found = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
    }
    return {k: v for k, v in found.items() if v}


def event_body(obj: Mapping[str, str], *, type_: str, reason: str, message: str) -> dict[str, Any]:
    """The core/v1 Event on the object `obj` (an `involvedObject`)."""
    stamp = now_iso()
    namespace = obj.get("namespace") or CLUSTER_EVENTS_NAMESPACE
    return {
        "metadata": {"generateName": f"{obj['name']}.", "namespace": namespace},
        "involvedObject": dict(obj),
        "type": type_,
        "reason": reason,
        "message": message[:MAX_EVENT_MESSAGE],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
    }


async def post_event(
    kube: KubeApi, obj: Mapping[str, str], *, type_: str, reason: str, message: str
) -> None:
    """Post an Event on `obj` (an `involvedObject`, see `involved`); a refusal is logged."""
    body = event_body(obj, type_=type_, reason=reason, message=message)
    namespace = body["metadata"]["namespace"]
    try:
        await kube.call("POST", KINDS["Event"].path(namespace), body=body)
    except KubeError as err:
        where = "/".join(filter(None, (obj.get("namespace"), obj["name"])))
        log.warning("Event %s on %s not posted: %s", reason, where, err)


def post_event_soon(
    kube: KubeApi, obj: Mapping[str, str], *, type_: str, reason: str, message: str
) -> None:
    """`post_event` in a task of the running loop, held until it is done."""
    # In a context of its own: an Event never goes `first_in_line`, whoever posts it.
    task = asyncio.get_running_loop().create_task(
        post_event(kube, obj, type_=type_, reason=reason, message=message),
        context=not_first_in_line(),
    )
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)


async def post_sla_event(
    kube: KubeApi,
    *,
    kind: str,
    name: str,
    namespace: str,
    uid: str,
    type_: str,
    reason: str,
    message: str,
) -> None:
    """An Event on the object `kind` `namespace/name` of aiconn's API group (an SLA), from a
    fleet-wide pass that has its name and uid rather than its body."""
    obj = {"apiVersion": API_VERSION, "kind": kind, "name": name, "namespace": namespace}
    await post_event(kube, obj | {"uid": uid}, type_=type_, reason=reason, message=message)
