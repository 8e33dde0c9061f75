"""Issue 14's attacks on the gateway, each against the real gateway app over real HTTP.

The upstream is the stand-in for vLLM of `test_gateway_proxy`; the claims about vLLM itself are
in `tests/integration/test_gateway_vllm.py`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry, Gauge

from aiconn.gateway.allowance import StaticAllowance
from aiconn.gateway.health import FAILURES_TO_DOWN, HealthProbe
from aiconn.gateway.keys import KeyStore
from aiconn.gateway.metrics import GatewayMetrics
from aiconn.gateway.proxy import Exchange
from aiconn.gateway.proxy import Gateway as Proxy
from aiconn.gateway.upstream import Upstream
from aiconn.gateway.usage import StreamMeter, Usage
from tests.helpers import http_get, http_post, http_stream
from tests.unit.test_gateway_proxy import (
    AUTH,
    COMPLETION_TOKENS,
    KEY,
    PROMPT_TOKENS,
    FakeVllm,
    Gateway,
    chat,
    metric,
    outcome,
)

# The stand-in's fixtures (`vllm`, `fake`, `keys_dir`, `gateway`).
pytest_plugins = ["tests.unit.test_gateway_proxy"]

CHAT = "/v1/chat/completions"


def tokens(gw: Any, kind: str) -> float:
    return metric(gw.metrics_url, "aiconn_gateway_tokens_total", type=kind)


# Free tokens: `stream` that is not a JSON boolean


def post_stream_as(gw: Any, value: object) -> httpx.Response:
    """A chat request asking for a stream, its `stream` field `value` instead of `true`."""
    return http_post(f"{gw.url}{CHAT}", json={**chat(stream=True), "stream": value}, headers=AUTH)


@pytest.mark.parametrize("value", ["true", 1, "yes", "on", "True"])
def test_a_stream_asked_for_with_a_non_boolean_is_streamed_and_metered(
    fake: FakeVllm, gateway: Gateway, value: object
) -> None:
    with gateway() as gw:
        response = post_stream_as(gw, value)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert b"data: [DONE]" in response.content
        assert b'"usage"' not in response.content, "the usage chunk the gateway asked for is gone"
        assert fake.seen[-1][1]["stream"] is True, "vLLM receives the boolean pydantic makes of it"
        assert tokens(gw, "prompt") == PROMPT_TOKENS
        assert tokens(gw, "completion") == COMPLETION_TOKENS


@pytest.mark.parametrize("value", ["maybe", 2, [True], {"on": 1}])
def test_a_stream_value_pydantic_refuses_is_a_400_naming_the_field(
    fake: FakeVllm, gateway: Gateway, value: object
) -> None:
    with gateway() as gw:
        response = post_stream_as(gw, value)
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith("stream:")
    assert fake.seen == []


def test_any_event_stream_answer_is_metered_as_a_stream(fake: FakeVllm, gateway: Gateway) -> None:
    fake.always_stream = True
    with gateway() as gw:
        response = http_post(f"{gw.url}{CHAT}", json=chat(stream=False), headers=AUTH)
        assert response.headers["content-type"].startswith("text/event-stream")
        assert tokens(gw, "completion") == COMPLETION_TOKENS
        assert tokens(gw, "prompt") == PROMPT_TOKENS, "counted with /tokenize: no usage came"


# Overshoot: reservations


def concurrently(url: str, body: dict[str, Any], count: int) -> list[int]:
    async def all_at_once() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            answers = await asyncio.gather(
                *(client.post(f"{url}{CHAT}", json=body, headers=AUTH) for _ in range(count))
            )
        return [answer.status_code for answer in answers]

    return asyncio.run(all_at_once())


def test_a_hundred_concurrent_requests_never_spend_more_than_the_allowance(
    fake: FakeVllm, gateway: Gateway
) -> None:
    per_request = PROMPT_TOKENS + COMPLETION_TOKENS
    allowance = StaticAllowance(5 * per_request + per_request - 1)
    fake.token_delay = 0.05
    with gateway(allowance=allowance) as gw:
        statuses = concurrently(gw.url, chat(stream=True), 100)
        assert statuses.count(200) == 5
        assert statuses.count(402) == 95
        spent = tokens(gw, "prompt") + tokens(gw, "completion")
        assert spent == 5 * per_request
        assert outcome(gw.metrics_url, "payment_required") == 95
    assert allowance._left == per_request - 1, "settled to the usage, reservations released"


def test_concurrent_requests_never_exceed_the_tokens_per_minute(
    fake: FakeVllm, gateway: Gateway
) -> None:
    per_request = PROMPT_TOKENS + COMPLETION_TOKENS
    fake.token_delay = 0.05
    with gateway(rate_tpm=3 * per_request, rate_rps=1000) as gw:
        statuses = concurrently(gw.url, chat(stream=False), 20)
        assert statuses.count(200) == 3
        assert statuses.count(429) == 17, "over the minute is 429, never 402"
        assert tokens(gw, "prompt") + tokens(gw, "completion") == 3 * per_request


def test_a_failed_request_releases_its_reservation(fake: FakeVllm, gateway: Gateway) -> None:
    allowance = StaticAllowance(PROMPT_TOKENS + COMPLETION_TOKENS)
    with gateway(allowance=allowance) as gw:
        failed = http_post(f"{gw.url}{CHAT}", json=chat(stream=False, model="broken"), headers=AUTH)
        assert failed.status_code == 500
        again = http_post(f"{gw.url}{CHAT}", json=chat(stream=False), headers=AUTH)
        assert again.status_code == 200
    assert allowance._left == 0


def test_a_request_that_could_spend_more_than_is_left_is_402_before_it_runs(
    fake: FakeVllm, gateway: Gateway
) -> None:
    with gateway(allowance=StaticAllowance(100)) as gw:
        response = http_post(
            f"{gw.url}{CHAT}", json=chat(stream=False, max_tokens=500), headers=AUTH
        )
        assert response.status_code == 402
        assert "max_tokens" in response.json()["error"]["message"]
    assert fake.seen == []


def test_without_max_tokens_the_reservation_is_the_models_limit(
    fake: FakeVllm, gateway: Gateway
) -> None:
    body = {key: value for key, value in chat(stream=False).items() if key != "max_tokens"}
    with gateway(allowance=StaticAllowance(511)) as gw:
        assert http_post(f"{gw.url}{CHAT}", json=body, headers=AUTH).status_code == 402
    with gateway(allowance=StaticAllowance(512)) as gw:
        assert http_post(f"{gw.url}{CHAT}", json=body, headers=AUTH).status_code == 200


# Bodies and connections


def raw_exchange(url: str, data: bytes, *, timeout: float = 10) -> bytes:
    """Send raw bytes; the server's answer up to the end of its headers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(data)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received:
                    break
        except TimeoutError:
            pytest.fail(f"no answer within {timeout} s; got {received[:200]!r}")
        return received


