"""The trust boundary on the real API server: a tenant whose only right is on AIInferenceSLAs in
its namespace cannot buy outside the provider's AIInferenceOffer (the ValidatingAdmissionPolicy
from manifests/policy/ refuses it, naming the field), cannot write offers, and the operator acts
on the offer's terms, never the SLA's; wallets are funded once per tenant and plan period however
often SLAs are deleted and re-created."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from aiconn.devstack.controlplane import ControlPlane
from aiconn.devstack.kube import apply_manifests, load_documents
from aiconn.devstack.processes import free_port
from aiconn.operator.evaluation import FleetEvaluator
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.reconcile import reconcile_sla
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.tier import InferenceTierSpec
from aiconn.sla.accounting import Kind
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource
from tests.factories import llama_model_classes, offer_manifest, sla_manifest
from tests.helpers import delete_admission_policies, eventually, ledger_url_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "manifests" / "policy" / "sla-within-offer.yaml"
SAMPLES = ROOT / "manifests" / "samples"
TENANT = "tenant-a"
INCLUDED = 1_000_000


def offer_body(name: str) -> dict[str, Any]:
    return offer_manifest(
        name,
        {
            "currency": "EUR",
            "modelClasses": llama_model_classes(small=0.5, large=1.6),
            "plan": {"includedTokensPerPeriod": INCLUDED, "period": "1M"},
            "credits": {
                "availability": [{"belowPercent": 99, "creditPercent": 20}],
                "latency": [{"belowPercent": 95, "creditPercent": 5}],
                "capPercent": 40,
            },
            "rateLimitCeiling": {"requestsPerSecond": 10, "tokensPerMinute": 60000},
            "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
            "sliceManager": {"url": "https://nsmf.provider.example/ProvMnS"},
            "allowedTiers": ["edge", "regional"],
        },
    )


def sla_body(name: str, offer: str) -> dict[str, Any]:
    return sla_manifest(
        name,
        {
            "offer": offer,
            "model": {
                "name": "llama-3-8b",
                "source": "hf://meta-llama/Meta-Llama-3-8B-Instruct",
                "parametersBillions": 8,
            },
            "network": {"rttBudgetMs": 20},
        },
    )


def with_value(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out["spec"]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return out


@pytest.fixture(scope="module")
def offer(k8s: Any) -> Iterator[str]:
    """A provider's offer and the admission policy, removed after the module: other modules of
    the session create SLAs without offers on the same API server."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    custom = client.CustomObjectsApi(k8s)
    custom.create_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", offer_body(name))
    apply_manifests(k8s, [POLICY])
    try:
        yield name
    finally:
        delete_admission_policies(k8s, "aiconn-sla-within-offer")
        custom.delete_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", name)


@pytest.fixture
def tenant(control_plane: ControlPlane, k8s: Any, namespace: str) -> Iterator[Any]:
    """An ApiClient of a tenant whose only right is on AIInferenceSLAs in `namespace`."""
    rbac = client.RbacAuthorizationV1Api(k8s)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "sla-editor"},
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": ["aiinferenceslas"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "sla-editor"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "sla-editor",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}],
        },
    )
    api = control_plane.api_client(TENANT)
    yield api
    api.close()


def create(api: Any, namespace: str, body: dict[str, Any], *, dry_run: bool = False) -> Any:
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", body, dry_run="All" if dry_run else None
    )


def refusal(api: Any, namespace: str, body: dict[str, Any]) -> str:
    """The API server's message refusing `body` (a dry run: nothing is stored either way)."""
    with pytest.raises(ApiException) as refused:
        create(api, namespace, body, dry_run=True)
    assert refused.value.status == 422, refused.value.body
    return str(json.loads(refused.value.body)["message"])


def policy_active(api: Any, namespace: str, offer: str) -> bool:
    """The policy and its parameters reach the API server's admission asynchronously."""
    try:
        create(
            api,
            namespace,
            with_value(sla_body("probe", offer), "tokens.currency", "USD"),
            dry_run=True,
        )
    except ApiException as err:
        return err.status == 422
    return False


