"""The one Kubernetes adapter against a stand-in ApiClient: its blocking core (`aiconn.kube`: one
address per kind, the project's errors by status, JSON in and out without managedFields, the paged
list that starts again when its continue token expires), and the reporting API's reads, reviews
and Events through it, with their 503s."""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from aiconn.kube import (
    KINDS,
    LIST_PAGE,
    Conflict,
    Gone,
    Kube,
    KubeError,
    NotFound,
    kube_error,
    parse_list,
    read_list,
    without_managed_fields,
)
from aiconn.resources.v1alpha1.kinds import RESOURCE_KINDS
from aiconn.resources.v1alpha1.meta import API_VERSION
from tests.factories import bundle_offer
from tests.helpers import assert_kube_refusal


@dataclass
class _Response:
    data: bytes


@dataclass
class ApiClientStandIn:
    """Answers `call_api` as the kubernetes client does with `_preload_content=False`, from
    `answers` (a dict answered as JSON, an int refused with that status, an exception raised as
    the transport raised it), and records every request it was asked."""

    answers: list[dict[str, Any] | int | bytes | Exception]
    asked: list[dict[str, Any]] = field(default_factory=list)

    def call_api(self, path: str, method: str, **kwargs: Any) -> tuple[_Response, int, dict]:
        self.asked.append({"path": path, "method": method, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            err = ApiException(status=answer, reason="Refused")
            err.body, err.headers = '{"reason": "no"}', {"Audit-Id": "a1"}
            raise err
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return _Response(data), 200, {}


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "path"),
    [
        ("Pod", "a", None, "/api/v1/namespaces/a/pods"),
        ("Pod", "a", "p", "/api/v1/namespaces/a/pods/p"),
        ("Pod", None, None, "/api/v1/pods"),
        ("Event", None, None, "/api/v1/events"),
        ("Event", "a", None, "/api/v1/namespaces/a/events"),
        ("Namespace", None, "a", "/api/v1/namespaces/a"),
        ("Deployment", "a", "d", "/apis/apps/v1/namespaces/a/deployments/d"),
        ("Deployment", None, None, "/apis/apps/v1/deployments"),
        ("PriorityClass", "a", "high", "/apis/scheduling.k8s.io/v1/priorityclasses/high"),
        ("TokenReview", None, None, "/apis/authentication.k8s.io/v1/tokenreviews"),
        (
            "SubjectAccessReview",
            None,
            None,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        ),
        (
            "AIInferenceSLA",
            "t",
            "chat",
            "/apis/aiconn.io/v1alpha1/namespaces/t/aiinferenceslas/chat",
        ),
        ("AIInferenceSLA", None, None, "/apis/aiconn.io/v1alpha1/aiinferenceslas"),
        ("AIInferenceOffer", None, "gold", "/apis/aiconn.io/v1alpha1/aiinferenceoffers/gold"),
    ],
)
def test_core_kinds_live_under_api_v1_and_grouped_ones_under_apis(
    kind: str, namespace: str | None, name: str | None, path: str
) -> None:
    """The core group under /api/v1, every other under /apis/<group>/<version>; a namespaced
    kind without a namespace is its collection across the cluster; a cluster-scoped kind never
    carries a namespace."""
    assert KINDS[kind].path(namespace, name) == path


def test_every_aiconn_kind_is_addressed_as_its_crd_serves_it() -> None:
    for resource in RESOURCE_KINDS:
        kind = KINDS[resource.kind]
        assert (kind.api_version, kind.plural, kind.namespaced) == (
            API_VERSION,
            resource.plural,
            resource.namespaced,
        )
        scope = "/namespaces/n" if resource.namespaced else ""
        assert kind.path("n", "x") == f"/apis/{API_VERSION}{scope}/{resource.plural}/x"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, NotFound), (409, Conflict), (410, Gone), (403, KubeError), (500, KubeError)],
)
def test_a_refusal_comes_out_as_the_projects_error_for_its_status(
    status: int, kind: type[KubeError]
) -> None:
    api = ApiClientStandIn([status])
    with pytest.raises(kind) as raised:
        Kube(api).call("GET", "/api/v1/namespaces/a/pods/p")  # type: ignore[arg-type]
    err = raised.value
    assert_kube_refusal(err, kind, (status, "Refused", '{"reason": "no"}', {"Audit-Id": "a1"}))
    plain = ApiException(status=status, reason="Refused")
    assert type(kube_error(plain)) is kind and kube_error(err) is err


