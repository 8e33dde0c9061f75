"""A fault and latency injector: a TCP proxy between the gateway and vLLM that tests steer.

The SLA engine's claims are about what happens when the path to the model gets slow or breaks,
so tests and the demo put this proxy where the network would be and turn its knobs while load
runs: `delay` holds every byte coming back from vLLM for that many seconds (the first token moves
by exactly that, later tokens keep their pace behind it, like a longer path), and `refuse` drops
new and open connections, which the gateway sees as vLLM being unreachable. It runs its own event
loop in a thread, so blocking test code can drive it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from urllib.parse import urlsplit


class FaultInjector:
    """A proxy on 127.0.0.1 (`port`, 0 for any free one) in front of `upstream_url`; use it as
    a context manager."""

    def __init__(self, upstream_url: str, *, port: int = 0) -> None:
        parts = urlsplit(upstream_url)
        self._port = port
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = 0.0
        """Seconds every byte from the upstream is held back."""
        self.hold_after: Callable[[bytes], bool] | None = None
        """Once a chunk from the upstream matches, the rest of that connection's answer is held
        back (dropped) and the connection stays open until the client closes it: a stream that
        stalls mid-way, whatever the upstream's pace."""
        self._refuse = False
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)
        self.url = ""

    def __enter__(self) -> FaultInjector:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault injector did not start within 10 s")
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    @property
    def refuse(self) -> bool:
        """True: the upstream looks unreachable (connections are closed at once)."""
        return self._refuse

    @refuse.setter
    def refuse(self, value: bool) -> None:
        self._refuse = value
        if value:
            # Open keep-alive connections would otherwise go on reaching the upstream.
            self._loop.call_soon_threadsafe(self._close_open)

    def _close_open(self) -> None:
        for writer in list(self._open):
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", self._port)
        )
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()
        server.close()
        # Connections still open end here, not later in a garbage-collected, closed loop.
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        if self._refuse:
            client_w.close()
            return
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.close()
            return
        self._open.update((client_w, upstream_w))

        client_gone = asyncio.Event()

        async def up() -> None:
            try:
                while data := await client_r.read(65536):
                    upstream_w.write(data)
                    await upstream_w.drain()
                upstream_w.close()
            finally:
                client_gone.set()

        async def down() -> None:
            # Every chunk leaves `delay` after it arrived, in order: holding back only the first
            # bytes would let tokens produced meanwhile catch up.
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def pace() -> None:
                holding = False
                while (item := await queue.get())[1]:
                    if holding:
                        continue
                    await asyncio.sleep(max(0.0, item[0] - loop.time()))
                    client_w.write(item[1])
                    await client_w.drain()
                    holding = self.hold_after is not None and self.hold_after(item[1])
                if holding:
                    await client_gone.wait()
                client_w.close()

            pacer = asyncio.ensure_future(pace())
            while data := await upstream_r.read(65536):
                queue.put_nowait((loop.time() + self.delay, data))
            queue.put_nowait((0.0, b""))
            await pacer

        try:
            await asyncio.gather(up(), down(), return_exceptions=True)
        finally:
            self._open.difference_update((client_w, upstream_w))
            client_w.close()
            upstream_w.close()