# (dotted path under spec, a value outside the offer, the field the refusal must name)
OUTSIDE: list[tuple[str, Any, str]] = [
    ("tokens.pricePerMillionTokens", 0.000001, "spec.tokens.pricePerMillionTokens"),
    ("tokens.monthlyCommitment", 999 * 10**12, "spec.tokens.monthlyCommitment"),
    ("tokens.currency", "USD", "spec.tokens.currency"),
    (
        "credits.availability",
        # Within the objective (the CRD refuses a first tier above the target on its own) and
        # still not the offer's schedule.
        [{"belowPercent": 99.5, "creditPercent": 100}],
        "spec.credits.availability",
    ),
    ("credits.latency", [{"belowPercent": 99, "creditPercent": 50}], "spec.credits.latency"),
    ("credits.capPercent", 100, "spec.credits.capPercent"),
    ("tokens.rateLimit", {"requestsPerSecond": 1000}, "spec.tokens.rateLimit.requestsPerSecond"),
    ("tokens.rateLimit", {"tokensPerMinute": 10**9}, "spec.tokens.rateLimit.tokensPerMinute"),
    ("network.sst", 2, "spec.network.sst"),
    ("network.fiveQI", 82, "spec.network.fiveQI"),
    ("network.sd", "0000A1", "spec.network.sd"),
    ("network.nsmfUrl", "http://169.254.169.254/latest", "spec.network.nsmfUrl"),
    ("placement.tier", "cloud", "spec.placement.tier"),
    ("model.name", "llama-3.1-405b", "spec.model.name"),
    # The provider's figure for llama-3-8b is 8B: a tenant's own figure cannot differ.
    ("model.parametersBillions", 1, "spec.model.parametersBillions"),
]


@pytest.mark.parametrize(
    ("path", "value", "field"), OUTSIDE, ids=[f"{p}={v!r}"[:50] for p, v, _ in OUTSIDE]
)
def test_a_tenant_cannot_buy_outside_the_offer(
    offer: str, tenant: Any, namespace: str, path: str, value: Any, field: str
) -> None:
    eventually(lambda: policy_active(tenant, namespace, offer), what="the admission policy")
    message = refusal(tenant, namespace, with_value(sla_body("greedy", offer), path, value))
    assert field in message, message
    assert "aiconn-sla-within-offer" in message, message


def test_a_tenant_chooses_within_the_offer(offer: str, tenant: Any, namespace: str) -> None:
    eventually(lambda: policy_active(tenant, namespace, offer), what="the admission policy")
    body = sla_body("modest", offer)
    for path, value in (
        ("tokens.pricePerMillionTokens", 0.5),
        ("tokens.monthlyCommitment", INCLUDED),
        ("tokens.rateLimit", {"requestsPerSecond": 5}),
        ("network.sst", 1),
        ("network.fiveQI", 9),
        ("placement.tier", "regional"),
    ):
        body = with_value(body, path, value)
    created = create(tenant, namespace, body)
    assert created["spec"]["offer"] == offer
    assert "credits" not in created["spec"], "provider-owned fields get no server default"
    # Editing the spec is judged again: a later price cut by the tenant is refused too.
    patched = with_value(created, "tokens.pricePerMillionTokens", 0.01)
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(tenant).replace_namespaced_custom_object(
            GROUP, VERSION, namespace, "aiinferenceslas", "modest", patched
        )
    assert "spec.tokens.pricePerMillionTokens" in json.loads(refused.value.body)["message"]


def test_the_model_name_picks_the_class_and_cannot_change(
    offer: str, tenant: Any, namespace: str
) -> None:
    eventually(lambda: policy_active(tenant, namespace, offer), what="the admission policy")
    created = create(tenant, namespace, sla_body("small", offer))
    # Switching to the large model mid-period would keep the small model's pinned price.
    switched = with_value(
        with_value(created, "model.name", "llama-3-70b"), "model.parametersBillions", 70
    )
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(tenant).replace_namespaced_custom_object(
            GROUP, VERSION, namespace, "aiinferenceslas", "small", switched
        )
    assert "spec.model.name" in json.loads(refused.value.body)["message"]


