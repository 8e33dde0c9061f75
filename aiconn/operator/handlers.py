"""Kopf handlers: thin adapters that call the reconcile functions and write back what they say.

Kopf keeps a retrying handler's progress in annotations (not in status, whose schema is
strict); what it last handled of an SLA or a NetworkSlice is read from the status generation
their handlers write anyway (`aiconn.operator.diffbase`), of other kinds an annotation. Peering
is off (one replica, Recreate), and finalizers are added only where something must happen before
an object goes: AIInferenceSLAs (their open period is settled) and NetworkSlices realized in a 5G
core (their SliceProfile is removed there).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from datetime import UTC, datetime
from typing import Any

import kopf

import aiconn.operator.assurance
import aiconn.operator.loop
import aiconn.operator.topups  # registers the TopUp handler
from aiconn.inference.workload import COMPONENT, SLA_LABEL
from aiconn.kube import KubeError, NotFound
from aiconn.operator import leanwatch, scheduling, state
from aiconn.operator.conditions import condition, merge
from aiconn.operator.diffbase import CHANGE_HANDLERS, GenerationDiffBase, UnmarkedProgress
from aiconn.operator.failures import (
    NORMAL_REPEAT_AFTER_S,
    EventLimiter,
    already_said,
    backoff,
    describe,
    short,
    transient,
)
from aiconn.operator.health import display_update
from aiconn.operator.kubeapi import first_in_line
from aiconn.operator.offers import price_notice_problems
from aiconn.operator.reconcile import (
    Event,
    Outcome,
    inference_inputs,
    reconcile_sla,
    refresh_readiness,
    slice_ready,
)
from aiconn.operator.slaevents import involved, post_event_soon
from aiconn.operator.slicing import failed_status, realize_slice, release_slice
from aiconn.resources.v1alpha1.kinds import NETWORK_SLICE, OFFER, SLA, TIER
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.tier import InferenceTierSpec

log = logging.getLogger(__name__)

PROGRESS = UnmarkedProgress(prefix=GROUP)
"""Where Kopf keeps a handler's progress while it retries (annotations)."""

DIFFBASE = GenerationDiffBase(
    progress=PROGRESS,
    handlers=CHANGE_HANDLERS,
    fallback=kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-configuration"),
)
"""What Kopf compares an object with to tell a change: for SLAs and NetworkSlices the generation
their status says was handled, for the other kinds the spec it last handled (an annotation)."""

