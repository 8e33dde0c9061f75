"""The objects Kopf's reactor hands to the operator's handlers carry no `managedFields`
(`aiconn.operator.leanwatch`), checked through Kopf's own watcher and per-object workers with
only the API stream replaced."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import watching
from kopf._cogs.structs.references import Resource
from kopf._core.reactor import queueing

from aiconn.operator import leanwatch


def _event(name: str, rv: str) -> dict[str, Any]:
    return {
        "type": "MODIFIED",
        "object": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": "acme",
                "uid": f"uid-{name}",
                "resourceVersion": rv,
                "managedFields": [{"manager": "aiconn-operator", "fieldsV1": {"f:data": {}}}],
            },
            "data": {"k": "v"},
        },
    }


async def _handled_by_kopf(
    events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """Kopf's watcher and workers over a stream of `events`: the raw events its processor got."""

    async def stream(**_: Any) -> AsyncIterator[Any]:
        yield watching.Bookmark.LISTED
        for event in events:
            yield event
        await asyncio.Event().wait()  # a watch stays open

    seen: list[dict[str, Any]] = []
    all_seen = asyncio.Event()

    async def processor(*, raw_event: Any, **_: Any) -> None:
        seen.append(raw_event)
        if len(seen) == len(events):
            all_seen.set()

    monkeypatch.setattr(watching, "infinite_watch", stream)
    leanwatch.install()
    settings = kopf.OperatorSettings()
    settings.queueing.idle_timeout = 0.1
    watcher = asyncio.create_task(
        queueing.watcher(
            namespace=None,
            settings=settings,
            resource=Resource(group="", version="v1", plural="configmaps"),
            processor=processor,
        )
    )
    try:
        await asyncio.wait_for(all_seen.wait(), timeout=60)  # a bound against a hang only
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return seen


def test_handlers_get_each_event_without_managed_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    events = [_event("a", "1"), _event("b", "2"), _event("a", "3")]
    seen = asyncio.run(_handled_by_kopf(events, monkeypatch))
    assert sorted(
        (e["object"]["metadata"]["name"], e["object"]["metadata"]["resourceVersion"]) for e in seen
    ) == [("a", "1"), ("a", "3"), ("b", "2")]
    for event in seen:
        assert "managedFields" not in event["object"]["metadata"]
        assert event["object"]["data"] == {"k": "v"}  # the rest as it came


def test_install_wraps_once_and_refuses_a_kopf_without_the_seam(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def stream(**_: Any) -> AsyncIterator[Any]:
        yield {}

    monkeypatch.setattr(watching, "infinite_watch", stream)
    leanwatch.install()
    wrapped = watching.infinite_watch
    assert wrapped is not stream
    leanwatch.install()
    assert watching.infinite_watch is wrapped  # not wrapped twice

    monkeypatch.setattr(queueing, "watching", object())
    with pytest.raises(RuntimeError, match="leanwatch needs updating"):
        leanwatch.install()