def test_an_offer_is_sold_only_in_the_namespaces_it_selects(
    offer: str, k8s: Any, tenant: Any, namespace: str
) -> None:
    eventually(lambda: policy_active(tenant, namespace, offer), what="the admission policy")
    custom, core = client.CustomObjectsApi(k8s), client.CoreV1Api(k8s)
    selective = offer_body(f"{offer}-acme")
    selective["spec"]["namespaceSelector"] = {"matchLabels": {"aiconn.io/customer": "acme"}}
    name = selective["metadata"]["name"]
    custom.create_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", selective)
    try:
        body = sla_body("acme-chat", name)

        def refused_here() -> str | None:
            try:
                create(tenant, namespace, body, dry_run=True)
            except ApiException as err:
                message = str(json.loads(err.body)["message"])
                return message if "namespaceSelector" in message else None
            return None

        message = eventually(refused_here, what="the offer's namespaceSelector to be enforced")
        assert "spec.offer" in message, message
        # The provider labels the customer's namespace (tenants cannot: namespaces are the
        # provider's): the same SLA is admitted.
        core.patch_namespace(namespace, {"metadata": {"labels": {"aiconn.io/customer": "acme"}}})

        def admitted() -> dict[str, Any] | None:
            try:
                created: dict[str, Any] = create(tenant, namespace, body)
            except ApiException as err:
                assert err.status == 422, err.body
                return None
            return created

        created = eventually(admitted, what="the labelled namespace to be sold in")
        # The label goes (or the provider narrows the selector): the operator refuses to serve
        # the SLA it admitted, and says why.
        core.patch_namespace(namespace, {"metadata": {"labels": {"aiconn.io/customer": None}}})
        outcome = asyncio.run(reconcile_sla(KubeApi(k8s), created, tiers(), OperatorSettings()))
        ready = next(c for c in outcome.conditions if c["type"] == "Ready")
        assert (outcome.status["phase"], ready["reason"]) == ("Invalid", "NamespaceNotSelected")
        assert "namespaceSelector" in ready["message"]
        assert outcome.events and outcome.events[0].reason == "NamespaceNotSelected"
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", name)


def test_an_sla_without_an_offer_is_refused(offer: str, tenant: Any, namespace: str) -> None:
    eventually(lambda: policy_active(tenant, namespace, offer), what="the admission policy")
    body = sla_body("legacy", offer)
    del body["spec"]["offer"]
    assert "spec.offer" in refusal(tenant, namespace, body)


def test_a_tenant_cannot_write_offers(offer: str, tenant: Any) -> None:
    custom = client.CustomObjectsApi(tenant)
    with pytest.raises(ApiException) as refused:
        custom.create_cluster_custom_object(
            GROUP, VERSION, "aiinferenceoffers", offer_body(f"{offer}-mine")
        )
    assert refused.value.status == 403
    with pytest.raises(ApiException) as refused:
        custom.patch_cluster_custom_object(
            GROUP, VERSION, "aiinferenceoffers", offer, {"spec": {"currency": "USD"}}
        )
    assert refused.value.status == 403


def tiers() -> dict[str, InferenceTierSpec]:
    docs = load_documents([SAMPLES / "tiers.yaml"])
    return {d["metadata"]["name"]: InferenceTierSpec.model_validate(d["spec"]) for d in docs}


