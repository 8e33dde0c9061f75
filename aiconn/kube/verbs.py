"""The blocking verbs that every Kubernetes call of the operator and the reporting API goes
through: the raw call (JSON in and out), get-or-None, create, and the paged list. The operator
runs them on threads of its own under async verbs (`operator/kubeapi.py`); the API calls them
from its request threads.

Every answer loses `metadata.managedFields` in the thread that parsed it: no caller reads them,
and they are the largest part of an object that several writers have touched.

Lists that may be long are read in pages (`read_list`), and each page is parsed one item at a
time, each item cut down to what the caller reads before the next is parsed (`parse_list`): a pod
is tens of kilobytes of Python objects (most of it `managedFields` and container specs), so a
list held whole as the API server wrote it grew the operator's memory with the cluster, and even
one page of 500 pods parsed at once was several hundred thousand objects alive together, a spike
that left the operator's memory a step higher each time (`bench/RESULTS.md`, "what the operator
holds at the height of a burst").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Protocol, TypedDict, TypeVar, Unpack

from aiconn.kube.client import DEFAULT_POOL_SIZE
from aiconn.kube.errors import Gone, NotFound, kube_error
from aiconn.kube.kinds import KINDS, Kind
from aiconn.kube.transport import Transport

LIST_PAGE = 500
"""Items per page of a paged list (kubectl's default chunk)."""

Item = dict[str, Any]
Query = list[tuple[str, Any]] | None
T = TypeVar("T")
Keep = Callable[[Item], T | None]
"""What a list keeps of each item it reads (None: the item is left out)."""


class RequestOptions(TypedDict, total=False):
    """What a request may add to its method and path (`Requester.request`, `Kube.call`)."""

    body: Any
    """Sent as JSON; none by default."""
    query: Query
    content_type: str
    """The body's type: `application/json` by default, or a patch's."""


class Request(Protocol):
    """The raw request (`Requester.request`) that `read_list` pages through: the answer's bytes."""

    def __call__(self, method: str, path: str, *, query: Query = None) -> bytes: ...


def apply_request(kind: Kind, obj: Item, field_manager: str) -> tuple[str, RequestOptions]:
    """The path and keywords of a server-side apply of `obj` (a `Kube.call` or
    `KubeApi.call`): conflicts forced, since the field manager owns what it applies."""
    meta = obj["metadata"]
    return kind.path(meta.get("namespace"), meta["name"]), {
        "body": obj,
        "query": [("fieldManager", field_manager), ("force", "true")],
        "content_type": "application/apply-patch+yaml",
    }


def without_managed_fields(item: Item) -> Item:
    """`item` less `metadata.managedFields`, which no caller reads (often half of an object's
    size)."""
    meta = item.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return item


def read_list(request: Request, path: str, query: Query = None, *, keep: Keep[T]) -> list[T]:
    """Every item of the list at `path`, read through `request` LIST_PAGE items at a time, each
    item passed through `keep` as it is parsed (`parse_list`). A continue token that expired in
    between (410 Gone, after the API server compacted) starts the list again."""
    for _ in range(3):
        items: list[T] = []
        token: str | None = None
        try:
            while True:
                page_query = [
                    *(query or ()),
                    ("limit", LIST_PAGE),
                    *((("continue", token),) if token else ()),
                ]
                kept, token = parse_list(request("GET", path, query=page_query), keep)
                items.extend(kept)
                if token is None:
                    return items
        except Gone:
            if token is None:
                raise
    raise Gone(reason=f"the list at {path} kept expiring; not read")


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def parse_list(data: bytes, keep: Keep[T]) -> tuple[list[T], str | None]:
    """A list answer's items, each parsed alone and passed through `keep` (less managedFields)
    before the next is parsed, and its continue token (None on the last page). Only the items'
    array is walked by hand; every value in it and beside it is read by the `json` module's
    decoder, so a malformed answer raises `json.JSONDecodeError` as `json.loads` would."""
    text = data.decode()
    kept: list[T] = []
    token: str | None = None
    at = _expect(text, _skip(text, 0), "{")
    while text[at : at + 1] != "}":
        key, at = _DECODER.raw_decode(text, at)
        if not isinstance(key, str):
            raise json.JSONDecodeError("Expecting a key in a list answer", text, at)
        at = _expect(text, _skip(text, at), ":")
        if key == "items" and text[at : at + 1] == "[":
            at = _skip(text, at + 1)
            while text[at : at + 1] != "]":
                item, at = _DECODER.raw_decode(text, at)
                if (cut := keep(without_managed_fields(item))) is not None:
                    kept.append(cut)
                del item  # gone before the next item is parsed, not after
                at = _skip(text, at)
                if text[at : at + 1] != "]":
                    at = _expect(text, at, ",")
            at = _skip(text, at + 1)
        else:
            value, at = _DECODER.raw_decode(text, at)
            if key == "metadata" and isinstance(value, dict):
                token = value.get("continue") or None
            at = _skip(text, at)
        if text[at : at + 1] != "}":
            at = _expect(text, at, ",")
    return kept, token


def _skip(text: str, at: int) -> int:
    """The index of the first character at or after `at` that is not JSON white space."""
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]


