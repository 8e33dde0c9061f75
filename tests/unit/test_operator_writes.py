"""The operator's ways to write and read less: concurrent identical reads share a request that
is never older than the call, and a reconcile's status write carries the printed summary."""

from __future__ import annotations

import asyncio
import json
import threading
import types
from typing import Any

import kopf
import pytest

from aiconn.operator import handlers
from aiconn.operator.handlers import _with_display
from aiconn.operator.health import display_update
from aiconn.operator.kubeapi import _Coalesced
from aiconn.operator.reconcile import Outcome
from aiconn.resources.v1alpha1.kinds import SLA


def test_callers_arriving_during_a_read_share_the_next_one_sent_after_they_asked() -> None:
    async def scenario() -> tuple[list[Any], list[str]]:
        log: list[str] = []
        gates: list[asyncio.Event] = []

        async def fetch() -> int:
            number = len(gates) + 1
            gate = asyncio.Event()
            gates.append(gate)
            log.append(f"sent {number}")
            await gate.wait()
            log.append(f"answered {number}")
            return number

        shared = _Coalesced(fetch)
        first = asyncio.create_task(shared.get())
        while not gates:
            await asyncio.sleep(0)
        log.append("second and third ask")
        later = [asyncio.create_task(shared.get()) for _ in range(2)]
        await asyncio.sleep(0)
        gates[0].set()
        await first
        while len(gates) < 2:
            await asyncio.sleep(0)
        gates[1].set()
        results = [await first, *[await t for t in later]]
        fourth = asyncio.create_task(shared.get())
        while len(gates) < 3:
            await asyncio.sleep(0)
        gates[2].set()
        return [*results, await fourth], log

    results, log = asyncio.run(scenario())
    assert results == [1, 2, 2, 3]
    # The shared read was sent after the callers asked and after the one in flight returned.
    assert log[:5] == ["sent 1", "second and third ask", "answered 1", "sent 2", "answered 2"]


def test_a_failed_shared_read_fails_every_caller_and_the_next_read_is_sent_again() -> None:
    async def scenario() -> list[Any]:
        calls = 0

        async def fetch() -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            if calls == 2:
                raise RuntimeError("the API server said no")
            return calls

        shared = _Coalesced(fetch)
        first = asyncio.create_task(shared.get())
        await asyncio.sleep(0)
        others = [asyncio.create_task(shared.get()) for _ in range(2)]
        outcomes = await asyncio.gather(first, *others, return_exceptions=True)
        return [*outcomes, await shared.get()]

    first, second, third, after = asyncio.run(scenario())
    assert first == 1
    assert isinstance(second, RuntimeError) and isinstance(third, RuntimeError)
    assert after == 3


@pytest.mark.parametrize("compliant", [None, "False"])
def test_a_reconciles_status_write_carries_what_sla_seen_would_write_after_it(
    compliant: str | None,
) -> None:
    conditions = [{"type": "Compliant", "status": compliant}] if compliant else []
    body = {
        "spec": {"tokens": {"currency": "EUR"}},
        "status": {"conditions": conditions, "period": {"availabilityPercent": 99.5}},
    }
    outcome = Outcome(status={"phase": "Ready", "observedGeneration": 1})
    fields = _with_display(body, outcome)
    after = {**body["status"], **fields}
    assert fields["observedGeneration"] == 1
    assert fields["summary"]["availability"] == "99.50%"
    # Nothing is left for the watch event of this write to patch.
    assert display_update({"spec": body["spec"], "status": after}) is None


