"""The operator against the real API server and controller-manager, run with KopfRunner."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner
from kubernetes import client

from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from tests.factories import TIER_SAMPLES, price_raised_in_a_day
from tests.helpers import (
    ROOT,
    condition_of,
    delete_admission_policies,
    eventually,
    operator_kubeconfig,
    play_kubelet,
    running_operator,
    sla_table,
)

pytestmark = pytest.mark.integration

SAMPLES = ROOT / "manifests" / "samples"


def sample(name: str) -> dict[str, Any]:
    return next(d for d in load_documents([SAMPLES / name]))


@pytest.fixture(scope="module")
def tiers(k8s: Any) -> Iterator[None]:
    # The sample SLAs buy under the sample offers (the provider's, as the tiers are).
    apply_objects(k8s, load_documents([SAMPLES / "tiers.yaml", SAMPLES / "offers.yaml"]))
    yield


@pytest.fixture(scope="module")
def operator(control_plane: Any, k8s: Any, tiers: None) -> Iterator[KopfRunner]:
    """The operator, authenticated as its ServiceAccount bound to exactly manifests/rbac: every
    test here also proves that RBAC is sufficient."""
    with running_operator(operator_kubeconfig(control_plane, k8s)) as runner:
        yield runner


def custom(k8s: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s)


def get_sla(k8s: Any, ns: str, name: str) -> dict[str, Any]:
    return custom(k8s).get_namespaced_custom_object(GROUP, VERSION, ns, "aiinferenceslas", name)


def patch_sla(k8s: Any, ns: str, name: str, patch: dict[str, Any]) -> None:
    custom(k8s).patch_namespaced_custom_object(GROUP, VERSION, ns, "aiinferenceslas", name, patch)


def create(k8s: Any, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    return custom(k8s).create_namespaced_custom_object(
        GROUP, VERSION, ns, "aiinferenceslas", copy.deepcopy(body)
    )


def create_sample(k8s: Any, ns: str, sample_file: str) -> str:
    """Create the sample SLA of `sample_file` in `ns`; returns its name."""
    body = sample(sample_file)
    create(k8s, ns, body)
    name: str = body["metadata"]["name"]
    return name


def placed(k8s: Any, ns: str, name: str) -> dict[str, Any] | None:
    status = get_sla(k8s, ns, name).get("status") or {}
    conds = {c["type"]: c for c in status.get("conditions", [])}
    return status if "Placed" in conds else None


def deployment(k8s: Any, ns: str, name: str) -> Any:
    return client.AppsV1Api(k8s).read_namespaced_deployment(f"{name}-vllm", ns)


def vllm_container(dep: Any) -> Any:
    return next(c for c in dep.spec.template.spec.containers if c.name == "vllm")


def arg_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize(("sample_file", "tier"), TIER_SAMPLES)
def test_each_sample_lands_on_its_tier_with_children(
    k8s: Any, namespace: str, operator: KopfRunner, sample_file: str, tier: str
) -> None:
    body = sample(sample_file)
    name = body["metadata"]["name"]
    create(k8s, namespace, body)
    status = eventually(lambda: placed(k8s, namespace, name), what=f"{name} placed")
    assert status["placement"]["tier"] == tier
    assert condition_of(status, "Placed")["status"] == "True"
    assert {r["tier"] for r in status["placement"]["rejected"]} == {"edge", "regional", "cloud"} - {
        tier
    }
    assert status["observedGeneration"] == 1
    assert status["endpoint"] == f"http://{name}-vllm.{namespace}.svc:8000/v1"

    dep = deployment(k8s, namespace, name)
    vllm = vllm_container(dep)
    tp = status["placement"]["tensorParallelSize"]
    assert int(arg_value(vllm.args or vllm.command, "--tensor-parallel-size")) == tp
    assert vllm.resources.limits["nvidia.com/gpu"] == str(tp)
    assert vllm.resources.requests["nvidia.com/gpu"] == str(tp)
    buckets = json.loads(arg_value(vllm.args or vllm.command, "--custom-histogram-buckets"))
    objectives = body["spec"]["objectives"]
    assert objectives["ttft"]["thresholdMs"] / 1000 in buckets["time_to_first_token"]
    assert objectives["tpot"]["thresholdMs"] / 1000 in buckets["inter_token_latency"]

    nslice = custom(k8s).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "networkslices", f"{name}-slice"
    )
    assert nslice["spec"]["sst"] == body["spec"]["network"]["sst"]
    sl_status = eventually(
        lambda: (
            custom(k8s)
            .get_namespaced_custom_object(
                GROUP, VERSION, namespace, "networkslices", f"{name}-slice"
            )
            .get("status")
            or {}
        ).get("phase"),
        what="slice realized",
    )
    assert sl_status == "Ready"
    nslice = custom(k8s).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "networkslices", f"{name}-slice"
    )
    # What Kopf handled of each is their status generation: no annotation written after it
    # (the handled spec, Kopf's marker).
    kopfs = {f"{GROUP}/last-handled-configuration", f"{GROUP}/kopf-managed"}
    for handled in (get_sla(k8s, namespace, name), nslice):
        assert handled["status"]["observedGeneration"] == handled["metadata"]["generation"]
        assert not kopfs & set(handled["metadata"].get("annotations", {}))
    template = dep.spec.template
    assert template.spec.priority_class_name == nslice["status"]["priorityClassName"]
    client.SchedulingV1Api(k8s).read_priority_class(template.spec.priority_class_name)
    for key, value in nslice["status"]["bandwidthAnnotations"].items():
        assert template.metadata.annotations[key] == value

    policy = client.NetworkingV1Api(k8s).read_namespaced_network_policy(f"{name}-slice", namespace)
    assert policy.spec.pod_selector.match_labels == dep.spec.selector.match_labels
    selector = policy.spec.pod_selector.match_labels
    assert selector.items() <= template.metadata.labels.items()
    assert selector["aiconn.io/sla"] == name
    svc = client.CoreV1Api(k8s).read_namespaced_service(f"{name}-vllm", namespace)
    assert svc.spec.selector == dep.spec.selector.match_labels
    assert [p.port for p in svc.spec.ports] == [8000]
    client.CoreV1Api(k8s).read_namespaced_secret(f"{name}-keys", namespace)
    # The pods' own identity, allowed to read its namespace's SLAs (the wallet API's check).
    identity = status["children"]["serviceAccount"]
    assert template.spec.service_account_name == identity == f"{name}-gateway"
    account = client.CoreV1Api(k8s).read_namespaced_service_account(identity, namespace)
    assert account.automount_service_account_token is False
    rbac = client.RbacAuthorizationV1Api(k8s)
    role = rbac.read_namespaced_role(identity, namespace)
    assert [(r.resources, r.verbs) for r in role.rules] == [(["aiinferenceslas"], ["get"])]
    binding = rbac.read_namespaced_role_binding(identity, namespace)
    assert [(s.kind, s.name) for s in binding.subjects] == [("ServiceAccount", identity)]
    for obj in (account, role, binding):
        assert [ref.name for ref in obj.metadata.owner_references] == [name]
    replicas = body["spec"].get("capacity", {}).get("replicas", 1)
    pdbs = client.PolicyV1Api(k8s).list_namespaced_pod_disruption_budget(namespace).items
    assert len(pdbs) == (1 if replicas >= 2 else 0)


def test_dedicated_slice_admits_only_allowed_sources_and_monitoring(
    k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    body = sample("sla-edge-urllc.yaml")
    create(k8s, namespace, body)
    name = body["metadata"]["name"]
    policy = eventually(
        lambda: client.NetworkingV1Api(k8s).list_namespaced_network_policy(namespace).items,
        what="network policy",
    )[0]
    peers = policy.spec.ingress[0]._from
    cidrs = {p.ip_block.cidr for p in peers if p.ip_block}
    namespaces = {
        p.namespace_selector.match_labels["kubernetes.io/metadata.name"]
        for p in peers
        if p.namespace_selector
    }
    assert cidrs == {"10.45.0.0/16"}
    assert namespaces == {"acme-apps", "monitoring"}
    assert policy.spec.pod_selector.match_labels["aiconn.io/sla"] == name


def test_impossible_sla_is_unplaced_with_every_tiers_reason(
    k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    body = sample("sla-edge-urllc.yaml")
    body["metadata"]["name"] = "impossible"
    body["spec"]["model"]["parametersBillions"] = 70
    body["spec"]["model"].pop("architecture")
    body["spec"]["network"]["rttBudgetMs"] = 10
    create(k8s, namespace, body)
    status = eventually(lambda: placed(k8s, namespace, "impossible"), what="placement decided")
    assert status["phase"] == "Unplaceable"
    assert condition_of(status, "Placed")["status"] == "False"
    reasons = {r["tier"]: r["reason"] for r in status["placement"]["rejected"]}
    assert set(reasons) == {"edge", "regional", "cloud"}
    assert all(reasons.values())
    assert not client.AppsV1Api(k8s).list_namespaced_deployment(namespace).items
    events = eventually(
        lambda: [
            e
            for e in client.CoreV1Api(k8s).list_namespaced_event(namespace).items
            if e.involved_object.name == "impossible" and e.reason == "Unplaceable"
        ],
        what="Unplaceable event",
    )
    assert events[0].type == "Warning"


def test_spec_update_converges_and_delete_collects_children(
    k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    name = create_sample(k8s, namespace, "sla-edge-urllc.yaml")
    eventually(
        lambda: (placed(k8s, namespace, name) or {}).get("placement", {}).get("tier") == "edge",
        what="edge",
    )

    patch = {
        "spec": {
            "model": {
                "parametersBillions": 70,
                "architecture": {"numLayers": 80, "numKvHeads": 8, "headDim": 128},
            },
            "network": {"rttBudgetMs": 60},
            "placement": {"dataResidency": "EU"},
            "objectives": {
                "ttft": {"thresholdMs": 1234, "targetPercent": 99},
                "tpot": {"thresholdMs": 80, "targetPercent": 95},
            },
        }
    }
    patch_sla(k8s, namespace, name, patch)
    status = eventually(
        lambda: (s := placed(k8s, namespace, name)) and s["observedGeneration"] == 2 and s,
        what="generation 2 reconciled",
    )
    assert status["placement"]["tier"] == "regional"
    buckets = json.loads(
        arg_value(
            vllm_container(deployment(k8s, namespace, name)).args, "--custom-histogram-buckets"
        )
    )
    assert 1.234 in buckets["time_to_first_token"]
    assert len(client.AppsV1Api(k8s).list_namespaced_deployment(namespace).items) == 1

    custom(k8s).delete_namespaced_custom_object(GROUP, VERSION, namespace, "aiinferenceslas", name)

    def children_left() -> list[str]:
        left = [
            d.metadata.name
            for d in client.AppsV1Api(k8s).list_namespaced_deployment(namespace).items
        ]
        left += [
            s.metadata.name for s in client.CoreV1Api(k8s).list_namespaced_service(namespace).items
        ]
        left += [
            s.metadata.name
            for s in client.CoreV1Api(k8s).list_namespaced_secret(namespace).items
            if s.metadata.name.startswith(name)
        ]
        left += [
            p.metadata.name
            for p in client.PolicyV1Api(k8s).list_namespaced_pod_disruption_budget(namespace).items
        ]
        left += [
            n["metadata"]["name"]
            for n in custom(k8s).list_namespaced_custom_object(
                GROUP, VERSION, namespace, "networkslices"
            )["items"]
        ]
        left += [
            p.metadata.name
            for p in client.NetworkingV1Api(k8s).list_namespaced_network_policy(namespace).items
        ]
        return left

    eventually(lambda: not children_left() or None, what="garbage collection")  # type: ignore[arg-type]


def test_available_replicas_make_the_sla_ready(
    k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    name = create_sample(k8s, namespace, "sla-regional-eu-70b.yaml")
    status = eventually(lambda: placed(k8s, namespace, name), what="placed")
    assert condition_of(status, "InferenceReady")["status"] == "False"
    play_kubelet(k8s, namespace, f"aiconn.io/sla={name}")
    status = eventually(
        lambda: (s := get_sla(k8s, namespace, name)["status"])["phase"] == "Ready" and s,
        what="Ready",
    )
    assert condition_of(status, "Ready")["status"] == "True"
    assert condition_of(status, "SliceReady")["status"] == "True"


def test_tier_edit_replans_the_slas_on_it(k8s: Any, namespace: str, operator: KopfRunner) -> None:
    body = sample("sla-edge-urllc.yaml")
    name = body["metadata"]["name"]
    body["spec"]["placement"]["dataResidency"] = "EU"
    body["spec"]["network"]["rttBudgetMs"] = 60
    body["spec"]["objectives"]["ttft"]["thresholdMs"] = 2000
    create(k8s, namespace, body)
    eventually(
        lambda: (placed(k8s, namespace, name) or {}).get("placement", {}).get("tier") == "edge",
        what="edge",
    )
    original = custom(k8s).get_cluster_custom_object(GROUP, VERSION, "inferencetiers", "edge")
    try:
        custom(k8s).patch_cluster_custom_object(
            GROUP, VERSION, "inferencetiers", "edge", {"spec": {"pricePerMillionTokens": 5.0}}
        )
        status = eventually(
            lambda: (s := placed(k8s, namespace, name)) and s["placement"]["tier"] != "edge" and s,
            what="re-planned off edge",
        )
        assert status["placement"]["tier"] == "regional"
        reasons = {r["tier"]: r["reason"] for r in status["placement"]["rejected"]}
        assert "edge" in reasons
    finally:
        custom(k8s).patch_cluster_custom_object(
            GROUP,
            VERSION,
            "inferencetiers",
            "edge",
            {"spec": {"pricePerMillionTokens": original["spec"]["pricePerMillionTokens"]}},
        )
    yaml.safe_dump(body)


class _Nsmf:
    """A stand-in for a 5G core's slice manager (TS 28.532 ProvMnS), started by the test:
    records requests and answers with the configured status, or not at all."""

    def __init__(self, status: int, *, hang: bool = False) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append(
                    ("PUT", self.path, json.loads(self.rfile.read(length) or b"{}"))
                )
                if hang:
                    threading.Event().wait(30)
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": "slice manager says no"}' if status >= 400 else b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ProvMnS/v1700"

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize(
    ("status", "hang", "reason_text"),
    [
        (201, False, None),
        (500, False, "500"),
        (0, True, "no answer within"),
    ],
)
def test_nsmf_backend_reports_what_the_slice_manager_did(
    k8s: Any, namespace: str, operator: KopfRunner, status: int, hang: bool, reason_text: str | None
) -> None:
    nsmf = _Nsmf(status, hang=hang)
    try:
        # The slice manager is the provider's, named in an offer: a tenant never names the URL
        # the operator sends requests to (issue 16).
        body = sample("sla-regional-eu-70b.yaml")
        offer = next(
            d
            for d in load_documents([SAMPLES / "offers.yaml"])
            if d["metadata"]["name"] == body["spec"]["offer"]
        )
        offer["metadata"]["name"] = f"nsmf-{namespace}"
        offer["spec"]["sliceManager"] = {"url": nsmf.url}
        apply_objects(k8s, [offer])
        name = body["metadata"]["name"]
        body["spec"]["offer"] = offer["metadata"]["name"]
        body["spec"]["network"]["backend"] = "nsmf"
        create(k8s, namespace, body)

        def slice_condition() -> dict[str, Any] | None:
            items = custom(k8s).list_namespaced_custom_object(
                GROUP, VERSION, namespace, "networkslices"
            )["items"]
            if not items:
                return None
            obj = items[0]
            conds = (obj.get("status") or {}).get("conditions", [])
            return next((c for c in conds if c["type"] == "SliceReady"), None)

        cond = eventually(slice_condition, what="SliceReady decided")
        method, path, sent = nsmf.requests[0]
        assert method == "PUT"
        assert path.startswith("/ProvMnS/v1700/SliceProfile=aiconn-")
        attrs = sent["attributes"]
        assert attrs["plmnInfoList"][0]["snssai"] == {"sst": 1, "sd": "00B001"}
        assert {"dLLatency", "uLLatency", "resourceSharingLevel"} <= set(
            attrs["cNSliceSubnetProfile"]
        )
        if reason_text is None:
            assert cond["status"] == "True"
        else:
            assert cond["status"] == "False"
            assert reason_text in cond["message"], cond
            sla_status = eventually(
                lambda: (
                    (s := get_sla(k8s, namespace, name).get("status") or {})
                    and any(
                        c["type"] == "SliceReady" and c["status"] == "False"
                        for c in s.get("conditions", [])
                    )
                    and s
                ),
                what="SLA reports the slice failure",
            )
            assert sla_status["phase"] == "Degraded"
    finally:
        nsmf.close()


# What a tenant sees without reading the operator's log: children followed by watches, failures
# as conditions with one Event, an unplaceable edit that says what is in force, a readable table.


def _conditions(k8s: Any, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    status = get_sla(k8s, namespace, name).get("status") or {}
    return {c["type"]: c for c in status.get("conditions", [])}


def _condition_once(
    k8s: Any, namespace: str, name: str, kind: str, **expected: str
) -> dict[str, Any]:
    """The SLA's `kind` condition, waited for until its fields have the `expected` values."""
    return eventually(
        lambda: (
            (c := _conditions(k8s, namespace, name).get(kind))
            and all(c[field] == value for field, value in expected.items())
            and c
        ),
        what=f"{kind} {expected} on the SLA",
    )