def _expect(text: str, at: int, char: str) -> int:
    """The index after `char`, which must stand at `at` (white space after it skipped)."""
    if text[at : at + 1] != char:
        raise json.JSONDecodeError(f"Expecting {char!r} in a list answer", text, at)
    return _skip(text, at + 1)


class Requester(Protocol):
    """What the verbs send their requests through: `aiconn.kube.transport.Transport`, or the
    official client wrapped by `OfficialClient`."""

    pool_size: int

    def request(self, method: str, path: str, **options: Unpack[RequestOptions]) -> bytes: ...

    def close(self) -> None: ...


class OfficialClient:
    """The official client's `ApiClient` as a `Requester` (the devstack and the tests hand their
    typed client to the adapter): its raw call, its `ApiException` as the project's error."""

    def __init__(self, api: Any) -> None:
        self.api = api
        configuration = getattr(api, "configuration", None)
        self.pool_size: int = (
            getattr(configuration, "connection_pool_maxsize", None) or DEFAULT_POOL_SIZE
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Query = None,
        content_type: str = "application/json",
    ) -> bytes:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
            )
        except ApiException as err:
            raise kube_error(err) from err
        data: bytes = response[0].data
        return data

    def close(self) -> None:
        self.api.close()


def requester(api: Transport | Any) -> Requester:
    """`api` as the verbs' `Requester`: a `Transport` as it is, an official `ApiClient` wrapped."""
    return api if isinstance(api, Transport | OfficialClient) else OfficialClient(api)


class Kube:
    """Blocking verbs over one connection (`aiconn.kube.connect`'s transport, or an official
    `ApiClient`). The API server's refusals come out as `aiconn.kube.KubeError` (`NotFound`,
    `Conflict`, `Gone` for 404, 409, 410); a server that does not answer, as the transport raised
    it (urllib3's `HTTPError`, an `OSError`)."""

    def __init__(self, api: Transport | Any) -> None:
        self.api = requester(api)
        self._discovered: dict[tuple[str, str], Kind] = {}

    def call(self, method: str, path: str, **options: Unpack[RequestOptions]) -> Item:
        """One request; the answer's JSON, less managedFields ({} for an empty answer)."""
        data = self.api.request(method, path, **options)
        answer: Item = json.loads(data) if data else {}
        # Cut in this thread, before the answer is held.
        without_managed_fields(answer)
        for item in answer.get("items") or ():
            without_managed_fields(item)
        return answer

    def get(self, kind: str, name: str, namespace: str | None = None) -> Item | None:
        """The object, None when absent."""
        try:
            return self.call("GET", KINDS[kind].path(namespace, name))
        except NotFound:
            return None

    def create(self, obj: Item) -> Item:
        """POST `obj` to its kind's collection (a review's answer is the object it returns)."""
        kind = KINDS[obj["kind"]]
        return self.call("POST", kind.path(obj.get("metadata", {}).get("namespace")), body=obj)

    def kind(self, api_version: str, kind: str) -> Kind:
        """The address of `kind` in `api_version`: from `KINDS`, else from the API server's
        discovery of that group version (read again on a miss, so a CRD established since is
        found; `NotFound` when the server does not serve it)."""
        known = KINDS.get(kind)
        if known is not None and known.api_version == api_version:
            return known
        if (api_version, kind) not in self._discovered:
            prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            for resource in self.call("GET", prefix).get("resources") or ():
                if "/" not in resource["name"]:  # not a subresource
                    self._discovered[(api_version, resource["kind"])] = Kind(
                        api_version, resource["name"], namespaced=resource["namespaced"]
                    )
        try:
            return self._discovered[(api_version, kind)]
        except KeyError:
            raise NotFound(reason=f"the API server serves no {kind} in {api_version}") from None

    def apply(self, obj: Item, *, field_manager: str) -> Item:
        """Server-side apply `obj` as `field_manager` (see `apply_request`)."""
        path, request = apply_request(self.kind(obj["apiVersion"], obj["kind"]), obj, field_manager)
        return self.call("PATCH", path, **request)

    def list_all(self, path: str, query: Query = None, *, keep: Keep[T]) -> list[T]:
        """`read_list` through this client's requests."""
        return read_list(self.api.request, path, query, keep=keep)

    def version(self) -> Item:
        """The API server's version: the cheapest request that shows it answers."""
        return self.call("GET", "/version")
