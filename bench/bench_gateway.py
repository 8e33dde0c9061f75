"""What the token gateway costs: TTFT of streams sent to vLLM directly and through the gateway.

Both paths are measured in one run against the same vLLM, in alternating rounds of `concurrency`
streams, so drift (warm-up, a busy machine) falls on both alike. The gateway runs as its own
process, as the sidecar does. TTFT is measured at the client: from sending the request to the
first content-bearing chunk. Prints a markdown table.

    python bench/bench_gateway.py --vllm-url http://127.0.0.1:8001 --model tiny \\
        --concurrency 16 --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from aiconn.gateway.keys import hash_key

KEY = "sk-bench"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def gateway(upstream: str, model: str) -> Iterator[tuple[str, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as keys:
        (Path(keys) / "keys").write_text(hash_key(KEY) + "\n")
        env = {
            **os.environ,
            "AICONN_UPSTREAM": upstream,
            "AICONN_MODEL": model,
            "AICONN_SLA": "bench",
            "AICONN_NAMESPACE": "bench",
            "AICONN_KEYS_DIR": keys,
            "AICONN_LISTEN_HOST": "127.0.0.1",
            "AICONN_LISTEN_PORT": str(port),
            "AICONN_RATE_RPS": "100000",
            "AICONN_RATE_TPM": "1000000000",
        }
        process = subprocess.Popen(
            [sys.executable, "-c", "from aiconn.gateway.server import run; run()"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("the gateway did not become healthy")
                time.sleep(0.1)
            yield url, process.pid
        finally:
            process.terminate()
            process.wait(timeout=10)


async def ttft(client: httpx.AsyncClient, url: str, body: dict[str, object]) -> float:
    """Seconds to the first token chunk after the role chunk; the stream is read to its end.

    A token of a random tiny model may decode to "" (half a UTF-8 character), so the bench
    times the first token, not the first visible text; both paths are timed alike.
    """
    started = time.perf_counter()
    first: float | None = None
    async with client.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[len("data: ") :]).get("choices") or []
                if any("role" not in (choice.get("delta") or {}) for choice in choices):
                    first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("a stream ended without a token")
    return first


def percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


async def measure(
    direct: str, proxied: str, *, model: str, concurrency: int, rounds: int, max_tokens: int
) -> dict[str, list[float]]:
    body: dict[str, object] = {
        "model": model,
        "stream": True,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hello world"}],
    }
    results: dict[str, list[float]] = {"direct": [], "gateway": []}
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        for url in (direct, proxied):  # warm both paths
            await asyncio.gather(*(ttft(client, url, body) for _ in range(concurrency)))
        for _ in range(rounds):
            for name, url in (("direct", direct), ("gateway", proxied)):
                results[name] += await asyncio.gather(
                    *(ttft(client, url, body) for _ in range(concurrency))
                )
    return results


def table(results: dict[str, list[float]], *, concurrency: int, cpu_per_stream: float) -> str:
    rows = ["| path | streams | concurrency | TTFT p50 ms | TTFT p99 ms |", "|---|---|---|---|---|"]
    for name, samples in results.items():
        rows.append(
            f"| {name} | {len(samples)} | {concurrency} | "
            f"{percentile(samples, 50) * 1000:.1f} | {percentile(samples, 99) * 1000:.1f} |"
        )
    direct, proxied = results["direct"], results["gateway"]
    rows.append(
        f"| gateway / direct | | | {percentile(proxied, 50) / percentile(direct, 50):.2f}x"
        f" | {percentile(proxied, 99) / percentile(direct, 99):.2f}x |"
    )
    rows.append(f"\nGateway CPU: {cpu_per_stream * 1000:.2f} ms per stream.")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vllm-url", required=True, help="a running vLLM, e.g. http://127.0.0.1:8001"
    )
    parser.add_argument("--model", required=True, help="vLLM's served model name")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    with gateway(args.vllm_url, args.model) as (proxied, pid):
        cpu_before = cpu_seconds(pid)
        results = asyncio.run(
            measure(
                args.vllm_url,
                proxied,
                model=args.model,
                concurrency=args.concurrency,
                rounds=args.rounds,
                max_tokens=args.max_tokens,
            )
        )
        streams = args.concurrency * (args.rounds + 1)  # with the warm-up round
        cpu_per_stream = (cpu_seconds(pid) - cpu_before) / streams
    print(table(results, concurrency=args.concurrency, cpu_per_stream=cpu_per_stream))


if __name__ == "__main__":
    main()
