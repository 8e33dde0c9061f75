"""The one Kubernetes client factory (`aiconn.kube.api_client`) and its precedence: an explicit
kubeconfig, else in-cluster when running in a pod, else KUBECONFIG; each caller's pool size;
and the project's error types that the adapter raises."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.config import incluster_config

from aiconn.api.app import KUBE_POOL_SIZE, kube_client
from aiconn.api.settings import ApiSettings
from aiconn.kube import (
    DEFAULT_POOL_SIZE,
    Conflict,
    Gone,
    KubeError,
    NotFound,
    api_client,
    kube_error,
)
from aiconn.operator.kubeapi import KINDS, KubeApi, load_api_client
from tests.helpers import assert_kube_refusal


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "file-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.fixture
def in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service host and port, token and CA files where the kubernetes client reads them."""
    token = tmp_path / "token"
    token.write_text("pod-token")
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))


@pytest.fixture
def not_in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "no-token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "no-ca"))


@pytest.mark.parametrize(
    ("explicit", "host", "token"),
    [(True, "https://explicit:6443", "file-token"), (False, "https://10.0.0.1:443", "pod-token")],
)
def test_in_a_pod_an_explicit_kubeconfig_else_the_service_account_wins_over_kubeconfig_env(
    in_a_pod: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    explicit: bool,
    host: str,
    token: str,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "env", "https://env:6443")))
    api = api_client(_kubeconfig(tmp_path / "explicit", host) if explicit else None)
    assert api.configuration.host == host
    assert api.configuration.api_key["authorization"].lower() == f"bearer {token}"


def test_outside_a_pod_kubeconfig_env_is_read_at_the_call(
    not_in_a_pod: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "env", "https://env:6443")))
    assert api_client().configuration.host == "https://env:6443"
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "later", "https://later:6443")))
    assert api_client().configuration.host == "https://later:6443"