def test_a_conflicting_status_write_derives_its_summary_again_from_the_status_re_read() -> None:
    """A reconcile's write that meets a newer status (the SLA loop wrote between its read and
    its patch) is retried on the status re-read, and the summary and phase it carries are
    derived from that newer status, not from the reconcile's older view."""
    from aiconn.kube import Conflict
    from aiconn.operator.kubeapi import KubeApi

    spec = {"tokens": {"currency": "EUR"}}
    older = {"conditions": [], "period": {"availabilityPercent": 99.5}}
    newer = {
        "conditions": [{"type": "Compliant", "status": "False", "reason": "Breached"}],
        "period": {"availabilityPercent": 97.25},
    }

    class Conflicting(KubeApi):
        def __init__(self) -> None:
            self.patches: list[dict[str, Any]] = []

        async def get(
            self, kind: str, name: str, namespace: str | None = None, *, shared: bool = False
        ) -> dict[str, Any] | None:
            return {"metadata": {"resourceVersion": "8"}, "spec": spec, "status": newer}

        async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            self.patches.append(kwargs["body"])
            if len(self.patches) == 1:
                raise Conflict()
            return dict(kwargs["body"])

    kube = Conflicting()
    outcome = Outcome(status={"phase": "Ready", "observedGeneration": 1})
    asyncio.run(
        kube.update_status(
            "AIInferenceSLA",
            "chat",
            "tenant-a",
            fields=lambda current: _with_display(current, outcome),
            conditions=[],
            current={"metadata": {"resourceVersion": "7"}, "spec": spec, "status": older},
        )
    )
    first, retried = (patch["status"] for patch in kube.patches)
    assert first["summary"]["availability"] == "99.50%"
    assert retried["summary"]["availability"] == "97.25%"
    assert kube.patches[1]["metadata"]["resourceVersion"] == "8"
    # What the retried write carries is what sla_seen would derive from the status it lands on.
    assert display_update({"spec": spec, "status": {**newer, **retried}}) is None


def test_shared_reads_are_forgotten_once_idle() -> None:
    """A shared read's entry lives while the read is in flight or asked for, so the operator
    does not keep one per namespace or offer it ever read."""
    from aiconn.operator.kubeapi import KubeApi

    class Counting(KubeApi):
        def __init__(self) -> None:
            self._shared = {}
            self.sent = 0

        async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            self.sent += 1
            await asyncio.sleep(0.01)
            return {"path": path}

    async def scenario() -> tuple[list[Any], Counting]:
        kube = Counting()
        answers = await asyncio.gather(
            *(kube.fresh_get(f"/api/v1/namespaces/t-{i % 2}") for i in range(6))
        )
        return answers, kube

    answers, kube = asyncio.run(scenario())
    assert [a["path"][-3:] for a in answers] == ["t-0", "t-1"] * 3
    assert kube.sent <= 4 and kube._shared == {}


def test_a_cluster_wide_list_is_read_in_pages_and_kept_cut_down() -> None:
    """A list is asked for LIST_PAGE items at a time, each item passed through `keep` as its
    page arrives, and started again when its continue token expired between pages."""
    from concurrent.futures import ThreadPoolExecutor

    from aiconn.kube import Gone
    from aiconn.operator.kubeapi import LIST_PAGE, KubeApi, _Slots, without_managed_fields

    class Paged(KubeApi):
        def __init__(self) -> None:
            self._shared = {}
            self._threads = ThreadPoolExecutor(max_workers=1)
            self._slots = _Slots(1)
            self.queries: list[dict[str, Any]] = []
            self.expire_once = True

        def _request(self, method: str, path: str, *, query: Any = None) -> bytes:
            self.queries.append(dict(query))
            page = int(dict(query).get("continue", 0))
            if page == 1 and self.expire_once:
                self.expire_once = False
                raise Gone()
            items = [
                {"metadata": {"name": f"p{page}-{i}", "managedFields": [{}]}} for i in range(2)
            ]
            token = str(page + 1) if page < 2 else ""
            return json.dumps({"metadata": {"continue": token}, "items": items}).encode()

    kube = Paged()
    items = asyncio.run(
        kube.list_all("/api/v1/pods", [("fieldSelector", "x")], keep=without_managed_fields)
    )
    assert [i["metadata"] for i in items] == [
        {"name": f"p{p}-{i}"} for p in range(3) for i in range(2)
    ]
    assert all(q["limit"] == LIST_PAGE and q["fieldSelector"] == "x" for q in kube.queries)
    # The first read, its expired second page, then the whole list again.
    assert [q.get("continue") for q in kube.queries] == [None, "1", None, "1", "2"]


