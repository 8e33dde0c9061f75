"""Polling helpers for tests against real components: wait for an outcome, never sleep blindly."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from kopf.testing import KopfRunner
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from aiconn.api.settings import ApiSettings
from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.store.ledger import Ledger
from tests.factories import price_raised_in_a_day, sla_manifest

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]

WAIT_S = 180.0
"""How long `eventually` waits unless a test says otherwise: sized for the parallel suite
(`make test`), where four workers, each with its own control plane, PostgreSQL and vLLM, share
two cores, and an edge SLA once became Ready only after 60 s. A wait ends as soon as its condition
holds, so only a failing test waits this long. Tests pass their own, longer waits where a period
must close first."""


def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = WAIT_S,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Call `check` until it returns something truthy (returned); fail with the last value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        # A server still starting refuses connections: that is "not yet", not a failure.
        except (AssertionError, OSError, httpx.TransportError) as err:
            last = err
        else:
            if last:
                return last  # type: ignore[return-value]
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def condition_of(status: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    """The condition of `type_` in an object's status, None when it has none."""
    conds = (status or {}).get("conditions") or []
    return next((c for c in conds if c.get("type") == type_), None)


def play_kubelet(k8s: object, namespace: str, selector: str, *, expected: int = 1) -> int:
    """No kubelet runs against the test control plane: mark the pods the ReplicaSet controller
    created as Running and Ready, as a kubelet would, so the real Deployment and ReplicaSet
    controllers compute availability from them. Returns how many pods were marked."""
    from kubernetes import client

    from tests.kubelet import mark_running

    core = client.CoreV1Api(k8s)
    pods = eventually(
        lambda: (
            (p := core.list_namespaced_pod(namespace, label_selector=selector).items)
            and len(p) >= expected
            and p
        ),
        what=f"{expected} pod(s) for {selector}",
    )
    mark_running(core, namespace, pods, pod_ip="10.1.0.10", host_ip="10.2.0.10")
    return len(pods)


def operator_kubeconfig(control_plane: object, k8s: object) -> object:
    """Install manifests/rbac and return a kubeconfig holding a token of the operator's
    ServiceAccount (TokenRequest API), so the operator runs with exactly those rights."""
    from kubernetes import client

    from aiconn.devstack.kube import apply_manifests

    rbac = ROOT / "manifests" / "rbac" / "operator.yaml"
    core = client.CoreV1Api(k8s)
    if not [n for n in core.list_namespace().items if n.metadata.name == "aiconn-system"]:
        core.create_namespace({"metadata": {"name": "aiconn-system"}})
    apply_manifests(k8s, [rbac])
    token = core.create_namespaced_service_account_token(
        "aiconn-operator", "aiconn-system", {"spec": {"expirationSeconds": 3600}}
    ).status.token
    return control_plane.kubeconfig_with_token("aiconn-operator", token)  # type: ignore[attr-defined]


def grant_billing_and_sla_editing(k8s: Any, namespace: str, api_rbac: Path) -> None:
    """The shipped aiconn-billing ClusterRole (from `api_rbac`) held by user noc in `namespace`,
    and user tenant-a allowed to edit only AIInferenceSLAs there."""
    billing = [
        d
        for d in load_documents([api_rbac])
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "aiconn-billing"
    ]
    apply_objects(k8s, billing)
    rbac = client.RbacAuthorizationV1Api(k8s)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "sla-editor"},
            "rules": [
                {
                    "apiGroups": ["aiconn.io"],
                    "resources": ["aiinferenceslas"],
                    "verbs": ["get", "list", "create", "update", "patch", "delete"],
                }
            ],
        },
    )
    for role_kind, role, user in (
        ("Role", "sla-editor", "tenant-a"),
        ("ClusterRole", "aiconn-billing", "noc"),
    ):
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": f"{role}-{user}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": role_kind,
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )


RBAC_REFUSAL = re.compile(r'aiconn-operator\\*" cannot|cannot \w+ resource')
"""How the API server words an RBAC refusal in the operator's log ('User "system:serviceaccount:
aiconn-system:aiconn-operator" cannot list resource "pods"', quotes escaped in JSON logs); not any
" cannot ": the operator may log that a slice manager cannot be reached."""