def test_a_call_sends_json_and_answers_json_without_managed_fields() -> None:
    managed = [{"manager": "kubectl"}]
    api = ApiClientStandIn(
        [
            {"metadata": {"name": "p", "managedFields": managed}, "spec": {"x": 1}},
            {"items": [{"metadata": {"name": "q", "managedFields": managed}}], "metadata": {}},
            b"",
        ]
    )
    kube = Kube(api)  # type: ignore[arg-type]
    assert kube.call("GET", "/api/v1/namespaces/a/pods/p") == {
        "metadata": {"name": "p"},
        "spec": {"x": 1},
    }
    assert kube.call("GET", "/api/v1/pods", query=[("limit", 1)])["items"] == [
        {"metadata": {"name": "q"}}
    ]
    patch = {"status": {"phase": "Ready"}}
    assert kube.call("PATCH", "/x", body=patch, content_type="application/merge-patch+json") == {}
    first, listed, patched = api.asked
    assert first["query_params"] == [] and first["_preload_content"] is False
    assert listed["query_params"] == [("limit", 1)]
    assert patched["body"] == patch
    assert patched["header_params"] == {
        "Content-Type": "application/merge-patch+json",
        "Accept": "application/json",
    }


def test_get_answers_none_for_an_absent_object_and_raises_any_other_refusal() -> None:
    kube = Kube(ApiClientStandIn([404, 403, {"metadata": {"name": "gold"}}]))  # type: ignore[arg-type]
    assert kube.get("AIInferenceOffer", "gold") is None
    with pytest.raises(KubeError) as raised:
        kube.get("AIInferenceSLA", "chat", "t")
    assert raised.value.status == 403
    assert kube.get("AIInferenceOffer", "gold") == {"metadata": {"name": "gold"}}


def test_create_posts_the_object_to_its_kinds_collection() -> None:
    api = ApiClientStandIn([{"status": {"allowed": True}}, {}])
    kube = Kube(api)  # type: ignore[arg-type]
    review = {"kind": "SubjectAccessReview", "spec": {"user": "u"}}
    assert kube.create(review) == {"status": {"allowed": True}}
    kube.create({"kind": "Event", "metadata": {"namespace": "t", "name": "e"}})
    assert [(a["method"], a["path"]) for a in api.asked] == [
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews"),
        ("POST", "/api/v1/namespaces/t/events"),
    ]
    assert api.asked[0]["body"] == review


class _Pages:
    """A list of three pages of two items; `expire` lists the calls (counted from 0) whose
    continue token has expired (410)."""

    def __init__(self, expire: set[int]) -> None:
        self.expire = expire
        self.queries: list[dict[str, Any]] = []

    def __call__(self, method: str, path: str, *, query: Any = None) -> bytes:
        self.queries.append(dict(query))
        if len(self.queries) - 1 in self.expire:
            raise Gone()
        page = int(dict(query).get("continue", 0))
        items = [{"metadata": {"name": f"p{page}-{i}"}} for i in range(2)]
        token = str(page + 1) if page < 2 else ""
        return json.dumps({"metadata": {"continue": token}, "items": items}).encode()


