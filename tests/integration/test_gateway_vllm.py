"""The token gateway in front of a real vLLM: pass-through, metering, enforcement, measurement.

The gateway runs as its own process (as the sidecar does), configured only by `AICONN_*`
environment variables, and is read only through its HTTP API and `/metrics`. `vllm_server` is the
devstack's real vLLM (CPU build, tiny model). `latency_proxy` sits between the gateway and vLLM
and holds back the first bytes of each response, so the gateway's TTFT must move by exactly that.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiconn.devstack.injector import FaultInjector
from aiconn.gateway.keys import hash_key
from aiconn.sla import metricnames as mn
from tests.helpers import WAIT_S

pytestmark = pytest.mark.integration

KEY = "sk-integration-5f2a"
AUTH = {"Authorization": f"Bearer {KEY}"}
SLA, NAMESPACE = "gold", "acme"
VOLATILE = ("id", "created", "system_fingerprint")
# A stream event that carries text: `"content": ""` (the role's first event) does not.
VISIBLE_TOKEN = re.compile(rb'"content":\s*"[^"]')


class VllmServer(Protocol):
    url: str
    model: str

    def stop(self) -> None: ...

    def start(self) -> None: ...


@pytest.fixture
def latency_proxy(vllm_server: VllmServer) -> Iterator[FaultInjector]:
    """The devstack's injector: every byte vLLM sends is held back by `delay` seconds."""
    with FaultInjector(vllm_server.url) as proxy:
        yield proxy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


StartGateway = Callable[..., Any]


class GatewayUrl(str):
    """The gateway's client URL; `metrics` is its metrics port's URL (issue 14: not the same)."""

    metrics: str


