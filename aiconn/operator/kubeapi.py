"""The operator's few verbs on the Kubernetes API: server-side apply, create-if-absent, read,
delete and status patches (conditions with optimistic concurrency), for the kinds it owns.

Server-side apply with deterministic names is what makes reconciliation idempotent: replaying
a reconcile after a crash at any point converges on one child of each kind, never a duplicate.
The blocking calls (`aiconn.kube`: the raw call that drops managedFields, the paged list parsed
an item at a time) run in threads so Kopf's event loop never blocks: a pool of its own as large
as the client's connection pool (asyncio's default pool has cpu_count + 4 threads, 6 on two
cores, which capped the operator at 6 requests in flight whatever its connection pool).
Identical reads that many reconciles make at once (the cluster's Nodes and Pods for capacity)
share one request (`fresh_get`, `fresh_list`).

A free thread goes to the calls made `first_in_line` (an SLA reconcile writing its children and
then its status) before the others waiting (the watch events' readiness refreshes, Events, the
assurance pass): in a burst of new SLAs, each reconcile that has its turn
(`reconcile._apply_turns`) runs to its end instead of waiting behind the follow-up work of the
SLAs written before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiconn.kube import (
    DEFAULT_POOL_SIZE,
    KINDS,
    Conflict,
    Keep,
    Kube,
    NotFound,
    Query,
    Transport,
    apply_request,
    connect,
    read_list,
)

# Re-exported: tests/unit/test_operator_writes.py reads the page size and the list cut here.
from aiconn.kube import LIST_PAGE as LIST_PAGE
from aiconn.kube import without_managed_fields as without_managed_fields
from aiconn.operator.conditions import merge
from aiconn.resources.v1alpha1.status import typed_status

FIELD_MANAGER = "aiconn-operator"
T = TypeVar("T")

_FIRST_IN_LINE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "aiconn_first_in_line", default=False
)


@contextlib.contextmanager
def first_in_line() -> Iterator[None]:
    """The operator's API calls made inside (in this task and the tasks it starts) go before the
    others waiting for a thread."""
    token = _FIRST_IN_LINE.set(True)
    try:
        yield
    finally:
        _FIRST_IN_LINE.reset(token)


def not_first_in_line() -> contextvars.Context:
    """A copy of the current context whose API calls wait in the second line (for a task that
    must not inherit `first_in_line`)."""
    context = contextvars.copy_context()
    context.run(_FIRST_IN_LINE.set, False)
    return context


class _Slots:
    """`size` calls on the threads at once. A call that finds them all busy waits in one of two
    lines, and a freed slot goes to the first line's oldest waiter, else the second's."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._lines: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),
            deque(),
        )

    async def acquire(self, *, first: bool) -> None:
        if self._free > 0:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lines[0 if first else 1].append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot as it was cancelled: pass it on
            raise

    def release(self) -> None:
        for line in self._lines:
            while line:
                waiter = line.popleft()
                if not waiter.done():  # a cancelled waiter is skipped
                    waiter.set_result(None)
                    return
        self._free += 1


