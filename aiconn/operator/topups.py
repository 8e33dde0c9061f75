"""The kubectl-native top-up: each TopUp object becomes exactly one ledger transfer.

A TopUp (crds/topups.yaml) is created by billing staff with `create` on topups.aiconn.io, the
right the reporting API's top-ups check too; the admission policy
manifests/policy/topup-requested-by.yaml makes `spec.requestedBy` the creator's own user name.
The operator posts it with `aiconn.sla.topups.top_up`, the object's uid as the idempotency key:
a replayed watch event, a restart between the transfer and the status write, or a second
operator pass finds the stored transfer and pays nothing more. "When" is the object's
creationTimestamp, which only the API server writes.

The handler reacts to watch events and writes only the TopUp's status (no Kopf bookkeeping on
the object: the operator may not patch TopUps). The outcome is always in the status and an
Event, never only a log line: phase Applied with the transfer id, or phase Refused with the
Applied condition naming the field (an unknown tenant, an amount the ledger refuses). A ledger
or API failure sets Applied=False/Retrying and bumps `status.attempts` after a growing pause;
that status write is itself the watch event that retries.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

import kopf
from pydantic import ValidationError

import aiconn.operator.loop
from aiconn.kube import KubeError
from aiconn.operator import state
from aiconn.operator.conditions import condition, merge
from aiconn.operator.failures import backoff, describe, short
from aiconn.operator.reconcile import Event
from aiconn.operator.slaevents import involved, post_event
from aiconn.resources.v1alpha1.kinds import SLA, TOPUP
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.topup import TopUpSpec
from aiconn.sla.timestamps import iso_seconds, parse_iso
from aiconn.sla.wallets import wallet_owner

if TYPE_CHECKING:
    from aiconn.store.ledger import Ledger

log = logging.getLogger(__name__)

APPLIED = "Applied"
REFUSED = "Refused"
DONE = (APPLIED, REFUSED)

_own_ledger: Ledger | None = None
_opening = threading.Lock()


async def _refuse(kube: Any, body: Any, reason: str, message: str) -> list[Event]:
    meta = body["metadata"]
    previous = (body.get("status") or {}).get("conditions") or []
    cond = condition(APPLIED, False, reason, message, generation=meta.get("generation"))
    await kube.patch_status(
        TOPUP.kind,
        meta["name"],
        meta["namespace"],
        {"phase": REFUSED, "conditions": merge(previous, [cond])},
    )
    return [Event("Warning", reason, message)]


async def apply_topup(kube: Any, ledger: Ledger, body: Any) -> list[Event]:
    """Credit the wallet once for this TopUp and write its status; the Events to post.
    A TopUp whose status already says Applied or Refused is left alone. Raises on failures
    worth retrying (the ledger or the API server unreachable)."""
    # The posting rules are loaded with the first TopUp, not with the operator.
    from aiconn.sla.topups import TopUpConflict, top_up

    meta, status = body["metadata"], body.get("status") or {}
    if status.get("phase") in DONE:
        return []
    namespace = meta["namespace"]
    try:
        spec = TopUpSpec.model_validate(dict(body.get("spec") or {}))
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return await _refuse(kube, body, "SpecInvalid", f"spec.{field}: {first['msg']}")
    if spec.tenant and spec.tenant != namespace:
        slas = await kube.list(SLA.kind, namespace)
        if not any((s.get("spec") or {}).get("tenant") == spec.tenant for s in slas):
            return await _refuse(
                kube,
                body,
                "TenantUnknown",
                f"spec.tenant: no AIInferenceSLA in namespace {namespace} names tenant"
                f" {spec.tenant!r}; nothing was credited (create a new TopUp with a known tenant)",
            )
    wallet = wallet_owner(namespace, spec.tenant)
    try:
        transfer = await asyncio.to_thread(
            top_up,
            ledger,
            tenant=wallet,
            namespace=namespace,
            tokens=spec.tokens,
            idempotency_key=meta["uid"],
            by=spec.requested_by,
            why=spec.reason,
            at=parse_iso(meta["creationTimestamp"]),
        )
    except (TopUpConflict, ValueError) as err:
        return await _refuse(kube, body, "AmountRefused", f"spec.tokens: {err}")
    message = (
        f"credited {transfer.amount} tokens to wallet {wallet} (ledger transfer {transfer.id}),"
        f" asked by {spec.requested_by}: {spec.reason}"
    )
    cond = condition(APPLIED, True, "TransferPosted", message, generation=meta.get("generation"))
    await kube.patch_status(
        TOPUP.kind,
        meta["name"],
        namespace,
        {
            "phase": APPLIED,
            "transferId": transfer.id,
            "wallet": wallet,
            "appliedAt": iso_seconds(transfer.created_at),
            "conditions": merge(status.get("conditions") or [], [cond]),
        },
    )
    return [Event("Normal", "TopUpApplied", message)]


async def retry_later(kube: Any, body: Any, err: BaseException) -> list[Event]:
    """Record a failed attempt after a growing pause; the status write triggers the retry."""
    meta, status = body["metadata"], body.get("status") or {}
    attempts = int(status.get("attempts") or 0) + 1
    message = short(f"not applied yet, retrying: {describe(err)}")
    await asyncio.sleep(backoff(attempts - 1))
    cond = condition(APPLIED, False, "Retrying", message, generation=meta.get("generation"))
    await kube.patch_status(
        TOPUP.kind,
        meta["name"],
        meta["namespace"],
        {"attempts": attempts, "conditions": merge(status.get("conditions") or [], [cond])},
    )
    return [Event("Warning", "TopUpNotApplied", message)] if attempts == 1 else []


def _ledger() -> Ledger:
    """The SLA loop's ledger when it runs, else one opened for top-ups alone."""
    from aiconn.store.ledger import Ledger

    global _own_ledger
    shared = aiconn.operator.loop.ledger()
    if shared is not None:
        return shared
    with _opening:
        if _own_ledger is None:
            _own_ledger = Ledger.open(state.settings().ledger_url)
        return _own_ledger


@kopf.on.event(GROUP, VERSION, TOPUP.plural)
async def topup_seen(body: kopf.Body, type: str | None, **_: Any) -> None:
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        return
    if (body.get("status") or {}).get("phase") in DONE:
        return
    kube = state.kube()
    try:
        ledger = await asyncio.to_thread(_ledger)
        events = await apply_topup(kube, ledger, body)
    except Exception as err:
        try:
            events = await retry_later(kube, body, err)
        except KubeError as status_err:
            meta = body["metadata"]
            log.warning("TopUp %s/%s: %s", meta["namespace"], meta["name"], status_err)
            return
    for event in events:
        await post_event(
            kube,
            involved(body),
            type_=event.type,
            reason=event.reason,
            message=short(event.message),
        )


@kopf.on.cleanup()
async def close_ledger(**_: Any) -> None:
    global _own_ledger
    if _own_ledger is not None:
        await asyncio.to_thread(_own_ledger.close)
        _own_ledger = None
