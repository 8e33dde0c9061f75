"""A bounded load generator that keeps its own record of every request it sends.

The SLA engine's numbers come from the gateway's metrics via Prometheus; to check them against
something independent, the load generator measures each request from the client's side (time to
the first content-bearing chunk of a streamed chat completion, and the status) and keeps those
records. It is bounded on purpose: a request budget, a rate and a fixed number of workers, so a
test or the demo never floods a shared machine.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class RequestRecord:
    """One request as the client saw it."""

    started_at: float
    """Wall-clock (Unix) seconds when it was sent."""
    status: int | None
    """HTTP status; None when the connection failed."""
    ttft_s: float | None
    """Seconds to the first content-bearing chunk; None when there was none."""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.ttft_s is not None


def ttft_attainment_percent(records: Sequence[RequestRecord], threshold_s: float) -> float | None:
    """Share of successful requests whose client-side TTFT is at or under `threshold_s`."""
    served = [r.ttft_s for r in records if r.ok and r.ttft_s is not None]
    if not served:
        return None
    return 100.0 * sum(1 for t in served if t <= threshold_s) / len(served)


class LoadGenerator:
    """Sends streamed chat completions to `url` from `workers` threads, at most `rate_rps`
    together, until `max_requests` are sent or `stop()` is called.

    `before_request(i)` runs before the i-th request (0-based) is sent, on the worker's thread;
    with one worker it lets a test change the injected fault request by request.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str,
        api_key: str,
        rate_rps: float = 2.0,
        workers: int = 1,
        max_requests: int = 10_000,
        # Two tokens: a first one to time, a second so the stream has a body after it. Each
        # token costs vLLM's CPU build about 9 ms here (a streamed request took 96 ms of CPU at
        # 8 tokens, 45 at 2), and the SLA's numbers do not depend on how many there are.
        max_tokens: int = 2,
        timeout_s: float = 30.0,
        before_request: Callable[[int], None] | None = None,
    ) -> None:
        if rate_rps <= 0 or workers < 1 or max_requests < 1:
            raise ValueError(
                f"need rate_rps > 0, workers >= 1 and max_requests >= 1, got {rate_rps},"
                f" {workers} and {max_requests}"
            )
        self.url = url.rstrip("/") + "/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": "hello world"}],
            "max_tokens": max_tokens,
            "temperature": 0,
            # A tiny random model may stop before its first visible token without this.
            "ignore_eos": True,
            "stream": True,
        }
        self.interval = 1.0 / rate_rps
        self.max_requests = max_requests
        self.timeout_s = timeout_s
        self.before_request = before_request
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._sent = 0
        self._next_at = 0.0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"loadgen-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> LoadGenerator:
        self._next_at = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[RequestRecord]:
        """Stop sending, wait for requests in flight, and return all records."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)
        return self.records()

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _claim(self) -> int | None:
        """The next request's number once its turn in the rate comes, or None when done."""
        with self._lock:
            if self._sent >= self.max_requests:
                return None
            index, at = self._sent, self._next_at
            self._sent += 1
            self._next_at = max(self._next_at + self.interval, time.monotonic())
        if self._stop.wait(max(0.0, at - time.monotonic())):
            return None
        return index

    def _work(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while (index := self._claim()) is not None:
                if self.before_request is not None:
                    self.before_request(index)
                record = self._send(client)
                with self._lock:
                    self._records.append(record)

    def _send(self, client: httpx.Client) -> RequestRecord:
        started_at = time.time()
        started = time.perf_counter()
        first: float | None = None
        try:
            with client.stream("POST", self.url, json=self.body, headers=self.headers) as response:
                # Read to the end: closing early would cancel the request at the gateway.
                for line in response.iter_lines():
                    if first is None and _has_content(line):
                        first = time.perf_counter() - started
                status: int | None = response.status_code
        except httpx.HTTPError:
            status = None
        return RequestRecord(started_at=started_at, status=status, ttft_s=first)


def _has_content(line: str) -> bool:
    if not line.startswith("data: {"):
        return False
    choices = json.loads(line[len("data: ") :]).get("choices") or []
    return any((choice.get("delta") or {}).get("content") for choice in choices)
