"""The gateway's own upstream client and parsing worker, and billing an abandoned whole answer.

The client is driven on uvloop, the loop the sidecar serves on, against small raw HTTP servers
whose misbehaviour (closing a kept-alive connection, stalling mid-stream) is the point.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvloop

from aiconn.gateway.body import INLINE_PARSE_BYTES, BodyParser
from aiconn.gateway.upstream import Upstream, UpstreamTimeout
from aiconn.gateway.usage import Usage
from tests.helpers import http_post
from tests.unit.test_gateway_proxy import (
    AUTH,
    PROMPT_TOKENS,
    FakeVllm,
    Gateway,
    chat,
    metric,
    outcome,
)

pytest_plugins = ["tests.unit.test_gateway_proxy"]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    return head + await reader.readexactly(length)


def on_uvloop(scenario: Callable[[str], Awaitable[Any]], handler: Handler) -> Any:
    """Run `scenario(base_url)` on uvloop next to a raw server calling `handler` per connection
    with the connection's number."""

    async def main() -> Any:
        connections = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            try:
                await handler(reader, writer, connections)
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await scenario(f"http://127.0.0.1:{port}")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def test_answers_reuse_one_kept_alive_connection() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while not reader.at_eof():
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(answer(b'{"ok": %d}' % len(seen)))

    async def scenario(base: str) -> list[tuple[int, bytes]]:
        upstream = Upstream(base, timeout_seconds=5)
        await upstream.open()
        results = []
        for _ in range(3):
            status, _, body = await upstream.fetch(
                "POST",
                "/v1/x",
                body=b"{}",
                headers=[(b"content-type", b"application/json")],
                timeout=5,
            )
            results.append((status, body))
        await upstream.close()
        return results

    assert on_uvloop(scenario, handler) == [(200, b'{"ok": %d}' % n) for n in (1, 2, 3)]
    assert len(seen) == 3
    assert seen[0].startswith(b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"content-type: application/json\r\nContent-Length: 2\r\n\r\n{}" in seen[0]


def test_a_kept_alive_connection_the_server_closed_is_replaced_without_failing_the_request() -> (
    None
):
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        await read_request(reader)
        writer.write(answer(b"first" if number == 1 else b"again"))
        await writer.drain()
        if number == 1:
            # The server ends the kept-alive connection on the next request without answering
            # (the race with vLLM's keep-alive timeout).
            await read_request(reader)

    async def scenario(base: str) -> list[bytes]:
        upstream = Upstream(base, timeout_seconds=5)
        await upstream.open()
        bodies = []
        for _ in range(2):
            _, _, body = await upstream.fetch("GET", "/health", body=None, headers=[], timeout=5)
            bodies.append(body)
        await upstream.close()
        return bodies

    assert on_uvloop(scenario, handler) == [b"first", b"again"]


def test_a_stream_that_stalls_mid_answer_times_out_after_the_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            writer.write(b"6\r\ndata: \r\n")
            await writer.drain()
            await asyncio.sleep(0.2)
        await asyncio.sleep(30)

    async def scenario(base: str) -> tuple[bytes, float]:
        upstream = Upstream(base, timeout_seconds=0.5)
        await upstream.open()
        response = await upstream.send("POST", "/v1/x", body=b"{}", headers=[])
        received = b""
        try:
            await response.head()
            while data := await response.read_some():
                received += data
                started = time.monotonic()
        except UpstreamTimeout:
            stalled = time.monotonic() - started
        finally:
            response.release()
        await upstream.close()
        return received, stalled

    received, stalled = on_uvloop(scenario, handler)
    # Gaps shorter than the timeout pass; the stall after the last chunk does not.
    assert received == b"data: " * 3
    assert 0.3 <= stalled < 5


def large_chat() -> bytes:
    content = "x" * (INLINE_PARSE_BYTES + 1)
    return json.dumps(
        {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 5}
    ).encode()


def test_a_dead_parsing_worker_is_replaced() -> None:
    async def scenario() -> None:
        parser = BodyParser()
        body = large_chat()
        first = await parser.parse(body, usage_in_stream=True, default_max_output=None)
        pool = parser._pool
        assert pool is not None, "a large body is parsed in the worker"
        for process in list(pool._processes.values()):
            process.kill()
            process.join()
        second = await parser.parse(body, usage_in_stream=True, default_max_output=None)
        assert second == first
        assert parser._pool is not None and parser._pool is not pool
        parser.close()

    asyncio.run(scenario())


def test_the_usage_of_a_large_answer_is_read_in_the_worker() -> None:
    vectors = [{"object": "embedding", "index": i, "embedding": [0.25] * 512} for i in range(64)]
    answer_body = json.dumps(
        {"object": "list", "data": vectors, "usage": {"prompt_tokens": 640, "total_tokens": 640}}
    ).encode()
    assert len(answer_body) > INLINE_PARSE_BYTES

    async def scenario() -> Usage | None:
        parser = BodyParser()
        try:
            return await parser.usage(answer_body)
        finally:
            assert parser._pool is not None
            parser.close()

    assert asyncio.run(scenario()) == Usage(prompt=640, completion=0)


def test_a_long_prompts_tokenize_answer_is_counted_in_the_worker() -> None:
    tokenized = json.dumps({"count": 20_000, "max_model_len": 32_768, "tokens": [12345] * 20_000})

    async def scenario() -> int | None:
        parser = BodyParser()
        try:
            return await parser.token_count(tokenized.encode())
        finally:
            assert parser._pool is not None
            parser.close()

    assert len(tokenized) > INLINE_PARSE_BYTES
    assert asyncio.run(scenario()) == 20_000


def test_an_abandoned_whole_answer_is_billed_its_prompt(fake: FakeVllm, gateway: Gateway) -> None:
    """vLLM prefilled the prompt of a non-streamed request whose client left before the answer."""
    fake.answer_delay = 2.0
    with gateway() as gw:
        with pytest.raises(httpx.ReadTimeout):
            http_post(
                f"{gw.url}/v1/chat/completions", json=chat(stream=False), headers=AUTH, timeout=0.5
            )
        deadline = time.monotonic() + 10
        while outcome(gw.metrics_url, "client_error") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        billed = metric(gw.metrics_url, "aiconn_gateway_tokens_total", type="prompt")
        assert billed == PROMPT_TOKENS
        assert metric(gw.metrics_url, "aiconn_gateway_tokens_total", type="completion") == 0
    assert fake.tokenized[-1]["messages"] == chat(stream=False)["messages"]
