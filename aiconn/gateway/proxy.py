"""The OpenAI-compatible reverse proxy: admit, reserve, forward, meter, settle, one request each.

The inference endpoints are raw ASGI because the measurement is the send itself: TTFT is taken
just before the first content-bearing chunk is handed to the client. A second task waits for the
client to go away, because uvicorn drops sends to a closed connection silently; a cancelled
request closes its upstream stream (so vLLM aborts it), is counted as `client_error` and is never
an upstream failure.

Order of admission: key (401), body (413, 400), allowance (402), tokens per minute and requests
per second (429). Admission reserves the most the request can spend (`Budget`: prompt plus
`max_tokens` x `n`, or the model's limit when `max_tokens` is unset) against the allowance and
the minute window; the end of the request settles the reservation to the tokens it spent, or
releases it. The prompt is bounded by its bytes; when that bound does not fit, it is counted
exactly with vLLM's `/tokenize` before refusing. So concurrent requests never spend more than the
allowance or the contracted tokens per minute.

Billing a cancelled request: vLLM prefilled its whole prompt, so a request the client abandons is
billed its prompt (counted with vLLM's `/tokenize`, which applies the chat template as vLLM does)
plus the completion tokens already sent. TTFT is measured on streams only: a non-streamed
request's first byte is its last, so its duration would let a tenant add slow samples at will;
non-streamed requests feed the duration histogram only.

Only allow-listed client headers reach vLLM, and vLLM's `Server` header and the text of its 5xx
errors do not reach the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from starlette.types import Receive, Scope, Send

from aiconn.gateway.allowance import AllowanceSource, AllowanceUnavailable
from aiconn.gateway.body import BadRequest, BodyParser, Budget, Parsed
from aiconn.gateway.health import HealthProbe
from aiconn.gateway.keys import KeyStore, bearer_token
from aiconn.gateway.metrics import GatewayMetrics
from aiconn.gateway.ratelimit import MinuteWindow, TokenBucket, retry_after_header
from aiconn.gateway.routes import Route
from aiconn.gateway.upstream import (
    Headers,
    Upstream,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from aiconn.gateway.usage import StreamMeter, Usage
from aiconn.sla import metricnames as mn

log = logging.getLogger(__name__)


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
FORWARDED_UP = frozenset({b"content-type", b"accept", b"user-agent"})
"""Client headers vLLM sees. Others can steer it (`X-Request-Id` sets the completion id,
`endpoint-load-metrics-format` returns its load) or carry the tenant's key."""
_NOT_FORWARDED_DOWN = HOP_BY_HOP | {b"server"}
_UPSTREAM_ENCODING = (b"accept-encoding", b"identity")
_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer the gateway gives itself, in OpenAI's error shape."""

    status: int
    outcome: str
    code: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(slots=True)
class Reservation:
    """Tokens held for one admitted request until it settles."""

    tokens: int
    second: int
    prompt: int | None
    """The exact prompt tokens when `/tokenize` counted them at admission."""


@dataclass(slots=True)
class Exchange:
    """What one request did, filled in as it goes and recorded once at its end."""

    started: float
    outcome: str | None = None
    first_content: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    finished: float | None = None
    meter: StreamMeter | None = None
    usage: Usage | None = None
    forwarded: bool = False
    responding: bool = False
    cancelled: bool = False
    settling: bool = False
    parsed: Parsed | None = field(default=None)


def upstream_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The client's allow-listed headers, plus identity encoding so the gateway can read usage."""
    kept = [(name, value) for name, value in headers if name.lower() in FORWARDED_UP]
    kept.append(_UPSTREAM_ENCODING)
    return kept


def downstream_headers(headers: Iterable[tuple[bytes, bytes]], *, keep_length: bool) -> Headers:
    """The upstream's headers minus hop-by-hop and `Server` (and Content-Length when the body
    may change)."""
    return [
        (lowered, value)
        for name, value in headers
        if (lowered := name.lower()) not in _NOT_FORWARDED_DOWN
        and (keep_length or lowered != b"content-length")
    ]


def error_body(*, message: str, code: str, kind: str) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    ).encode()


async def send_refusal(send: Send, refusal: Refusal) -> None:
    kind = "invalid_request_error" if refusal.status < 500 else "server_error"
    body = error_body(message=refusal.message, code=refusal.code, kind=kind)
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *refusal.headers]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """The request body is over the gateway's limit."""