def test_a_list_is_read_a_page_at_a_time_and_keeps_what_keep_keeps() -> None:
    pages = _Pages(expire=set())

    def odd(item: dict[str, Any]) -> str | None:
        name: str = item["metadata"]["name"]
        return name if name.endswith("-1") else None

    assert read_list(pages, "/api/v1/pods", [("labelSelector", "a=b")], keep=odd) == [
        "p0-1",
        "p1-1",
        "p2-1",
    ]
    assert [q.get("continue") for q in pages.queries] == [None, "1", "2"]
    assert all(q["limit"] == LIST_PAGE and q["labelSelector"] == "a=b" for q in pages.queries)


def _pod(name: str) -> dict[str, Any]:
    """A pod about as large as a real one: most of it managedFields and container specs."""
    fields = {f"f:{k}": {f"f:{k}-{i}": {} for i in range(20)} for k in "abcdefghij"}
    return {
        "metadata": {
            "name": name,
            "managedFields": [{"manager": m, "fieldsV1": fields} for m in ("kcm", "kwok")],
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "args": ["x"] * 20}]},
    }


def test_a_list_answer_is_parsed_an_item_at_a_time_each_cut_before_the_next() -> None:
    """Each item reaches `keep` without managedFields, and the page is never parsed whole: a
    page of 500 pods kept as names peaks at a small part of what the page parsed whole holds
    (the spike that raised the operator's memory a step per list, bench/RESULTS.md)."""
    page = json.dumps(
        {
            "kind": "PodList",
            "metadata": {"continue": "c2"},
            "items": [_pod(f"p{i}") for i in range(500)],
        }
    ).encode()
    seen: list[dict[str, Any]] = []

    def name(item: dict[str, Any]) -> str:
        seen.append(item["metadata"])
        return str(item["metadata"]["name"])

    tracemalloc.start()
    try:
        names, token = parse_list(page, name)
        _, streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        whole = json.loads(page)
        _, loaded = tracemalloc.get_traced_memory()
        del whole
    finally:
        tracemalloc.stop()
    assert names == [f"p{i}" for i in range(500)] and token == "c2"
    assert all("managedFields" not in meta for meta in seen)
    # Both hold the page's text once (about an eighth of the whole page parsed at once here).
    assert streamed * 5 < loaded


@pytest.mark.parametrize(
    ("answer", "items", "token"),
    [
        (b'{"items":[{"a":1}, {"a":2}],"metadata":{"continue":"t"}}', [{"a": 1}, {"a": 2}], "t"),
        (b' { "metadata" : {} , "items" : [ ] } \n', [], None),
        (b'{"items":null,"metadata":{"continue":""}}', [], None),
        (b'{"kind":"List","items":[{"items":[1,2]}]}', [{"items": [1, 2]}], None),
        (b"{}", [], None),
    ],
)
def test_a_list_answer_is_read_whatever_its_key_order_and_white_space(
    answer: bytes, items: list[Any], token: str | None
) -> None:
    assert parse_list(answer, lambda item: item) == (items, token)


@pytest.mark.parametrize(
    "answer",
    [b"", b"[]", b'{"items":[{"a":1}', b'{"items":[{"a":1} {"a":2}]}', b'{"items":[]', b"{1:2}"],
)
def test_a_malformed_list_answer_raises_as_json_loads_would(answer: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):
        parse_list(answer, lambda item: item)


def test_an_expired_continue_token_starts_the_list_again() -> None:
    pages = _Pages(expire={2})
    items = read_list(pages, "/api/v1/pods", keep=without_managed_fields)
    assert [i["metadata"]["name"] for i in items] == [
        f"p{p}-{i}" for p in range(3) for i in range(2)
    ]
    assert [q.get("continue") for q in pages.queries] == [None, "1", "2", None, "1", "2"]


def test_a_list_refused_on_its_first_page_or_expiring_every_time_is_not_read() -> None:
    with pytest.raises(Gone):
        read_list(_Pages(expire={0}), "/api/v1/pods", keep=without_managed_fields)
    always = _Pages(expire={1, 3, 5})
    with pytest.raises(Gone, match="kept expiring"):
        read_list(always, "/api/v1/pods", keep=without_managed_fields)
    assert len(always.queries) == 6


