"""The diff base read from the status generation (`aiconn.operator.diffbase`), judged by Kopf's
own cause detection: what Kopf would run for an SLA or a NetworkSlice in each state, and that it
writes nothing for them where its annotation storage wrote the handled spec."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest
from kopf._cogs.structs import diffs
from kopf._core.intents import causes

from aiconn.operator import handlers
from aiconn.operator.diffbase import CHANGE_HANDLERS

SPEC = {"model": "llama-3-8b", "capacity": {"replicas": 1}}


def _body(
    kind: str = "AIInferenceSLA",
    *,
    generation: int = 1,
    status: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> kopf.Body:
    meta: dict[str, Any] = {"name": "gold", "namespace": "acme", "generation": generation}
    if annotations:
        meta["annotations"] = annotations
    if labels:
        meta["labels"] = labels
    raw: dict[str, Any] = {
        "apiVersion": "aiconn.io/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": spec or SPEC,
    }
    if status is not None:
        raw["status"] = status
    return kopf.Body(raw)


def _cause(body: kopf.Body, *, initial: bool = False) -> causes.Reason:
    """The change Kopf detects for `body`, as its processing does (`_detect_causes`)."""
    storage, progress = handlers.DIFFBASE, handlers.PROGRESS
    old = storage.fetch(body=body)
    new = storage.build(body=body, extra_fields=[("spec",)])
    old = progress.clear(essence=old) if old is not None else None
    new = progress.clear(essence=new)
    cause = causes.detect_changing_cause(
        finalizer="aiconn.io/finalizer",
        raw_event={"type": "MODIFIED", "object": dict(body)},  # type: ignore[typeddict-item]
        body=body,
        old=old,
        new=new,
        diff=diffs.diff(old, new),
        initial=initial,
        resource=None,
        indices={},
        logger=logging.getLogger(__name__),
        patch=kopf.Patch(),
        memo=kopf.Memo(),
    )
    if cause.reason == causes.Reason.UPDATE:
        # The update handlers ask for `spec`: Kopf runs them only when the diff names it.
        assert diffs.reduce(cause.diff, ["spec"]), cause.diff
    return cause.reason


def _retrying(purpose: str, handler_id: str = "sla_changed") -> dict[str, str]:
    """The annotation Kopf keeps while a change handler retries."""
    patch = kopf.Patch()
    record: kopf.ProgressRecord = {"started": "2026-12-05T00:00:00", "purpose": purpose}
    handlers.PROGRESS.store(
        key=kopf.HandlerId(handler_id), record={**record, "retries": 1}, body=_body(), patch=patch
    )
    return {k: v for k, v in patch["metadata"]["annotations"].items() if v is not None}


Reason = causes.Reason


@pytest.mark.parametrize("kind", ["AIInferenceSLA", "NetworkSlice"])
def test_the_status_generation_tells_kopf_a_create_an_update_and_nothing_new(kind: str) -> None:
    assert _cause(_body(kind)) == Reason.CREATE  # no status: never handled
    assert _cause(_body(kind, status={"phase": "Failed"})) == Reason.CREATE
    handled = {"observedGeneration": 1, "phase": "Ready"}
    assert _cause(_body(kind, status=handled)) == Reason.NOOP
    assert _cause(_body(kind, status=handled), initial=True) == Reason.RESUME
    # A new spec: the API server bumped the generation.
    assert _cause(_body(kind, generation=2, status=handled)) == Reason.UPDATE
    assert _cause(_body(kind, generation=2, status=handled), initial=True) == Reason.UPDATE
    # Labels and annotations are no change of what the handlers ask for.
    relabelled = _body(kind, status=handled, labels={"team": "a"}, annotations={"note": "x"})
    assert _cause(relabelled) == Reason.NOOP
    # What an older operator left: ignored.
    legacy = {"aiconn.io/last-handled-configuration": '{"spec":{"old":true}}\n'}
    assert _cause(_body(kind, status=handled, annotations=legacy)) == Reason.NOOP


def test_a_handler_that_is_retrying_keeps_its_change_whatever_the_status_says() -> None:
    """A failed reconcile writes its status (observedGeneration included) before Kopf records
    the retry: the record, not the status, says which change is still to handle."""
    failed = {"observedGeneration": 2, "phase": "Failed"}
    create = _retrying("create")
    assert _cause(_body(generation=2, status=failed, annotations=create)) == Reason.CREATE
    update = _retrying("update", "sla_changed/spec")
    assert _cause(_body(generation=2, status=failed, annotations=update)) == Reason.UPDATE
    resume = _retrying("resume")
    assert _cause(_body(status={**failed, "observedGeneration": 1}, annotations=resume)) in (
        Reason.NOOP,
        Reason.RESUME,
    )
    assert (
        _cause(_body(status={**failed, "observedGeneration": 1}, annotations=resume), initial=True)
        == Reason.RESUME
    )
    # The slice's handler has records of its own; an SLA's are not a slice's.
    slice_update = _retrying("update", "slice_changed/spec")
    handled = {"observedGeneration": 1, "phase": "Ready"}
    assert _cause(_body("NetworkSlice", status=handled, annotations=slice_update)) == Reason.UPDATE
    assert _cause(_body(status=handled, annotations=slice_update)) == Reason.NOOP


def test_nothing_is_written_for_slas_and_slices_the_annotation_for_other_kinds() -> None:
    for kind in CHANGE_HANDLERS:
        patch = kopf.Patch()
        body = _body(kind)
        handlers.DIFFBASE.store(body=body, patch=patch, essence=handlers.DIFFBASE.build(body=body))
        assert not patch, patch
        # A handler that succeeds at once: Kopf stores its progress, then purges it, and
        # marks nothing: nothing is left to PATCH.
        key = kopf.HandlerId(CHANGE_HANDLERS[kind][0])
        record: kopf.ProgressRecord = {"started": "2026-12-05T00:00:00", "success": True}
        handlers.PROGRESS.store(key=key, record=record, body=body, patch=patch)
        handlers.PROGRESS.purge(key=key, body=body, patch=patch)
        assert not patch, patch
    # A retry's progress is kept as before, the only annotation written.
    assert list(_retrying("create")) == ["aiconn.io/sla_changed"]
    tier = _body("InferenceTier", spec={"gpu": "L4"})
    assert _cause(tier) == Reason.CREATE
    patch = kopf.Patch()
    handlers.DIFFBASE.store(body=tier, patch=patch, essence=handlers.DIFFBASE.build(body=tier))
    annotations = {k: v for k, v in patch["metadata"]["annotations"].items() if v is not None}
    assert "aiconn.io/last-handled-configuration" in annotations
    assert _cause(_body("InferenceTier", spec={"gpu": "L4"}, annotations=annotations)) == (
        Reason.NOOP
    )


def test_the_handler_ids_are_those_kopf_registered_for_each_kinds_changes() -> None:
    registry = kopf.get_default_registry()
    registered: dict[str, set[str]] = {}
    plurals = {"aiinferenceslas": "AIInferenceSLA", "networkslices": "NetworkSlice"}
    for handler in registry._changing.get_all_handlers():
        plural = handler.selector.any_name if handler.selector else None
        if plural in plurals and handler.reason != causes.Reason.DELETE:
            registered.setdefault(plurals[plural], set()).add(str(handler.id))
    assert registered == {kind: set(ids) for kind, ids in CHANGE_HANDLERS.items()}


def test_an_event_queued_before_the_handlers_own_write_is_no_change_to_handle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kopf ran the create handler on the SLA's first event; events queued meanwhile (another
    writer's, before the handler's status write) carry no `observedGeneration` yet. Kopf wrote
    nothing to wait for, so the generation the handler ended with says they are handled; a new
    spec after it is an update still."""
    storage = handlers.DIFFBASE
    first = _body(status=None)
    first["metadata"]["uid"] = "u-1"  # type: ignore[index]
    assert _cause(first) == Reason.CREATE
    storage.store(body=first, patch=kopf.Patch(), essence=storage.build(body=first))
    queued = _body(status={"assurance": {"objectives": []}})
    queued["metadata"]["uid"] = "u-1"  # type: ignore[index]
    assert _cause(queued) == Reason.NOOP
    edited = _body(generation=2, status={"observedGeneration": 1})
    edited["metadata"]["uid"] = "u-1"  # type: ignore[index]
    assert _cause(edited) == Reason.UPDATE
    other = _body(status={"assurance": {}})
    other["metadata"]["uid"] = "u-2"  # type: ignore[index]
    assert _cause(other) == Reason.CREATE
    # The operator's cleanup drops the memory: a new run starts from the status alone.

    async def closed() -> None:
        return None

    monkeypatch.setattr(handlers.state, "close_runtime", closed)
    asyncio.run(handlers.close())
    assert _cause(queued) == Reason.CREATE
