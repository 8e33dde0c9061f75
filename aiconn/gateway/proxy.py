"""The OpenAI-compatible reverse proxy: admit, forward, meter, measure, one request at a time.

The inference endpoints are raw ASGI rather than Starlette responses because the measurement is
the send itself: TTFT is taken just before the first content-bearing chunk is handed to the
client, not when a generator yields it. A second task waits for the client to go away, because
uvicorn drops sends to a closed connection silently; a cancelled request closes its upstream
stream (so vLLM aborts it), is counted as `client_error` and is never an upstream failure.

Order of admission: key (401), allowance (402), tokens per minute and requests per second (429).
Latency histograms take successful requests only (and the TTFT of a stream the client cancelled
after its first token): an error answered in a millisecond is not a fast token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx
from starlette.types import Receive, Scope, Send

from aiconn.gateway.allowance import AllowanceSource, AllowanceUnavailable
from aiconn.gateway.health import HealthProbe
from aiconn.gateway.keys import KeyStore, bearer_token
from aiconn.gateway.metrics import GatewayMetrics
from aiconn.gateway.ratelimit import MinuteWindow, TokenBucket, retry_after_header
from aiconn.gateway.usage import StreamMeter, Usage, ask_for_usage, usage_from_body
from aiconn.sla import metricnames as mn

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# The gateway's key is the tenant's, not vLLM's; identity encoding lets the gateway read usage.
_NOT_FORWARDED_UP = HOP_BY_HOP | {b"host", b"authorization", b"content-length", b"accept-encoding"}
_UPSTREAM_ENCODING = (b"accept-encoding", b"identity")


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer the gateway gives itself, in OpenAI's error shape."""

    status: int
    outcome: str
    code: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(slots=True)
class Exchange:
    """What one request did, filled in as it goes and recorded once at its end."""

    started: float
    stream: bool = False
    outcome: str | None = None
    first_content: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    finished: float | None = None
    meter: StreamMeter | None = None
    usage: Usage | None = None
    responding: bool = False
    cancelled: bool = False


def upstream_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The client's headers minus hop-by-hop, Host, Authorization and encoding negotiation."""
    kept = [(name, value) for name, value in headers if name.lower() not in _NOT_FORWARDED_UP]
    kept.append(_UPSTREAM_ENCODING)
    return kept


def downstream_headers(headers: Iterable[tuple[bytes, bytes]], *, keep_length: bool) -> Headers:
    """The upstream's headers minus hop-by-hop (and Content-Length when the body may change)."""
    return [
        (lowered, value)
        for name, value in headers
        if (lowered := name.lower()) not in HOP_BY_HOP
        and (keep_length or lowered != b"content-length")
    ]


def error_body(*, message: str, code: str, kind: str) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    ).encode()


async def send_refusal(send: Send, refusal: Refusal) -> None:
    kind = "invalid_request_error" if refusal.status < 500 else "server_error"
    body = error_body(message=refusal.message, code=refusal.code, kind=kind)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *refusal.headers,
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _target(scope: Scope) -> str:
    path: str = scope["path"]
    query: bytes = scope["query_string"]
    return path + ("?" + query.decode("latin-1") if query else "")


def _outcome_of_status(status: int) -> str:
    if status < 400:
        return mn.OUTCOME_SUCCESS
    return mn.OUTCOME_CLIENT_ERROR if status < 500 else mn.OUTCOME_UPSTREAM_ERROR