def _events(k8s: Any, namespace: str, name: str, reason: str) -> list[Any]:
    return [
        e
        for e in client.CoreV1Api(k8s).list_namespaced_event(namespace).items
        if e.involved_object.name == name and e.reason == reason
    ]


def _table_row(k8s: Any, namespace: str, name: str) -> dict[str, Any]:
    table = sla_table(k8s, f"namespaces/{namespace}/aiinferenceslas/{name}")
    columns = [c["name"] for c in table["columnDefinitions"]]
    return dict(zip(columns, table["rows"][0]["cells"], strict=True))


def test_slice_ready_follows_the_child_without_touching_the_sla(
    k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    name = create_sample(k8s, namespace, "sla-regional-eu-70b.yaml")
    cond = _condition_once(k8s, namespace, name, "SliceReady", status="True")
    assert cond["reason"] == "Realized"
    assert get_sla(k8s, namespace, name)["metadata"]["generation"] == 1
    # The Deployment's readiness is followed the same way: pods turn Ready, the SLA follows.
    play_kubelet(k8s, namespace, f"aiconn.io/sla={name}")
    eventually(
        lambda: _conditions(k8s, namespace, name)["InferenceReady"]["status"] == "True",
        what="InferenceReady=True",
    )
    assert get_sla(k8s, namespace, name)["metadata"]["generation"] == 1


def _deny_services(k8s: Any, namespace: str) -> str:
    """A ValidatingAdmissionPolicy that refuses every new Service in `namespace`; returns its
    name once the API server enforces it (probed with a dry-run create)."""
    from kubernetes.client.rest import ApiException

    name = f"no-services-{namespace}"
    admission = client.AdmissionregistrationV1Api(k8s)
    admission.create_validating_admission_policy(
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["services"],
                        }
                    ]
                },
                "validations": [
                    {"expression": "false", "message": "services are not allowed in this namespace"}
                ],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )
    probe = {"metadata": {"name": "probe"}, "spec": {"ports": [{"port": 80}]}}

    def refused() -> bool:
        try:
            client.CoreV1Api(k8s).create_namespaced_service(namespace, probe, dry_run="All")
        except ApiException as err:
            return "not allowed" in str(err.body)
        return False

    eventually(refused, what="the admission policy in force")
    return name


