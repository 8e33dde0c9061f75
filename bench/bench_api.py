"""Benchmark: latency and throughput of the period-report endpoint of the reporting API.

A real control plane holds 1,000 AIInferenceSLAs (with statuses); the ledger holds a year of
settled history for each (12 monthly settlements, 4 transfers each), on SQLite and on a real
PostgreSQL. The API runs as `aiconn.api.server.run` in its own process (static-token auth, SLAs
from the watch-free cache: one cluster-wide list every 30 s, none per request). A load generator
in another process sends an open-loop stream at a fixed rate (latency measured from each
request's scheduled start, so a stall is not hidden by the generator waiting), then a closed loop
with 16 clients to find the most requests per second.

    .venv/bin/python bench/bench_api.py --slas 1000 --months 12 --rate 200 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiconn.devstack.controlplane import ControlPlane  # noqa: E402
from aiconn.devstack.postgres import PostgresServer  # noqa: E402
from aiconn.devstack.processes import ProcessGroup, free_port  # noqa: E402
from aiconn.store.ledger import Ledger  # noqa: E402
from tests.seeding import create_sla, settle_history  # noqa: E402

TOKEN = "bench-token"
OPEN_LOOP_THREADS = 64
NAMESPACES = 20


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _open_loop(url: str, paths: list[str], rate: float, seconds: float, out: Any) -> None:
    """Send `rate` requests per second for `seconds`; latency from each scheduled start."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    # Clients exist before the clock starts: building one (an SSL context, even for http) takes
    # tens of ms, which a first version counted as the API's latency (its p90 was 0.9 s at 100/s).
    clients: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
    for _ in range(OPEN_LOOP_THREADS):
        clients.put(httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}))
    start = time.perf_counter() + 0.5

    def one(i: int) -> None:
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        client = clients.get()
        try:
            response = client.get(paths[i % len(paths)])
        finally:
            clients.put(client)
        elapsed = time.perf_counter() - scheduled
        with lock:
            latencies.append(elapsed)
            if response.status_code != 200:
                errors.append(response.status_code)

    with ThreadPoolExecutor(max_workers=OPEN_LOOP_THREADS) as pool:
        list(pool.map(one, range(total)))
    wall = time.perf_counter() - start
    out.put({"requests": total, "latencies": latencies, "errors": errors, "wall": wall})


def _closed_loop(url: str, paths: list[str], clients: int, seconds: float, out: Any) -> None:
    """`clients` callers back to back for `seconds`: the most the API serves."""
    counts = [0] * clients
    deadline = time.perf_counter() + seconds

    def caller(k: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            i = k
            while time.perf_counter() < deadline:
                c.get(paths[i % len(paths)]).raise_for_status()
                counts[k] += 1
                i += clients

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"requests": sum(counts), "wall": seconds})


def _in_process(target: Any, *args: Any) -> dict[str, Any]:
    queue: Any = multiprocessing.Queue()
    proc = multiprocessing.Process(target=target, args=(*args, queue))
    proc.start()
    result: dict[str, Any] = queue.get()
    proc.join()
    return result


def _seed_ledger(url: str, slas: list[tuple[str, str, str, int]], months: int) -> float:
    ledger = Ledger.open(url)
    began = time.perf_counter()
    now = datetime.now(UTC)

    def settle(entry: tuple[str, str, str, int]) -> None:
        ns, name, uid, index = entry
        settle_history(ledger, sla_uid=uid, namespace=ns, name=name, tenant=ns, index=index,
                       months=months, now=now)  # fmt: skip

    workers = 1 if url.startswith("sqlite") else 4
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(settle, slas))
    ledger.close()
    return time.perf_counter() - began


