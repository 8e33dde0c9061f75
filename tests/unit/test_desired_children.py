"""The reconcile's two halves apart: `render_children` (what a placed SLA should have, pure) and
`apply_children` (the one loop that writes it), without a cluster."""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import functools
import weakref
from typing import Any

import pytest

from aiconn.inference import workload
from aiconn.inference.placement import default_tiers, plan
from aiconn.inference.workload import child_names
from aiconn.operator.desired import Children, apply_children, render_children
from aiconn.operator.reconcile import inference_inputs
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.slice import NetworkSliceSpec
from aiconn.slices.kubernetes import bandwidth_annotations, priority_class_name
from tests.factories import llama_8b_spec

OWNER = {"apiVersion": "aiconn.io/v1alpha1", "kind": "AIInferenceSLA", "name": "s", "uid": "u-1"}
SETTINGS = OperatorSettings(
    vllm_image="vllm:test", gateway_image="aiconn:test", wallet_api_url="https://wallet"
)


def render(
    spec: AIInferenceSLASpec | None = None, *, wallet_ca: str | None = None, key: str = "aic_k"
) -> Children:
    spec = spec or llama_8b_spec()
    decision = plan(spec, default_tiers())
    assert decision.placed, decision.message
    return render_children(
        sla_name="s",
        namespace="acme",
        owner=OWNER,
        spec=spec,
        decision=decision,
        settings=SETTINGS,
        new_keys=[key],
        wallet_ca=wallet_ca,
    )


def by_kind(children: Children) -> dict[str, dict[str, Any]]:
    objs = [*children.create_once, *children.to_apply()]
    kinds = [o["kind"] for o in objs]
    assert len(set(kinds)) == len(kinds), kinds  # one child of each kind
    return {o["kind"]: o for o in objs}


def test_the_same_sla_renders_the_same_children() -> None:
    first, second = render(), render()
    assert by_kind(first) == by_kind(second)
    assert (first.absent, first.refs) == (second.absent, second.refs)
    # Only the Secret created now carries the fresh key; everything applied is independent of it.
    assert list(render(key="aic_a").to_apply()) == list(render(key="aic_b").to_apply())


def test_every_child_is_the_sla_s_own_in_its_namespace() -> None:
    for obj in by_kind(render(wallet_ca="PEM")).values():
        meta = obj["metadata"]
        assert meta["namespace"] == "acme"
        (ref,) = meta["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"]) == ("AIInferenceSLA", "s", "u-1")
        assert ref["controller"] is True


def test_status_names_exactly_the_children_rendered() -> None:
    children = render()
    objs = by_kind(children)
    assert children.refs == {
        "networkSlice": objs["NetworkSlice"]["metadata"]["name"],
        "deployment": objs["Deployment"]["metadata"]["name"],
        "service": objs["Service"]["metadata"]["name"],
        "apiKeySecret": objs["Secret"]["metadata"]["name"],
        "serviceAccount": objs["ServiceAccount"]["metadata"]["name"],
    }


def test_the_deployment_uses_what_is_applied_before_it() -> None:
    children = render(wallet_ca="PEM")
    order = [o["kind"] for o in children.to_apply()]
    objs = by_kind(children)
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    # Its identity and the CA bundle it mounts exist before the pods that need them.
    assert order.index("ServiceAccount") < order.index("Deployment")
    assert order.index("ConfigMap") < order.index("Deployment")
    assert pod["serviceAccountName"] == objs["ServiceAccount"]["metadata"]["name"]
    mounted = {
        v.get("configMap", {}).get("name") or v.get("secret", {}).get("secretName")
        for v in pod["volumes"]
    }
    assert objs["ConfigMap"]["metadata"]["name"] in mounted
    assert objs["Secret"]["metadata"]["name"] in mounted
    # The Secret is only ever created, never applied: a replay cannot rotate the tenant's key.
    assert [o["kind"] for o in children.create_once] == ["Secret"]
    assert "Secret" not in order
    key = base64.b64decode(objs["Secret"]["data"]["api-key"]).decode()
    assert key == "aic_k"