def test_a_kube_lists_through_its_own_calls_and_asks_the_version_at_slash_version() -> None:
    api = ApiClientStandIn(
        [
            {"metadata": {"continue": "c"}, "items": [{"metadata": {"name": "a"}}]},
            {"metadata": {}, "items": [{"metadata": {"name": "b", "managedFields": []}}]},
            {"major": "1", "minor": "37"},
        ]
    )
    kube = Kube(api)  # type: ignore[arg-type]
    items = kube.list_all(KINDS["Pod"].path(None), keep=without_managed_fields)
    assert items == [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]
    assert kube.version() == {"major": "1", "minor": "37"}
    assert [a["path"] for a in api.asked] == ["/api/v1/pods", "/api/v1/pods", "/version"]


def _sla(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": f"u-{name}"},
        "spec": {
            "model": {"name": "m", "source": "hf://o/m", "parametersBillions": 8},
            "network": {"rttBudgetMs": 20},
            **spec,
        },
    }


OFFER = bundle_offer()


def test_the_sla_reader_lists_every_page_parsed_and_sorted_at_its_offers_terms() -> None:
    """The SLAs of all pages, a malformed one left out, by namespace and name, each at its
    offer's price (offers read in one list only because an SLA names one)."""
    from aiconn.api.slas import DirectSLAReader

    broken = {"metadata": {"namespace": "a", "name": "broken"}, "spec": {}}
    api = ApiClientStandIn(
        [
            {"metadata": {"continue": "c"}, "items": [_sla("b", "chat"), broken]},
            {"metadata": {}, "items": [_sla("a", "chat", offer="bundle")]},
            {"metadata": {}, "items": [OFFER]},
        ]
    )
    slas = DirectSLAReader(api).all()
    assert [(s.namespace, s.name) for s in slas] == [("a", "chat"), ("b", "chat")]
    assert slas[0].spec.tokens.price_per_million_tokens == 2
    assert [a["path"] for a in api.asked] == [
        "/apis/aiconn.io/v1alpha1/aiinferenceslas",
        "/apis/aiconn.io/v1alpha1/aiinferenceslas",
        "/apis/aiconn.io/v1alpha1/aiinferenceoffers",
    ]
    in_a = ApiClientStandIn([{"metadata": {}, "items": [_sla("a", "chat")]}])
    assert [s.name for s in DirectSLAReader(in_a).in_namespace("a")] == ["chat"]
    assert in_a.asked[0]["path"] == "/apis/aiconn.io/v1alpha1/namespaces/a/aiinferenceslas"


def test_an_absent_sla_or_offer_is_none_and_a_present_one_is_read() -> None:
    from aiconn.api.slas import DirectSLAReader

    api = ApiClientStandIn([404, 404, _sla("a", "chat"), OFFER])
    reader = DirectSLAReader(api)
    assert reader.get("a", "chat") is None
    assert reader.offer("bundle") is None
    found = reader.get("a", "chat")
    assert found is not None and found.uid == "u-chat"
    assert reader.offer("bundle") == OFFER
    assert [a["path"] for a in api.asked][:2] == [
        "/apis/aiconn.io/v1alpha1/namespaces/a/aiinferenceslas/chat",
        "/apis/aiconn.io/v1alpha1/aiinferenceoffers/bundle",
    ]


@pytest.mark.parametrize(
    ("read", "answer", "message"),
    [
        ("get", 403, "reading SLA failed with status 403"),
        ("offer", 500, "reading offer failed with status 500"),
        ("all", 403, "service account needs get, list and watch"),
        ("all", 410, "service account needs get, list and watch"),
        ("get", ConnectionRefusedError(), "ConnectionRefusedError"),
        ("all", ProtocolError("reset"), "ProtocolError"),
        ("ping", 401, "KubeError 401"),
    ],
)
def test_a_refused_or_unreachable_api_server_is_sla_unavailable(
    read: str, answer: int | Exception, message: str
) -> None:
    """Every failure of a read is SLAUnavailable (the API answers 503), never a leaked client
    exception; an SLA's or offer's read names the status it was refused with."""
    from aiconn.api.slas import DirectSLAReader, SLAUnavailable

    reader = DirectSLAReader(ApiClientStandIn([answer]))
    calls = {
        "get": lambda: reader.get("a", "chat"),
        "offer": lambda: reader.offer("bundle"),
        "all": reader.all,
        "ping": reader.ping,
    }
    with pytest.raises(SLAUnavailable, match=message):
        calls[read]()