@pytest.fixture
def start_gateway(vllm_server: VllmServer, tmp_path: Path) -> Iterator[StartGateway]:
    """Starts `aiconn.gateway.server:run` as a process; yields a context manager factory."""
    (tmp_path / "keys").write_text(hash_key(KEY) + "\n")

    @contextmanager
    def start(upstream: str | None = None, **env: str) -> Iterator[GatewayUrl]:
        port, metrics_port = free_port(), free_port()
        environment = {
            **os.environ,
            "AICONN_SLA": SLA,
            "AICONN_NAMESPACE": NAMESPACE,
            "AICONN_MODEL": vllm_server.model,
            "AICONN_UPSTREAM": upstream or vllm_server.url,
            "AICONN_LISTEN_HOST": "127.0.0.1",
            "AICONN_LISTEN_PORT": str(port),
            "AICONN_METRICS_HOST": "127.0.0.1",
            "AICONN_METRICS_PORT": str(metrics_port),
            "AICONN_KEYS_DIR": str(tmp_path),
            **{f"AICONN_{k.upper()}": v for k, v in env.items()},
        }
        process = subprocess.Popen(
            [sys.executable, "-c", "from aiconn.gateway.server import run; run()"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = GatewayUrl(f"http://127.0.0.1:{port}")
        url.metrics = f"http://127.0.0.1:{metrics_port}"
        try:
            # A bound against a hang, not a speed limit: on two loaded cores (a clean-clone
            # suite at load 12) the gateway's interpreter took over 30 s to import and listen.
            deadline = time.monotonic() + WAIT_S
            while True:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                try:
                    httpx.get(f"{url.metrics}/metrics", timeout=1)
                    httpx.get(f"{url}/health", timeout=1)
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
    text = httpx.get(f"{getattr(url, 'metrics', url)}/metrics").text
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


def stream_summary(parsed: list[Any]) -> dict[str, Any]:
    """What a streamed answer says: roles, the text, finish reasons, usage, the terminator."""
    chunks = [c for c in parsed if isinstance(c, dict)]
    choices = [choice for c in chunks for choice in c.get("choices", [])]
    return {
        "roles": [ch["delta"]["role"] for ch in choices if ch.get("delta", {}).get("role")],
        "text": "".join(ch.get("delta", {}).get("content") or "" for ch in choices),
        "finish": [ch["finish_reason"] for ch in choices if ch.get("finish_reason")],
        "usage": [c["usage"] for c in chunks if c.get("usage")],
        "model": {c.get("model") for c in chunks},
        "done": parsed[-1:] == ["[DONE]"],
    }


def prompt_tokens(vllm_server: VllmServer, body: dict[str, Any]) -> int:
    """The prompt's tokens as vLLM counts them (chat template and generation prompt)."""
    counted = httpx.post(
        f"{vllm_server.url}/tokenize",
        json={"model": body["model"], "messages": body["messages"], "add_generation_prompt": True},
        timeout=60,
    )
    count: int = counted.json()["count"]
    return count


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
        # How tokens are grouped into chunks depends on timing (vLLM may emit two tokens in one
        # chunk when busy), so streams are compared by what they say, not chunk by chunk.
        proxied = stream_summary(events(proxied_plain.content))
        assert proxied == stream_summary(events(direct_plain.content))
        assert proxied["usage"] == [], "the usage chunk the gateway asked for is not shown"
        proxied_usage = httpx.post(
            f"{gateway}/v1/chat/completions", json=with_usage, headers=AUTH, timeout=60
        )
        shown = stream_summary(events(proxied_usage.content))
        assert shown == stream_summary(events(direct_usage.content))
        assert shown["usage"] == [usage], "a client that asked for usage gets it"

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

    # Issue 14: admitted only when the most it can spend fits: its prompt as vLLM counts it
    # plus max_tokens; an allowance one token short refuses before vLLM sees the request.
    need = prompt_tokens(vllm_server, body) + body["max_tokens"]
    with start_gateway(allowance_tokens=str(need - 1)) as gateway:
        short = httpx.post(f"{gateway}{url}", json=body, headers=AUTH, timeout=60)
        assert short.status_code == 402
    with start_gateway(allowance_tokens=str(need)) as gateway:
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


DELAY = 0.5


# Compares medians of milliseconds: other tests' load on the 2 cores would be in them.
@pytest.mark.serial
def test_gateway_ttft_sees_the_injected_delay_and_agrees_with_the_client(
    vllm_server: VllmServer, latency_proxy: FaultInjector, start_gateway: StartGateway
) -> None:
    body = chat(vllm_server.model, stream=True, max_tokens=16)
    # Requests alternate between no delay and DELAY, one at a time, and the gateway's TTFT of
    # each is read from its histogram's sum; medians of the pairs shrug off a busy machine.
    samples: dict[float, list[tuple[float, float]]] = {0.0: [], DELAY: []}
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

    shift = median(DELAY, lambda pair: pair[0]) - median(0.0, lambda pair: pair[0])
    gaps = [median(delay, lambda pair: pair[1] - pair[0]) for delay in samples]
    # Measured on the 2-core machine: with a 100 ms delay, alternating medians gave shifts of
    # 96, 101 and 118 ms on a busy dev machine but 61 ms in a full CI run, where vLLM's own TTFT
    # swung between 120 and 260 ms from request to request. So the delay is 500 ms, large
    # against that noise, and the tolerance is +-100 ms. The client saw each first token a
    # median 2.8-6.4 ms after the gateway sent it (its own send and parse, the loopback hop);
    # tolerance 0-25 ms.
    assert DELAY - 0.1 <= shift <= DELAY + 0.1, samples
    for gap in gaps:
        assert 0 <= gap <= 0.025, samples


def test_vllm_s_own_metrics_reach_prometheus_through_the_metrics_port(
    vllm_server: VllmServer, start_gateway: StartGateway
) -> None:
    """vLLM listens on the pod's loopback only: `/metrics/vllm` on the gateway's metrics port is
    how the PodMonitor's second endpoint reads it, and it must be vLLM's exposition as is."""
    with start_gateway() as gateway:
        relayed = httpx.get(f"{gateway.metrics}/metrics/vllm", timeout=60)
        direct = httpx.get(f"{vllm_server.url}/metrics", timeout=60)
    assert relayed.status_code == 200, relayed.text[:500]
    assert relayed.headers["content-type"] == direct.headers["content-type"]
    names = {f.name for f in text_string_to_metric_families(relayed.text)}
    assert "vllm:prompt_tokens" in names or "vllm:prompt_tokens_total" in names, sorted(names)[:20]


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
            # Issue 14: down after several failed probes within a window, not the first.
            deadline = time.monotonic() + WAIT_S
            while (health := httpx.get(f"{gateway}/health")).status_code != 503:
                assert time.monotonic() < deadline, "gateway did not see vLLM go down"
                time.sleep(0.2)
            assert health.json()["status"] == "unavailable"
            assert value(gateway, mn.GATEWAY_REQUESTS, outcome=mn.OUTCOME_UPSTREAM_ERROR) == 1
            assert value(gateway, mn.GATEWAY_UPSTREAM_UP) == 0
        finally:
            vllm_server.start()
        deadline = time.monotonic() + WAIT_S
        while httpx.get(f"{gateway}/health").status_code != 200:
            assert time.monotonic() < deadline, "gateway did not see vLLM come back"
            time.sleep(0.5)
        assert value(gateway, mn.GATEWAY_UPSTREAM_UP) == 1


@pytest.mark.parametrize("flag", ["true", 1, "yes"])
def test_a_non_boolean_stream_that_vllm_streams_is_metered(
    vllm_server: VllmServer, start_gateway: StartGateway, flag: object
) -> None:
    """Issue 14: vLLM streams `"stream": "true"`; the gateway meters it as the stream it is."""
    body = {**chat(vllm_server.model, stream=True, max_tokens=6), "stream": flag}
    direct = httpx.post(f"{vllm_server.url}/v1/chat/completions", json=body, timeout=60)
    assert direct.headers["content-type"].startswith("text/event-stream"), "vLLM streams it"
    with start_gateway() as gateway:
        proxied = httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
        assert stream_summary(events(proxied.content)) == stream_summary(events(direct.content))
        assert value(gateway, mn.GATEWAY_TOKENS, type="completion") == 6
        assert value(gateway, mn.GATEWAY_TOKENS, type="prompt") == prompt_tokens(vllm_server, body)


def test_a_stream_value_vllm_refuses_is_refused(
    vllm_server: VllmServer, start_gateway: StartGateway
) -> None:
    body = {**chat(vllm_server.model, stream=True), "stream": "maybe"}
    direct = httpx.post(f"{vllm_server.url}/v1/chat/completions", json=body, timeout=60)
    assert direct.status_code == 400
    with start_gateway() as gateway:
        proxied = httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
        assert proxied.status_code == 400
        assert proxied.json()["error"]["message"].startswith("stream:")


def test_responses_through_the_openai_sdk_are_metered_as_vllm_counts(
    vllm_server: VllmServer, start_gateway: StartGateway
) -> None:
    import openai

    with start_gateway() as gateway:
        client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=KEY, max_retries=0)
        answer = client.responses.create(
            model=vllm_server.model, input="hello world", max_output_tokens=5, temperature=0
        )
        assert answer.usage is not None
        assert value(gateway, mn.GATEWAY_TOKENS, type="prompt") == answer.usage.input_tokens
        assert value(gateway, mn.GATEWAY_TOKENS, type="completion") == answer.usage.output_tokens
        streamed = list(
            client.responses.create(
                model=vllm_server.model,
                input="hello world",
                max_output_tokens=5,
                temperature=0,
                stream=True,
            )
        )
        completed = [event for event in streamed if event.type == "response.completed"]
        assert completed, [event.type for event in streamed]
        usage = completed[0].response.usage
        assert usage is not None
        assert value(gateway, mn.GATEWAY_TOKENS, type="completion") == (
            answer.usage.output_tokens + usage.output_tokens
        )
        assert value(gateway, mn.GATEWAY_TTFT + "_count") == 1, "the stream, not the whole answer"


def test_a_cancelled_stream_bills_the_prompt_vllm_prefilled(
    vllm_server: VllmServer, latency_proxy: FaultInjector, start_gateway: StartGateway
) -> None:
    """Issue 11 item 7: the prompt is counted with vLLM's own tokenizer and chat template."""
    body = chat(vllm_server.model, stream=True, max_tokens=200)
    # The stream stalls after its first visible token, so the client leaves mid-stream: a tiny
    # model can otherwise write all 200 tokens into the socket before the client's close is seen
    # (a CI run recorded a whole answer, not a cancel).
    latency_proxy.hold_after = lambda chunk: VISIBLE_TOKEN.search(chunk) is not None
    with start_gateway(upstream=latency_proxy.url) as gateway:
        with httpx.stream(
            "POST", f"{gateway}/v1/chat/completions", json=body, headers=AUTH, timeout=60
        ) as response:
            for line in response.iter_lines():
                if '"content":"' in line.replace(" ", "") and '"content":""' not in line:
                    break
        deadline = time.monotonic() + WAIT_S
        while value(gateway, mn.GATEWAY_REQUESTS, outcome=mn.OUTCOME_CLIENT_ERROR) < 1:
            assert time.monotonic() < deadline, "the cancellation was not recorded"
            time.sleep(0.1)
        assert value(gateway, mn.GATEWAY_TOKENS, type="prompt") == prompt_tokens(vllm_server, body)
        assert 1 <= value(gateway, mn.GATEWAY_TOKENS, type="completion") < 200