def test_each_caller_keeps_its_pool_size(
    not_in_a_pod: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _kubeconfig(tmp_path / "env", "https://env:6443")
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert api_client(pool_size=3).configuration.connection_pool_maxsize == 3
    operator = load_api_client()
    assert operator.configuration.connection_pool_maxsize == DEFAULT_POOL_SIZE == 32
    assert operator.configuration.host == "https://env:6443"
    api = kube_client(ApiSettings(kubeconfig=config))
    assert api.configuration.connection_pool_maxsize == KUBE_POOL_SIZE == 32
    assert api.configuration.host == "https://env:6443"


def test_the_api_setting_wins_over_the_pod(in_a_pod: None, tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "explicit", "https://explicit:6443")
    assert kube_client(ApiSettings(kubeconfig=config)).configuration.host == (
        "https://explicit:6443"
    )
    assert kube_client(ApiSettings()).configuration.host == "https://10.0.0.1:443"


@pytest.mark.parametrize(
    ("status", "kind"), [(404, NotFound), (409, Conflict), (410, Gone), (403, KubeError)]
)
def test_the_adapter_raises_the_projects_errors_which_are_still_api_exceptions(
    status: int, kind: type[KubeError]
) -> None:
    """KubeApi's call turns the client's ApiException into KubeError (NotFound, Conflict, Gone
    by status), keeping status, reason, body and headers; callers that still catch ApiException
    see the same error."""

    class Refusing:
        configuration = None

        def call_api(self, *args: Any, **kwargs: Any) -> Any:
            err = ApiException(status=status, reason="Refused")
            err.body, err.headers = '{"message": "no"}', {"Audit-Id": "1"}
            raise err

    kube = KubeApi(Refusing())  # type: ignore[arg-type]
    with pytest.raises(kind) as raised:
        asyncio.run(kube.call("GET", "/api/v1/namespaces/a/pods/b"))
    err = raised.value
    assert_kube_refusal(err, kind, (status, "Refused", '{"message": "no"}', {"Audit-Id": "1"}))
    assert kube_error(err) is err
    assert (NotFound().status, Conflict().status, Gone().status) == (404, 409, 410)


def test_absent_and_existing_objects_read_as_before() -> None:
    """get: None on 404; delete: False on 404; create_if_absent: False on 409; any other
    refusal is raised."""

    class Answering(KubeApi):
        def __init__(self, status: int) -> None:
            self.status = status

        async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            raise kube_error(ApiException(status=self.status))

    async def scenario() -> None:
        assert await Answering(404).get("Pod", "p", "a") is None
        assert await Answering(404).delete("Pod", "p", "a") is False
        body = {"kind": "Pod", "metadata": {"name": "p", "namespace": "a"}}
        assert await Answering(409).create_if_absent(body) is False
        with pytest.raises(KubeError) as raised:
            await Answering(403).get("Pod", "p", "a")
        assert raised.value.status == 403

    asyncio.run(scenario())


def test_a_kinds_path_addresses_its_collection_or_one_object() -> None:
    """A namespaced kind without a namespace is its cluster-wide collection; one of its objects
    has no address without a namespace. A cluster-scoped kind ignores the namespace."""
    pod, deployment, tier = KINDS["Pod"], KINDS["Deployment"], KINDS["InferenceTier"]
    assert pod.path("a") == "/api/v1/namespaces/a/pods"
    assert pod.path("a", "p") == "/api/v1/namespaces/a/pods/p"
    assert pod.path(None) == "/api/v1/pods"
    assert deployment.path(None) == "/apis/apps/v1/deployments"
    assert KINDS["AIInferenceSLA"].path(None) == "/apis/aiconn.io/v1alpha1/aiinferenceslas"
    with pytest.raises(ValueError, match="needs a namespace"):
        pod.path(None, "p")
    assert (
        tier.path(None, "edge")
        == tier.path("a", "edge")
        == ("/apis/aiconn.io/v1alpha1/inferencetiers/edge")
    )
    assert "None" not in pod.path(None) + deployment.path(None)


def test_the_event_poster_cuts_the_message_and_never_fails_the_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """post_sla_event posts one core/v1 Event on the SLA, its message cut to the API's 1024
    characters; a refused post (a KubeError) is logged and the pass goes on."""
    from aiconn.operator.slaevents import MAX_EVENT_MESSAGE, post_sla_event

    class Posting(KubeApi):
        def __init__(self, refuse: bool) -> None:
            self.refuse = refuse
            self.posted: list[tuple[str, str, dict[str, Any]]] = []

        async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            self.posted.append((method, path, kwargs["body"]))
            if self.refuse:
                raise kube_error(ApiException(status=403, reason="Forbidden"))
            return {}

    async def post(kube: Posting) -> None:
        await post_sla_event(
            kube,
            kind="AIInferenceSLA",
            name="chat",
            namespace="tenant-a",
            uid="u-1",
            type_="Warning",
            reason="Breached",
            message="x" * 3000,
        )

    kube = Posting(refuse=False)
    asyncio.run(post(kube))
    [(method, path, body)] = kube.posted
    assert (method, path) == ("POST", "/api/v1/namespaces/tenant-a/events")
    assert MAX_EVENT_MESSAGE == 1024 and body["message"] == "x" * 1024
    assert body["involvedObject"]["uid"] == "u-1" and body["reason"] == "Breached"
    refused = Posting(refuse=True)
    asyncio.run(post(refused))
    assert len(refused.posted) == 1 and "Event Breached on tenant-a/chat not posted" in caplog.text


def test_every_event_is_the_operator_s_own_on_the_object_it_names() -> None:
    """Handlers, passes and top-ups post through the same poster: the involved object from the
    body as the API server wrote it, Events on a cluster-scoped object (an offer) in `default`,
    `post_event_soon` posting from a task of the running loop."""
    from aiconn.operator.slaevents import COMPONENT, involved, post_event_soon

    class Posting(KubeApi):
        def __init__(self) -> None:
            self.posted: list[tuple[str, dict[str, Any]]] = []

        async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            self.posted.append((path, kwargs["body"]))
            return {}

    offer = {
        "apiVersion": "aiconn.io/v1alpha1",
        "kind": "AIInferenceOffer",
        "metadata": {"name": "gold", "uid": "u-9", "resourceVersion": "7"},
        "spec": {},
    }
    assert involved(offer) == {
        "apiVersion": "aiconn.io/v1alpha1",
        "kind": "AIInferenceOffer",
        "name": "gold",
        "uid": "u-9",
    }

    async def soon(kube: Posting) -> None:
        post_event_soon(kube, involved(offer), type_="Warning", reason="R", message="m")
        assert kube.posted == []  # not awaited by the handler
        for _ in range(3):
            await asyncio.sleep(0)

    kube = Posting()
    asyncio.run(soon(kube))
    [(path, body)] = kube.posted
    assert path == "/api/v1/namespaces/default/events"
    assert body["involvedObject"]["name"] == "gold" and "namespace" not in body["involvedObject"]
    assert body["source"] == {"component": COMPONENT} and body["reportingComponent"] == COMPONENT


def test_every_status_write_passes_the_kinds_typed_model_before_anything_is_sent() -> None:
    """patch_status and update_status write an aiconn kind's status only as its typed model
    does: camelCase, None kept (it clears a field in a merge patch); an
    unknown field or a wrong type raises and nothing reaches the API server. A kind that is not
    aiconn's is written as given."""
    from pydantic import ValidationError

    class Recording(KubeApi):
        def __init__(self) -> None:
            self.sent: list[tuple[str, str, dict[str, Any]]] = []

        async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            self.sent.append((method, path, kwargs["body"]))
            return {}

        async def get(self, kind: str, name: str, namespace: str | None) -> dict[str, Any]:
            return {"metadata": {"resourceVersion": "7"}, "status": {"conditions": []}}

    async def scenario() -> Recording:
        kube = Recording()
        await kube.patch_status(
            "TopUp", "t", "a", {"phase": "Applied", "transfer_id": "x1", "wallet": None}
        )
        await kube.update_status(
            "AIInferenceSLA",
            "s",
            "a",
            fields={"lastSettlement": {"period_start": "2026-12-01", "creditsMicros": 1500000}},
            conditions=[{"type": "Ready", "status": "True", "reason": "Serving", "message": ""}],
        )
        await kube.patch_status("Deployment", "d", "a", {"anything": 1})
        refused = (
            ("TopUp", {"phase": "Applied", "transferID": "x1"}),
            ("TopUp", {"attempts": "many"}),
            ("AIInferenceSLA", {"lastSettlement": {"judgedMinutes": "ten"}}),
        )
        for kind, bad in refused:
            with pytest.raises(ValidationError):
                await kube.patch_status(kind, "x", "a", bad)
        with pytest.raises(ValidationError):
            await kube.update_status(
                "NetworkSlice", "n", "a", fields={"realised": []}, conditions=[]
            )
        return kube

    kube = asyncio.run(scenario())
    topup, sla, deployment = (body["status"] for _, _, body in kube.sent)
    assert len(kube.sent) == 3
    assert topup == {"phase": "Applied", "transferId": "x1", "wallet": None}
    assert sla["lastSettlement"] == {"periodStart": "2026-12-01", "creditsMicros": 1500000}
    assert [c["type"] for c in sla["conditions"]] == ["Ready"]
    assert deployment == {"anything": 1}
