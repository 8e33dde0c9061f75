"""What a proxy in front of vLLM costs: direct vs the aiconn gateway vs LiteLLM, one run.

All three talk to the same fake OpenAI upstream (its own process): a stream is a role chunk,
`--chunks` one-token chunks `--gap-ms` apart, the usage chunk when asked and `data: [DONE]`; a
non-streamed answer comes after the same time. A closed-loop load generator (its own process)
keeps `concurrency` requests in flight for `--seconds` per point, after a warm-up; targets are
interleaved per point so drift falls on all alike. TTFT is measured at the client, from sending
the request to the first content-bearing chunk; CPU per request is the proxy process's user plus
system time from /proc over the point, divided by the requests it completed.

LiteLLM is not a dependency of aiconn: install a pinned version in its own environment and pass
its executable, e.g.

    python3.11 -m venv /work/litellm-venv
    /work/litellm-venv/bin/pip install 'litellm[proxy]==1.82.6'
    python bench/bench_gateway.py --litellm /work/litellm-venv/bin/litellm \\
        --concurrency 1 16 64 256 --seconds 5

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web

from aiconn.gateway.keys import hash_key

KEY = "sk-bench"
MODEL = "tiny"
FAKE_PROMPT_TOKENS = 7


# --- the fake upstream (`--serve-fake PORT`) ---


def _chunk(choices: list[dict[str, object]], **extra: object) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    return b"data: " + json.dumps({**body, "choices": choices, **extra}).encode() + b"\n\n"


def serve_fake(port: int, *, chunks: int, gap: float) -> None:
    prompt = FAKE_PROMPT_TOKENS
    usage = {"prompt_tokens": prompt, "completion_tokens": chunks, "total_tokens": prompt + chunks}
    role = _chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
    tokens = [_chunk([{"index": 0, "delta": {"content": f"t{i} "}}]) for i in range(chunks)]
    usage_chunk = _chunk([], usage=usage)
    whole = json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "t " * chunks},
                    "finish_reason": "length",
                }
            ],
            "usage": usage,
        }
    ).encode()

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            await asyncio.sleep(gap * chunks)
            return web.Response(body=whole, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(role)
        for token in tokens:
            await asyncio.sleep(gap)
            await response.write(token)
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(usage_chunk)
        await response.write(b"data: [DONE]\n\n")
        return response

    async def health(_: web.Request) -> web.Response:
        return web.Response()

    async def models(_: web.Request) -> web.Response:
        data = [{"id": MODEL, "object": "model", "max_model_len": 4096}]
        return web.json_response({"object": "list", "data": data})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- the load generator (`--load URL STREAM CONCURRENCY SECONDS`) ---


async def load(url: str, *, stream: bool, concurrency: int, seconds: float) -> dict[str, object]:
    body = json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 64,
            "stream": stream,
        }
    ).encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    ttfts: list[float] = []
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            first = None
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        errors += 1
                        await response.read()
                        return
                    if stream:
                        async for data in response.content.iter_any():
                            if first is None and (
                                b'"content": "t' in data or b'"content":"t' in data
                            ):
                                first = time.perf_counter()
                    else:
                        await response.read()
            except aiohttp.ClientError:
                errors += 1
                return
            done = time.perf_counter()
            latencies.append(done - started)
            if stream:
                ttfts.append((first or done) - started)

        async def worker(until: float) -> None:
            while time.perf_counter() < until:
                await one()

        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
        warm_count = len(latencies) + errors
        ttfts.clear()
        latencies.clear()
        errors = 0
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "ttft": ttfts,
        "latency": latencies,
        "errors": errors,
        "elapsed": elapsed,
        "warm": warm_count,
    }


# --- the harness ---


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and its waited-for children so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[index]) for index in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.2)


@contextmanager
def started(
    command: list[str], env: dict[str, str], ready: str, what: str, *, nice: int = 0
) -> Iterator[int]:
    # Not from the caller's directory: `python -c` puts it first on sys.path, ahead of
    # PYTHONPATH, so a checkout there would shadow the code a target names.
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        cwd=tempfile.gettempdir(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(ready, process, what)
        if nice:
            # All proxies alike: what a pod's own CPU request gives the sidecar.
            os.setpriority(os.PRIO_PROCESS, process.pid, nice)
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


def aiconn_gateway(upstream: str, keys: Path) -> tuple[list[str], dict[str, str], str, str]:
    port, metrics = free_port(), free_port()
    env = {
        "AICONN_UPSTREAM": upstream,
        "AICONN_MODEL": MODEL,
        "AICONN_SLA": "bench",
        "AICONN_NAMESPACE": "bench",
        "AICONN_KEYS_DIR": str(keys),
        "AICONN_LISTEN_HOST": "127.0.0.1",
        "AICONN_LISTEN_PORT": str(port),
        "AICONN_METRICS_HOST": "127.0.0.1",
        "AICONN_METRICS_PORT": str(metrics),
        "AICONN_RATE_RPS": "100000",
        "AICONN_RATE_TPM": "1000000000",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    command = [sys.executable, "-c", "from aiconn.gateway.server import run; run()"]
    return command, env, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics}/metrics"


def baseline_gateway(
    code: str, upstream: str, keys: Path
) -> tuple[list[str], dict[str, str], str, str]:
    """An earlier aiconn (a source tree, e.g. from `git archive`; one with its metrics on their own
    port, as since issue 14), for a before/after in one run."""
    command, env, url, metrics = aiconn_gateway(upstream, keys)
    return command, {**env, "PYTHONPATH": code}, url, metrics


def litellm_proxy(
    executable: str, upstream: str, workdir: Path
) -> tuple[list[str], dict[str, str], str, str]:
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": f"{upstream}/v1",
                            "api_key": "x",
                        },
                    }
                ],
                "litellm_settings": {"drop_params": True, "telemetry": False},
            }
        )
    )
    command = [executable, "--config", str(config), "--port", str(port), "--num_workers", "1"]
    env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    url = f"http://127.0.0.1:{port}"
    return command, env, url, f"{url}/health/liveliness"


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    pid: int | None
    metrics: str | None
    """An aiconn gateway's metrics URL, to check its metering."""