def _serve(
    state: Path, cp: ControlPlane, ledger_url: str, workers: int = 1
) -> tuple[subprocess.Popen[bytes], str]:
    tokens = state / "tokens.csv"
    tokens.write_text(f"{TOKEN},bench,*\n")
    port = free_port()
    env = {
        **os.environ,
        "AICONN_API_LEDGER_URL": ledger_url,
        "AICONN_API_AUTH_MODE": "static",
        "AICONN_API_STATIC_TOKENS_FILE": str(tokens),
        "AICONN_API_KUBECONFIG": str(cp.kubeconfig),
        "AICONN_API_PORT": str(port),
        "AICONN_API_SLA_CACHE_SECONDS": os.environ.get("BENCH_SLA_CACHE_SECONDS", "30"),
        "AICONN_API_WORKERS": str(workers),
    }
    code = (
        "from aiconn.api.server import run; from aiconn.api.settings import ApiSettings;"
        " run(ApiSettings())"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("API did not become ready")


def _measure(
    state: Path,
    cp: ControlPlane,
    ledger_url: str,
    paths: list[str],
    rate: float,
    seconds: float,
    workers: int,
) -> dict[str, Any]:
    proc, api_url = _serve(state, cp, ledger_url, workers)
    try:
        first = httpx.get(api_url + paths[0], headers={"Authorization": f"Bearer {TOKEN}"})
        assert first.json()["source"] == "ledger"
        # Warm-up (connections, the threadpool, SQLAlchemy's statement cache), then the
        # measured open loop: without it the first second's queue showed up as the p90.
        warm = _in_process(_closed_loop, api_url, paths, 16, 3.0)
        run = _in_process(_open_loop, api_url, paths, rate, seconds)
        lat = [x * 1000 for x in run["latencies"]]
        saturation = _in_process(_closed_loop, api_url, paths, 16, 10.0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {
        "warmup_requests": warm["requests"],
        "requests": run["requests"],
        "errors": len(run["errors"]),
        "achieved_rps": round(run["requests"] / run["wall"], 1),
        "p50_ms": round(_percentile(lat, 0.50), 2),
        "p90_ms": round(_percentile(lat, 0.90), 2),
        "p99_ms": round(_percentile(lat, 0.99), 2),
        "max_ms": round(max(lat), 2),
        "max_rps_16_clients": round(saturation["requests"] / saturation["wall"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slas", type=int, default=1000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="uvicorn worker counts to compare"
    )
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="aiconn-bench-api-"))
    state.chmod(0o755)  # PostgreSQL runs as `postgres` and must traverse it
    cp = ControlPlane(state_dir=state / "cp").start(crds=sorted((ROOT / "crds").glob("*.yaml")))
    pg_group = ProcessGroup(state / "postgres")
    results: dict[str, Any] = {"slas": args.slas, "months": args.months, "rate": args.rate}
    try:
        api = cp.api_client()
        from kubernetes import client

        namespaces = [f"bench-{i}" for i in range(NAMESPACES)]
        for ns in namespaces:
            client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        began = time.perf_counter()

        def make(index: int) -> tuple[str, str, str, int]:
            ns, name = namespaces[index % NAMESPACES], f"sla-{index}"
            return ns, name, create_sla(api, ns, name, tenant=ns, index=index), index

        with ThreadPoolExecutor(max_workers=8) as pool:
            slas = list(pool.map(make, range(args.slas)))
        results["seed_slas_seconds"] = round(time.perf_counter() - began, 1)
        rng = random.Random(7)
        now = datetime.now(UTC)
        months = []
        for back in range(1, args.months + 1):
            index = now.year * 12 + now.month - 1 - back
            months.append(f"{index // 12:04d}-{index % 12 + 1:02d}")
        paths = [
            f"/v1/namespaces/{ns}/slas/{name}/report?period={rng.choice(months)}"
            for ns, name, _, _ in rng.sample(slas, len(slas))
        ]
        for backend in args.backends.split(","):
            if backend == "sqlite":
                url = f"sqlite:///{state / 'ledger.db'}"
            else:
                pg = PostgresServer(group=pg_group, data_dir=state / "postgres" / "data").start()
                url = pg.url
            seed_seconds = _seed_ledger(url, slas, args.months)
            for workers in args.workers:
                key = backend if workers == 1 else f"{backend}, {workers} workers"
                results[key] = {
                    "seed_ledger_seconds": round(seed_seconds, 1),
                    **_measure(state, cp, url, paths, args.rate, args.seconds, workers),
                }
                print(json.dumps({key: results[key]}), flush=True)
        api.close()
    finally:
        pg_group.stop_all()
        cp.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
