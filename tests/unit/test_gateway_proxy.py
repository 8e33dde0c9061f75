"""The gateway's proxy behaviour over real HTTP, against a small stand-in for vLLM.

The stand-in streams SSE in the shape a real vLLM 0.32 server was seen to stream (role chunk,
one chunk per token, usage-only chunk when asked, `data: [DONE]`). It proves the proxy's
mechanics; `tests/integration/test_gateway_vllm.py` proves the claims against a real vLLM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from aiconn.devstack.gateway import GatewayThread
from aiconn.gateway.allowance import AllowanceSource, LedgerAllowance, StaticAllowance
from aiconn.gateway.keys import hash_key
from aiconn.gateway.settings import GatewaySettings
from aiconn.resources.v1alpha1.offer import TokenPlan
from aiconn.sla import metricnames as mn
from aiconn.sla.accounting import UsageReading
from aiconn.sla.periods import Period
from aiconn.sla.plans import fund_plan
from aiconn.sla.settlement import fund_allowance
from aiconn.sla.sli import classify_minutes
from aiconn.store.ledger import Ledger
from tests.helpers import http_get, http_post, http_stream

KEY = "sk-tenant-7c1d0e"
PROMPT = "the secret prompt 93be"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT_TOKENS, COMPLETION_TOKENS = 7, 3
MAX_MODEL_LEN = 512


class ThreadedServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread."""

    def __init__(self, app: ASGIApp) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_level="warning", server_header=False, date_header=False, access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "tiny",
        "choices": choices,
        **extra,
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@dataclass
class FakeVllm:
    """vLLM's OpenAI server, reduced to what the gateway relies on."""

    healthy: bool = True
    token_delay: float = 0.0
    answer_delay: float = 0.0
    tokens: int = COMPLETION_TOKENS
    always_stream: bool = False
    seen: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    tokenized: list[dict[str, Any]] = field(default_factory=list)
    aborted: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/metrics", self.metrics, methods=["GET"]),
                Route("/v1/models/{model}", self.model, methods=["GET"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
                Route("/health", self.health, methods=["GET"]),
            ]
        )

    async def health(self, _: Request) -> Response:
        return Response(status_code=200 if self.healthy else 503)

    async def models(self, _: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": "tiny", "object": "model", "max_model_len": MAX_MODEL_LEN}],
            }
        )

    async def metrics(self, _: Request) -> Response:
        return Response(b"vllm:num_requests_running 0\n", media_type="text/plain; version=0.0.4")

    async def model(self, request: Request) -> Response:
        return JSONResponse({"id": request.path_params["model"], "object": "model"})

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.seen.append((dict(request.headers), body))
        return JSONResponse(
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}],
                "model": "tiny",
                "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS},
            }
        )

    async def responses(self, request: Request) -> Response:
        """The responses API as vLLM serves it: typed events, usage in `response.completed`."""
        body = await request.json()
        self.seen.append((dict(request.headers), body))
        usage = {
            "input_tokens": PROMPT_TOKENS,
            "output_tokens": self.tokens,
            "total_tokens": PROMPT_TOKENS + self.tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        text = "".join(f"t{index}" for index in range(self.tokens))
        response = {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "model": "tiny",
            "status": "completed",
            "output": [
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": usage,
        }
        if not body.get("stream"):
            return JSONResponse(response)

        async def events() -> AsyncIterator[bytes]:
            def event(kind: str, **fields: Any) -> bytes:
                data = json.dumps({"type": kind, "sequence_number": 0, **fields})
                return f"event: {kind}\ndata: {data}\n\n".encode()

            yield event("response.created", response={**response, "status": "in_progress"})
            for index in range(self.tokens):
                await asyncio.sleep(self.token_delay)
                yield event(
                    "response.output_text.delta",
                    item_id="msg_1",
                    output_index=0,
                    content_index=0,
                    delta=f"t{index}",
                    logprobs=[],
                )
            yield event("response.completed", response=response)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def tokenize(self, request: Request) -> Response:
        body = await request.json()
        self.tokenized.append(body)
        return JSONResponse(
            {"count": PROMPT_TOKENS, "max_model_len": MAX_MODEL_LEN, "tokens": [1] * PROMPT_TOKENS}
        )

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.seen.append((dict(request.headers), body))
        if body.get("model") == "missing":
            return JSONResponse({"error": {"message": "no such model", "code": 404}}, 404)
        if body.get("model") == "broken":
            return JSONResponse({"error": {"message": "engine dead", "code": 500}}, 500)
        await asyncio.sleep(self.answer_delay)
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "total_tokens": PROMPT_TOKENS + self.tokens,
            "completion_tokens": self.tokens,
        }
        if not body.get("stream") and not self.always_stream:
            return JSONResponse(
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "model": "tiny",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "abc"},
                            "finish_reason": "length",
                        }
                    ],
                    "usage": usage,
                },
                headers={"x-upstream": "vllm", "server": "fake-vllm/0.32"},
            )
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        return StreamingResponse(
            self.stream(usage, include_usage=include_usage),
            media_type="text/event-stream",
            headers={"x-upstream": "vllm"},
        )

    async def stream(self, usage: dict[str, int], *, include_usage: bool) -> AsyncIterator[bytes]:
        try:
            yield chunk(
                [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
            )
            for index in range(self.tokens):
                await asyncio.sleep(self.token_delay)
                last = index == self.tokens - 1
                yield chunk(
                    [
                        {
                            "index": 0,
                            "delta": {"content": f"t{index}"},
                            "finish_reason": "length" if last else None,
                        }
                    ]
                )
            if include_usage:
                yield chunk([], usage=usage)
            yield b"data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            self.aborted.set()
            raise


@pytest.fixture(scope="module")
def vllm() -> Iterator[tuple[FakeVllm, str]]:
    fake = FakeVllm()
    with ThreadedServer(fake.app()) as server:
        yield fake, server.url


@pytest.fixture
def fake(vllm: tuple[FakeVllm, str]) -> Iterator[FakeVllm]:
    stand_in = vllm[0]
    yield stand_in
    stand_in.healthy, stand_in.token_delay, stand_in.answer_delay = True, 0.0, 0.0
    stand_in.tokens, stand_in.always_stream = COMPLETION_TOKENS, False
    stand_in.seen.clear()
    stand_in.tokenized.clear()
    stand_in.aborted.clear()


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    (tmp_path / "keys").write_text(hash_key(KEY) + "\n")
    return tmp_path


Gateway = Callable[..., GatewayThread]


@pytest.fixture
def gateway(vllm: tuple[FakeVllm, str], keys_dir: Path) -> Gateway:
    def start(*, allowance: AllowanceSource | None = None, **overrides: Any) -> GatewayThread:
        values: dict[str, Any] = {
            "sla": "gold",
            "namespace": "acme",
            "model": "tiny",
            "upstream": vllm[1],
            "keys_dir": keys_dir,
            **overrides,
        }
        settings = GatewaySettings(**values)
        return GatewayThread(settings, allowance=allowance)

    return start


def wait_for_health(url: str, status: int) -> httpx.Response:
    deadline = time.monotonic() + 15
    while (health := http_get(f"{url}/health")).status_code != status:
        assert time.monotonic() < deadline, health.text
        time.sleep(0.1)
    return health


def chat(*, stream: bool, model: str = "tiny", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": COMPLETION_TOKENS,
        "stream": stream,
        **extra,
    }


def metric(base: str, name: str, **labels: str) -> float:
    text = http_get(f"{base}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def outcome(base: str, name: str) -> float:
    return metric(
        base,
        "aiconn_gateway_requests_total",
        outcome=name,
        sla="gold",
        namespace="acme",
        model="tiny",
    )


def test_stream_reaches_the_client_as_vllm_sent_it_and_is_metered(
    fake: FakeVllm, vllm: tuple[FakeVllm, str], gateway: Gateway
) -> None:
    direct = http_post(f"{vllm[1]}/v1/chat/completions", json=chat(stream=True))
    with gateway() as gw:
        proxied = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=True), headers=AUTH)
        assert proxied.status_code == 200
        assert proxied.content == direct.content, "usage chunk stripped, all else unchanged"
        assert proxied.headers["x-upstream"] == "vllm"
        assert fake.seen[-1][1]["stream_options"] == {"include_usage": True}
        assert metric(gw.metrics_url, "aiconn_gateway_tokens_total", type="prompt") == PROMPT_TOKENS
        assert metric(gw.metrics_url, "aiconn_gateway_tokens_total", type="completion") == 3
        assert outcome(gw.metrics_url, "success") == 1
        assert metric(gw.metrics_url, "aiconn_gateway_ttft_seconds_count") == 1
        assert metric(gw.metrics_url, "aiconn_gateway_tpot_seconds_count") == 1
        assert metric(gw.metrics_url, "aiconn_gateway_request_duration_seconds_count") == 1


