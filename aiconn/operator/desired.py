"""An SLA's children: what its placement asks for (one pure function), then one loop that makes
the cluster hold it.

`render_children` reads nothing and writes nothing: the same SLA, placement and settings give
the same objects, so a unit test can check everything the operator would write, and a replay after
a crash writes the same objects again (deterministic names and owner references: exactly one child
of each kind). `apply_children` is the only place the reconcile writes children.

The children to apply are rendered one at a time, when their turn comes, and dropped once
applied: in a burst a thousand reconciles wait on the connection pool at once, and rendered up
front each would hold its children (56 KB of Python objects, 34 KB of it the Deployment's pod
template) for its whole apply loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from aiconn.inference import workload
from aiconn.inference.placement import PlacementDecision
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.leanwatch import deployment_view
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.kinds import NETWORK_SLICE
from aiconn.resources.v1alpha1.meta import API_VERSION
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.slice import NetworkSliceSpec
from aiconn.slices.kubernetes import pod_attachment
from aiconn.slices.realize import slice_for

Obj = dict[str, Any]
Render = Callable[[], Obj]
"""One child, rendered when called (an equal object every call)."""


class _Child(TypedDict):
    """What every child builder is given."""

    sla_name: str
    namespace: str
    owner: Mapping[str, str]


@dataclass(frozen=True)
class Children:
    """What a placed SLA should have.

    `create_once`: created when absent and never updated (the API-key Secret: a replay never
    rotates a tenant's keys). `apply`: server-side applied in this order (the pods' identity and
    the wallet CA bundle before the Deployment that names and mounts them), each rendered when
    called (see the module doc). `absent`: (kind, name) of children that must not exist (a
    PodDisruptionBudget below two replicas). `refs`: the names `status.children` shows.
    """

    create_once: tuple[Obj, ...]
    apply: tuple[Render, ...]
    absent: tuple[tuple[str, str], ...]
    refs: dict[str, str]

    def to_apply(self) -> Iterator[Obj]:
        """The children to apply, in order, each rendered as the iteration reaches it."""
        return (render() for render in self.apply)


def network_slice(
    *, sla_name: str, namespace: str, owner: Mapping[str, str], slice_spec: NetworkSliceSpec
) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": NETWORK_SLICE.kind,
        "metadata": {
            "name": workload.child_names(sla_name).network_slice,
            "namespace": namespace,
            "labels": workload.labels(sla_name),
            "ownerReferences": [workload.owner_reference(owner)],
        },
        "spec": slice_spec.to_k8s(),
    }


def render_children(
    *,
    sla_name: str,
    namespace: str,
    owner: Mapping[str, str],
    spec: AIInferenceSLASpec,
    decision: PlacementDecision,
    settings: OperatorSettings,
    new_keys: Sequence[str],
    wallet_ca: str | None,
) -> Children:
    """Every child of a placed SLA. `new_keys` are the API keys of a Secret created now (unused
    when it exists); `wallet_ca` the provider's CA bundle for the wallet API, when mounted."""
    names = workload.child_names(sla_name)
    common = _Child(sla_name=sla_name, namespace=namespace, owner=owner)
    slice_spec = slice_for(sla_name, spec, decision)
    later = functools.partial
    apply: list[Render] = [
        later(network_slice, **common, slice_spec=slice_spec),
        later(workload.gateway_service_account, **common),
        later(workload.gateway_role, **common),
        later(workload.gateway_role_binding, **common),
    ]
    if wallet_ca is not None:
        apply.append(later(workload.wallet_ca_config_map, **common, ca_bundle=wallet_ca))
    apply.append(
        later(
            workload.deployment,
            **common,
            spec=spec,
            decision=decision,
            attachment=pod_attachment(slice_spec),
            api_key_secret=names.api_key_secret,
            vllm_image=settings.vllm_image,
            gateway_image=settings.gateway_image,
            wallet_api_url=settings.wallet_api_url,
            wallet_ca=wallet_ca is not None,
            vllm_runtime_claim=settings.vllm_runtime_claim,
        )
    )
    apply.append(later(workload.service, **common))
    refs = {
        "networkSlice": names.network_slice,
        "deployment": names.deployment,
        "service": names.service,
        "apiKeySecret": names.api_key_secret,
        "serviceAccount": names.gateway_identity,
    }
    absent: tuple[tuple[str, str], ...] = ()
    pdb = workload.pod_disruption_budget(**common, spec=spec)  # small: rendered here
    if pdb is not None:
        apply.append(functools.partial(dict, pdb))
        refs["podDisruptionBudget"] = names.pod_disruption_budget
    else:
        absent = (("PodDisruptionBudget", names.pod_disruption_budget),)
    return Children(
        create_once=(workload.api_key_secret(**common, keys=new_keys),),
        apply=tuple(apply),
        absent=absent,
        refs=refs,
    )


READ_BACK: dict[str, Callable[[Obj], Obj]] = {
    NETWORK_SLICE.kind: lambda answer: answer,
    "Deployment": deployment_view,
}
"""The children whose answers the reconcile reads (its readiness conditions), each cut to the
part it reads: a Deployment's pod template is most of it, and is not read."""


async def apply_children(kube: KubeApi, namespace: str, children: Children) -> dict[str, Obj]:
    """Make the cluster hold `children`, in their order; the API server's answers of the kinds
    in `READ_BACK`, by kind. The other answers are dropped as they come: in a burst every SLA's
    reconcile is in flight at once, and what each holds is held a thousand times over."""
    for obj in children.create_once:
        await kube.create_if_absent(obj)
    answers: dict[str, Obj] = {}
    for obj in children.to_apply():  # each rendered here, and garbage once applied
        answer = await kube.apply(obj)
        keep = READ_BACK.get(obj["kind"])
        if keep is not None:
            answers[obj["kind"]] = keep(answer)
    for kind, name in children.absent:
        await kube.delete(kind, name, namespace)
    return answers
