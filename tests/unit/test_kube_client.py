"""The one connection factory (`aiconn.kube.connect`) and its precedence: an explicit
kubeconfig, else in-cluster when running in a pod, else KUBECONFIG; each caller's pool size; the
project's transport against a real TLS server (a client certificate, a CA, a token file read
again); and the project's error types that the adapter raises."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import ssl
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from aiconn.api.app import KUBE_POOL_SIZE, kube_client
from aiconn.api.settings import ApiSettings
from aiconn.devstack.pki import write_pki
from aiconn.kube import (
    DEFAULT_POOL_SIZE,
    Conflict,
    Gone,
    Kube,
    KubeconfigError,
    KubeError,
    NotFound,
    connect,
    kube_error,
    transport,
)
from aiconn.operator.kubeapi import KINDS, KubeApi, load_api_client
from tests.helpers import assert_kube_refusal


def _kubeconfig(
    path: Path, server: str, user: dict[str, Any] | None = None, **cluster: Any
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
                "users": [{"name": "u", "user": user or {"token": "file-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.fixture
def in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service host and port, token and CA files where a pod has them."""
    (tmp_path / "token").write_text("pod-token")
    write_pki(tmp_path / "pki")
    (tmp_path / "ca.crt").write_bytes((tmp_path / "pki" / "ca.crt").read_bytes())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(transport, "SERVICE_ACCOUNT_DIR", tmp_path)


@pytest.fixture
def not_in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setattr(transport, "SERVICE_ACCOUNT_DIR", tmp_path / "no-such-dir")


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
    api = connect(_kubeconfig(tmp_path / "explicit", host) if explicit else None)
    assert api.server == host
    assert api._bearer() == token


def test_a_pod_without_its_token_is_an_error_naming_it(in_a_pod: None, tmp_path: Path) -> None:
    (tmp_path / "token").unlink()
    with pytest.raises(KubeconfigError, match=r"no .*token"):
        connect()


def test_outside_a_pod_kubeconfig_env_is_read_at_the_call(
    not_in_a_pod: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "env", "https://env:6443")))
    assert connect().server == "https://env:6443"
    later = _kubeconfig(tmp_path / "later", "https://later:6443")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{later}")
    assert connect().server == "https://later:6443"