def test_stream_keeps_the_usage_chunk_the_client_asked_for(
    vllm: tuple[FakeVllm, str], gateway: Gateway
) -> None:
    request = chat(stream=True, stream_options={"include_usage": True})
    direct = http_post(f"{vllm[1]}/v1/chat/completions", json=request)
    assert b'"choices": [], "usage"' in direct.content
    with gateway() as gw:
        proxied = http_post(f"{gw.url}/v1/chat/completions", json=request, headers=AUTH)
        assert proxied.content == direct.content
        assert metric(gw.metrics_url, "aiconn_gateway_tokens_total", type="completion") == 3


def test_whole_answer_passes_through_byte_for_byte(
    vllm: tuple[FakeVllm, str], gateway: Gateway
) -> None:
    direct = http_post(f"{vllm[1]}/v1/chat/completions", json=chat(stream=False))
    with gateway() as gw:
        proxied = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=AUTH)
        assert (proxied.status_code, proxied.content) == (200, direct.content)
        assert proxied.headers["content-length"] == direct.headers["content-length"]
        assert metric(gw.metrics_url, "aiconn_gateway_tokens_total", type="prompt") == PROMPT_TOKENS
        # Issue 14: TTFT from streams only (a whole answer's first byte is its last).
        assert metric(gw.metrics_url, "aiconn_gateway_ttft_seconds_count") == 0
        assert metric(gw.metrics_url, "aiconn_gateway_request_duration_seconds_count") == 1
        assert metric(gw.metrics_url, "aiconn_gateway_tpot_seconds_count") == 0