def test_a_50_mib_body_is_refused_with_413_before_it_is_read(gateway: Gateway) -> None:
    with gateway() as gw:
        head = (
            f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n"
        ).encode()
        answer = raw_exchange(gw.url, head + b'{"model": "tiny", "messages": [')
        assert answer.startswith(b"HTTP/1.1 413"), answer[:100]


def test_a_chunked_body_over_the_limit_is_413_once_the_limit_is_passed(gateway: Gateway) -> None:
    with gateway(max_body_bytes=64 * 1024) as gw:
        head = (
            f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        piece = b"x" * 32 * 1024
        # Three pieces pass the limit; the body never ends, so only the limit answers.
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(3))
        answer = raw_exchange(gw.url, head + chunks)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:100]


def test_a_body_sent_too_slowly_is_a_408(fake: FakeVllm, gateway: Gateway) -> None:
    with gateway(body_timeout_seconds=0.5) as gw:
        head = (
            f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        ).encode()
        answer = raw_exchange(gw.url, head + b'{"model": ')
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert fake.seen == []


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_json_is_a_400(fake: FakeVllm, gateway: Gateway, depth: int) -> None:
    """2,000 levels are parsed on the event loop, 100,000 (200 kB) in the worker process."""
    body = b'{"model": "tiny", "messages": ' + b"[" * depth + b"]" * depth + b"}"
    with gateway() as gw:
        response = http_post(f"{gw.url}{CHAT}", content=body, headers=AUTH)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_json"
    assert fake.seen == []