def ledger_url_for(request: Any, tmp_path: Path) -> str:
    """The ledger a fixture parametrized by backend asks for: a fresh SQLite file when its param
    is "sqlite", otherwise the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def admin_api(cluster: Any) -> Iterator[Any]:
    """The body of an ApiClient fixture: `cluster`'s admin client (a control plane, KWOK or real
    cluster: anything with `api_client()`), closed after its scope."""
    api = cluster.api_client()
    yield api
    api.close()


def backend_ledger(request: Any, tmp_path: Path) -> Iterator[Ledger]:
    """The body of a ledger fixture parametrized by backend: the ledger `ledger_url_for` names,
    closed after the test."""
    opened = Ledger.open(ledger_url_for(request, tmp_path))
    yield opened
    opened.close()


def assert_kube_refusal(err: BaseException, kind: type[Exception], answer: tuple[Any, ...]) -> None:
    """`err` is exactly the project's `kind` (no client library's exception), carrying the API
    server's refusal `answer`: (status, reason, body, headers)."""
    assert type(err) is kind and not isinstance(err, ApiException), repr(err)
    got = (err.status, err.reason, err.body, err.headers)
    assert got == answer, f"{got} != {answer}"


SLA_POLICY = "aiconn-sla-within-offer"
"""The admission policy that refuses SLAs outside an offer (`manifests/policy`): most modules
create SLAs without offers on the same API server as the modules that install it."""


def delete_admission_policies(k8s: Any, *names: str) -> None:
    """Delete each ValidatingAdmissionPolicy of `names` with its binding (named the same), the
    binding first so no binding is left pointing at a missing policy. With `SLA_POLICY` among
    them, return once an SLA without an offer is admitted again: the API server drops a deleted
    binding from its admission chain a moment later, and until then it refuses every SLA ("no
    params found for policy binding"), the next module's on this API server included."""
    admission = client.AdmissionregistrationV1Api(k8s)
    for name in names:
        admission.delete_validating_admission_policy_binding(name)
        admission.delete_validating_admission_policy(name)
    if SLA_POLICY in names:
        eventually(lambda: _offerless_sla_admitted(k8s), what=f"{SLA_POLICY} gone from admission")


def _offerless_sla_admitted(k8s: Any) -> bool:
    """Whether the API server admits an SLA without an offer (a dry run in `default`)."""
    probe = sla_manifest(
        "policy-gone-probe",
        {
            "model": {"name": "m", "source": "hf://org/m", "parametersBillions": 1},
            "network": {"rttBudgetMs": 50},
        },
    )
    try:
        client.CustomObjectsApi(k8s).create_namespaced_custom_object(
            "aiconn.io", "v1alpha1", "default", "aiinferenceslas", probe, dry_run="All"
        )
    except ApiException as err:
        if err.status == 422 and SLA_POLICY in str(err.body):
            return False
        raise
    return True


def sla_table(k8s: Any, path: str) -> dict[str, Any]:
    """The API server's Table view (what `kubectl get` prints) of the AIInferenceSLAs at `path`
    (`namespaces/<ns>/aiinferenceslas[/<name>]`): the printer columns as the server renders them."""
    response = k8s.call_api(
        f"/apis/aiconn.io/v1alpha1/{path}",
        "GET",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        _preload_content=False,
        auth_settings=["BearerToken"],
    )
    table: dict[str, Any] = json.loads(response[0].data)
    return table


@contextmanager
def created_offer(k8s: Any, body: dict[str, Any]) -> Iterator[str]:
    """The AIInferenceOffer `body` on the API server, deleted afterwards; yields its name."""
    custom = client.CustomObjectsApi(k8s)
    name: str = body["metadata"]["name"]
    custom.create_cluster_custom_object("aiconn.io", "v1alpha1", "aiinferenceoffers", body)
    yield name
    custom.delete_cluster_custom_object("aiconn.io", "v1alpha1", "aiinferenceoffers", name)