def test_the_tenant_key_is_not_forwarded_upstream(fake: FakeVllm, gateway: Gateway) -> None:
    with gateway() as gw:
        http_post(
            f"{gw.url}/v1/chat/completions",
            json=chat(stream=False),
            headers={**AUTH, "x-request-id": "r-1"},
        )
    headers, body = fake.seen[-1]
    assert "authorization" not in headers
    # Issue 14: client headers reach vLLM on an allow-list; X-Request-Id would set its id.
    assert "x-request-id" not in headers
    assert headers["content-type"] == "application/json"
    assert body == chat(stream=False), "the request body is forwarded unchanged"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": f"Basic {KEY}"}]
)
def test_a_missing_or_wrong_key_is_refused(
    fake: FakeVllm, gateway: Gateway, headers: dict[str, str]
) -> None:
    with gateway() as gw:
        response = http_post(
            f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=headers
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert outcome(gw.metrics_url, "unauthorized") == 1
        assert http_get(f"{gw.url}/v1/models", headers=headers).status_code == 401
    assert fake.seen == []


def test_models_are_listed_for_a_valid_key(gateway: Gateway) -> None:
    with gateway() as gw:
        response = http_get(f"{gw.url}/v1/models", headers=AUTH)
    assert response.json()["data"][0]["id"] == "tiny"


def test_requests_beyond_the_contracted_rate_get_429(gateway: Gateway) -> None:
    with gateway(rate_rps=0.5) as gw:
        first = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=AUTH)
        second = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=AUTH)
        assert first.status_code == 200
        assert second.status_code == 429
        assert 1 <= int(second.headers["retry-after"]) <= 2
        assert outcome(gw.metrics_url, "over_contract") == 1


def test_tokens_beyond_the_contracted_minute_get_429(gateway: Gateway) -> None:
    with gateway(rate_tpm=PROMPT_TOKENS + COMPLETION_TOKENS) as gw:
        first = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=True), headers=AUTH)
        second = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=True), headers=AUTH)
        assert first.status_code == 200
        assert second.status_code == 429
        assert "tokens per minute" in second.json()["error"]["message"]
        assert 1 <= int(second.headers["retry-after"]) <= 60


def test_a_spent_allowance_gets_402(gateway: Gateway) -> None:
    # Issue 14: a request is admitted only when the most it can spend fits (no overdraw).
    with gateway(allowance=StaticAllowance(PROMPT_TOKENS + COMPLETION_TOKENS)) as gw:
        first = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=True), headers=AUTH)
        second = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=True), headers=AUTH)
        assert first.status_code == 200, "the request fits exactly; the next is refused"
        assert second.status_code == 402
        assert second.json()["error"]["code"] == "insufficient_quota"
        assert outcome(gw.metrics_url, "payment_required") == 1


def test_static_allowance_comes_from_the_settings(gateway: Gateway) -> None:
    with gateway(allowance_tokens=0) as gw:
        response = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=AUTH)
    assert response.status_code == 402


def leave_one_request(ledger: Ledger, period: Period) -> None:
    """Record open-period usage of acme's SLA u1 that leaves exactly one request's tokens of a
    1,000-token allowance, then close the ledger: the gateway opens it itself."""
    ledger.record_usage(
        [
            UsageReading(
                sla_uid="u1",
                tenant="acme",
                period=period,
                tokens=1_000 - PROMPT_TOKENS - COMPLETION_TOKENS,
                measured_at=period.start,
            )
        ]
    )
    ledger.close()