@dataclass(frozen=True)
class Point:
    target: str
    stream: bool
    concurrency: int
    requests: int
    per_second: float
    ttft_p50: float | None
    ttft_p99: float | None
    latency_p50: float
    latency_p99: float
    cpu_ms: float | None
    errors: int
    metered: str
    """aiconn only: whether the tokens it metered equal the upstream's usage over the point."""
    load: float
    """The machine's 1-minute load average at the end of the point."""


def metered_tokens(metrics_url: str) -> tuple[float, float]:
    """(prompt, completion) tokens an aiconn gateway has metered so far."""
    found = {"prompt": 0.0, "completion": 0.0}
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith("aiconn_gateway_tokens_total{"):
            kind = line.split('type="', 1)[1].split('"', 1)[0]
            found[kind] = float(line.rsplit(" ", 1)[1])
    return found["prompt"], found["completion"]


def check_metering(
    metrics_url: str, before: tuple[float, float], requests: int, *, chunks: int
) -> str:
    """'exact' when the tokens metered over a point equal the fake upstream's usage for every
    request served (the gateway settles just after the client has its last byte: poll)."""
    expected = (FAKE_PROMPT_TOKENS * requests, chunks * requests)
    deadline = time.monotonic() + 5
    while True:
        now = metered_tokens(metrics_url)
        got = (now[0] - before[0], now[1] - before[1])
        if got == expected:
            return "exact"
        if time.monotonic() > deadline:
            return f"off: {got[0]:.0f}/{got[1]:.0f} for {expected[0]}/{expected[1]}"
        time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_point(
    target: Target, *, stream: bool, concurrency: int, seconds: float, chunks: int
) -> Point:
    before = cpu_seconds(target.pid) if target.pid else 0.0
    tokens_before = metered_tokens(target.metrics) if target.metrics else None
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "--load",
            f"{target.url}/v1/chat/completions",
            str(int(stream)),
            str(concurrency),
            str(seconds),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cpu = cpu_seconds(target.pid) - before if target.pid else None
    result = json.loads(output)
    latencies, ttfts = result["latency"], result["ttft"]
    count = len(latencies)
    served = count + result["warm"]
    metered = "-"
    if target.metrics and tokens_before is not None:
        metered = (
            check_metering(target.metrics, tokens_before, served, chunks=chunks)
            if result["errors"] == 0
            else "errors"
        )
    return Point(
        target=target.name,
        stream=stream,
        concurrency=concurrency,
        requests=count,
        per_second=count / result["elapsed"],
        ttft_p50=percentile(ttfts, 0.5) if stream else None,
        ttft_p99=percentile(ttfts, 0.99) if stream else None,
        latency_p50=percentile(latencies, 0.5),
        latency_p99=percentile(latencies, 0.99),
        # The warm-up is in the CPU time too: divide by all requests the proxy served.
        cpu_ms=None if cpu is None else 1000 * cpu / max(1, served),
        errors=result["errors"],
        metered=metered,
        load=os.getloadavg()[0],
    )


