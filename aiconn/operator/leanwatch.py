"""Kopf's watch events reach the handlers without `metadata.managedFields`.

Kopf gives every watched object a worker of its own and hands it each watch event's whole
object: the event being handled, and every event of that object that arrives meanwhile, queued
in full behind it until the handler returns. In a burst of SLAs each create handler runs for as
long as the burst (all reconciles advance together on the API threads), and the SLA's own status
writes queue a second copy of its body behind the first. `managedFields`, the field-ownership
record of every writer (the operator's applies and status patches, Kopf's annotations, the
controller-manager's status), are about half of each copy: measured from the API server at 1000
SLAs, 15.6 of 32 KB of Python objects for an SLA, 43 of 82 KB for its Deployment. No handler
reads them (Kopf keeps its bookkeeping in annotations), as no caller of `aiconn.kube` does: the
adapter drops them from every answer.

Kopf has no setting for this. Its reactor calls `kopf._cogs.clients.watching.infinite_watch`
through the module attribute, which is the one seam: `install` wraps that function so each
event's object loses `managedFields` as it leaves the stream, before Kopf queues it. If a Kopf
release moves the seam, `install` raises and the operator does not start, rather than silently
holding twice the memory.

Two kinds are watched for one raw event handler each, which reads a small part of them:
Deployments (the readiness refresh: metadata, `spec.replicas` and the status, see
`reconcile.inference_inputs`) and inference pods (the scheduler's verdict in their status
conditions). Their events carry only `VIEWS`' part: the pod template, most of either object,
never reaches Kopf's queues. Kopf keeps no bookkeeping on these kinds (no change handlers, so no
diff-base annotation to compare), so nothing of Kopf's reads the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from aiconn.kube import without_managed_fields

_MARK = "_aiconn_without_managed_fields"


def metadata_and_status(obj: dict[str, Any]) -> dict[str, Any]:
    """An object's identity, metadata and status; its spec left behind."""
    return {key: obj[key] for key in ("apiVersion", "kind", "metadata", "status") if key in obj}


def deployment_view(deployment: dict[str, Any]) -> dict[str, Any]:
    """What the readiness refresh reads of a Deployment (`reconcile.inference_inputs`): its
    metadata, status and `spec.replicas`."""
    view = metadata_and_status(deployment)
    spec = deployment.get("spec")
    if isinstance(spec, dict) and "replicas" in spec:
        view["spec"] = {"replicas": spec["replicas"]}
    return view


VIEWS: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("apps", "deployments"): deployment_view,
    ("", "pods"): metadata_and_status,
}
"""The part of an object of each (API group, plural) that its handlers read; other kinds come
whole (less managedFields)."""


def lean_events(watch: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    """`watch` (an async generator of watch events and Kopf's bookmarks) with every event's
    object less `metadata.managedFields`, cut to its `VIEWS` part where its kind has one;
    anything else passes as it is."""

    async def lean(**kwargs: Any) -> AsyncIterator[Any]:
        resource = kwargs.get("resource")
        view = VIEWS.get((getattr(resource, "group", ""), getattr(resource, "plural", "")))
        async for event in watch(**kwargs):
            if isinstance(event, dict) and isinstance(event.get("object"), dict):
                without_managed_fields(event["object"])
                if view is not None:
                    event["object"] = view(event["object"])
            yield event

    setattr(lean, _MARK, True)
    return lean


def install() -> None:
    """Wrap Kopf's watch stream once (idempotent). Raises RuntimeError when the seam is gone."""
    from kopf._cogs.clients import watching
    from kopf._core.reactor import queueing

    current = getattr(watching, "infinite_watch", None)
    if current is None or getattr(queueing, "watching", None) is not watching:
        raise RuntimeError(
            "kopf's reactor no longer watches through kopf._cogs.clients.watching.infinite_watch;"
            " aiconn.operator.leanwatch needs updating for this Kopf release"
        )
    if not getattr(current, _MARK, False):
        watching.infinite_watch = lean_events(current)