def test_a_large_body_is_parsed_off_the_event_loop_and_forwarded(
    fake: FakeVllm, gateway: Gateway
) -> None:
    long_prompt = "word " * 40_000
    with gateway() as gw:
        request = chat(stream=True, messages=[{"role": "user", "content": long_prompt}])
        response = http_post(f"{gw.url}{CHAT}", json=request, headers=AUTH)
        assert response.status_code == 200
        assert fake.seen[-1][1]["messages"][0]["content"] == long_prompt
        assert tokens(gw, "completion") == COMPLETION_TOKENS


def test_half_sent_headers_are_closed_after_the_header_timeout(gateway: Gateway) -> None:
    with gateway(header_timeout_seconds=0.5) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\n".encode())
            try:
                assert conn.recv(1024) == b"", "closed without an answer"
            except TimeoutError:
                pytest.fail("the connection was held open")
        with socket.create_connection((host, int(port)), timeout=10) as idle:
            try:
                assert idle.recv(1024) == b"", "a connection that sends nothing is closed too"
            except TimeoutError:
                pytest.fail("the idle connection was held open")


def test_connections_beyond_the_cap_are_refused(gateway: Gateway) -> None:
    with gateway(max_connections=3) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(3)]
        try:
            deadline = time.monotonic() + 10
            while (answer := http_get(f"{gw.url}/v1/models", headers=AUTH)).status_code != 503:
                assert time.monotonic() < deadline, answer.status_code
                time.sleep(0.05)
        finally:
            for conn in held:
                conn.close()
        assert http_get(f"{gw.url}/v1/models", headers=AUTH).status_code == 200


# What the client port shows


@pytest.mark.parametrize("path", ["/metrics", "/metrics/vllm"])
def test_metrics_are_not_served_on_the_client_port(gateway: Gateway, path: str) -> None:
    with gateway() as gw:
        on_client_port = http_get(f"{gw.url}{path}")
        assert on_client_port.status_code == 404
        assert "/v1/chat/completions" in on_client_port.json()["error"]["message"]
        assert http_get(f"{gw.metrics_url}/metrics").status_code == 200
        vllm_metrics = http_get(f"{gw.metrics_url}/metrics/vllm")
        assert vllm_metrics.text.startswith("vllm:num_requests_running")
        assert vllm_metrics.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_a_forged_host_and_a_trailing_slash_never_redirect(gateway: Gateway) -> None:
    with gateway() as gw:
        response = http_post(
            f"{gw.url}/v1/completions/",
            json={"model": "tiny", "prompt": "hi"},
            headers={**AUTH, "Host": "evil.example"},
        )
        assert response.status_code == 404
        assert "location" not in response.headers
        assert response.json()["error"]["code"] == "not_found"


def test_upstream_server_header_and_engine_error_text_do_not_leak(gateway: Gateway) -> None:
    with gateway() as gw:
        fine = http_post(f"{gw.url}{CHAT}", json=chat(stream=False), headers=AUTH)
        assert "server" not in fine.headers
        broken = http_post(f"{gw.url}{CHAT}", json=chat(stream=False, model="broken"), headers=AUTH)
        assert broken.status_code == 500
        assert b"engine dead" not in broken.content
        assert broken.json()["error"]["code"] == "upstream_error"


def test_client_headers_that_steer_vllm_are_not_forwarded(fake: FakeVllm, gateway: Gateway) -> None:
    steering = {
        "endpoint-load-metrics-format": "json",
        "x-request-id": "mine",
        "x-forwarded-for": "1.2.3.4",
    }
    with gateway() as gw:
        http_post(f"{gw.url}{CHAT}", json=chat(stream=False), headers={**AUTH, **steering})
    forwarded = fake.seen[-1][0]
    assert not set(steering) & set(forwarded)


# Every route decided