def test_a_reconcile_failure_is_a_condition_and_one_event(
    k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    """An admission policy refuses the SLA's Service: the API server refuses a child, which only
    the operator sees. It becomes Ready=False/ReconcileFailed and one Warning, however often the
    operator retries, and the SLA recovers by itself once the policy is gone."""
    policy = _deny_services(k8s, namespace)
    try:
        name = create_sample(k8s, namespace, "sla-regional-eu-70b.yaml")
        ready = _condition_once(k8s, namespace, name, "Ready", reason="ReconcileFailed")
        assert ready["status"] == "False"
        assert "services are not allowed in this namespace" in ready["message"], ready
        assert len(ready["message"]) <= 1024
        assert get_sla(k8s, namespace, name)["status"]["phase"] == "Failed"

        def retries() -> int:
            meta = get_sla(k8s, namespace, name)["metadata"]
            annotations = meta.get("annotations") or {}
            progress = json.loads(annotations.get("aiconn.io/sla_changed", "{}"))
            return int(progress.get("retries") or 0)

        eventually(lambda: retries() >= 2, what="a retry after the first failure")
        eventually(lambda: _events(k8s, namespace, name, "ReconcileFailed"), what="the Event")
        failures = _events(k8s, namespace, name, "ReconcileFailed")
        assert len(failures) == 1 and (failures[0].count or 1) == 1, failures
        assert failures[0].type == "Warning"
        # No Kopf log lines turned into Events (a "Handler failed" per retry).
        assert all(e.reason in _OPERATOR_REASONS for e in _all_events(k8s, namespace, name))
    finally:
        delete_admission_policies(k8s, policy)
    eventually(
        lambda: get_sla(k8s, namespace, name)["status"]["phase"] != "Failed",
        what="recovery once the policy is gone",
    )
    assert _conditions(k8s, namespace, name)["Ready"]["reason"] != "ReconcileFailed"


_OPERATOR_REASONS = {"Placed", "TierNotChosen", "ReconcileFailed", "Unplaceable"}


def _all_events(k8s: Any, namespace: str, name: str) -> list[Any]:
    return [
        e
        for e in client.CoreV1Api(k8s).list_namespaced_event(namespace).items
        if e.involved_object.name == name
    ]


def test_an_unplaceable_edit_says_what_is_in_force_and_what_is_pending(
    k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    name = create_sample(k8s, namespace, "sla-edge-urllc.yaml")
    eventually(
        lambda: (get_sla(k8s, namespace, name).get("status") or {}).get("inForceGeneration") == 1,
        what="generation 1 in force",
    )
    patch_sla(k8s, namespace, name, {"spec": {"network": {"rttBudgetMs": 1}}})
    status = eventually(
        lambda: (s := get_sla(k8s, namespace, name)["status"]).get("observedGeneration") == 2 and s,
        what="generation 2 reconciled",
    )
    assert status["phase"] == "EditUnplaceable"
    assert status["inForceGeneration"] == 1
    assert status["placement"]["tier"] == "edge"
    assert status["pending"]["generation"] == 2
    placed = condition_of(status, "Placed")
    assert (placed["status"], placed["reason"]) == ("False", "EditUnplaceable")
    assert "generation 1 stays in force on edge" in placed["message"]
    assert _table_row(k8s, namespace, name)["Phase"] == "EditUnplaceable"
    assert client.AppsV1Api(k8s).read_namespaced_deployment(f"{name}-vllm", namespace)
    assert len(_events(k8s, namespace, name, "EditUnplaceable")) == 1

    patch_sla(k8s, namespace, name, {"spec": {"network": {"rttBudgetMs": 20}}})
    status = eventually(
        lambda: (s := get_sla(k8s, namespace, name)["status"]).get("inForceGeneration") == 3 and s,
        what="generation 3 in force",
    )
    assert "pending" not in status
    assert condition_of(status, "Placed")["status"] == "True"


def test_the_printed_table_is_rounded_and_says_breached(
    k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    body = sample("sla-regional-eu-70b.yaml")
    name = body["metadata"]["name"]
    create(k8s, namespace, body)
    eventually(lambda: (get_sla(k8s, namespace, name).get("status") or {}).get("children"))
    play_kubelet(k8s, namespace, f"aiconn.io/sla={name}")
    eventually(lambda: get_sla(k8s, namespace, name)["status"]["phase"] == "Ready", what="Ready")
    assert _table_row(k8s, namespace, name)["Compliant"] == "Unknown"

    # What the SLA loop writes after a bad hour, with the figures it computes.
    sla = get_sla(k8s, namespace, name)
    conditions = [c for c in sla["status"]["conditions"] if c["type"] != "Compliant"]
    conditions.append(
        {
            "type": "Compliant",
            "status": "False",
            "reason": "AvailabilityMissed",
            "message": "availability 33.33% is below the 99.9% objective",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    )
    period = {
        "availabilityPercent": 33.333333333333336,
        "budgetRemainingPercent": -66566.66666667046,
        "creditsAccrued": "12.345678",
        "alerts": ["page-1h"],
    }
    custom(k8s).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "aiinferenceslas",
        name,
        {"status": {"period": period, "conditions": conditions}},
    )
    row = eventually(
        lambda: (r := _table_row(k8s, namespace, name))["Phase"] == "Breached" and r,
        what="Breached in the table",
    )
    currency = body["spec"].get("tokens", {}).get("currency", "EUR")
    assert row["Avail"] == "33.33%"
    assert row["Budget"] == "-66566.7%"
    assert row["Credits"] == f"12.35 {currency}"
    assert row["Compliant"] == "No"


def test_the_dev_gateway_accepts_the_key_in_the_slas_secret(
    k8s: Any, namespace: str, operator: KopfRunner, tmp_path: Path
) -> None:
    """The dev stack's gateway reads a keys directory, not the Secret: the key the README tells
    tenants to use (the Secret's) is added to it once the operator has written the Secret."""
    from aiconn.devstack.gateway import write_keys
    from aiconn.devstack.stack import trust_secret_keys
    from aiconn.gateway.keys import KeyStore

    keys_dir = write_keys(tmp_path / "keys", "aic_dev-stack-own-key")
    name = create_sample(k8s, namespace, "sla-edge-urllc.yaml")
    key = trust_secret_keys(k8s, name, keys_dir, namespace=namespace)
    secret = client.CoreV1Api(k8s).read_namespaced_secret(f"{name}-keys", namespace)
    assert key.startswith("aic_") and key != "aic_dev-stack-own-key"
    assert base64.b64decode(secret.data["api-key"]).decode() == key
    store = KeyStore(keys_dir, check_seconds=0)
    assert store.accepts(key)
    assert store.accepts("aic_dev-stack-own-key")
    assert not store.accepts("aic_someone-else")


def test_a_price_change_announced_too_late_is_a_warning_on_the_offer(
    k8s: Any, operator: KopfRunner
) -> None:
    """Without the admission policy (a cluster that did not install manifests/policy), the
    operator never applies a price change announced with less than the offer's notice, and says
    so where the provider looks: a Warning Event on the cluster-scoped offer (in `default`),
    from the operator's own poster, naming the field."""
    name = f"hurried-{uuid.uuid4().hex[:8]}"
    offer = price_raised_in_a_day(name)
    custom(k8s).create_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", offer)
    try:
        (warning,) = eventually(
            lambda: [
                e for e in _all_events(k8s, "default", name) if e.reason == "PriceNoticeTooShort"
            ],
            what="the operator's Warning on the offer",
        )
        assert warning.type == "Warning"
        assert warning.involved_object.kind == "AIInferenceOffer"
        assert warning.source.component == "aiconn-operator"
        assert warning.message.startswith("spec.priceChanges"), warning.message
    finally:
        custom(k8s).delete_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", name)