class _Coalesced:
    """One read shared by the callers that want it at the same time, never an older one: a
    caller that arrives while a request is in flight waits for the next request, sent when that
    one returns, together with every caller that arrived meanwhile. So each caller gets an
    answer the API server gave after the caller asked, as with a request of its own."""

    def __init__(self, fetch: Callable[[], Awaitable[Any]]) -> None:
        self._fetch = fetch
        self._running: asyncio.Future[Any] | None = None
        self._next: asyncio.Future[Any] | None = None

    async def get(self) -> Any:
        if self._running is None:
            self._running = self._start()
            return await asyncio.shield(self._running)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._next)

    @property
    def idle(self) -> bool:
        """No read in flight and none asked for."""
        return self._running is None and self._next is None

    def _start(self) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(self._fetch())
        task.add_done_callback(self._finished)
        return task

    def _finished(self, done: asyncio.Future[Any]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved here: a caller that went away leaves no warning
        self._running = None
        waiting, self._next = self._next, None
        if waiting is not None:
            self._running = self._start()
            self._running.add_done_callback(functools.partial(_relay, waiting))


def _relay(target: asyncio.Future[Any], source: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (err := source.exception()) is not None:
        target.set_exception(err)
    else:
        target.set_result(source.result())


class KubeApi:
    """Thin async verbs over one connection (`aiconn.kube.connect`'s transport; the tests may
    hand it the official client's `ApiClient`): every request is the blocking `aiconn.kube.Kube`
    call, run on the operator's threads. The API server's refusals come out as
    `aiconn.kube.KubeError` (`NotFound`, `Conflict`, `Gone` for 404, 409, 410)."""

    def __init__(self, api: Transport | Any) -> None:
        self._blocking = Kube(api)
        self.api = self._blocking.api
        size = self.api.pool_size or DEFAULT_POOL_SIZE
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="kubeapi")
        self._slots = _Slots(size)
        self._shared: dict[tuple[Any, ...], _Coalesced] = {}

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._blocking.call(method, path, **kwargs)

    def _request(self, method: str, path: str, *, query: Query = None) -> bytes:
        return self._blocking.api.request(method, path, query=query)

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return await self._on_a_thread(functools.partial(self._call, method, path, **kwargs))

    async def _on_a_thread(self, call: Callable[[], T]) -> T:
        """`call` on one of the operator's threads, once a slot is free (`first_in_line`)."""
        await self._slots.acquire(first=_FIRST_IN_LINE.get())
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, call)
        finally:
            self._slots.release()

    async def fresh_get(
        self, path: str, query: list[tuple[str, Any]] | None = None
    ) -> dict[str, Any]:
        """GET `path`, sharing the request with concurrent callers of the same read (see
        `_Coalesced`): the answer is never older than the call. Callers must not modify it."""
        result: dict[str, Any] = await self._shared_read(
            (path, tuple(query or ())), functools.partial(self.call, "GET", path, query=query)
        )
        return result

    async def fresh_list(self, path: str, query: Query, *, keep: Keep[T]) -> list[T]:
        """`list_all`, shared with concurrent callers of the same list and `keep` as
        `fresh_get` shares a read. Callers must not modify the answer."""
        result: list[T] = await self._shared_read(
            ("list", path, tuple(query or ()), keep),
            functools.partial(self.list_all, path, query, keep=keep),
        )
        return result

    async def _shared_read(self, key: tuple[Any, ...], fetch: Callable[[], Awaitable[Any]]) -> Any:
        shared = self._shared.get(key)
        if shared is None:
            shared = self._shared[key] = _Coalesced(fetch)
        try:
            return await shared.get()
        finally:
            # Forgotten once idle: one entry per read in flight, not per path ever read.
            if shared.idle and self._shared.get(key) is shared:
                del self._shared[key]

    async def list_all(
        self,
        path: str,
        query: Query = None,
        *,
        keep: Keep[T],
    ) -> list[T]:
        """Every item of the list at `path`, read in pages on one of the operator's threads,
        each item cut down by `keep` there as it is parsed (`aiconn.kube.read_list`): no page is
        ever whole in memory, nor reaches the event loop. A continue token that expired in
        between (410 Gone) starts the list again."""
        return await self._on_a_thread(
            functools.partial(read_list, self._request, path, query, keep=keep)
        )

    def close(self) -> None:
        """Close the client's connections and stop the pool its calls run on."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply `obj` as the operator's field manager (conflicts forced)."""
        path, request = apply_request(KINDS[obj["kind"]], obj, FIELD_MANAGER)
        return await self.call("PATCH", path, **request)

    async def create_if_absent(self, obj: dict[str, Any]) -> bool:
        """Create `obj`; False when it already exists (its contents are left untouched)."""
        kind = KINDS[obj["kind"]]
        try:
            await self.call("POST", kind.path(obj["metadata"].get("namespace")), body=obj)
        except Conflict:
            return False
        return True

    async def get(
        self, kind: str, name: str, namespace: str | None = None, *, shared: bool = False
    ) -> dict[str, Any] | None:
        """The object, None when absent; `shared` reads through `fresh_get` (the caller must
        not modify the answer)."""
        path = KINDS[kind].path(namespace, name)
        try:
            return await (self.fresh_get(path) if shared else self.call("GET", path))
        except NotFound:
            return None

    async def list(
        self, kind: str, namespace: str | None = None, *, labels: str = ""
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", labels)] if labels else []
        items: list[dict[str, Any]] = (
            await self.call("GET", KINDS[kind].path(namespace), query=query)
        ).get("items", [])
        return items

    async def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        try:
            await self.call("DELETE", KINDS[kind].path(namespace, name))
        except NotFound:
            return False
        return True

    async def patch_status(
        self, kind: str, name: str, namespace: str | None, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource (checked against the kind's typed status)."""
        return await self.call(
            "PATCH",
            KINDS[kind].path(namespace, name) + "/status",
            body={"status": typed_status(kind, status)},
            content_type="application/merge-patch+json",
        )

    async def update_status(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        *,
        fields: Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]],
        conditions: Sequence[dict[str, Any]],
        current: Mapping[str, Any] | None = None,
        attempts: int = 5,
    ) -> dict[str, Any]:
        """Merge-patch status `fields` and set `conditions` by type, keeping the other writers'.

        A merge patch replaces a list whole, and the operator's reconcile and its SLA loop each
        own some of the conditions: the patch therefore carries the resourceVersion its list was
        merged into, and a conflict (someone wrote in between) re-reads and merges again.
        `current` is the object as the caller last saw it; None reads it first. `fields` may be
        a function of the object the patch applies to, called again after each re-read: fields
        derived from the status (the printed summary and phase) then follow the other writer's
        newer status instead of overwriting it with what the caller saw before.
        """
        for _ in range(max(attempts, 1)):
            if current is None or not current.get("metadata", {}).get("resourceVersion"):
                current = await self.get(kind, name, namespace)
                if current is None:
                    raise NotFound(reason=f"{kind} {namespace}/{name} not found")
            previous = (current.get("status") or {}).get("conditions") or []
            values = fields(current) if callable(fields) else fields
            body = {
                "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                "status": typed_status(kind, {**values, "conditions": merge(previous, conditions)}),
            }
            try:
                return await self.call(
                    "PATCH",
                    KINDS[kind].path(namespace, name) + "/status",
                    body=body,
                    content_type="application/merge-patch+json",
                )
            except Conflict:
                current = None
        raise Conflict(reason=f"{kind} {namespace}/{name} kept changing; status not written")


def load_api_client() -> Transport:
    """The operator's connection: in-cluster in a pod, else KUBECONFIG (`aiconn.kube.connect`)."""
    return connect(pool_size=DEFAULT_POOL_SIZE)