def test_embeddings_are_metered(fake: FakeVllm, gateway: Gateway) -> None:
    with gateway() as gw:
        response = http_post(
            f"{gw.url}/v1/embeddings", json={"model": "tiny", "input": "hello"}, headers=AUTH
        )
        assert response.status_code == 200
        assert tokens(gw, "prompt") == PROMPT_TOKENS
        assert tokens(gw, "completion") == 0


def test_models_by_id_and_tokenize_pass_through_with_a_key(gateway: Gateway) -> None:
    with gateway() as gw:
        assert http_get(f"{gw.url}/v1/models/tiny", headers=AUTH).json()["id"] == "tiny"
        counted = http_post(
            f"{gw.url}/tokenize", json={"model": "tiny", "prompt": "hello"}, headers=AUTH
        )
        assert counted.json()["count"] == PROMPT_TOKENS
        assert http_get(f"{gw.url}/v1/models/tiny").status_code == 401


def test_an_unserved_openai_route_is_a_json_error_naming_the_supported_ones(
    gateway: Gateway,
) -> None:
    with gateway() as gw:
        response = http_post(f"{gw.url}/v1/audio/transcriptions", headers=AUTH)
        assert response.status_code == 404
        error = response.json()["error"]
        assert "/v1/responses" in error["message"]
        assert http_get(f"{gw.url}{CHAT}", headers=AUTH).status_code == 405


def test_responses_through_the_openai_sdk_are_metered(fake: FakeVllm, gateway: Gateway) -> None:
    with gateway() as gw:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)
        answer = client.responses.create(model="tiny", input="hello", max_output_tokens=8)
        assert answer.usage is not None
        assert answer.usage.output_tokens == COMPLETION_TOKENS
        assert tokens(gw, "completion") == COMPLETION_TOKENS
        events = list(
            client.responses.create(model="tiny", input="hello", max_output_tokens=8, stream=True)
        )
        assert events[-1].type == "response.completed"
        assert tokens(gw, "prompt") == 2 * PROMPT_TOKENS
        assert tokens(gw, "completion") == 2 * COMPLETION_TOKENS
        assert metric(gw.metrics_url, "aiconn_gateway_ttft_seconds_count") == 1, "the stream"
        assert metric(gw.metrics_url, "aiconn_gateway_tpot_seconds_count") == 1


# Measurement tenants cannot steer


def test_a_cancelled_stream_bills_its_prompt(fake: FakeVllm, gateway: Gateway) -> None:
    """Issue 11 item 7: vLLM prefilled the whole prompt of a stream the client abandoned."""
    fake.token_delay, fake.tokens = 0.1, 50
    with gateway() as gw:
        with http_stream("POST", f"{gw.url}{CHAT}", json=chat(stream=True), headers=AUTH) as resp:
            lines = resp.iter_lines()
            while "t1" not in next(lines):
                pass
        deadline = time.monotonic() + 10
        while outcome(gw.metrics_url, "client_error") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert tokens(gw, "prompt") == PROMPT_TOKENS
        assert 2 <= tokens(gw, "completion") < 50
    assert fake.tokenized[-1]["messages"] == chat(stream=True)["messages"]
    assert fake.tokenized[-1]["add_generation_prompt"] is True


def test_upstream_is_down_only_after_several_failed_probes_within_the_window() -> None:
    now = [0.0]
    gauge = Gauge("up", "up", registry=CollectorRegistry())
    answers: list[int] = []

    async def probe(_: float) -> int:
        return answers.pop(0)

    health = HealthProbe(probe, gauge, clock=lambda: now[0])

    async def scenario() -> list[bool]:
        seen = []
        for status, at in [(503, 0), (503, 1), (200, 2), (503, 3), (503, 4)]:
            now[0] = at
            answers.append(status)
            seen.append((await health.check()).up)
        answers.append(200)
        seen.append((await health.check()).up)
        # Failures spread wider than the window never add up to an outage; close ones do.
        for at in (10.0, 15.1, 20.2, 40.0, 41.0, 42.0):
            now[0] = at
            health.failed("refused")
            seen.append(health.state.up)
        return seen

    assert FAILURES_TO_DOWN == 3
    assert asyncio.run(scenario()) == [True] * 6 + [True] * 3 + [True, True, False]
    assert gauge._value.get() == 0