def test_the_sla_loop_reads_each_sla_at_its_offers_terms_as_the_list_is_read() -> None:
    """The fleet is read through `list_all`, each SLA parsed by the list's `keep` (in the list's
    thread, page by page); one being deleted, one malformed and one its offer does not cover
    are left out."""
    from aiconn.operator.evaluation import FleetEvaluator
    from aiconn.operator.settings import OperatorSettings
    from aiconn.store.ledger import Ledger
    from aiconn.store.prometheus import PrometheusSource
    from tests.factories import bundle_offer, small_sla_doc

    def sla(name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
        return {
            "metadata": {
                "namespace": "t",
                "name": name,
                "uid": f"u-{name}",
                "creationTimestamp": "2026-12-01T00:00:00Z",
                **meta,
            },
            "spec": spec,
        }

    bodies = [
        sla("kept", small_sla_doc(offer="bundle")),
        sla("leaving", small_sla_doc(offer="bundle"), deletionTimestamp="2026-12-02T00:00:00Z"),
        sla("malformed", {"model": {"name": "m"}}),
        sla("priced", small_sla_doc(offer="bundle", tokens={"pricePerMillionTokens": 9})),
    ]
    read: list[str] = []

    class Cluster:
        async def list(self, kind: str, namespace: str | None = None, **_: Any) -> list[Any]:
            return [bundle_offer()]

        async def list_all(self, path: str, query: Any = None, *, keep: Any) -> list[Any]:
            read.append(path)
            return [kept for kept in map(keep, bodies) if kept is not None]

    fleet = FleetEvaluator(
        kube=Cluster(),  # type: ignore[arg-type]
        source=PrometheusSource.from_url("http://127.0.0.1:9"),
        ledger=Ledger.open("sqlite://"),
        settings=OperatorSettings(),
    )
    slas = asyncio.run(fleet.list_slas())
    assert [(s.name, s.offer is not None) for s in slas] == [("kept", True)]
    assert read == ["/apis/aiconn.io/v1alpha1/aiinferenceslas"]


@pytest.mark.parametrize(
    ("namespaces", "listed"),
    [
        (["team-a", "team-b"], ["team-a", "team-b"]),
        ([], [None]),
    ],
)
def test_the_assurance_loop_lists_only_the_slas_of_the_namespaces_it_serves(
    namespaces: list[str], listed: list[str | None]
) -> None:
    """An operator given namespaces neither reads nor moves another's SLAs (nor needs RBAC to
    list them across the cluster); one serving them all lists them once, cluster-wide."""
    from aiconn.operator.assurance import AssuranceLoop
    from aiconn.operator.settings import OperatorSettings

    paths: list[str] = []

    class Cluster:
        async def call(self, method: str, path: str, **_: Any) -> dict[str, Any]:
            return {"items": []}  # no tiers

        async def list(self, kind: str, namespace: str | None = None, **_: Any) -> list[Any]:
            return []  # no offers

        async def list_all(self, path: str, query: Any = None, *, keep: Any) -> list[Any]:
            paths.append(path)
            return []

    loop = AssuranceLoop(Cluster(), OperatorSettings(namespaces=namespaces))  # type: ignore[arg-type]
    asyncio.run(loop.run_once())
    sla_paths = [p for p in paths if p.endswith("/aiinferenceslas")]
    assert sla_paths == [
        f"/apis/aiconn.io/v1alpha1{f'/namespaces/{ns}' if ns else ''}/aiinferenceslas"
        for ns in listed
    ]


def test_a_deployment_event_re_reads_its_sla_only_when_what_readiness_reads_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Deployment's status moves several times as its pods start; the SLA is re-read and its
    readiness recomputed when the generation, the replica counts readiness compares or the
    count asked for changed, not on the others (conditions' times, unavailable replicas). A
    refresh that failed is tried again on the next event alike."""
    from aiconn.operator import handlers

    refreshed: list[Any] = []
    fail = [False]

    async def refresh_owner(namespace: str | None, meta: Any, *, deployment: Any = None) -> None:
        if fail[0]:
            fail[0] = False
            raise RuntimeError("the API server did not answer")
        refreshed.append(deployment and deployment["status"])

    monkeypatch.setattr(handlers, "_refresh_owner", refresh_owner)
    monkeypatch.setattr(handlers, "_deployment_inputs", {})

    def seen(type_: str, **status: Any) -> None:
        body = {
            "metadata": {"uid": "u1", "generation": 1},
            "spec": {"replicas": 1},
            "status": status,
        }
        coro = handlers.deployment_seen(namespace="t", meta=body["metadata"], body=body, type=type_)
        asyncio.run(coro)  # type: ignore[arg-type]

    seen("ADDED")
    seen("MODIFIED", observedGeneration=1, unavailableReplicas=1)
    seen("MODIFIED", observedGeneration=1, unavailableReplicas=1, conditions=[{"type": "x"}])
    fail[0] = True
    with pytest.raises(RuntimeError):
        seen("MODIFIED", observedGeneration=1, updatedReplicas=1, availableReplicas=1)
    seen("MODIFIED", observedGeneration=1, updatedReplicas=1, availableReplicas=1)
    seen("MODIFIED", observedGeneration=1, updatedReplicas=1, availableReplicas=1, replicas=1)
    seen("DELETED")
    assert refreshed == [
        {},
        {"observedGeneration": 1, "unavailableReplicas": 1},
        {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1},
        None,
    ]


def test_the_deployment_inputs_keep_only_the_most_recent_entries() -> None:
    """A Deployment whose DELETED event was missed leaves its entry behind; the map keeps its
    bound, forgetting the least recently written first (one extra SLA re-read at worst)."""
    from aiconn.operator.handlers import _Recent

    recent = _Recent(bound=3)
    for uid in ("a", "b", "c"):
        recent[uid] = (uid,)
    recent["a"] = ("a", 2)  # written again: now the most recent
    recent["d"] = ("d",)
    assert list(recent) == ["c", "a", "d"]
    assert recent["a"] == ("a", 2)
    recent.pop("c")
    recent["e"] = ("e",)
    assert list(recent) == ["a", "d", "e"]


def test_a_reconcile_writes_only_fields_of_the_typed_status() -> None:
    """Every status a reconcile writes passes through AIInferenceSLAStatus: camelCase, None kept
    (it clears a field), and a field the model lacks or a wrong type fails in the operator."""
    from pydantic import ValidationError

    written = Outcome(
        status={"observedGeneration": 2, "phase": "Ready", "pending": None, "children": {}}
    ).status
    assert written == {"observedGeneration": 2, "phase": "Ready", "pending": None, "children": {}}
    with pytest.raises(ValidationError):
        Outcome(status={"phase": "Ready", "inForce": 1})
    with pytest.raises(ValidationError):
        Outcome(status={"observedGeneration": "two"})


def test_a_readiness_write_that_conflicts_is_judged_again_on_children_read_afresh() -> None:
    """Two refreshes race: one judged the Deployment before its pods were available, the other
    after, and wrote Ready first. The older one's write conflicts; it must judge again on the
    children as they are now, not put its older judgement (Provisioning) over Ready: no later
    event of the Deployment would correct it."""
    from aiconn.inference import workload
    from aiconn.kube import Conflict
    from aiconn.operator.conditions import merge
    from aiconn.operator.kubeapi import KubeApi
    from aiconn.operator.reconcile import readiness, refresh_readiness

    names = workload.child_names("chat")
    ready_slice = {
        "metadata": {"name": names.network_slice},
        "status": {"conditions": [{"type": "SliceReady", "status": "True", "reason": "Realized"}]},
    }

    def deployment(updated: int, available: int) -> dict[str, Any]:
        return {
            "metadata": {"name": names.deployment, "generation": 1},
            "spec": {"replicas": 1},
            "status": {
                "observedGeneration": 1,
                "updatedReplicas": updated,
                "availableReplicas": available,
            },
        }

    def sla(version: str, judged_on: dict[str, Any]) -> dict[str, Any]:
        phase, conds = readiness(
            slice_obj=ready_slice, deployment=judged_on, replicas=1, generation=1, health={}
        )
        return {
            "metadata": {"name": "chat", "namespace": "t", "resourceVersion": version},
            "spec": {"capacity": {"replicas": 1}},
            "status": {"observedGeneration": 1, "phase": phase, "conditions": merge([], conds)},
        }

    rolling_out, starting, available = deployment(0, 0), deployment(1, 0), deployment(1, 1)

    class Racing(KubeApi):
        """The SLA as the reconcile wrote it (version 7: rolling out); the other refresh writes
        Ready (version 8) between this one's read and its write."""

        def __init__(self) -> None:
            self.objects = {
                "AIInferenceSLA": sla("7", judged_on=rolling_out),
                "NetworkSlice": ready_slice,
                "Deployment": available,
            }
            self.patches: list[dict[str, Any]] = []

        async def get(
            self, kind: str, name: str, namespace: str | None = None, *, shared: bool = False
        ) -> dict[str, Any] | None:
            return self.objects[kind]

        async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            body = kwargs["body"]
            self.patches.append(body)
            if len(self.patches) == 1:  # the other refresh's write lands first
                self.objects["AIInferenceSLA"] = sla("8", judged_on=available)
            current = self.objects["AIInferenceSLA"]
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
                raise Conflict()
            status = {**current["status"], **body["status"]}
            self.objects["AIInferenceSLA"] = {**current, "status": status}
            return self.objects["AIInferenceSLA"]

    kube = Racing()
    before = kube.objects["AIInferenceSLA"]
    assert before["status"]["phase"] == "Provisioning"
    # This refresh has the SLA at version 7 and the Deployment of an older watch event.
    written = asyncio.run(refresh_readiness(kube, "t", "chat", sla=before, deployment=starting))
    # Its one write (Provisioning: 0/1 available) conflicted; judged again on what is there
    # now, Ready needs no write at all.
    assert kube.patches[0]["status"]["phase"] == "Provisioning"
    assert len(kube.patches) == 1
    assert written is None
    assert kube.objects["AIInferenceSLA"]["status"]["phase"] == "Ready"


def test_a_slice_events_refresh_judges_the_slice_as_the_event_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The slice's realization brings a watch event with the slice in it: the refresh reads the
    SLA and the Deployment, not the slice again, and judges SliceReady on the event's slice."""
    from aiconn.inference import workload
    from aiconn.operator.kubeapi import KubeApi

    names = workload.child_names("chat")
    owner = {"kind": "AIInferenceSLA", "name": "chat"}
    realized = kopf.Body(
        {
            "metadata": {"uid": "s1", "name": names.network_slice, "ownerReferences": [owner]},
            "spec": {},
            "status": {
                "conditions": [{"type": "SliceReady", "status": "True", "reason": "Realized"}]
            },
        }
    )

    class Reads(KubeApi):
        def __init__(self) -> None:
            self.read: list[str] = []
            self.written: list[dict[str, Any]] = []

        async def get(
            self, kind: str, name: str, namespace: str | None = None, *, shared: bool = False
        ) -> dict[str, Any] | None:
            self.read.append(kind)
            if kind == "AIInferenceSLA":
                return {
                    "metadata": {"name": "chat", "namespace": "t", "resourceVersion": "7"},
                    "spec": {"capacity": {"replicas": 1}},
                    "status": {"observedGeneration": 1, "phase": "Provisioning"},
                }
            assert kind == "Deployment", f"{kind} read again"
            return {
                "metadata": {"name": names.deployment, "generation": 1},
                "spec": {"replicas": 1},
                "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 0},
            }

        async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            self.written.append(kwargs["body"]["status"])
            return kwargs["body"]

    kube = Reads()
    monkeypatch.setattr(handlers.state, "kube", lambda: kube)
    monkeypatch.setattr(handlers, "_slice_inputs", {})
    asyncio.run(handlers.slice_seen("t", kopf.Meta(realized), realized, "MODIFIED"))
    assert kube.read == ["AIInferenceSLA", "Deployment"]
    (status,) = kube.written
    slice_ready = next(c for c in status["conditions"] if c["type"] == "SliceReady")
    assert (slice_ready["status"], slice_ready["reason"]) == ("True", "Realized")


class _StatusPatches:
    """Records the status patches `sla_seen` sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def patch_status(
        self, kind: str, name: str, namespace: str, patch: dict[str, Any]
    ) -> None:
        self.sent.append((name, patch))


def _sla(**extra: Any) -> kopf.Body:
    meta = {"name": "gold", "namespace": "acme", "generation": 1, **extra.pop("metadata", {})}
    return kopf.Body(
        {"kind": SLA.kind, "metadata": meta, "spec": {"tokens": {"currency": "EUR"}}, **extra}
    )


def test_a_new_sla_gets_its_summary_from_its_first_reconcile_not_a_write_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ADDED event of a new SLA: the create handler Kopf runs next writes the summary in its
    status patch, so the event handler writes nothing (one status write per new SLA, and no watch
    event queueing a second copy of the SLA behind its reconcile). Once the SLA has a status (the
    create handler's write; Kopf records nothing else, see `aiconn.operator.diffbase`), the event
    handler keeps the summary in step again."""
    patches = _StatusPatches()
    monkeypatch.setattr(handlers.state, "kube", lambda: patches)
    new = _sla()
    assert handlers.awaits_first_reconcile(new)
    asyncio.run(handlers.sla_seen(new, "ADDED"))
    assert patches.sent == []

    # The assurance loop may write its part of the status before the first reconcile has run.
    looked_at = _sla(status={"assurance": {"evaluatedAt": "2026-12-05T07:27:40Z"}})
    assert handlers.awaits_first_reconcile(looked_at)
    asyncio.run(handlers.sla_seen(looked_at, "MODIFIED"))
    assert patches.sent == []

    seen = _sla(status={"phase": "Pending", "observedGeneration": 1})
    assert not handlers.awaits_first_reconcile(seen)
    asyncio.run(handlers.sla_seen(seen, "MODIFIED"))
    assert patches.sent == [("gold", {"summary": {"compliant": "Unknown"}})]


def test_slice_events_refresh_the_sla_only_when_its_slice_readiness_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slice's apply, Kopf's annotations on it and its realization each bring a watch event;
    only a change of its SliceReady condition re-reads and re-judges the owning SLA."""
    refreshed: list[str] = []

    async def refresh(kube: Any, namespace: str, name: str, **_: Any) -> None:
        refreshed.append(name)

    monkeypatch.setattr(handlers, "refresh_readiness", refresh)
    monkeypatch.setattr(handlers.state, "kube", lambda: None)
    monkeypatch.setattr(handlers, "_slice_inputs", {})
    owner = {"kind": "AIInferenceSLA", "name": "gold"}
    meta = {"uid": "slice-1", "name": "gold-slice", "ownerReferences": [owner]}

    def seen(status: dict[str, Any], type_: str = "MODIFIED") -> None:
        body = kopf.Body({"metadata": meta, "spec": {}, "status": status})
        asyncio.run(handlers.slice_seen("acme", kopf.Meta(body), body, type_))

    ready = {"conditions": [{"type": "SliceReady", "status": "True", "reason": "Realized"}]}
    seen({}, "ADDED")  # applied: not realized yet
    seen({})  # Kopf's annotations: nothing readiness reads
    seen(ready)  # realized
    seen(ready)  # another annotation patch
    seen(ready, "DELETED")
    assert refreshed == ["gold", "gold", "gold"]


def test_a_freed_thread_goes_to_the_calls_first_in_line_before_older_others() -> None:
    """A reconcile writing its children (`first_in_line`) is served before the calls that were
    waiting longer; a waiter that gave up is skipped, not handed the thread; a task started with
    `not_first_in_line` waits with the others."""
    from aiconn.operator.kubeapi import KubeApi, first_in_line, not_first_in_line

    order: list[str] = []
    release = threading.Event()

    class Answer:
        def __init__(self, path: str) -> None:
            self.data = b"{}"
            if path == "/busy":
                release.wait(5)
            order.append(path)

    class OneConnection:  # the official client's shape, one connection wide
        configuration = types.SimpleNamespace(connection_pool_maxsize=1)

        def call_api(self, path: str, *_: Any, **__: Any) -> tuple[Answer]:
            return (Answer(path),)

        def close(self) -> None:
            pass

    async def scenario() -> None:
        kube = KubeApi(OneConnection())
        busy = asyncio.create_task(kube.call("GET", "/busy"))
        await asyncio.sleep(0.01)  # the one thread is taken
        later = [asyncio.create_task(kube.call("GET", f"/other-{i}")) for i in range(2)]
        await asyncio.sleep(0)
        with first_in_line():
            child = asyncio.create_task(kube.call("GET", "/child"))
            gave_up = asyncio.create_task(kube.call("GET", "/gave-up"))
            event = asyncio.create_task(kube.call("GET", "/event"), context=not_first_in_line())
        await asyncio.sleep(0)
        gave_up.cancel()
        release.set()
        await asyncio.gather(busy, child, event, *later)
        kube.close()

    asyncio.run(scenario())
    assert order == ["/busy", "/child", "/other-0", "/other-1", "/event"]


def test_an_offers_sla_are_re_planned_when_the_offer_changed_not_when_it_is_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every SLA resumes when the operator starts, with the offers as they are: the offers' own
    listing re-plans nothing (a second reconcile of each SLA, racing with what happens to it).
    A new, changed or deleted offer re-plans the SLAs naming it; a change of its labels or
    annotations (no new generation) does not; a re-plan that failed is tried again at the next
    event of the offer."""
    replanned: list[tuple[str, ...]] = []
    failing = {"fail": False}

    async def replan(affected: set[tuple[str, str]], tier_index: Any, **_: Any) -> None:
        replanned.append(tuple(sorted(name for _, name in affected)))
        if failing["fail"]:
            raise kopf.TemporaryError("re-planning failed for 1 SLA(s)")

    monkeypatch.setattr(handlers, "_replan", replan)
    monkeypatch.setattr(handlers, "_offer_generations", {})
    index = {"gold": [("acme", "sla-a")], "silver": [("acme", "sla-b")]}

    def event(name: str, type_: str | None, generation: int) -> None:
        body = kopf.Body({"metadata": {"name": name, "generation": generation}, "spec": {}})
        asyncio.run(
            handlers.offer_changed(
                name=name, body=body, type=type_, tier_index={}, sla_offer_index=index
            )
        )

    event("gold", None, 1)  # the operator's first listing
    event("gold", "MODIFIED", 1)  # an annotation
    assert replanned == []
    event("gold", "MODIFIED", 2)
    assert replanned == [("sla-a",)]
    event("gold", None, 2)  # a re-listing after the watch expired: nothing new
    assert replanned == [("sla-a",)]

    failing["fail"] = True
    with pytest.raises(kopf.TemporaryError):
        event("gold", "MODIFIED", 3)
    failing["fail"] = False
    event("gold", "MODIFIED", 3)  # the same generation again: tried again
    assert replanned == [("sla-a",)] * 3

    event("silver", "ADDED", 1)
    event("silver", "DELETED", 1)
    assert replanned[3:] == [("sla-b",), ("sla-b",)]