async def read_body(receive: Receive, *, limit: int) -> bytes | None:
    """The whole request body, or None when the client went away first; `BodyTooLarge` as
    soon as more than `limit` bytes arrived (nothing beyond is read)."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _target(scope: Scope) -> str:
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope["query_string"]
    return (path + (b"?" + query if query else b"")).decode("latin-1")


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


def _outcome_of_status(status: int) -> str:
    if status < 400:
        return mn.OUTCOME_SUCCESS
    return mn.OUTCOME_CLIENT_ERROR if status < 500 else mn.OUTCOME_UPSTREAM_ERROR


def _bad_request(message: str, code: str = "invalid_request") -> Refusal:
    return Refusal(400, mn.OUTCOME_CLIENT_ERROR, code, message)


class Gateway:
    """Shared state of the proxy: keys, limits, reservations, metrics and the upstream."""

    def __init__(
        self,
        *,
        upstream: Upstream,
        keys: KeyStore,
        metrics: GatewayMetrics,
        probe: HealthProbe,
        rate_rps: float,
        rate_tpm: int,
        allowance: AllowanceSource | None,
        max_body_bytes: int,
        body_timeout_seconds: float = 60.0,
        max_model_len: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._keys = keys
        self._metrics = metrics
        self._probe = probe
        self._allowance = allowance
        self._max_body = max_body_bytes
        self._body_timeout = body_timeout_seconds
        self._model_limit = max_model_len
        self._clock = clock
        self._bucket = TokenBucket(rate=rate_rps, now=clock())
        self._window = MinuteWindow(limit=rate_tpm)
        self._reserved = 0
        self.parser = BodyParser()

    # --- entry points -------------------------------------------------------------------------

    async def metered(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        """The routes that spend tokens: chat, completions, responses, embeddings."""
        exchange = Exchange(started=time.perf_counter())
        refusal = self._authorize(scope) or self._length_refusal(scope)
        parsed = None
        if refusal is None:
            parsed, refusal = await self._read_parsed(receive, route)
            if parsed is None and refusal is None:
                self._metrics.count(mn.OUTCOME_CLIENT_ERROR)
                return
            # The clock starts once the body is in: how fast a client uploads is its own doing,
            # and a slow upload must not add TTFT (or duration) samples the SLA would pay for.
            exchange.started = time.perf_counter()
        reservation = None
        if refusal is None and parsed is not None:
            admitted = await self._reserve(scope, parsed)
            if isinstance(admitted, Refusal):
                refusal = admitted
            else:
                reservation = admitted
        if refusal is not None or parsed is None or reservation is None:
            assert refusal is not None
            self._metrics.count(refusal.outcome)
            await send_refusal(send, refusal)
            return
        exchange.parsed = parsed
        # The request is forwarded in this task; a watcher cancels it when the client leaves.
        task = asyncio.current_task()
        assert task is not None

        def client_left(watch: asyncio.Future[None]) -> None:
            # A disconnect after the last byte was sent is the end of the exchange, not a cancel.
            if not watch.cancelled() and exchange.finished is None and not exchange.settling:
                exchange.cancelled = True
                task.cancel()

        watch = asyncio.ensure_future(wait_disconnect(receive))
        watch.add_done_callback(client_left)
        try:
            await self._forward(scope, parsed, send, exchange)
        except asyncio.CancelledError:
            if not exchange.cancelled or task.uncancel() > 0:
                raise
        finally:
            exchange.settling = True
            watch.remove_done_callback(client_left)
            watch.cancel()
            await self._settle(exchange, reservation)

    async def passthrough(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticated routes that spend no tokens (models, tokenize): passed through whole."""
        refusal = self._authorize(scope) or self._length_refusal(scope)
        body = None
        if refusal is None:
            try:
                body = await self._read(receive)
            except BodyTooLarge:
                refusal = self._too_large()
            except TimeoutError:
                refusal = self._too_slow()
            if body is None and refusal is None:
                return
        if refusal is None:
            try:
                status, headers, content = await self._upstream.fetch(
                    scope["method"],
                    _target(scope),
                    body=body or None,
                    headers=upstream_headers(scope["headers"]),
                    timeout=60,
                )
            except UpstreamError as exc:
                refusal = self._transport_refusal(exc)
            else:
                await self._send_whole(send, status, headers, content)
                return
        await send_refusal(send, refusal)

    # --- admission ----------------------------------------------------------------------------

    def _authorize(self, scope: Scope) -> Refusal | None:
        authorization = _header(scope, b"authorization")
        token = bearer_token(None if authorization is None else authorization.decode("latin-1"))
        if self._keys.accepts(token):
            return None
        return Refusal(
            401,
            mn.OUTCOME_UNAUTHORIZED,
            "invalid_api_key",
            "missing or invalid API key: send Authorization: Bearer <key>",
        )

    def _too_large(self) -> Refusal:
        return Refusal(
            413,
            mn.OUTCOME_CLIENT_ERROR,
            "request_too_large",
            f"the request body is over {self._max_body} bytes",
        )

    def _too_slow(self) -> Refusal:
        return Refusal(
            408,
            mn.OUTCOME_CLIENT_ERROR,
            "request_timeout",
            f"the request body did not arrive within {self._body_timeout:g} s",
        )

    async def _read(self, receive: Receive) -> bytes | None:
        # A body sent a byte at a time would otherwise hold the connection for ever.
        async with asyncio.timeout(self._body_timeout):
            return await read_body(receive, limit=self._max_body)

    def _length_refusal(self, scope: Scope) -> Refusal | None:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            return self._too_large()
        return None

    async def _read_parsed(
        self, receive: Receive, route: Route
    ) -> tuple[Parsed | None, Refusal | None]:
        try:
            body = await self._read(receive)
        except BodyTooLarge:
            return None, self._too_large()
        except TimeoutError:
            return None, self._too_slow()
        if body is None:
            return None, None
        try:
            parsed = await self.parser.parse(
                body,
                usage_in_stream=route.usage_in_stream,
                default_max_output=route.default_max_output,
                output_fields=route.output_fields,
            )
        except BadRequest as exc:
            code = "invalid_json" if "JSON" in str(exc) or "nested" in str(exc) else "invalid_value"
            return None, _bad_request(str(exc), code)
        return parsed, None

    async def _model_len(self) -> int | None:
        """The model's context length: from the settings, else from vLLM's `/v1/models`."""
        if self._model_limit is None:
            with contextlib.suppress(UpstreamError, ValueError, KeyError, IndexError, TypeError):
                status, _, content = await self._upstream.fetch(
                    "GET", "/v1/models", body=None, headers=[], timeout=5
                )
                if status == 200:
                    self._model_limit = int(json.loads(content)["data"][0]["max_model_len"])
        return self._model_limit

    async def _need(self, budget: Budget, prompt: int) -> int | None:
        limit = await self._model_len() if budget.max_output is None else self._model_limit
        if budget.max_output is None:
            # prompt + n x (limit - prompt) is at most n x limit.
            return None if limit is None else budget.n * limit
        need = prompt + budget.n * budget.max_output
        return need if limit is None else min(need, budget.n * limit)

    async def _remaining(self) -> int | Refusal | None:
        if self._allowance is None:
            return None
        try:
            return await self._allowance.remaining()
        except AllowanceUnavailable as exc:
            return Refusal(503, mn.OUTCOME_UPSTREAM_ERROR, "allowance_unavailable", str(exc))

    def _check(self, need: int, remaining: int | None, now: float) -> Refusal | None:
        """Whether `need` tokens fit in the allowance and the minute window right now."""
        if remaining is not None and remaining - self._reserved < need:
            left = remaining - self._reserved
            message = (
                "the token allowance of this SLA is spent"
                if remaining <= 0
                else f"this request may spend up to {need} tokens and {max(left, 0)} remain "
                "unreserved: lower max_tokens or wait for requests in flight"
            )
            return Refusal(402, mn.OUTCOME_PAYMENT_REQUIRED, "insufficient_quota", message)
        if not self._window.fits_ever(need):
            return Refusal(
                429,
                mn.OUTCOME_OVER_CONTRACT,
                "rate_limit_exceeded",
                f"this request may spend up to {need} tokens, over the contracted tokens per "
                "minute: lower max_tokens",
            )
        wait = self._window.retry_after(now, need)
        if wait > 0.0:
            return self._rate_refusal(wait, "tokens per minute")
        return None

    @staticmethod
    def _rate_refusal(wait: float, what: str) -> Refusal:
        return Refusal(
            429,
            mn.OUTCOME_OVER_CONTRACT,
            "rate_limit_exceeded",
            f"over the contracted {what}",
            ((b"retry-after", retry_after_header(wait).encode()),),
        )

    async def _reserve(self, scope: Scope, parsed: Parsed) -> Reservation | Refusal:
        budget = parsed.budget
        exact: int | None = None
        need = await self._need(budget, budget.prompt_bound)
        remaining = await self._remaining()
        if isinstance(remaining, Refusal):
            return remaining
        refusal = None if need is None else self._check(need, remaining, self._clock())
        if need is None or refusal is not None:
            # The bound does not fit: count the prompt exactly before refusing.
            exact = await self._count_prompt(parsed.body)
            if exact is None:
                return refusal or _bad_request(
                    "max_tokens is required: the model's context length is unknown", "invalid_value"
                )
            need = await self._need(budget, exact)
            if need is None:
                return _bad_request(
                    "max_tokens is required: the model's context length is unknown", "invalid_value"
                )
            remaining = await self._remaining()
            if isinstance(remaining, Refusal):
                return remaining
        # From here to the reservation nothing awaits: the check and the hold are one step.
        now = self._clock()
        refusal = self._check(need, remaining, now)
        if refusal is None:
            wait = self._bucket.take(now)
            if wait > 0.0:
                refusal = self._rate_refusal(wait, "requests per second")
        if refusal is not None:
            return refusal
        self._reserved += need
        return Reservation(tokens=need, second=self._window.record(need, now), prompt=exact)

    async def _count_prompt(self, body: bytes) -> int | None:
        """The prompt's tokens as vLLM counts them (`/tokenize`), or None when it cannot say."""
        try:
            payload = await self.parser.tokenize_payload(body)
        except (ValueError, RecursionError):
            return None
        if payload is None:
            return None
        try:
            status, _, content = await self._upstream.fetch(
                "POST", "/tokenize", body=payload, headers=[_JSON], timeout=10
            )
            # vLLM lists every token id too: a long prompt's answer is parsed off the loop.
            return await self.parser.token_count(content) if status == 200 else None
        except (UpstreamError, ValueError, RecursionError):
            return None

    # --- forwarding ---------------------------------------------------------------------------

    def _transport_refusal(self, exc: UpstreamError) -> Refusal:
        if isinstance(exc, UpstreamTimeout):
            return Refusal(
                504,
                mn.OUTCOME_TIMEOUT,
                "upstream_timeout",
                "the model server did not answer in time",
            )
        if isinstance(exc, UpstreamUnreachable):
            self._probe.failed(f"upstream unreachable: {exc}")
        return Refusal(
            503,
            mn.OUTCOME_UPSTREAM_ERROR,
            "upstream_unavailable",
            "the model server is unavailable",
        )

    async def _forward(self, scope: Scope, parsed: Parsed, send: Send, exchange: Exchange) -> None:
        try:
            response = await self._upstream.send(
                scope["method"],
                _target(scope),
                body=parsed.body,
                headers=upstream_headers(scope["headers"]),
            )
        except UpstreamError as exc:
            await self._fail(send, exchange, exc)
            return
        # From here vLLM has the request: an abandoned request is billed what it prefilled.
        exchange.forwarded = True
        try:
            await response.head()
            content_type = response.header(b"content-type") or b""
            if response.status == 200 and content_type.startswith(b"text/event-stream"):
                # Any event stream is metered as one, whatever the request said.
                exchange.meter = StreamMeter(strip_usage=parsed.strip_usage)
                await self._relay_stream(response, send, exchange, exchange.meter)
            else:
                body = await response.read()
                await self._relay_whole(send, exchange, response.status, response.headers, body)
        except UpstreamError as exc:
            await self._fail(send, exchange, exc)
        finally:
            response.release()

    async def _fail(self, send: Send, exchange: Exchange, exc: UpstreamError) -> None:
        refusal = self._transport_refusal(exc)
        exchange.outcome = refusal.outcome
        if exchange.responding:
            # Too late for a status: the stream ends without `data: [DONE]`.
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await send_refusal(send, refusal)

    async def _send_whole(self, send: Send, status: int, headers: Headers, body: bytes) -> None:
        if status >= 500:
            # The engine's error text is vLLM's internals, not the tenant's business.
            body = error_body(
                message="the model server failed to answer",
                code="upstream_error",
                kind="server_error",
            )
            headers = [_JSON, (b"content-length", str(len(body)).encode())]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": downstream_headers(headers, keep_length=True),
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _relay_whole(
        self, send: Send, exchange: Exchange, status: int, headers: Headers, body: bytes
    ) -> None:
        if status == 200:
            # Read before sending: the engine did the work whether or not the client stays.
            exchange.usage = await self.parser.usage(body)
        exchange.responding = True
        await self._send_whole(send, status, headers, body)
        exchange.finished = time.perf_counter()
        exchange.outcome = _outcome_of_status(status)

    async def _relay_stream(
        self, response: UpstreamResponse, send: Send, exchange: Exchange, meter: StreamMeter
    ) -> None:
        exchange.responding = True
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": downstream_headers(response.headers, keep_length=False),
            }
        )
        read, feed, clock = response.read_some, meter.feed, time.perf_counter
        while data := await read():
            out, content, tokens = feed(data)
            if not out:
                continue
            if tokens:
                now = clock()
                if exchange.first_token is None:
                    exchange.first_token = now
                exchange.last_token = now
                if content and exchange.first_content is None:
                    exchange.first_content = now
            elif content and exchange.first_content is None:
                exchange.first_content = clock()
            await send({"type": "http.response.body", "body": out, "more_body": True})
        await send({"type": "http.response.body", "body": meter.flush(), "more_body": False})
        exchange.finished = time.perf_counter()
        exchange.usage = meter.usage
        exchange.outcome = mn.OUTCOME_UPSTREAM_ERROR if meter.failed else mn.OUTCOME_SUCCESS

    # --- settlement ---------------------------------------------------------------------------

    async def _billed(self, exchange: Exchange, reservation: Reservation) -> Usage | None:
        """What the request spent: the engine's usage, or, for an abandoned request or a stream
        that carried no usage, the prompt vLLM prefilled plus the token events already sent."""
        if exchange.usage is not None:
            return exchange.usage
        if not (
            (exchange.cancelled or exchange.meter is not None)
            and exchange.forwarded
            and exchange.parsed is not None
        ):
            return None
        prompt = reservation.prompt
        if prompt is None:
            prompt = await self._count_prompt(exchange.parsed.body)
        if prompt is None:
            log.warning("prompt of a cancelled request not countable; billed its completion only")
        completion = exchange.meter.token_events if exchange.meter is not None else 0
        return Usage(prompt=prompt or 0, completion=completion)

    async def _settle(self, exchange: Exchange, reservation: Reservation) -> None:
        usage = None
        try:
            usage = await self._billed(exchange, reservation)
        finally:
            spent = 0 if usage is None else usage.prompt + usage.completion
            self._reserved -= reservation.tokens
            self._window.adjust(reservation.second, spent - reservation.tokens)
            if self._allowance is not None:
                self._allowance.record(spent)
        self._record(exchange, usage)

    def _record(self, exchange: Exchange, usage: Usage | None) -> None:
        metrics = self._metrics
        if exchange.cancelled:
            outcome = mn.OUTCOME_CLIENT_ERROR
        else:
            # No outcome without cancellation means the gateway itself failed: the provider's.
            outcome = exchange.outcome or mn.OUTCOME_UPSTREAM_ERROR
        metrics.count(outcome)
        if usage is not None:
            metrics.tokens(prompt=usage.prompt, completion=usage.completion)
        streamed = exchange.meter is not None
        if (
            streamed
            and exchange.first_content is not None
            and (outcome == mn.OUTCOME_SUCCESS or exchange.cancelled)
        ):
            metrics.ttft.observe(exchange.first_content - exchange.started)
        if outcome != mn.OUTCOME_SUCCESS or exchange.finished is None:
            return
        metrics.duration.observe(exchange.finished - exchange.started)
        if (
            streamed
            and usage is not None
            and usage.completion >= 2
            and exchange.first_token is not None
            and exchange.last_token is not None
        ):
            metrics.tpot.observe(
                (exchange.last_token - exchange.first_token) / (usage.completion - 1)
            )