def test_the_ledger_allowance_counts_usage_recorded_in_the_open_period(
    gateway: Gateway, tmp_path: Path
) -> None:
    """A real SQLite ledger: the wallet was funded, and the SLA loop recorded usage that the
    period has not settled yet; the gateway refuses once that usage spends the allowance."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    period = Period(start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 12, 1, tzinfo=UTC))
    ledger = Ledger.open(url)
    fund_allowance(
        ledger,
        sla_uid="u1",
        namespace="acme",
        name="gold",
        tenant="acme",
        period=period,
        tokens=1_000,
    )
    leave_one_request(ledger, period)
    with gateway(ledger_url=url, tenant="acme") as gw:
        first = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=AUTH)
        second = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=AUTH)
    assert first.status_code == 200, "what is left covers this request exactly (issue 14)"
    assert second.status_code == 402


@pytest.mark.parametrize(("mode", "served"), [("HardStop", [200, 402]), ("PayPerUse", [200, 200])])
def test_a_spent_plan_wallet_stops_or_pays_per_use_as_the_plan_says(
    gateway: Gateway, tmp_path: Path, mode: str, served: list[int]
) -> None:
    """A real SQLite ledger funded by a token plan whose wallet the open period's usage spent
    down to one request: a hard-stop plan refuses the next with 402, a pay-per-use plan serves it
    (its overage is charged when the plan period closes, `aiconn.sla.plans`)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    period = Period(start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 12, 1, tzinfo=UTC))
    overage: dict[str, Any] = {"mode": mode}
    if mode == "PayPerUse":
        overage["pricePerMillionUnits"] = 2.5
    plan = TokenPlan.model_validate({"includedTokensPerPeriod": 1_000, "overage": overage})
    ledger = Ledger.open(url)
    fund_plan(ledger, tenant="acme", namespace="acme", offer="o", plan=plan, at=period.start)
    leave_one_request(ledger, period)
    with gateway(ledger_url=url, tenant="acme") as gw:
        statuses = [
            http_post(
                f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=AUTH
            ).status_code
            for _ in range(2)
        ]
    assert statuses == served


def test_an_unreadable_ledger_in_closed_mode_is_a_503(gateway: Gateway) -> None:
    def unreadable() -> int:
        raise ConnectionError("ledger down")

    with gateway(allowance=LedgerAllowance(unreadable, fail_mode="closed")) as gw:
        response = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=AUTH)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "allowance_unavailable"
        assert outcome(gw.metrics_url, "upstream_error") == 1


def test_upstream_down_is_503_counted_as_upstream_error(gateway: Gateway) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with gateway(upstream=f"http://127.0.0.1:{port}") as gw:
        response = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=True), headers=AUTH)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "upstream_unavailable"
        assert outcome(gw.metrics_url, "upstream_error") == 1
        # Issue 14: down after several failed probes within a window, not the first.
        health = wait_for_health(gw.url, 503)
        assert metric(gw.metrics_url, "aiconn_gateway_upstream_up", sla="gold") == 0
        assert "unreachable" in health.json()["reason"]


def test_health_follows_the_upstream(fake: FakeVllm, gateway: Gateway) -> None:
    with gateway() as gw:
        assert http_get(f"{gw.url}/health").status_code == 200
        assert metric(gw.metrics_url, "aiconn_gateway_upstream_up") == 1
        fake.healthy = False
        # Issue 14: down after several failed probes (about one a second), not one.
        health = wait_for_health(gw.url, 503)
        assert (health.status_code, health.json()["reason"]) == (
            503,
            "upstream /health answered 503",
        )


def test_upstream_answers_are_classified(gateway: Gateway) -> None:
    with gateway() as gw:
        url = f"{gw.url}/v1/chat/completions"
        assert (
            http_post(url, json=chat(stream=True, model="missing"), headers=AUTH).status_code == 404
        )
        assert (
            http_post(url, json=chat(stream=False, model="broken"), headers=AUTH).status_code == 500
        )
        assert http_post(url, content=b"{not json", headers=AUTH).status_code == 400
        assert outcome(gw.metrics_url, "client_error") == 2
        assert outcome(gw.metrics_url, "upstream_error") == 1
        assert metric(gw.metrics_url, "aiconn_gateway_ttft_seconds_count") == 0