def test_no_wallet_ca_no_config_map() -> None:
    assert "ConfigMap" not in by_kind(render(wallet_ca=None))


def test_the_pods_carry_the_priority_and_bandwidth_of_the_slice_rendered() -> None:
    objs = by_kind(render())
    slice_spec = NetworkSliceSpec.model_validate(objs["NetworkSlice"]["spec"])
    template = objs["Deployment"]["spec"]["template"]
    assert template["spec"]["priorityClassName"] == priority_class_name(slice_spec)
    assert bandwidth_annotations(slice_spec).items() <= template["metadata"]["annotations"].items()


def test_a_disruption_budget_from_two_replicas_and_none_below() -> None:
    one = render()
    assert "PodDisruptionBudget" not in by_kind(one)
    assert one.absent == (("PodDisruptionBudget", child_names("s").pod_disruption_budget),)
    assert "podDisruptionBudget" not in one.refs

    two = render(llama_8b_spec(capacity={"replicas": 2}))
    pdb = by_kind(two)["PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1
    assert two.absent == ()
    assert two.refs["podDisruptionBudget"] == pdb["metadata"]["name"]


class RecordingKube:
    """Records the verbs `apply_children` calls and answers an apply with the object."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def create_if_absent(self, obj: dict[str, Any]) -> bool:
        self.calls.append(("create", obj["kind"]))
        return False

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", obj["kind"]))
        answer = copy.deepcopy(obj)
        answer["status"] = {"seen": True}
        return answer

    async def delete(self, kind: str, name: str, namespace: str) -> None:
        self.calls.append(("delete", kind))


def test_apply_writes_in_order_and_keeps_the_answers_readiness_reads() -> None:
    children = render()
    kube = RecordingKube()
    answers = asyncio.run(apply_children(kube, "acme", children))  # type: ignore[arg-type]
    assert kube.calls == [
        ("create", "Secret"),
        *(("apply", o["kind"]) for o in children.to_apply()),
        ("delete", "PodDisruptionBudget"),
    ]
    # Only the answers readiness reads are kept (the others are dropped as they come).
    assert set(answers) == {"NetworkSlice", "Deployment"}
    assert answers["Deployment"]["status"] == {"seen": True}
    # The Deployment is kept as readiness reads it (`inference_inputs`), its pod template
    # dropped; the slice whole (its spec and status make SliceReady).
    (sent,) = [o for o in children.to_apply() if o["kind"] == "Deployment"]
    assert set(answers["Deployment"]["spec"]) == {"replicas"}
    assert answers["Deployment"]["metadata"] == sent["metadata"]
    assert inference_inputs(answers["Deployment"]) == inference_inputs(sent)
    (network_slice,) = [o for o in children.to_apply() if o["kind"] == "NetworkSlice"]
    assert answers["NetworkSlice"]["spec"] == network_slice["spec"]


def test_each_child_is_rendered_when_its_turn_comes_and_not_held_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a burst a thousand apply loops wait on the connection pool at once: the Deployment (its
    pod template most of a reconcile's rendered children) is rendered only once the children
    before it are applied, and no rendered child outlives its apply."""
    log: list[str] = []
    built = workload.deployment

    def deployment(**kwargs: Any) -> dict[str, Any]:
        log.append("render Deployment")
        return built(**kwargs)

    monkeypatch.setattr(workload, "deployment", deployment)

    class Tracked(dict[str, Any]):
        """A rendered child that a weak reference can watch."""

    alive: list[weakref.ref[Tracked]] = []

    class Tracking(RecordingKube):
        async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
            log.append(f"apply {obj['kind']}")
            # Every child applied before this one is garbage by now.
            assert [ref() for ref in alive] == [None] * len(alive), log
            assert isinstance(obj, Tracked)
            alive.append(weakref.ref(obj))
            return await super().apply(obj)

    children = render()
    assert "render Deployment" not in log, "rendered up front"
    tracked = dataclasses.replace(
        children,
        apply=tuple(functools.partial(lambda r: Tracked(r()), r) for r in children.apply),
    )
    del children
    asyncio.run(apply_children(Tracking(), "acme", tracked))  # type: ignore[arg-type]
    assert log.index("render Deployment") == log.index("apply Deployment") - 1
    assert log[: log.index("render Deployment")] == [
        "apply NetworkSlice",
        "apply ServiceAccount",
        "apply Role",
        "apply RoleBinding",
    ]


def test_a_burst_of_reconciles_renders_and_applies_children_a_few_sla_at_a_time() -> None:
    """Every SLA of a burst is placed at once, but only `concurrent_applies` of them render and
    apply their children at a time: the rest hold no rendered child while they wait."""
    from aiconn.operator.reconcile import reconcile_sla

    settings = SETTINGS.model_copy(update={"concurrent_applies": 2})
    inside, most, placed = 0, 0, 0

    class Cluster(RecordingKube):
        async def fresh_list(self, *_: Any, **__: Any) -> list[Any]:
            nonlocal placed
            placed += 1  # every reconcile observes capacity before it places
            return []  # no Nodes observed: placement by the tiers' declared sites

        async def create_if_absent(self, obj: dict[str, Any]) -> bool:
            nonlocal inside, most
            inside += 1  # the Secret comes first in every apply loop
            most = max(most, inside)
            return await super().create_if_absent(obj)

        async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
            nonlocal inside
            await asyncio.sleep(0)  # the other reconciles run while a request is in flight
            answer = await super().apply(obj)
            if obj["kind"] == "Service":
                inside -= 1  # the last child a new SLA of one replica applies
            return answer

    spec = llama_8b_spec().to_k8s()
    bodies = [
        {
            "metadata": {"name": f"s{i}", "namespace": "acme", "uid": f"u-{i}", "generation": 1},
            "spec": spec,
        }
        for i in range(6)
    ]

    async def burst() -> list[Any]:
        kube = Cluster()
        return await asyncio.gather(
            *(reconcile_sla(kube, b, default_tiers(), settings) for b in bodies)  # type: ignore[arg-type]
        )

    outcomes = asyncio.run(burst())
    assert placed == 6
    assert most == 2
    assert [o.status["phase"] for o in outcomes] == [outcomes[0].status["phase"]] * 6
    assert all(o.status["children"] for o in outcomes)


def test_a_new_sla_deletes_no_child_it_never_had_and_a_reconciled_one_does() -> None:
    """A new SLA (generation 1, no status) was only ever rendered from its one spec, which says
    no PodDisruptionBudget: nothing to delete. Once it has a status (it may have been scaled, or
    edited from two replicas), each reconcile deletes it again."""
    from aiconn.operator.reconcile import reconcile_sla

    class Cluster(RecordingKube):
        async def fresh_list(self, *_: Any, **__: Any) -> list[Any]:
            return []

    def reconciled(**extra: Any) -> list[tuple[str, str]]:
        meta = {"name": "s", "namespace": "acme", "uid": "u", "generation": 1}
        body = {"metadata": {**meta, **extra.pop("metadata", {})}, "spec": llama_8b_spec().to_k8s()}
        kube = Cluster()
        asyncio.run(reconcile_sla(kube, {**body, **extra}, default_tiers(), SETTINGS))  # type: ignore[arg-type]
        return [call for call in kube.calls if call[0] == "delete"]

    assert reconciled() == []
    expected = [("delete", "PodDisruptionBudget")]
    assert reconciled(status={"phase": "Failed"}) == expected
    assert reconciled(metadata={"generation": 2}) == expected
