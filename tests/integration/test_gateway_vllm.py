"""The token gateway in front of a real vLLM: pass-through, metering, enforcement, measurement.

The gateway runs as its own process (as the sidecar does), configured only by `AICONN_*`
environment variables, and is read only through its HTTP API and `/metrics`. `vllm_server` is the
devstack's real vLLM (CPU build, tiny model). `latency_proxy` sits between the gateway and vLLM
and holds back the first bytes of each response, so the gateway's TTFT must move by exactly that.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiconn.gateway.keys import hash_key
from aiconn.sla import metricnames as mn

pytestmark = pytest.mark.integration

KEY = "sk-integration-5f2a"
AUTH = {"Authorization": f"Bearer {KEY}"}
SLA, NAMESPACE = "gold", "acme"
VOLATILE = ("id", "created", "system_fingerprint")


class VllmServer(Protocol):
    url: str
    model: str

    def stop(self) -> None: ...

    def start(self) -> None: ...


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 that delays what the upstream sends by `delay` seconds."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        assert self._ready.wait(10), "latency proxy did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0)
        )
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.close()
            return

        async def up() -> None:
            while data := await client_r.read(65536):
                upstream_w.write(data)
                await upstream_w.drain()
            upstream_w.close()

        async def down() -> None:
            # Every byte leaves `delay` after it arrived: the first bytes of each response are
            # held back by `delay` and the rest keep their pace behind them, like a longer path.
            # (Holding back only the first bytes would let tokens produced meanwhile catch up.)
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def pace() -> None:
                while (item := await queue.get())[1]:
                    await asyncio.sleep(max(0.0, item[0] - loop.time()))
                    client_w.write(item[1])
                    await client_w.drain()
                client_w.close()

            pacer = asyncio.ensure_future(pace())
            while data := await upstream_r.read(65536):
                queue.put_nowait((loop.time() + self.delay, data))
            queue.put_nowait((0.0, b""))
            await pacer

        await asyncio.gather(up(), down(), return_exceptions=True)


@pytest.fixture
def latency_proxy(vllm_server: VllmServer) -> Iterator[LatencyProxy]:
    with LatencyProxy(vllm_server.url) as proxy:
        yield proxy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


StartGateway = Callable[..., Any]


@pytest.fixture
def start_gateway(vllm_server: VllmServer, tmp_path: Path) -> Iterator[StartGateway]:
    """Starts `aiconn.gateway.server:run` as a process; yields a context manager factory."""
    (tmp_path / "keys").write_text(hash_key(KEY) + "\n")

    @contextmanager
    def start(upstream: str | None = None, **env: str) -> Iterator[str]:
        port = free_port()
        environment = {
            **os.environ,
            "AICONN_SLA": SLA,
            "AICONN_NAMESPACE": NAMESPACE,
            "AICONN_MODEL": vllm_server.model,
            "AICONN_UPSTREAM": upstream or vllm_server.url,
            "AICONN_LISTEN_HOST": "127.0.0.1",
            "AICONN_LISTEN_PORT": str(port),
            "AICONN_KEYS_DIR": str(tmp_path),
            **{f"AICONN_{k.upper()}": v for k, v in env.items()},
        }
        process = subprocess.Popen(
            [sys.executable, "-c", "from aiconn.gateway.server import run; run()"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                try:
                    httpx.get(f"{url}/metrics", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "gateway did not start"
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)

    yield start


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(url: str, name: str, **labels: str) -> float:
    wanted = {mn.SLA_LABEL: SLA, mn.NAMESPACE_LABEL: NAMESPACE, **labels}
    for (sample_name, sample_labels), sample_value in samples(url).items():
        if sample_name == name and wanted.items() <= dict(sample_labels).items():
            return sample_value
    raise AssertionError(f"no sample {name} {labels}")


def chat(model: str, *, stream: bool, max_tokens: int = 12, **extra: Any) -> dict[str, Any]:
    # Greedy decoding: the same request gives the same tokens, directly or through the gateway;
    # ignore_eos: a tiny random model may otherwise stop before its first visible token.
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hello world"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
        **extra,
    }


def stable(document: dict[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in document.items() if key not in VOLATILE}


def events(body: bytes) -> list[Any]:
    parsed: list[Any] = []
    for event in body.split(b"\n\n"):
        if not event.strip():
            continue
        assert event.startswith(b"data: "), event
        data = event[len(b"data: ") :]
        parsed.append(data.decode() if data == b"[DONE]" else stable(json.loads(data)))
    return parsed


def test_answers_through_the_gateway_equal_direct_answers_and_are_metered(
    vllm_server: VllmServer, start_gateway: StartGateway
) -> None:
    model = vllm_server.model
    with start_gateway() as gateway:
        for path, body in (
            ("/v1/chat/completions", chat(model, stream=False)),
            (
                "/v1/completions",
                {"model": model, "prompt": "hello", "max_tokens": 9, "temperature": 0},
            ),
        ):
            direct = httpx.post(f"{vllm_server.url}{path}", json=body, timeout=60)
            before = value(gateway, mn.GATEWAY_TOKENS, type="completion")
            proxied = httpx.post(f"{gateway}{path}", json=body, headers=AUTH, timeout=60)
            assert proxied.status_code == direct.status_code == 200
            assert stable(proxied.json()) == stable(direct.json())
            metered = value(gateway, mn.GATEWAY_TOKENS, type="completion") - before
            assert metered == direct.json()["usage"]["completion_tokens"]

        streamed = chat(model, stream=True)
        with_usage = chat(model, stream=True, stream_options={"include_usage": True})
        direct_plain = httpx.post(
            f"{vllm_server.url}/v1/chat/completions", json=streamed, timeout=60
        )
        direct_usage = httpx.post(
            f"{vllm_server.url}/v1/chat/completions", json=with_usage, timeout=60
        )
        usage = events(direct_usage.content)[-2]["usage"]
        prompt_before = value(gateway, mn.GATEWAY_TOKENS, type="prompt")
        completion_before = value(gateway, mn.GATEWAY_TOKENS, type="completion")

        proxied_plain = httpx.post(
            f"{gateway}/v1/chat/completions", json=streamed, headers=AUTH, timeout=60
        )
        assert events(proxied_plain.content) == events(direct_plain.content), (
            "the usage chunk the gateway asked for is not shown to the client"
        )
        proxied_usage = httpx.post(
            f"{gateway}/v1/chat/completions", json=with_usage, headers=AUTH, timeout=60
        )
        assert events(proxied_usage.content) == events(direct_usage.content)

        assert value(gateway, mn.GATEWAY_TOKENS, type="prompt") - prompt_before == (
            2 * usage["prompt_tokens"]
        )
        assert value(gateway, mn.GATEWAY_TOKENS, type="completion") - completion_before == (
            2 * usage["completion_tokens"]
        )
        assert value(gateway, mn.GATEWAY_REQUESTS, outcome=mn.OUTCOME_SUCCESS) == 4
        assert value(gateway, mn.GATEWAY_TPOT + "_count") == 2


def test_keys_contract_and_allowance_are_enforced(
    vllm_server: VllmServer, start_gateway: StartGateway
) -> None:
    url = "/v1/chat/completions"
    body = chat(vllm_server.model, stream=True, max_tokens=4)
    with start_gateway(rate_rps="0.2") as gateway:
        assert httpx.post(f"{gateway}{url}", json=body, timeout=60).status_code == 401
        wrong = httpx.post(
            f"{gateway}{url}",
            json=body,
            timeout=60,
            headers={"Authorization": "Bearer sk-not-ours"},
        )
        assert wrong.status_code == 401
        assert httpx.post(f"{gateway}{url}", json=body, headers=AUTH, timeout=60).status_code == 200
        over = httpx.post(f"{gateway}{url}", json=body, headers=AUTH, timeout=60)
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) >= 1
        assert value(gateway, mn.GATEWAY_REQUESTS, outcome=mn.OUTCOME_UNAUTHORIZED) == 2
        assert value(gateway, mn.GATEWAY_REQUESTS, outcome=mn.OUTCOME_OVER_CONTRACT) == 1

    with start_gateway(allowance_tokens="5") as gateway:
        assert httpx.post(f"{gateway}{url}", json=body, headers=AUTH, timeout=60).status_code == 200
        spent = httpx.post(f"{gateway}{url}", json=body, headers=AUTH, timeout=60)
        assert spent.status_code == 402
        assert value(gateway, mn.GATEWAY_REQUESTS, outcome=mn.OUTCOME_PAYMENT_REQUIRED) == 1


def client_ttft(client: httpx.Client, url: str, body: dict[str, Any]) -> float:
    """Seconds from sending the request to receiving the first content-bearing chunk.

    The stream is read to its end: closing it early would cancel the request at the gateway
    and cost the next request a new connection.
    """
    started = time.perf_counter()
    first: float | None = None
    with client.stream("POST", url, json=body, headers=AUTH, timeout=60) as response:
        for line in response.iter_lines():
            if first is not None or not line.startswith("data: {"):
                continue
            choices = json.loads(line[len("data: ") :]).get("choices") or []
            if any((choice.get("delta") or {}).get("content") for choice in choices):
                first = time.perf_counter() - started
    assert first is not None, "no content-bearing chunk"
    return first


def test_gateway_ttft_sees_the_injected_delay_and_agrees_with_the_client(
    vllm_server: VllmServer, latency_proxy: LatencyProxy, start_gateway: StartGateway
) -> None:
    body = chat(vllm_server.model, stream=True, max_tokens=16)
    # Requests alternate between no delay and 100 ms, one at a time, and the gateway's TTFT of
    # each is read from its histogram's sum; medians of the pairs shrug off a busy machine.
    samples: dict[float, list[tuple[float, float]]] = {0.0: [], 0.1: []}
    # One client for all requests: a new httpx client costs tens of ms (its TLS context).
    with start_gateway(upstream=latency_proxy.url) as gateway, httpx.Client() as http:
        url = f"{gateway}/v1/chat/completions"
        client_ttft(http, url, body)  # warm both connection pools and vLLM's prefix cache
        for _ in range(15):
            for delay, pairs in samples.items():
                latency_proxy.delay = delay
                total = value(gateway, mn.GATEWAY_TTFT + "_sum")
                seen_by_client = client_ttft(http, url, body)
                pairs.append((value(gateway, mn.GATEWAY_TTFT + "_sum") - total, seen_by_client))
        assert value(gateway, mn.GATEWAY_TTFT + "_count") == 31

    def median(delay: float, of: Callable[[tuple[float, float]], float]) -> float:
        return statistics.median(of(pair) for pair in samples[delay])

    shift = median(0.1, lambda pair: pair[0]) - median(0.0, lambda pair: pair[0])
    gaps = [median(delay, lambda pair: pair[1] - pair[0]) for delay in samples]
    # Measured on the 2-core dev machine, busy with other builds and tests (load average 3-10):
    # with means of 20 requests per delay the shift ranged 77-157 ms; with these alternating
    # medians, 3 runs gave 96, 101 and 118 ms. The client saw each first token a median 2.8-6.4 ms
    # after the gateway sent it (its own send and parse, the loopback hop, a crowded CPU).
    # Tolerances: shift 100 +- 20 ms, client minus gateway 0-10 ms.
    assert 0.08 <= shift <= 0.12, samples
    for gap in gaps:
        assert 0 <= gap <= 0.010, samples


def test_vllm_down_is_503_an_upstream_error_and_unhealthy(
    vllm_server: VllmServer, start_gateway: StartGateway
) -> None:
    body = chat(vllm_server.model, stream=True, max_tokens=4)
    with start_gateway() as gateway:
        assert httpx.get(f"{gateway}/health").status_code == 200
        assert value(gateway, mn.GATEWAY_UPSTREAM_UP) == 1
        vllm_server.stop()
        try:
            down = httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "upstream_unavailable"
            health = httpx.get(f"{gateway}/health")
            assert health.status_code == 503
            assert health.json()["status"] == "unavailable"
            assert value(gateway, mn.GATEWAY_REQUESTS, outcome=mn.OUTCOME_UPSTREAM_ERROR) == 1
            assert value(gateway, mn.GATEWAY_UPSTREAM_UP) == 0
        finally:
            vllm_server.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{gateway}/health").status_code != 200:
            assert time.monotonic() < deadline, "gateway did not see vLLM come back"
            time.sleep(0.5)
        assert value(gateway, mn.GATEWAY_UPSTREAM_UP) == 1
