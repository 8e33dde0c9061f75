"""The token gateway served from a thread of the current process, for tests and the demo.

In a cluster the gateway is a sidecar process; locally, starting it in a thread of the test (or
`aiconn dev`) process keeps a whole measured stack in one place without an extra interpreter per
SLA, while still serving real HTTP on loopback that Prometheus scrapes. It is the same
`create_apps` the sidecar runs, configured by the same `GatewaySettings`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx

from aiconn.contracts.gateway_pod import KEYS_FILE, hash_key
from aiconn.devstack.processes import free_port
from aiconn.gateway.allowance import AllowanceSource
from aiconn.gateway.server import create_apps, servers
from aiconn.gateway.serving import serve_all
from aiconn.gateway.settings import GatewaySettings


def write_keys(directory: Path, *keys: str) -> Path:
    """A key directory as the mounted Secret lays it out: a `keys` file of sha256 digests."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / KEYS_FILE).write_text("".join(hash_key(key) + "\n" for key in keys))
    return directory


class GatewayThread:
    """One gateway on 127.0.0.1 in a daemon thread; use it as a context manager.

    It listens on `port`, or on a free port when None (the settings' listen address is not
    used); `url` is where. Its metrics port is another free port, `metrics_url`.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        port: int | None = None,
        allowance: AllowanceSource | None = None,
    ) -> None:
        port = port or free_port()
        metrics_port = free_port()
        self.settings = settings.model_copy(
            update={
                "listen_host": "127.0.0.1",
                "listen_port": port,
                "metrics_host": "127.0.0.1",
                "metrics_port": metrics_port,
            }
        )
        self._servers = servers(
            create_apps(self.settings, allowance=allowance), self.settings, log_level="warning"
        )
        self._thread = threading.Thread(
            target=lambda: asyncio.run(serve_all(self._servers)), name="gateway", daemon=True
        )
        self.url = f"http://127.0.0.1:{port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}"

    def start(self, *, timeout: float = 30) -> GatewayThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not all(server.started for server, _ in self._servers):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"gateway at {self.url} did not start within {timeout:g} s")
            time.sleep(0.05)
        httpx.get(f"{self.metrics_url}/metrics", timeout=5).raise_for_status()
        return self

    def stop(self) -> None:
        for server, _ in self._servers:
            server.should_exit = True
        self._thread.join(timeout=15)

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
