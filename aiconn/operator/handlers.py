"""Kopf handlers: thin adapters that call the reconcile functions and write back what they say.

Kopf keeps its own bookkeeping in annotations (not in status, whose schema is strict), peering
is off (one replica, Recreate), and finalizers are added only where something must happen before
an object goes: AIInferenceSLAs (their open period is settled) and NetworkSlices realized in a 5G
core (their SliceProfile is removed there).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

import aiconn.operator.loop
from aiconn.crd import GROUP, VERSION
from aiconn.inference.tier import InferenceTierSpec
from aiconn.inference.workload import SLA_LABEL
from aiconn.operator import state
from aiconn.operator.reconcile import Outcome, reconcile_sla, refresh_readiness
from aiconn.operator.retirement import NotYet, settle_deleted
from aiconn.operator.slicing import realize_slice, release_slice

log = logging.getLogger(__name__)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.standalone = True
    # The resources are known; scanning CRDs and namespaces would need cluster-wide RBAC.
    settings.scanning.disabled = True
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.queueing.worker_limit = 64
    settings.execution.max_workers = 16
    state.open_runtime()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else the kubeconfig KUBECONFIG names at this moment
    (the client library's own default is frozen when it is imported)."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def close(**_: Any) -> None:
    await state.close_runtime()


@kopf.index(GROUP, VERSION, "inferencetiers")
def tier_index(name: str, spec: kopf.Spec, **_: Any) -> dict[str, InferenceTierSpec] | None:
    try:
        return {name: InferenceTierSpec.model_validate(dict(spec))}
    except ValueError as err:
        log.warning("InferenceTier %s ignored: %s", name, err)
        return None


@kopf.index(GROUP, VERSION, "aiinferenceslas")
def sla_tier_index(
    namespace: str, name: str, status: kopf.Status, **_: Any
) -> dict[str | None, tuple[str, str]]:
    """SLAs by the tier they are placed on (None: not placed), for re-planning on tier edits."""
    return {(status.get("placement") or {}).get("tier"): (namespace, name)}


@kopf.index(GROUP, VERSION, "aiinferenceslas")
def sla_offer_index(
    namespace: str, name: str, spec: kopf.Spec, **_: Any
) -> dict[str | None, tuple[str, str]]:
    """SLAs by the offer they name, for re-applying an offer's terms when the offer changes."""
    return {spec.get("offer"): (namespace, name)}


def _tiers(tier_index: kopf.Index[str, InferenceTierSpec]) -> dict[str, InferenceTierSpec]:
    return {name: next(iter(store)) for name, store in tier_index.items()}


async def _write(outcome: Outcome, body: Any) -> None:
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    meta, status = body["metadata"], body.get("status") or {}
    # Written here rather than through Kopf's patch: the SLA loop owns Compliant in the same
    # list, so the conditions are merged into the version this reconcile saw (see update_status).
    seen = {
        "metadata": {"resourceVersion": meta.get("resourceVersion")},
        "status": {"conditions": list(status.get("conditions") or [])},
    }
    await state.kube().update_status(
        "AIInferenceSLA",
        meta["name"],
        meta["namespace"],
        fields=outcome.status,
        conditions=outcome.conditions,
        current=seen,
    )


async def _reconcile(body: Any, tier_index: kopf.Index[str, InferenceTierSpec]) -> None:
    try:
        outcome = await reconcile_sla(state.kube(), body, _tiers(tier_index), state.settings())
        await _write(outcome, body)
    except ApiException as err:
        if err.status in (409, 429) or err.status >= 500:
            raise kopf.TemporaryError(
                f"API server said {err.status}: {err.reason}", delay=5
            ) from err
        raise


@kopf.on.resume(GROUP, VERSION, "aiinferenceslas")
@kopf.on.create(GROUP, VERSION, "aiinferenceslas")
@kopf.on.update(GROUP, VERSION, "aiinferenceslas", field="spec")
async def sla_changed(
    body: kopf.Body, tier_index: kopf.Index[str, InferenceTierSpec], **_: Any
) -> None:
    await _reconcile(body, tier_index)


@kopf.on.delete(GROUP, VERSION, "aiinferenceslas")
async def sla_deleted(body: kopf.Body, **_: Any) -> None:
    """Settle the deleted SLA's open period before its finalizer goes (see `retirement`)."""
    evaluator = aiconn.operator.loop.evaluator()
    if evaluator is None:
        return  # SLA engine off: nothing was measured or funded, nothing is owed.
    try:
        await settle_deleted(evaluator, body, now=datetime.now(UTC))
    except NotYet as wait:
        raise kopf.TemporaryError(str(wait), delay=wait.delay) from wait