def test_a_token_is_reviewed_for_the_apis_audience_and_then_for_the_default_one() -> None:
    """A review that comes back without the API's audience (an authenticator that ignores
    audiences) does not authenticate; the default audience's review then does, and the
    answer is cached."""
    from aiconn.api.auth import Caller
    from aiconn.api.kubeauth import KubernetesAuthorizer

    user = {"username": "alice", "groups": ["g"], "uid": "u1", "extra": {"k": ["v"]}}
    api = ApiClientStandIn(
        [
            {"status": {"authenticated": True, "user": user}},
            {"status": {"authenticated": True, "user": user, "audiences": ["kube"]}},
        ]
    )
    authorizer = KubernetesAuthorizer(api, cache_seconds=60, cache_size=4, audience="aiconn")
    expected = Caller(username="alice", groups=("g",), uid="u1", extra=(("k", ("v",)),))
    assert authorizer.authenticate("t0ken") == expected
    assert authorizer.authenticate("t0ken") == expected
    assert [(a["method"], a["path"]) for a in api.asked] == [
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    ] * 2
    assert [a["body"] for a in api.asked] == [
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": "t0ken", "audiences": ["aiconn"]},
        },
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": "t0ken"},
        },
    ]
    own_only = ApiClientStandIn(
        [{"status": {"authenticated": True, "user": user, "audiences": ["other"]}}]
    )
    strict = KubernetesAuthorizer(
        own_only, cache_seconds=0, cache_size=4, audience="aiconn", accept_default_audience=False
    )
    assert strict.authenticate("t0ken") is None and len(own_only.asked) == 1


def test_an_access_review_asks_about_the_caller_and_leaves_unset_fields_out() -> None:
    from aiconn.api.auth import AuthUnavailable, Caller
    from aiconn.api.kubeauth import KubernetesAuthorizer

    api = ApiClientStandIn([{"status": {"allowed": True}}, {"status": {}}, 403])
    authorizer = KubernetesAuthorizer(api, cache_seconds=60, cache_size=4)
    noc = Caller(username="noc")
    assert authorizer.may_read_fleet(noc) is True
    assert authorizer.may_read_fleet(noc) is True  # cached
    assert authorizer.may_read_namespace(noc, "a") is False
    [fleet, namespace] = api.asked
    assert fleet["path"] == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    assert fleet["body"] == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "noc",
            "groups": [],
            "resourceAttributes": {
                "group": "aiconn.io",
                "resource": "aiinferenceslas",
                "verb": "list",
            },
        },
    }
    assert namespace["body"]["spec"]["resourceAttributes"]["namespace"] == "a"
    with pytest.raises(AuthUnavailable, match="status 403"):
        authorizer.may_top_up(noc, "a")