# Before any watch starts: the objects Kopf queues for the handlers lose managedFields.
leanwatch.install()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.standalone = True
    # The resources are known; scanning CRDs and namespaces would need cluster-wide RBAC.
    settings.scanning.disabled = True
    settings.persistence.progress_storage = PROGRESS
    settings.persistence.diffbase_storage = DIFFBASE
    # Only the operator's own Events are posted (slaevents): Kopf's log lines would add a
    # "Handler failed" Warning per retry and two "succeeded" Events per change.
    settings.posting.level = logging.CRITICAL + 1
    settings.watching.server_timeout = 300
    # No cap on the per-object workers: Kopf keeps an object's worker for `idle_timeout` (5 s)
    # after its last event, and a new object's first event waits for a free worker, so a cap of
    # 64 let a burst of SLAs (or of their pods) through at about 64 objects per 5 s.
    settings.queueing.worker_limit = None
    settings.execution.max_workers = 16
    state.open_runtime()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else the kubeconfig KUBECONFIG names at this moment
    (the client library's own default is frozen when it is imported)."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if info is not None and host:
        # As client-go's in-cluster config does: the Service's address from the environment,
        # so the operator needs no cluster DNS for `kubernetes.default.svc`.
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        address = f"[{host}]" if ":" in host else host
        info = dataclasses.replace(info, server=f"https://{address}:{port}")
    return info or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def close(**_: Any) -> None:
    _deployment_inputs.clear()
    _slice_inputs.clear()
    _offer_generations.clear()
    DIFFBASE.forget()
    await state.close_runtime()


# Index functions are coroutines: Kopf runs plain functions in a thread, on every event.
@kopf.index(GROUP, VERSION, TIER.plural)
async def tier_index(name: str, spec: kopf.Spec, **_: Any) -> dict[str, InferenceTierSpec] | None:
    try:
        return {name: InferenceTierSpec.model_validate(dict(spec))}
    except ValueError as err:
        log.warning("InferenceTier %s ignored: %s", name, err)
        return None


@kopf.index(GROUP, VERSION, SLA.plural)
async def sla_tier_index(
    namespace: str, name: str, status: kopf.Status, **_: Any
) -> dict[str | None, tuple[str, str]]:
    """SLAs by the tier they are placed on (None: not placed), for re-planning on tier edits."""
    return {(status.get("placement") or {}).get("tier"): (namespace, name)}


@kopf.index(GROUP, VERSION, SLA.plural)
async def sla_offer_index(
    namespace: str, name: str, spec: kopf.Spec, **_: Any
) -> dict[str | None, tuple[str, str]]:
    """SLAs by the offer they name, for re-applying an offer's terms when the offer changes."""
    return {spec.get("offer"): (namespace, name)}


def _tiers(tier_index: kopf.Index[str, InferenceTierSpec]) -> dict[str, InferenceTierSpec]:
    return {name: next(iter(store)) for name, store in tier_index.items()}


_events = EventLimiter()


def _post(body: Any, event: Event, said: list[Any]) -> None:
    """Post `event` unless a condition already says it or it was posted within the hour."""
    meta = body["metadata"]
    key = (meta.get("uid", ""), event.reason, event.message)
    window = NORMAL_REPEAT_AFTER_S if event.type == "Normal" else None
    if already_said(said, reason=event.reason, message=event.message):
        return
    if _events.allow(*key, repeat_after_s=window):
        post_event_soon(
            state.kube(),
            involved(body),
            type_=event.type,
            reason=event.reason,
            message=short(event.message),
        )


async def _write(outcome: Outcome, body: Any) -> dict[str, Any]:
    """Post the outcome's Events and write its status; returns the SLA as written."""
    meta, status = body["metadata"], body.get("status") or {}
    said = list(status.get("conditions") or [])
    for event in outcome.events:
        _post(body, event, said)
    # Written here rather than through Kopf's patch: the SLA loop owns Compliant in the same
    # list, so the conditions are merged into the version this reconcile saw (see update_status).
    # The summary is derived from the whole status: after a conflict it is derived again from
    # the status re-read, not from this reconcile's older view.
    seen = {
        "metadata": {"resourceVersion": meta.get("resourceVersion")},
        "spec": dict(body.get("spec") or {}),
        "status": {**status, "conditions": list(status.get("conditions") or [])},
    }
    return await state.kube().update_status(
        SLA.kind,
        meta["name"],
        meta["namespace"],
        fields=lambda current: _with_display(current, outcome),
        conditions=outcome.conditions,
        current=seen,
    )


def _with_display(body: Any, outcome: Outcome) -> dict[str, Any]:
    """The outcome's status fields plus the summary (and serving phase) `sla_seen` would write
    after them, in the same patch: one status write per reconcile, not two."""
    status = dict(body.get("status") or {})
    after = {
        **status,
        **outcome.status,
        "conditions": merge(status.get("conditions") or [], outcome.conditions),
    }
    display = display_update({"spec": body.get("spec") or {}, "status": after}) or {}
    return {**outcome.status, **display}


async def _reconcile(
    body: Any, tier_index: kopf.Index[str, InferenceTierSpec], *, retry: int = 0
) -> None:
    """Reconcile and write back; any failure becomes Ready=False/ReconcileFailed and one Event
    (a conflict or a throttled call gets two quiet retries first), retried with a backoff."""
    meta = body["metadata"]
    try:
        outcome = await reconcile_sla(state.kube(), body, _tiers(tier_index), state.settings())
        # The reconcile's own writes go before the watch events' refreshes and the Events, so
        # that it ends, and Kopf lets go of its SLA, once its children are written.
        with first_in_line():
            written = await _write(outcome, body)
            # A child may have become ready between its apply and the status write, and its
            # watch event found no status to refresh: look once more now that the status is
            # there (at the children; the SLA is the one just written).
            await refresh_readiness(state.kube(), meta["namespace"], meta["name"], sla=written)
    except Exception as err:
        message = describe(err)
        terminating = isinstance(err, KubeError) and _namespace_terminating(err)
        if not terminating and (not transient(err) or retry >= 2):
            await _report_failure(body, message)
        raise kopf.TemporaryError(message, delay=backoff(retry)) from err


async def _report_failure(body: Any, message: str) -> None:
    meta = body["metadata"]
    text = short(f"reconcile failed, retrying with a backoff: {message}")
    outcome = Outcome(
        status={"observedGeneration": meta.get("generation"), "phase": "Failed"},
        conditions=[
            condition("Ready", False, "ReconcileFailed", text, generation=meta.get("generation"))
        ],
        events=[Event("Warning", "ReconcileFailed", text)],
    )
    try:
        await _write(outcome, body)
    except KubeError as err:
        log.warning("status of %s/%s not written: %s", meta["namespace"], meta["name"], err)


@kopf.on.resume(GROUP, VERSION, SLA.plural)
@kopf.on.create(GROUP, VERSION, SLA.plural)
@kopf.on.update(GROUP, VERSION, SLA.plural, field="spec")
async def sla_changed(
    body: kopf.Body, tier_index: kopf.Index[str, InferenceTierSpec], retry: int, **_: Any
) -> None:
    await _reconcile(body, tier_index, retry=retry)


def awaits_first_reconcile(body: kopf.Body) -> bool:
    """Whether the SLA's create handler has yet to run (`DIFFBASE`: no `observedGeneration` in
    its status, which that handler's write brings, and no handled generation remembered; the
    assurance loop may write a status first). The event handlers of an event run before its
    change handlers, so that reconcile comes next and writes the summary in its own status patch
    (`_with_display`). A summary written here first would be a second status write for each new
    SLA, and its watch event would queue a second copy of the SLA behind that reconcile, which in
    a burst of new SLAs lasts as long as the burst (at 1000 SLAs, 1000 copies held at once)."""
    return DIFFBASE.awaits_create(body=body)


@kopf.on.event(GROUP, VERSION, SLA.plural)
async def sla_seen(body: kopf.Body, type: str | None, **_: Any) -> None:
    """Keep the phase (Ready, AtRisk, Breached) and the printed figures in step with whatever
    wrote the status last, the SLA loop included."""
    if (
        type == "DELETED"
        or body["metadata"].get("deletionTimestamp")
        or awaits_first_reconcile(body)
    ):
        return
    patch = display_update(body)
    if patch is not None:
        meta = body["metadata"]
        try:
            await state.kube().patch_status(SLA.kind, meta["name"], meta["namespace"], patch)
        except KubeError as err:
            if not isinstance(err, NotFound):
                log.warning(
                    "summary of %s/%s not written: %s", meta["namespace"], meta["name"], err
                )


def _sla_engine_running(**_: Any) -> bool:
    """Only an operator that measures and settles holds SLAs with a finalizer: with the SLA
    engine off nothing was measured or funded, nothing is owed, and a finalizer would only keep
    a deleted SLA (and its namespace) from going."""
    return aiconn.operator.loop.evaluator() is not None


@kopf.on.delete(GROUP, VERSION, SLA.plural, when=_sla_engine_running)
async def sla_deleted(body: kopf.Body, **_: Any) -> None:
    """Settle the deleted SLA's open period before its finalizer goes (see `retirement`)."""
    evaluator = aiconn.operator.loop.evaluator()
    if evaluator is None:
        return  # the SLA engine stopped since the finalizer was added: nothing to settle with
    # With the SLA engine, which an operator without Prometheus never loads.
    from aiconn.operator.retirement import NotYet, settle_deleted

    try:
        await settle_deleted(evaluator, body, now=datetime.now(UTC))
    except NotYet as wait:
        raise kopf.TemporaryError(str(wait), delay=wait.delay) from wait


@kopf.on.create(GROUP, VERSION, TIER.plural)
@kopf.on.update(GROUP, VERSION, TIER.plural, field="spec")
@kopf.on.delete(GROUP, VERSION, TIER.plural, optional=True)
async def tier_changed(
    name: str,
    retry: int,
    tier_index: kopf.Index[str, InferenceTierSpec],
    sla_tier_index: kopf.Index[str | None, tuple[str, str]],
    **_: Any,
) -> None:
    """Re-plan the SLAs on this tier and those placed nowhere: the edit may move or place them."""
    await _replan(
        {*sla_tier_index.get(name, []), *sla_tier_index.get(None, [])}, tier_index, retry=retry
    )


_offer_generations: dict[str, int | None] = {}
"""The generation of each offer as this operator last re-planned its SLAs for (or listed it)."""


def offer_moved(name: str, body: kopf.Body, type: str | None) -> bool:
    """Whether an offer's watch event may change what its SLAs are served under: a new or deleted
    offer, or another generation than the one last re-planned for (the API server bumps it on
    each change of the spec; labels and annotations leave it). An offer this operator lists for
    the first time (`type` None) is not: every SLA resumes at start, reconciled with the offers
    as they are then, and re-planning them here too would reconcile each a second time,
    concurrently with what happens to it meanwhile (its home going down before the re-plan read
    it placed it elsewhere with no failover record)."""
    if type == "DELETED":
        return True
    if name not in _offer_generations:
        return type is not None
    generation: int | None = body.get("metadata", {}).get("generation")
    return _offer_generations[name] != generation


def _offer_seen(name: str, body: kopf.Body, type: str | None) -> None:
    if type == "DELETED":
        _offer_generations.pop(name, None)
    else:
        _offer_generations[name] = body.get("metadata", {}).get("generation")


@kopf.on.event(GROUP, VERSION, OFFER.plural)
async def offer_changed(
    name: str,
    body: kopf.Body,
    type: str | None,
    tier_index: kopf.Index[str, InferenceTierSpec],
    sla_offer_index: kopf.Index[str | None, tuple[str, str]],
    **_: Any,
) -> None:
    """Re-apply an offer's terms to the SLAs naming it when it changed (`offer_moved`; a watch
    event handler: the provider's offers carry none of the operator's bookkeeping, and it needs
    no write access to them). A price change announced with too short a notice is never
    applied; a Warning Event on the offer names its field."""
    for problem in price_notice_problems(body):
        post_event_soon(
            state.kube(),
            involved(body),
            type_="Warning",
            reason="PriceNoticeTooShort",
            message=f"{problem.field}: {problem.message}",
        )
    if offer_moved(name, body, type):
        # Raises when an SLA could not be re-planned: the generation stays unrecorded, and the
        # offer's next event re-plans again.
        await _replan(set(sla_offer_index.get(name, [])), tier_index)
    _offer_seen(name, body, type)


async def _replan(
    affected: set[tuple[str, str]],
    tier_index: kopf.Index[str, InferenceTierSpec],
    *,
    retry: int = 0,
) -> None:
    kube = state.kube()
    failed = []
    # One SLA's failure must not hold back the others: re-plan each, then retry the failures.
    for namespace, sla_name in sorted(affected):
        body = await kube.get(SLA.kind, sla_name, namespace)
        if body is None or body["metadata"].get("deletionTimestamp"):
            continue
        try:
            await _reconcile(body, tier_index)
        except kopf.TemporaryError as err:
            cause = err.__cause__
            if isinstance(cause, KubeError) and _namespace_terminating(cause):
                continue
            failed.append(f"{namespace}/{sla_name}: {err}")
    if failed:
        raise kopf.TemporaryError(
            f"re-planning failed for {len(failed)} SLA(s): {failed[0]}", delay=backoff(retry)
        )


def _namespace_terminating(err: KubeError) -> bool:
    return err.status == 403 and "NamespaceTerminating" in str(err.body)


async def _refresh_owner(namespace: str | None, meta: kopf.Meta, **seen: Any) -> None:
    """Refresh the readiness of the SLAs owning a child; `seen`: the child as its watch event
    has it (`deployment=` or `slice_obj=`), not read again."""
    for ref in meta.get("ownerReferences", []):
        if ref.get("kind") == SLA.kind and namespace:
            try:
                await refresh_readiness(state.kube(), namespace, ref["name"], **seen)
            except KubeError as err:
                if not isinstance(err, NotFound) and not _namespace_terminating(err):
                    raise


# Watch events, not field handlers: Kopf's diff-base leaves status out, so a handler on a status
# field never fires. Each event re-reads the owner and writes only when something changed.
# A Deployment's status changes several times as its pods start (conditions, counts of
# replicas); only a change of what readiness reads of it (`inference_inputs`) re-reads its SLA.
class _Recent(collections.OrderedDict[str, tuple[Any, ...]]):
    """A map that keeps its `bound` most recently written entries. A Deployment whose DELETED
    event was missed (deleted while the watch was re-listing) would otherwise stay for good;
    forgetting an entry costs no more than one SLA re-read at its next event."""

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound

    def __setitem__(self, key: str, value: tuple[Any, ...]) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.bound:
            self.popitem(last=False)


_deployment_inputs: dict[str, tuple[Any, ...]] = _Recent(bound=16_384)
"""Each inference Deployment's readiness inputs as last refreshed, by uid (the most recent)."""


@kopf.on.event("apps", "v1", "deployments", labels={SLA_LABEL: kopf.PRESENT})
async def deployment_seen(
    namespace: str | None, meta: kopf.Meta, body: kopf.Body, type: str | None, **_: Any
) -> None:
    # The Deployment as this event has it: no need to read it back.
    inputs = inference_inputs(body)
    await _refresh_if_changed(_deployment_inputs, inputs, namespace, meta, type, deployment=body)


async def _refresh_if_changed(
    refreshed: dict[str, tuple[Any, ...]],
    inputs: tuple[Any, ...],
    namespace: str | None,
    meta: kopf.Meta,
    type: str | None,
    **seen: Any,
) -> None:
    """Refresh the owning SLA's readiness for a child's event, unless the child's readiness
    `inputs` are those it was last refreshed with (`refreshed`, by uid); a deleted child always
    refreshes it (reading the children afresh) and is forgotten. `seen`: the child as the event
    has it, for `_refresh_owner`."""
    uid = meta.get("uid") or ""
    if type == "DELETED":
        refreshed.pop(uid, None)
        await _refresh_owner(namespace, meta)
        return
    if refreshed.get(uid) == inputs:
        return
    await _refresh_owner(namespace, meta, **seen)
    refreshed[uid] = inputs  # only once refreshed: a failed refresh is tried again


# A raw event handler: Kopf keeps no bookkeeping on pods, so watching them adds no writes.
@kopf.on.event(
    "v1", "pods", labels={SLA_LABEL: kopf.PRESENT, "app.kubernetes.io/component": COMPONENT}
)
async def inference_pod_event(
    type: str, namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> None:
    if type == "DELETED":
        return
    await scheduling.pod_changed(state.kube(), namespace, labels[SLA_LABEL], body)


@kopf.on.resume(GROUP, VERSION, NETWORK_SLICE.plural)
@kopf.on.create(GROUP, VERSION, NETWORK_SLICE.plural)
@kopf.on.update(GROUP, VERSION, NETWORK_SLICE.plural, field="spec")
async def slice_changed(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    previous = (body.get("status") or {}).get("conditions") or []
    try:
        status = await realize_slice(state.kube(), body, state.settings())
    except Exception as err:
        if transient(err) and retry < 2:
            raise kopf.TemporaryError(describe(err), delay=backoff(retry)) from err
        status = failed_status(body, describe(err))
    ready = next(c for c in status["conditions"] if c["type"] == "SliceReady")
    ok = ready["status"] == "True"
    _post(
        body,
        Event("Normal" if ok else "Warning", ready["reason"], ready["message"]),
        list(previous),
    )
    if ok:
        patch.status.update(status)
        return
    # Written now, not through `patch`, so the failure is visible while Kopf retries later.
    meta = body["metadata"]
    await state.kube().patch_status(NETWORK_SLICE.kind, meta["name"], meta["namespace"], status)
    raise kopf.TemporaryError(ready["message"], delay=backoff(retry))


_slice_inputs: dict[str, tuple[Any, ...]] = _Recent(bound=16_384)
"""Each NetworkSlice's readiness input (its SliceReady condition) as last refreshed, by uid."""


@kopf.on.event(GROUP, VERSION, NETWORK_SLICE.plural)
async def slice_seen(
    namespace: str | None, meta: kopf.Meta, body: kopf.Body, type: str | None, **_: Any
) -> None:
    """Refresh the owning SLA's readiness when what it reads of the slice changed: a slice's own
    apply, Kopf's annotations and its realization each bring an event, and only the SliceReady
    condition (`slice_ready`) moves the SLA (at 1000 SLAs, 3 of the 5 SLA reads per SLA were
    refreshes for slice events that changed nothing)."""
    await _refresh_if_changed(
        _slice_inputs, slice_ready(body), namespace, meta, type, slice_obj=body
    )


@kopf.on.delete(
    GROUP, VERSION, NETWORK_SLICE.plural, when=lambda spec, **_: spec.get("backend") == "nsmf"
)
async def slice_deleted(body: kopf.Body, **_: Any) -> None:
    await release_slice(body, state.settings())