@kopf.on.create(GROUP, VERSION, "inferencetiers")
@kopf.on.update(GROUP, VERSION, "inferencetiers", field="spec")
@kopf.on.delete(GROUP, VERSION, "inferencetiers", optional=True)
async def tier_changed(
    name: str,
    tier_index: kopf.Index[str, InferenceTierSpec],
    sla_tier_index: kopf.Index[str | None, tuple[str, str]],
    **_: Any,
) -> None:
    """Re-plan the SLAs on this tier and those placed nowhere: the edit may move or place them."""
    await _replan({*sla_tier_index.get(name, []), *sla_tier_index.get(None, [])}, tier_index)


@kopf.on.event(GROUP, VERSION, "aiinferenceoffers")
async def offer_changed(
    name: str,
    tier_index: kopf.Index[str, InferenceTierSpec],
    sla_offer_index: kopf.Index[str | None, tuple[str, str]],
    **_: Any,
) -> None:
    """Re-apply an offer's terms to the SLAs naming it (a watch event handler: the provider's
    offers carry none of the operator's bookkeeping, and it needs no write access to them)."""
    await _replan(set(sla_offer_index.get(name, [])), tier_index)


async def _replan(
    affected: set[tuple[str, str]], tier_index: kopf.Index[str, InferenceTierSpec]
) -> None:
    kube = state.kube()
    failed = []
    # One SLA's failure must not hold back the others: re-plan each, then retry the failures.
    for namespace, sla_name in sorted(affected):
        body = await kube.get("AIInferenceSLA", sla_name, namespace)
        if body is None or body["metadata"].get("deletionTimestamp"):
            continue
        try:
            await _reconcile(body, tier_index)
        except (ApiException, kopf.TemporaryError) as err:
            if isinstance(err, ApiException) and _namespace_terminating(err):
                continue
            failed.append(f"{namespace}/{sla_name}: {err}")
    if failed:
        raise kopf.TemporaryError(
            f"re-planning failed for {len(failed)} SLA(s): {failed[0]}", delay=10
        )


def _namespace_terminating(err: ApiException) -> bool:
    return err.status == 403 and "NamespaceTerminating" in str(err.body)


@kopf.on.field(
    "apps", "v1", "deployments", field="status.availableReplicas", labels={SLA_LABEL: kopf.PRESENT}
)
async def deployment_availability_changed(
    namespace: str, labels: kopf.Labels, meta: kopf.Meta, **_: Any
) -> None:
    for ref in meta.get("ownerReferences", []):
        if ref.get("kind") == "AIInferenceSLA":
            await refresh_readiness(state.kube(), namespace, ref["name"])


@kopf.on.resume(GROUP, VERSION, "networkslices")
@kopf.on.create(GROUP, VERSION, "networkslices")
@kopf.on.update(GROUP, VERSION, "networkslices", field="spec")
async def slice_changed(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    status = await realize_slice(state.kube(), body, state.settings())
    ready = next(c for c in status["conditions"] if c["type"] == "SliceReady")
    ok = ready["status"] == "True"
    kopf.event(
        body,
        type="Normal" if ok else "Warning",
        reason="SliceReady" if ok else "SliceFailed",
        message=ready["message"],
    )
    if ok:
        patch.status.update(status)
        return
    # Written now, not through `patch`, so the failure is visible while Kopf retries later.
    meta = body["metadata"]
    await state.kube().patch_status("NetworkSlice", meta["name"], meta["namespace"], status)
    raise kopf.TemporaryError(ready["message"], delay=30)


@kopf.on.field(GROUP, VERSION, "networkslices", field="status.phase")
async def slice_phase_changed(namespace: str, meta: kopf.Meta, **_: Any) -> None:
    for ref in meta.get("ownerReferences", []):
        if ref.get("kind") == "AIInferenceSLA":
            await refresh_readiness(state.kube(), namespace, ref["name"])


@kopf.on.delete(
    GROUP, VERSION, "networkslices", when=lambda spec, **_: spec.get("backend") == "nsmf"
)
async def slice_deleted(body: kopf.Body, **_: Any) -> None:
    await release_slice(body, state.settings())
