"""MaintenanceWindows and the published business-hours SLA on a real API server (issue 11, item 8).

The API server is what makes an excusal trustworthy: it stamps the creationTimestamp the notice
counts from, refuses an edit that would stretch a window over an outage afterwards, and keeps
the resource cluster-scoped (the provider's). The sample offer and SLA apply as shipped and the
operator reads the offer's service hours and the window's excusal from what the server stores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from aiconn.devstack import maintenance
from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.kube import api_client
from aiconn.operator.evaluation import FleetEvaluator, SLARef
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.offers import resolve
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.sla.maintenance import excused_spans
from aiconn.sla.periods import Period, ceil_minute, floor_minute
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource
from tests.helpers import operator_kubeconfig

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
PLURAL = "maintenancewindows"


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:00Z")


def window_body(name: str, start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MaintenanceWindow",
        "metadata": {"name": name},
        "spec": {"start": _stamp(start), "end": _stamp(end), "offers": ["business-hours-sla"]},
    }


@pytest.fixture
def windows(k8s: Any) -> Any:
    created: list[str] = []
    custom = client.CustomObjectsApi(k8s)

    def create(name: str, start: datetime, end: datetime) -> dict[str, Any]:
        body = custom.create_cluster_custom_object(
            GROUP, VERSION, PLURAL, window_body(name, start, end)
        )
        created.append(name)
        return dict(body)

    yield create
    for name in created:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def _evaluator(k8s: Any, tmp_path: Path) -> FleetEvaluator:
    return FleetEvaluator(
        kube=KubeApi(k8s),
        source=PrometheusSource.from_url("http://127.0.0.1:9"),
        ledger=Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}"),
        settings=OperatorSettings(),
    )


def test_a_window_cannot_be_stretched_after_it_was_declared(k8s: Any, windows: Any) -> None:
    start = floor_minute(datetime.now(UTC)) + timedelta(days=4)
    windows("upgrade", start, start + timedelta(hours=1))
    with pytest.raises(ApiException) as raised:
        client.CustomObjectsApi(k8s).patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, "upgrade", {"spec": {"end": _stamp(start + timedelta(hours=9))}}
        )
    assert raised.value.status == 422
    assert "cannot be changed once declared" in raised.value.body


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2027-01-12T08:00:00Z", "2027-01-12T06:00:00Z", "end must be after start"),
        ("2027-01-12T06:00:30Z", "2027-01-12T08:00:00Z", "spec.start"),
        ("2027-01-12T06:00:00+01:00", "2027-01-12T08:00:00Z", "spec.start"),
    ],
)
def test_the_api_server_refuses_a_bad_window_naming_the_field(
    k8s: Any, start: str, end: str, message: str
) -> None:
    body = window_body("bad", datetime.now(UTC), datetime.now(UTC))
    body["spec"].update(start=start, end=end)
    with pytest.raises(ApiException) as raised:
        client.CustomObjectsApi(k8s).create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert raised.value.status == 422
    assert message in raised.value.body


def test_a_window_declared_now_over_the_past_excuses_nothing(
    k8s: Any, windows: Any, tmp_path: Path
) -> None:
    apply_objects(k8s, load_documents([SAMPLES / "offers.yaml"]))
    now = floor_minute(datetime.now(UTC))
    windows("after-the-outage", now - timedelta(hours=3), now + timedelta(hours=1))
    listed = asyncio.run(_evaluator(k8s, tmp_path).list_maintenance())
    window = next(w for w in listed if w.name == "after-the-outage")
    # The declaration is the server's stamp, not anything the spec says.
    assert abs(window.declared - datetime.now(UTC)) < timedelta(minutes=5)
    spans = excused_spans([window], offer="business-hours-sla", notice=timedelta(0))
    assert spans and spans[0][0] >= window.declared, "nothing before the declaration is excused"
    # Under the offer's 72 hours of notice, not even the future hour is excused.
    assert excused_spans([window], offer="business-hours-sla", notice=timedelta(hours=72)) == ()


def test_the_published_business_hours_sla_applies_and_carries_its_terms(
    k8s: Any, namespace: str, tmp_path: Path
) -> None:
    docs = load_documents(
        [
            SAMPLES / "offers.yaml",
            SAMPLES / "sla-business-hours.yaml",
            SAMPLES / "maintenance-window.yaml",
        ]
    )
    apply_objects(k8s, docs, namespace=namespace)
    custom = client.CustomObjectsApi(k8s)
    stored_sla = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", "service-desk-8b"
    )
    offer = custom.get_cluster_custom_object(
        GROUP, VERSION, "aiinferenceoffers", "business-hours-sla"
    )
    ref = SLARef.from_body(stored_sla)
    spec, terms = resolve(ref.spec, offer, require_offer=True)
    ref = dataclasses.replace(ref, spec=spec, offer=terms)
    assert terms is not None and terms.service_hours is not None
    assert str(terms.service_hours) == "Mon,Tue,Wed,Thu,Fri 08:00-18:00 Europe/Berlin"
    assert [(t.below_percent, t.credit_percent) for t in spec.credits.availability] == [
        (99.9, 5),
        (99.7, 10),
        (95.0, 25),
    ]
    assert spec.credits.latency == [] and spec.credits.cap_percent == 25
    listed = asyncio.run(_evaluator(k8s, tmp_path).list_maintenance())
    rule = ref.minute_rule(listed)
    assert rule.service_hours == terms.service_hours
    # The sample window (06:00-08:00 UTC on 12 January 2027) counts from its own creation plus
    # the offer's 72 hours: all of it while the sample is applied before 9 January 2027.
    sample = next(w for w in listed if w.name == "regional-gpu-driver-upgrade")
    start, end = datetime(2027, 1, 12, 6, tzinfo=UTC), datetime(2027, 1, 12, 8, tzinfo=UTC)
    first = max(start, ceil_minute(sample.declared + timedelta(hours=72)))
    assert rule.excused == (((first, end),) if first < end else ())
    if sample.declared <= start - timedelta(hours=72):
        assert rule.excused == ((start, end),)


def test_the_demos_announcement_excuses_the_periods_last_minute(k8s: Any, tmp_path: Path) -> None:
    apply_objects(k8s, load_documents([SAMPLES / "offers.yaml"]))
    custom = client.CustomObjectsApi(k8s)
    offer_name = "multi-model-units"
    now = floor_minute(datetime.now(UTC))
    period = Period(start=now + timedelta(minutes=10), end=now + timedelta(minutes=14))
    window = maintenance.announce(k8s, offer=offer_name, period=period)
    listed = asyncio.run(_evaluator(k8s, tmp_path).list_maintenance())
    mine = [w for w in listed if offer_name in w.offers]
    try:
        offer = custom.get_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", offer_name)
        assert offer["spec"]["maintenance"] == {"noticeMinutes": maintenance.NOTICE_MINUTES}
        notice = timedelta(minutes=maintenance.NOTICE_MINUTES)
        spans = excused_spans(mine, offer=offer_name, notice=notice)
        assert spans == ((period.end - timedelta(minutes=1), period.end),)
        assert (window.start, window.end) == spans[0]
    finally:
        for w in mine:
            custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, w.name)
        custom.patch_cluster_custom_object(
            GROUP, VERSION, "aiinferenceoffers", offer_name, {"spec": {"maintenance": None}}
        )


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({"start": "18:00", "end": "08:00"}, "serviceHours.start must be before end"),
        ({"days": ["Mon", "Mon"]}, "days must not repeat a day"),
        ({"days": ["Monday"]}, "spec.serviceHours.days"),
        ({"start": "8:00"}, "spec.serviceHours.start"),
    ],
)
def test_the_api_server_refuses_bad_service_hours_naming_the_field(
    k8s: Any, hours: dict[str, Any], message: str
) -> None:
    offer = next(
        d
        for d in load_documents([SAMPLES / "offers.yaml"])
        if d["metadata"]["name"] == "business-hours-sla"
    )
    offer["metadata"] = {"name": f"bad-hours-{uuid.uuid4().hex[:8]}"}
    offer["spec"]["serviceHours"].update(hours)
    with pytest.raises(ApiException) as raised:
        client.CustomObjectsApi(k8s).create_cluster_custom_object(
            GROUP, VERSION, "aiinferenceoffers", offer
        )
    assert raised.value.status == 422
    assert message in raised.value.body


def test_a_tenant_cannot_declare_maintenance(control_plane: Any, k8s: Any, namespace: str) -> None:
    # Even with every right on SLAs in its namespace, a tenant has none on cluster-scoped
    # windows: tenants choose, the provider decides what is excused.
    rbac = client.RbacAuthorizationV1Api(k8s)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "all-of-aiconn"},
            "rules": [{"apiGroups": [GROUP], "resources": ["*"], "verbs": ["*"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "all-of-aiconn"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "all-of-aiconn",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "tenant-b"}
            ],
        },
    )
    tenant = control_plane.api_client("tenant-b")
    try:
        start = floor_minute(datetime.now(UTC)) + timedelta(days=5)
        with pytest.raises(ApiException) as refused:
            client.CustomObjectsApi(tenant).create_cluster_custom_object(
                GROUP, VERSION, PLURAL, window_body("mine", start, start + timedelta(hours=1))
            )
        assert refused.value.status == 403
    finally:
        tenant.close()


def test_the_operators_own_role_lists_the_windows(
    control_plane: Any, k8s: Any, windows: Any, tmp_path: Path
) -> None:
    # `list_maintenance` excuses nothing when it may not list; the shipped role must allow it.
    start = floor_minute(datetime.now(UTC)) + timedelta(days=6)
    windows("role-check", start, start + timedelta(hours=1))
    kubeconfig = operator_kubeconfig(control_plane, k8s)
    with api_client(kubeconfig) as operator:
        listed = asyncio.run(_evaluator(operator, tmp_path).list_maintenance())
    assert "role-check" in {w.name for w in listed}