@contextmanager
def deleted_afterwards(delete: Callable[[str], object]) -> Iterator[list[str]]:
    """A list for the names of the objects a test creates; `delete` removes each afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        delete(name)


@contextmanager
def fresh_namespace(k8s: Any, *, prefix: str = "t-", wait_deleted: bool = False) -> Iterator[str]:
    """A namespace of its own, deleted afterwards; with `wait_deleted`, until it is gone, so the
    pods it held have freed their GPUs before the next test counts on them."""
    core = client.CoreV1Api(k8s)
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)
    if wait_deleted:
        eventually(
            lambda: name not in {n.metadata.name for n in core.list_namespace().items},
            what=f"namespace {name} deleted",
        )


@contextmanager
def running_operator(
    kubeconfig: object, settings: Mapping[str, str] | None = None, *, namespace: str | None = None
) -> Iterator[KopfRunner]:
    """The operator (`aiconn.operator.handlers`) under Kopf's test runner, as the identity of
    `kubeconfig`, watching `namespace` (all namespaces when None), with `settings` in its
    environment, restored afterwards. When it has stopped, its log must show no exception and no
    RBAC refusal: every test that runs it as its ServiceAccount also proves the shipped RBAC
    suffices."""
    environment = {**(settings or {}), "KUBECONFIG": str(kubeconfig)}
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
    try:
        with KopfRunner(
            ["run", "--standalone", *scope, "-m", "aiconn.operator.handlers"], timeout=120
        ) as runner:
            yield runner
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert runner.exception is None, runner.output[-4000:]
    assert not RBAC_REFUSAL.search(runner.output), runner.output[-4000:]


PRICE_NOTICE_POLICY = ROOT / "manifests" / "policy" / "offer-price-notice.yaml"


@contextmanager
def price_notice_policy(k8s: Any) -> Iterator[None]:
    """The shipped price-notice ValidatingAdmissionPolicy, active in the API server's admission
    for the block, removed after it (other tests edit offers' prices in place to test period
    pinning, or run without it). Active and gone are both proved by a dry-run create of an offer
    whose change is announced a day ahead."""
    from aiconn.devstack.kube import apply_manifests

    apply_manifests(k8s, [PRICE_NOTICE_POLICY])
    probe = price_raised_in_a_day(f"probe-{uuid.uuid4().hex[:8]}")

    def refused() -> bool:
        """Whether the policy refuses the probe (False: the API server would create it)."""
        try:
            client.CustomObjectsApi(k8s).create_cluster_custom_object(
                "aiconn.io", "v1alpha1", "aiinferenceoffers", probe, dry_run="All"
            )
        except ApiException as err:
            if err.status == 422 and "aiconn-offer-price-notice" in str(err.body):
                return True
            raise
        return False

    eventually(refused, what="the price-notice policy in the API server's admission")
    try:
        yield
    finally:
        delete_admission_policies(k8s, "aiconn-offer-price-notice")
        # The API server drops it from its admission chain a moment later: the next test on
        # this API server may raise a price at once.
        eventually(lambda: not refused(), what="the price-notice policy gone from admission")


def static_token_settings(tokens: Path, lines: Sequence[str], **overrides: Any) -> ApiSettings:
    """Settings of a reporting API that authenticates the static tokens of `lines`
    (`token,user,namespace`, written to `tokens`), with no SLA cache and an in-memory ledger
    unless `overrides` say otherwise."""
    tokens.write_text("".join(f"{line}\n" for line in lines))
    defaults: dict[str, Any] = {"sla_cache_seconds": 0, "ledger_url": "sqlite://"}
    return ApiSettings(auth_mode="static", static_tokens_file=tokens, **(defaults | overrides))


@contextmanager
def static_token_api(
    tokens: Path, lines: Sequence[str], *, ledger: Any, kube: Any, token: str
) -> Iterator[Any]:
    """The reporting API in-process on `ledger` and `kube`, authenticating the static tokens of
    `lines` (`token,user,namespace`, written to `tokens`), as a client presenting `token`."""
    from fastapi.testclient import TestClient

    from aiconn.api.app import create_app

    settings = static_token_settings(tokens, lines)
    with TestClient(
        create_app(settings, ledger=ledger, kube=kube),
        headers={"Authorization": f"Bearer {token}"},
    ) as test_client:
        yield test_client


PATIENT_S = 60.0
"""How long a test's HTTP client waits for an answer unless it says otherwise. The parallel
suite runs unit-test files beside integration files on two cores, where a loopback answer from
an in-process gateway once took longer than httpx's default of 5 s."""

# httpx's one-request functions with that default; a caller's own `timeout=` replaces it.
http_get = functools.partial(httpx.get, timeout=PATIENT_S)
http_post = functools.partial(httpx.post, timeout=PATIENT_S)
http_stream = functools.partial(httpx.stream, timeout=PATIENT_S)


def aiconn_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`aiconn ARGS` as its own process on this checkout, with `env` added to this process's
    environment; its output captured as text, its exit status left to the test."""
    return subprocess.run(
        [sys.executable, "-m", "aiconn.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def get_sla_route(
    api: Any, *, token: str, namespace: str, name: str, path: str, params: Mapping[str, Any]
) -> Any:
    """GET the reporting API's `/v1/namespaces/NAMESPACE/slas/NAME{path}` as `token`'s bearer."""
    return api.get(
        f"/v1/namespaces/{namespace}/slas/{name}{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
    )