def table(points: list[Point]) -> str:
    ms = lambda v: "-" if v is None else f"{1000 * v:.1f}"  # noqa: E731
    lines = [
        "| mode | concurrency | target | req/s | TTFT p50 / p99 (ms) | latency p50 / p99 (ms) "
        "| CPU per request (ms) | errors | tokens metered = usage | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {'stream' if p.stream else 'whole'} | {p.concurrency} | {p.target} "
            f"| {p.per_second:.1f} | {ms(p.ttft_p50)} / {ms(p.ttft_p99)} "
            f"| {ms(p.latency_p50)} / {ms(p.latency_p99)} "
            f"| {'-' if p.cpu_ms is None else f'{p.cpu_ms:.2f}'} | {p.errors} "
            f"| {p.metered} | {p.load:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--gap-ms", type=float, default=5.0)
    parser.add_argument("--litellm", help="the `litellm` executable of its own environment")
    parser.add_argument("--modes", nargs="+", default=["stream", "whole"])
    parser.add_argument("--rounds", type=int, default=1, help="repeat every point this often")
    parser.add_argument(
        "--proxy-nice",
        type=int,
        default=0,
        help="scheduling priority of every proxy (negative: ahead of the load generator and the "
        "fake upstream, as a sidecar with its own CPU request would be; needs root)",
    )
    parser.add_argument(
        "--baseline", help="source tree of an earlier aiconn, measured as `aiconn (before)`"
    )
    parser.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake, chunks=args.chunks, gap=args.gap_ms / 1000)
        return
    if args.load:
        url, stream, concurrency, seconds = args.load
        result = asyncio.run(
            load(url, stream=stream == "1", concurrency=int(concurrency), seconds=float(seconds))
        )
        print(json.dumps(result))
        return

    fake_port = free_port()
    upstream = f"http://127.0.0.1:{fake_port}"
    points: list[Point] = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        (workdir / "keys").write_text(hash_key(KEY) + "\n")
        fake = [
            sys.executable,
            __file__,
            "--serve-fake",
            str(fake_port),
            "--chunks",
            str(args.chunks),
            "--gap-ms",
            str(args.gap_ms),
        ]
        stack.enter_context(started(fake, {}, f"{upstream}/health", "the fake upstream"))
        targets = [Target("direct", upstream, None, None)]
        command, env, url, ready = aiconn_gateway(upstream, workdir)
        pid = stack.enter_context(started(command, env, ready, "aiconn", nice=args.proxy_nice))
        targets.append(Target("aiconn", url, pid, ready))
        if args.baseline:
            command, env, url, ready = baseline_gateway(args.baseline, upstream, workdir)
            pid = stack.enter_context(
                started(command, env, ready, "the baseline", nice=args.proxy_nice)
            )
            targets.append(Target("aiconn (before)", url, pid, ready))
        if args.litellm:
            command, env, url, ready = litellm_proxy(args.litellm, upstream, workdir)
            pid = stack.enter_context(started(command, env, ready, "LiteLLM", nice=args.proxy_nice))
            targets.append(Target("LiteLLM", url, pid, None))
        for target in targets:
            # One-off costs (lazy imports, first connections) are not any point's.
            run_point(target, stream=True, concurrency=8, seconds=1, chunks=args.chunks)
        print(f"load average at start: {os.getloadavg()}", file=sys.stderr, flush=True)
        for round_ in range(args.rounds):
            for mode in args.modes:
                for concurrency in args.concurrency:
                    # Rotated each round, so no target always runs right after another.
                    shift = round_ % len(targets)
                    for target in targets[shift:] + targets[:shift]:
                        point = run_point(
                            target,
                            stream=mode == "stream",
                            concurrency=concurrency,
                            seconds=args.seconds,
                            chunks=args.chunks,
                        )
                        points.append(point)
                        print(table([point]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(points))


if __name__ == "__main__":
    main()