def test_tpot_is_the_time_between_first_and_last_token_over_the_tokens_after_the_first(
    tmp_path: Any,
) -> None:
    metrics = GatewayMetrics(
        sla="s", namespace="n", model="m", ttft_threshold_ms=500, tpot_threshold_ms=100
    )
    upstream = Upstream("http://127.0.0.1:1", timeout_seconds=1)
    proxy = Proxy(
        upstream=upstream,
        keys=KeyStore(tmp_path),
        metrics=metrics,
        probe=HealthProbe(upstream.health, metrics.upstream_up),
        rate_rps=1,
        rate_tpm=1000,
        allowance=None,
        max_body_bytes=1024,
    )
    exchange = Exchange(started=10.0, outcome="success", meter=StreamMeter(strip_usage=False))
    exchange.first_content, exchange.first_token, exchange.last_token = 10.25, 10.25, 10.65
    exchange.finished = 10.7
    proxy._record(exchange, Usage(prompt=7, completion=5))
    labels = {"sla": "s", "namespace": "n", "model": "m"}
    registry = metrics.registry
    assert registry.get_sample_value("aiconn_gateway_tpot_seconds_sum", labels) == pytest.approx(
        0.1
    )
    assert registry.get_sample_value("aiconn_gateway_ttft_seconds_sum", labels) == pytest.approx(
        0.25
    )
    assert registry.get_sample_value(
        "aiconn_gateway_request_duration_seconds_sum", labels
    ) == pytest.approx(0.7)
    whole = Exchange(started=10.0, outcome="success", first_content=10.5, finished=10.5)
    proxy._record(whole, Usage(prompt=7, completion=5))
    assert registry.get_sample_value("aiconn_gateway_ttft_seconds_count", labels) == 1


@pytest.mark.parametrize(
    ("path", "request_fields", "reserved"),
    [
        # Chat: vLLM takes `max_completion_tokens or max_tokens`; a 0 does not lower the budget.
        ("/v1/chat/completions", {"max_completion_tokens": 0, "max_tokens": 100000}, 100000),
        ("/v1/chat/completions", {"max_completion_tokens": 5, "max_tokens": 100000}, 5),
        # Completions read max_tokens only; another field cannot shrink the reservation.
        ("/v1/completions", {"max_completion_tokens": 1, "max_tokens": 100000}, 100000),
        ("/v1/completions", {"max_completion_tokens": 1}, 16),
        # Responses read max_output_tokens only: max_tokens leaves the model's limit.
        ("/v1/responses", {"max_tokens": 1}, None),
        ("/v1/responses", {"max_output_tokens": 7}, 7),
        ("/v1/embeddings", {"max_tokens": 9}, 0),
    ],
)
def test_the_reservation_reads_the_output_limit_vllm_reads_for_the_route(
    path: str, request_fields: dict[str, int], reserved: int | None
) -> None:
    import json

    from aiconn.gateway.body import parse
    from aiconn.gateway.routes import ROUTES

    route = ROUTES[path]
    parsed = parse(
        json.dumps({"model": "m", "input": "x", **request_fields}).encode(),
        usage_in_stream=route.usage_in_stream,
        default_max_output=route.default_max_output,
        output_fields=route.output_fields,
    )
    assert parsed.budget.max_output == reserved


def test_a_slowly_uploaded_stream_adds_no_upload_time_to_ttft(
    fake: FakeVllm, gateway: Gateway
) -> None:
    """A tenant who trickles its body in must not be able to inflate the TTFT the SLA pays on:
    the clock starts once the body is in."""
    import json

    upload_pause = 2.0
    body = json.dumps(chat(stream=True)).encode()
    with gateway() as gw:
        head = (
            f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        host, port = gw.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(head + body[:10])
            time.sleep(upload_pause)  # the client's own slowness, the thing under test
            conn.sendall(body[10:])
            received = b""
            while b"data: [DONE]" not in received and (chunk := conn.recv(65536)):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received[:100]
        assert metric(gw.metrics_url, "aiconn_gateway_ttft_seconds_count") == 1
        assert metric(gw.metrics_url, "aiconn_gateway_ttft_seconds_sum") < upload_pause