def test_the_activity_feed_reads_events_on_both_kinds_newest_first() -> None:
    """Events on SLAs and on NetworkSlices, each kind its own paged list; an Event's time is
    its last timestamp, else its event time, else its first, else its creation."""
    from aiconn.api.nochistory import activity

    def event(name: str, kind: str, version: str, **fields: Any) -> dict[str, Any]:
        meta = {"namespace": "t", "name": name, "resourceVersion": version}
        return {"metadata": meta, "involvedObject": {"kind": kind, "name": "chat"}, **fields}

    api = ApiClientStandIn(
        [
            {
                "metadata": {"continue": "c"},
                "items": [
                    event("a", "AIInferenceSLA", "5", lastTimestamp="2026-12-03T10:00:00Z"),
                ],
            },
            {
                "metadata": {},
                "items": [
                    event(
                        "b",
                        "AIInferenceSLA",
                        "7",
                        eventTime="2026-12-03T10:00:00.250000Z",
                        type="Warning",
                        reason="Breached",
                        count=3,
                        source={"component": "aiconn-operator"},
                    ),
                ],
            },
            {
                "metadata": {},
                "items": [
                    event("c", "NetworkSlice", "9", firstTimestamp="2026-12-03T11:00:00Z"),
                    event("d", "NetworkSlice", "1", reportingComponent="kwok"),
                ],
            },
        ]
    )
    feed = activity(api, limit=3, warnings_only=False)
    assert [(e.time.isoformat(), e.kind, e.count) for e in feed] == [
        ("2026-12-03T11:00:00+00:00", "NetworkSlice", 1),
        ("2026-12-03T10:00:00.250000+00:00", "AIInferenceSLA", 3),
        ("2026-12-03T10:00:00+00:00", "AIInferenceSLA", 1),
    ]
    breached = feed[1]
    assert (breached.type, breached.reason, breached.source, breached.namespace) == (
        "Warning",
        "Breached",
        "aiconn-operator",
        "t",
    )
    warnings = ApiClientStandIn([{"items": []}, {"items": []}])
    assert activity(warnings, limit=1, warnings_only=True) == []
    assert [dict(a["query_params"])["fieldSelector"] for a in warnings.asked] == [
        "involvedObject.kind=AIInferenceSLA,type=Warning",
        "involvedObject.kind=NetworkSlice,type=Warning",
    ]
    assert {a["path"] for a in api.asked} == {"/api/v1/events"}
    assert [dict(a["query_params"]).get("continue") for a in api.asked] == [None, "c", None]
    assert dict(api.asked[2]["query_params"])["fieldSelector"] == "involvedObject.kind=NetworkSlice"


def test_apply_finds_a_kind_it_does_not_know_by_discovery_and_applies_it_as_its_manager() -> None:
    """The dev harness applies manifests of any kind through the one adapter: a kind outside
    `KINDS` is addressed by the API server's discovery of its group version (read once, read
    again on a miss: a CRD established since is found), a namespaced one without a namespace
    goes to `default`; a kind the server does not serve is NotFound, and nothing is applied."""
    from aiconn.devstack.kube import FIELD_MANAGER, apply_objects

    rbac = {
        "resources": [
            {"name": "clusterroles", "kind": "ClusterRole", "namespaced": False},
            {"name": "roles", "kind": "Role", "namespaced": True},
            {"name": "roles/status", "kind": "Role", "namespaced": True},
        ]
    }
    api = ApiClientStandIn([rbac, {}, {}, {}, {"resources": []}])
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}
    bound = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role"}
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy"}
    names = apply_objects(
        api,  # type: ignore[arg-type]
        [{**role, "metadata": {"name": "r"}}, {**bound, "metadata": {"name": "b"}}],
    )
    assert names == ["r", "b"]
    apply_objects(api, [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}])  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="serves no ValidatingAdmissionPolicy"):
        apply_objects(api, [{**policy, "metadata": {"name": "v"}}])  # type: ignore[arg-type]
    asked = [(a["method"], a["path"]) for a in api.asked]
    assert asked == [
        ("GET", "/apis/rbac.authorization.k8s.io/v1"),
        ("PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterroles/r"),
        ("PATCH", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/b"),
        ("PATCH", "/api/v1/namespaces/default/pods/p"),
        ("GET", "/apis/admissionregistration.k8s.io/v1"),
    ]
    patch = api.asked[1]
    assert patch["query_params"] == [("fieldManager", FIELD_MANAGER), ("force", "true")]
    assert patch["header_params"]["Content-Type"] == "application/apply-patch+yaml"