def test_the_operator_takes_priority_rates_and_endpoint_from_the_offer(
    offer: str, k8s: Any, tenant: Any, namespace: str
) -> None:
    eventually(lambda: policy_active(tenant, namespace, offer), what="the admission policy")
    body = create(tenant, namespace, sla_body("served", offer))
    kube = KubeApi(k8s)
    outcome = asyncio.run(reconcile_sla(kube, body, tiers(), OperatorSettings()))
    assert outcome.status["phase"] != "Invalid", outcome
    assert outcome.status["placement"]["tier"] in {"edge", "regional"}
    rejected = {r["tier"]: r["reason"] for r in outcome.status["placement"]["rejected"]}
    assert f"not among the tiers of offer {offer}" in rejected["cloud"]
    custom = client.CustomObjectsApi(k8s)
    slice_obj = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "networkslices", outcome.status["children"]["networkSlice"]
    )
    assert (slice_obj["spec"]["sst"], slice_obj["spec"]["fiveQI"]) == (1, 9)
    deployment = client.AppsV1Api(k8s).read_namespaced_deployment(
        outcome.status["children"]["deployment"], namespace
    )
    env = {e.name: e.value for c in deployment.spec.template.spec.containers for e in c.env or []}
    assert env["AICONN_RATE_RPS"] == "10"
    assert env["AICONN_RATE_TPM"] == "60000"

    # An SLA admitted before the policy (or with the policy off) asking for a delay-critical
    # 5QI and its own slice manager: the operator refuses it, provisions nothing, and says why.
    smuggled = with_value(with_value(body, "network.fiveQI", 82), "network.nsmfUrl", "http://x/")
    smuggled["metadata"]["name"] = "smuggled"
    outcome = asyncio.run(reconcile_sla(kube, smuggled, tiers(), OperatorSettings()))
    ready = next(c for c in outcome.conditions if c["type"] == "Ready")
    assert (outcome.status["phase"], ready["reason"]) == ("Invalid", "OutsideOffer")
    assert "spec.network.fiveQI" in ready["message"]
    assert outcome.events and outcome.events[0].reason == "OutsideOffer"

    # The served SLA edited to an offer that does not exist: no terms to meter it by, so what
    # runs stops serving (scaled to 0), and it says so.
    missing = with_value(body, "offer", "no-such-offer")
    outcome = asyncio.run(reconcile_sla(kube, missing, tiers(), OperatorSettings()))
    ready = next(c for c in outcome.conditions if c["type"] == "Ready")
    assert ready["reason"] == "OfferNotFound"
    assert "inference pods are stopped" in ready["message"]
    stopped = client.AppsV1Api(k8s).read_namespaced_deployment(deployment.metadata.name, namespace)
    assert stopped.spec.replicas == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return ledger_url_for(request, tmp_path)


def test_deleting_and_recreating_slas_funds_the_plan_once(
    offer: str, k8s: Any, tenant: Any, namespace: str, ledger_url: str
) -> None:
    eventually(lambda: policy_active(tenant, namespace, offer), what="the admission policy")
    ledger = Ledger.open(ledger_url)
    # No Prometheus: funding does not wait for measurements, and nothing else is needed here.
    settings = OperatorSettings(
        namespaces=[namespace], prometheus_url=f"http://127.0.0.1:{free_port()}"
    )

    def one_pass() -> None:
        # A fresh evaluator each time: what stops a second funding is the ledger, not memory.
        evaluator = FleetEvaluator(
            kube=KubeApi(k8s),
            source=PrometheusSource.from_url(settings.prometheus_url or "", timeout_s=2),
            ledger=ledger,
            settings=settings,
        )
        report = asyncio.run(evaluator.run_once())
        assert report.slas >= 1

    wallet = wallet_owner(namespace, None)
    before = ledger.wallet_balance(wallet)
    create(tenant, namespace, sla_body("first", offer))
    one_pass()
    assert ledger.wallet_balance(wallet) - before == INCLUDED
    custom = client.CustomObjectsApi(tenant)
    for round_ in range(3):
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "aiinferenceslas", "first"
        )
        eventually(
            lambda: (
                not [
                    s
                    for s in custom.list_namespaced_custom_object(
                        GROUP, VERSION, namespace, "aiinferenceslas"
                    )["items"]
                    if s["metadata"]["name"] == "first"
                ]
            ),
            what="the SLA to be gone",
        )
        create(tenant, namespace, sla_body("first", offer))
        create(tenant, namespace, sla_body(f"second-{round_}", offer))
        one_pass()
    assert ledger.wallet_balance(wallet) - before == INCLUDED
    funded = [
        t for t in ledger.transfers(kind=Kind.ALLOWANCE) if t.credit_account == f"wallet:{wallet}"
    ]
    assert len(funded) == 1 and funded[0].metadata["offer"] == offer
    ledger.close()