def test_a_slow_upstream_is_a_timeout(fake: FakeVllm, gateway: Gateway) -> None:
    fake.answer_delay = 1.0
    with gateway(upstream_timeout_seconds=0.2) as gw:
        response = http_post(f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=AUTH)
        assert response.status_code == 504
        assert outcome(gw.metrics_url, "timeout") == 1


def test_a_stream_cancelled_by_the_client_is_not_an_upstream_failure(
    fake: FakeVllm, gateway: Gateway
) -> None:
    fake.token_delay, fake.tokens = 0.1, 50
    with gateway() as gw:
        with http_stream(
            "POST", f"{gw.url}/v1/chat/completions", json=chat(stream=True), headers=AUTH
        ) as response:
            lines = response.iter_lines()
            while "t1" not in next(lines):
                pass
        assert fake.aborted.wait(5), "closing the client aborts the upstream request"
        deadline = time.monotonic() + 5
        while outcome(gw.metrics_url, "client_error") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert outcome(gw.metrics_url, "upstream_error") == 0
        assert outcome(gw.metrics_url, "success") == 0
        completion = metric(gw.metrics_url, "aiconn_gateway_tokens_total", type="completion")
        assert 2 <= completion < 50, "tokens already streamed are metered"
        assert metric(gw.metrics_url, "aiconn_gateway_ttft_seconds_count") == 1


def test_neither_keys_nor_prompts_are_logged(
    caplog: pytest.LogCaptureFixture, gateway: Gateway
) -> None:
    caplog.set_level(logging.DEBUG)
    with gateway() as gw:
        url = f"{gw.url}/v1/chat/completions"
        http_post(url, json=chat(stream=True), headers=AUTH)
        http_post(url, json=chat(stream=False), headers=AUTH)
        http_post(url, json=chat(stream=False), headers={"Authorization": "Bearer sk-wrong-9"})
        http_post(url, content=b"{" + PROMPT.encode(), headers=AUTH)
    assert caplog.records, "the capture works (httpx and uvicorn log at DEBUG)"
    logged = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    for secret in (KEY, hash_key(KEY), "sk-wrong-9", PROMPT):
        assert secret not in logged


def _availability_counts(base: str) -> tuple[float, float]:
    """What the availability SLI sums for a minute: in-contract requests and failed ones, by the
    same outcome sets the SLA engine's queries select (`metricnames`)."""
    in_contract = sum(outcome(base, name) for name in mn.IN_CONTRACT_OUTCOMES)
    failed = sum(outcome(base, name) for name in mn.FAILED_OUTCOMES)
    return in_contract, failed


def test_customer_caused_answers_never_count_against_availability(gateway: Gateway) -> None:
    # Issue 11, item 8: a bad request, a wrong key, an unknown model, a rate over the contract
    # and a spent allowance are the customer's doing; only the provider's 5xx is a failure.
    url = "/v1/chat/completions"
    with gateway(rate_rps=0.5, allowance=StaticAllowance(10 * (PROMPT_TOKENS + 50))) as gw:
        answers = [
            http_post(f"{gw.url}{url}", json=chat(stream=False), headers=AUTH),
            http_post(f"{gw.url}{url}", json=chat(stream=False), headers=AUTH),  # 429
            http_post(f"{gw.url}{url}", content=b"{not json", headers=AUTH),
            http_post(f"{gw.url}{url}", json=chat(stream=False), headers={}),
        ]
        assert [a.status_code for a in answers] == [200, 429, 400, 401]
        customer = _availability_counts(gw.metrics_url)
    with gateway(allowance=StaticAllowance(0)) as gw:
        spent_answer = http_post(f"{gw.url}{url}", json=chat(stream=False), headers=AUTH)
        assert spent_answer.status_code == 402
        spent = _availability_counts(gw.metrics_url)
    with gateway() as gw:
        missing = http_post(f"{gw.url}{url}", json=chat(stream=True, model="missing"), headers=AUTH)
        broken = http_post(f"{gw.url}{url}", json=chat(stream=False, model="broken"), headers=AUTH)
        assert (missing.status_code, broken.status_code) == (404, 500)
        provider = _availability_counts(gw.metrics_url)
    assert customer == (1.0, 0.0), "only the served request is in contract"
    assert spent == (0.0, 0.0)
    assert provider == (1.0, 1.0), "the unknown model is the customer's, the 500 the provider's"
    # A minute of nothing but the customer's errors is a good minute; the provider's is bad.
    minutes = classify_minutes(
        [customer[0], spent[0], provider[0]], [customer[1], spent[1], provider[1]], [1, 1, 1]
    )
    assert minutes.bad.tolist() == [False, False, True]