def test_each_caller_keeps_its_pool_size(
    not_in_a_pod: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _kubeconfig(tmp_path / "env", "https://env:6443")
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert connect(pool_size=3).pool_size == 3
    operator = load_api_client()
    assert operator.pool_size == DEFAULT_POOL_SIZE == 32
    assert operator.server == "https://env:6443"
    api = kube_client(ApiSettings(kubeconfig=config))
    assert api.pool_size == KUBE_POOL_SIZE == 32
    assert api.server == "https://env:6443"


def test_the_api_setting_wins_over_the_pod(in_a_pod: None, tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "explicit", "https://explicit:6443")
    assert kube_client(ApiSettings(kubeconfig=config)).server == "https://explicit:6443"
    assert kube_client(ApiSettings()).server == "https://10.0.0.1:443"


@pytest.mark.parametrize("field", ["exec", "auth-provider", "username"])
def test_a_kubeconfig_user_the_transport_cannot_speak_for_is_refused_by_name(
    tmp_path: Path, field: str
) -> None:
    config = _kubeconfig(tmp_path / "c", "https://c:6443", {field: {"command": "x"}})
    with pytest.raises(KubeconfigError, match=f"user.{field} is not supported"):
        connect(config)


@pytest.mark.parametrize(
    ("text", "says"),
    [("{not yaml", "is not YAML"), ("- a list", "is not a mapping"), ("{}", "no context named")],
)
def test_a_kubeconfig_that_does_not_say_how_to_reach_the_cluster_is_named(
    tmp_path: Path, text: str, says: str
) -> None:
    config = tmp_path / "config"
    config.write_text(text)
    with pytest.raises(KubeconfigError, match=says):
        connect(config)
    with pytest.raises(KubeconfigError, match="No such file"):
        connect(tmp_path / "absent")


class _Server(http.server.ThreadingHTTPServer):
    """A TLS server that wants a client certificate from the test's CA and answers with what it
    saw: the certificate's subject, the bearer token, the path; 401 for a token it refuses."""

    refused_tokens: set[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        length = int(self.headers.get("Content-Length") or 0)
        seen = {
            "path": self.path,
            "method": self.command,
            "token": token,
            "contentType": self.headers.get("Content-Type"),
            "body": json.loads(self.rfile.read(length)) if length else None,
            "subject": dict(x[0] for x in self.connection.getpeercert()["subject"]),  # type: ignore[attr-defined]
        }
        status = 401 if token in self.server.refused_tokens else 200
        if self.path.startswith("/missing"):
            status = 404
        if self.path.startswith("/moved"):
            status = 307
        body = json.dumps(seen).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Location", "https://elsewhere.invalid/")
        self.send_header("Audit-Id", "a-1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _answer


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[_Server, dict[str, Path]]]:
    pki = write_pki(tmp_path / "pki")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["apiserver.crt"], pki["apiserver.key"])
    context.load_verify_locations(pki["ca.crt"])
    context.verify_mode = ssl.CERT_REQUIRED
    server = _Server(("127.0.0.1", 0), _Handler)
    server.refused_tokens = set()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, pki
    finally:
        server.shutdown()
        server.server_close()


def _data(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _tls_kube(server: _Server, config: Path, user: dict[str, Any], **cluster: Any) -> Kube:
    """The adapter over the transport that a kubeconfig at `config` for `server` configures."""
    url = f"https://127.0.0.1:{server.server_address[1]}"
    return Kube(connect(_kubeconfig(config, url, user, **cluster), pool_size=2))


def test_the_transport_speaks_tls_with_the_kubeconfigs_ca_and_client_certificate(
    tls_server: tuple[_Server, dict[str, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA and the client certificate as data (written to a private file only while loaded),
    the query encoded, the body sent as JSON with its content type, a refusal as the project's
    error with the server's reason, body and headers, and no redirect followed."""
    server, pki = tls_server
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    user = {
        "client-certificate-data": _data(pki["kubelet-client.crt"]),
        "client-key-data": _data(pki["kubelet-client.key"]),
    }
    ca = {"certificate-authority-data": _data(pki["ca.crt"])}
    kube = _tls_kube(server, tmp_path / "c", user, **ca)
    assert not list(temp.iterdir()), "the key was in a file only while it was loaded"
    seen = kube.call(
        "PATCH",
        "/apis/x/v1/things/a",
        body={"spec": {"n": 1}},
        query=[("fieldManager", "aiconn"), ("force", True)],
        content_type="application/apply-patch+yaml",
    )
    assert seen["subject"]["commonName"] == "kube-apiserver-kubelet-client"
    assert seen["path"] == "/apis/x/v1/things/a?fieldManager=aiconn&force=true"
    assert seen["contentType"] == "application/apply-patch+yaml"
    assert seen["body"] == {"spec": {"n": 1}} and seen["token"] == ""
    with pytest.raises(NotFound) as missing:
        kube.call("GET", "/missing")
    assert missing.value.status == 404 and missing.value.headers["Audit-Id"] == "a-1"
    assert json.loads(missing.value.body or "")["path"] == "/missing"
    with pytest.raises(KubeError) as moved:
        kube.call("GET", "/moved")
    assert moved.value.status == 307, "a redirect is not followed"


def test_a_token_file_is_read_again_after_a_refusal(
    tls_server: tuple[_Server, dict[str, Path]], tmp_path: Path
) -> None:
    """A projected token rotates: a 401 makes the next request read the file again."""
    server, pki = tls_server
    token = tmp_path / "token"
    token.write_text("old\n")
    user = {
        "tokenFile": "token",  # relative to the kubeconfig's directory
        "client-certificate": str(pki["kubelet-client.crt"]),
        "client-key": str(pki["kubelet-client.key"]),
    }
    kube = _tls_kube(server, tmp_path / "c", user, **{"certificate-authority": str(pki["ca.crt"])})
    assert kube.call("GET", "/version")["token"] == "old"
    server.refused_tokens.add("old")
    token.write_text("new\n")
    with pytest.raises(KubeError) as refused:
        kube.call("GET", "/version")
    assert refused.value.status == 401
    assert kube.call("GET", "/version")["token"] == "new"


def test_the_operator_and_the_api_never_load_the_official_client() -> None:
    """The operator's process (after `aiconn operator` hid the clients Kopf would import) and
    the API's load without the official client's package: 60-85 MiB less of each."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from aiconn.operator.run import without_unused_clients\n"
        "without_unused_clients()\n"
        "import kopf, aiconn.operator.handlers, aiconn.operator.loop\n"
        "import aiconn.api.app\n"
        "from aiconn.api.app import create_app\n"
        "print(sorted(m for m, v in sys.modules.items() if m.startswith('kubernetes') and v))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("status", "kind"), [(404, NotFound), (409, Conflict), (410, Gone), (403, KubeError)]
)
def test_the_adapter_raises_the_projects_errors_from_the_official_client_too(
    status: int, kind: type[KubeError]
) -> None:
    """KubeApi over the official client (as the tests and the devstack hand it) turns its
    ApiException into KubeError (NotFound, Conflict, Gone by status), keeping status, reason,
    body and headers."""

    class Refusing:
        def call_api(self, *args: Any, **kwargs: Any) -> Any:
            err = ApiException(status=status, reason="Refused")
            err.body, err.headers = '{"message": "no"}', {"Audit-Id": "1"}
            raise err

    kube = KubeApi(Refusing())
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