class Gateway:
    """Shared state of the proxy: keys, limits, allowance, metrics and the upstream pool."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        keys: KeyStore,
        metrics: GatewayMetrics,
        probe: HealthProbe,
        rate_rps: float,
        rate_tpm: int,
        allowance: AllowanceSource | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._keys = keys
        self._metrics = metrics
        self._probe = probe
        self._allowance = allowance
        self._clock = clock
        self._bucket = TokenBucket(rate=rate_rps, now=clock())
        self._window = MinuteWindow(limit=rate_tpm)

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`POST /v1/chat/completions` and `POST /v1/completions`."""
        exchange = Exchange(started=time.perf_counter())
        refusal = await self._admit(scope)
        if refusal is not None:
            self._metrics.count(refusal.outcome)
            await send_refusal(send, refusal)
            return
        body = await read_body(receive)
        if body is None:
            self._metrics.count(mn.OUTCOME_CLIENT_ERROR)
            return
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self._metrics.count(mn.OUTCOME_CLIENT_ERROR)
            await send_refusal(
                send,
                Refusal(
                    400,
                    mn.OUTCOME_CLIENT_ERROR,
                    "invalid_json",
                    "the request body must be a JSON object",
                ),
            )
            return
        exchange.stream = request.get("stream") is True
        strip_usage = exchange.stream and ask_for_usage(request)
        if strip_usage:
            body = json.dumps(request).encode()

        forward = asyncio.ensure_future(
            self._forward(scope, body, send, exchange, strip_usage=strip_usage)
        )
        watch = asyncio.ensure_future(wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait({forward, watch}, return_when=asyncio.FIRST_COMPLETED)
            if forward in done:
                forward.result()
            else:
                exchange.cancelled = True
                forward.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forward
        finally:
            watch.cancel()
            self._record(exchange)

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`GET /v1/models`: authenticated, passed through, not an SLA request."""
        refusal = None if self._authorized(scope) else self._unauthorized()
        if refusal is None:
            try:
                response = await self._client.get(
                    _target(scope), headers=upstream_headers(scope["headers"])
                )
            except httpx.TransportError as exc:
                refusal = self._transport_refusal(exc)
            else:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": downstream_headers(response.headers.raw, keep_length=True),
                    }
                )
                await send({"type": "http.response.body", "body": response.content})
                return
        await send_refusal(send, refusal)

    def _authorized(self, scope: Scope) -> bool:
        authorization = next(
            (
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"authorization"
            ),
            None,
        )
        return self._keys.accepts(bearer_token(authorization))

    @staticmethod
    def _unauthorized() -> Refusal:
        return Refusal(
            401,
            mn.OUTCOME_UNAUTHORIZED,
            "invalid_api_key",
            "missing or invalid API key: send Authorization: Bearer <key>",
        )

    async def _admit(self, scope: Scope) -> Refusal | None:
        if not self._authorized(scope):
            return self._unauthorized()
        if self._allowance is not None:
            try:
                remaining = await self._allowance.remaining()
            except AllowanceUnavailable as exc:
                return Refusal(503, mn.OUTCOME_UPSTREAM_ERROR, "allowance_unavailable", str(exc))
            if remaining is not None and remaining <= 0:
                return Refusal(
                    402,
                    mn.OUTCOME_PAYMENT_REQUIRED,
                    "insufficient_quota",
                    "the token allowance of this SLA is spent",
                )
        now = self._clock()
        wait = self._window.retry_after(now)
        what = "tokens per minute"
        if wait == 0.0:
            wait, what = self._bucket.take(now), "requests per second"
        if wait > 0.0:
            return Refusal(
                429,
                mn.OUTCOME_OVER_CONTRACT,
                "rate_limit_exceeded",
                f"over the contracted {what}",
                ((b"retry-after", retry_after_header(wait).encode()),),
            )
        return None

    def _transport_refusal(self, exc: httpx.TransportError) -> Refusal:
        if isinstance(exc, httpx.TimeoutException):
            return Refusal(
                504,
                mn.OUTCOME_TIMEOUT,
                "upstream_timeout",
                "the model server did not answer in time",
            )
        if isinstance(exc, httpx.ConnectError):
            self._probe.mark_down(f"upstream unreachable: {type(exc).__name__}")
        return Refusal(
            503,
            mn.OUTCOME_UPSTREAM_ERROR,
            "upstream_unavailable",
            "the model server is unavailable",
        )

    async def _forward(
        self, scope: Scope, body: bytes, send: Send, exchange: Exchange, *, strip_usage: bool
    ) -> None:
        request = self._client.build_request(
            scope["method"],
            _target(scope),
            content=body,
            headers=upstream_headers(scope["headers"]),
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            refusal = self._transport_refusal(exc)
            exchange.outcome = refusal.outcome
            await send_refusal(send, refusal)
            return
        try:
            content_type = response.headers.get("content-type", "")
            if (
                exchange.stream
                and response.status_code == 200
                and content_type.startswith("text/event-stream")
            ):
                exchange.meter = StreamMeter(strip_usage=strip_usage)
                await self._relay_stream(response, send, exchange, exchange.meter)
            else:
                await self._relay_whole(response, send, exchange)
        except httpx.TransportError as exc:
            refusal = self._transport_refusal(exc)
            exchange.outcome = refusal.outcome
            if exchange.responding:
                # Too late for a status: the stream ends without `data: [DONE]`.
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await send_refusal(send, refusal)
        finally:
            await response.aclose()

    async def _relay_whole(self, response: httpx.Response, send: Send, exchange: Exchange) -> None:
        body = await response.aread()
        exchange.responding = True
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": downstream_headers(response.headers.raw, keep_length=True),
            }
        )
        exchange.first_content = time.perf_counter()
        await send({"type": "http.response.body", "body": body})
        exchange.finished = time.perf_counter()
        exchange.outcome = _outcome_of_status(response.status_code)
        if response.status_code == 200:
            exchange.usage = usage_from_body(body)

    async def _relay_stream(
        self, response: httpx.Response, send: Send, exchange: Exchange, meter: StreamMeter
    ) -> None:
        exchange.responding = True
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": downstream_headers(response.headers.raw, keep_length=False),
            }
        )
        async for data in response.aiter_raw():
            fed = meter.feed(data)
            if not fed.out:
                continue
            now = time.perf_counter()
            if fed.content and exchange.first_content is None:
                exchange.first_content = now
            if fed.tokens:
                if exchange.first_token is None:
                    exchange.first_token = now
                exchange.last_token = now
            await send({"type": "http.response.body", "body": fed.out, "more_body": True})
        await send({"type": "http.response.body", "body": meter.flush(), "more_body": False})
        exchange.finished = time.perf_counter()
        exchange.usage = meter.usage
        exchange.outcome = mn.OUTCOME_UPSTREAM_ERROR if meter.failed else mn.OUTCOME_SUCCESS

    def _record(self, exchange: Exchange) -> None:
        metrics = self._metrics
        if exchange.cancelled:
            outcome = mn.OUTCOME_CLIENT_ERROR
        else:
            # No outcome without cancellation means the gateway itself failed: the provider's.
            outcome = exchange.outcome or mn.OUTCOME_UPSTREAM_ERROR
        metrics.count(outcome)

        usage = exchange.usage
        if usage is None and exchange.cancelled and exchange.meter is not None:
            # vLLM sends no usage for an aborted stream: count its token events (prompt unknown).
            usage = Usage(prompt=0, completion=exchange.meter.token_events)
        if usage is not None:
            metrics.tokens(prompt=usage.prompt, completion=usage.completion)
            spent = usage.prompt + usage.completion
            self._window.record(spent, self._clock())
            if self._allowance is not None:
                self._allowance.record(spent)

        if exchange.first_content is not None and (
            outcome == mn.OUTCOME_SUCCESS or exchange.cancelled
        ):
            metrics.ttft.observe(exchange.first_content - exchange.started)
        if outcome != mn.OUTCOME_SUCCESS or exchange.finished is None:
            return
        metrics.duration.observe(exchange.finished - exchange.started)
        if (
            exchange.stream
            and usage is not None
            and usage.completion >= 2
            and exchange.first_token is not None
            and exchange.last_token is not None
        ):
            metrics.tpot.observe(
                (exchange.last_token - exchange.first_token) / (usage.completion - 1)
            )
