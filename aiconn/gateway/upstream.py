"""The gateway's HTTP/1.1 client to vLLM: a keep-alive pool of asyncio protocols and httptools.

Why its own client: a profile of the gateway at 64 streams put most of its Python time per relayed
event in the client library (issue 14). httpx/httpcore walked every pooled connection at each
request start and end; aiohttp, which replaced it, still rescheduled a read-timeout timer and went
through a generic stream reader on every chunk, and built a request object, URL, header
multidicts and payload writers per request. Here a request is one pre-formatted write; the
answer's bytes are parsed in `data_received` by httptools (llhttp, in C, as uvicorn uses it) and
handed straight to the one reader waiting for them; the read timeout is one timer per request that
re-arms itself from the time of the last byte, not a timer per chunk.

The pool is a LIFO list of idle connections: the most recently used one is taken first, none is
scanned. An idle connection is not reused after `IDLE_SECONDS`, which stays under vLLM's
(uvicorn's) 5 s keep-alive, so the server does not close it under a new request; should that race
happen anyway (no byte of the answer came back on a reused connection), the request is sent once
more on a new connection. Transport failures become the gateway's own three errors.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast
from urllib.parse import urlsplit

import httptools

Headers = list[tuple[bytes, bytes]]

IDLE_SECONDS = 4.0
"""How long an idle connection is kept for reuse (vLLM's server closes after 5 s)."""
PAUSE_BYTES = 256 * 1024
"""Unread answer bytes beyond which reading from vLLM pauses until the client catches up."""
CONNECT_TIMEOUT_SECONDS = 10.0
SINGLE_WRITE_BYTES = 64 * 1024
"""Request bodies up to this size are copied behind the head and written with it in one call."""


class UpstreamError(Exception):
    """vLLM could not be reached or did not finish its answer."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made."""


class UpstreamTimeout(UpstreamError):
    """Connected, but vLLM did not answer (or send its next bytes) in time."""


class _Closed(UpstreamError):
    """The connection ended before the answer did."""


class _Connection(asyncio.Protocol):
    """One TCP connection to vLLM; it delivers bytes to the response currently using it."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            # Bytes nobody asked for: the connection is out of step, never reuse it.
            self.close()
            return
        response.feed(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None:
            response.lost()
        else:
            self.upstream.forget(self)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamResponse:
    """One request's answer: `head()` for status and headers, then `read_some()` until b"".

    Always `release()` it (in a `finally`): a connection whose answer was read to its end goes
    back to the pool; one that was not is aborted, which makes vLLM abort the request.
    """

    def __init__(
        self, upstream: Upstream, *, request: bytes, body: bytes | None, timeout: float
    ) -> None:
        self._upstream = upstream
        self._loop = upstream.loop
        self._request = request
        self._body = body
        self._timeout = timeout
        self.status = 0
        self.headers: Headers = []
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._head_done = False
        self._complete = False
        self._keep_alive = False
        self._interim = False
        self._delimited = False
        self._received = False
        self._paused = False
        self._reused = False
        self._error: UpstreamError | None = None
        self._connection: _Connection | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0

    # --- reading (the proxy's side) -----------------------------------------------------------

    async def head(self) -> None:
        """Wait for the status and headers (sending once more after a stale keep-alive)."""
        while not self._head_done:
            error = self._error
            if error is not None:
                if isinstance(error, _Closed) and self._reused and not self._received:
                    self._detach(abort=True)
                    self._error = None
                    await self.send(reuse=False)
                    continue
                raise error
            await self._wait()

    def header(self, name: bytes) -> bytes | None:
        """The first header of that (lower-case) name."""
        return next((value for key, value in self.headers if key.lower() == name), None)

    async def read_some(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some); b"" at its end."""
        chunks = self._chunks
        while not chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            await self._wait()
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            connection = self._connection
            if connection is not None and connection.transport is not None:
                connection.transport.resume_reading()
        return data

    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        parts = []
        while data := await self.read_some():
            parts.append(data)
        return b"".join(parts)

    def release(self) -> None:
        """Hand the connection back to the pool when the answer was read whole, else abort it."""
        self._detach(abort=False)

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        await waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- the connection's side ----------------------------------------------------------------

    async def send(self, *, reuse: bool) -> None:
        """Take a connection (an idle one when `reuse`) and write the request on it."""
        connection = self._upstream.idle() if reuse else None
        self._reused = connection is not None
        if connection is None:
            connection = await self._upstream.connect()
        transport = connection.transport
        assert transport is not None
        connection.response = self
        self._connection = connection
        self._parser = httptools.HttpResponseParser(self)
        self._last = self._loop.time()
        self._timer = self._loop.call_at(self._last + self._timeout, self._check_timeout)
        body = self._body
        if body and len(body) > SINGLE_WRITE_BYTES:
            transport.writelines((self._request, body))
        else:
            # One segment: the server reads the request whole on its first wake-up.
            transport.write(self._request + body if body else self._request)

    def feed(self, data: bytes) -> None:
        self._received = True
        self._last = self._loop.time()
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed answer: {type(exc).__name__}"))

    def lost(self) -> None:
        if self._complete or self._error is not None:
            self._wake()
            return
        if self._head_done and not self._delimited:
            # Neither Content-Length nor chunked: the body ends with the connection.
            self._complete = True
        else:
            self._error = _Closed("the connection closed before the answer ended")
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None and not self._complete:
            self._error = error
        connection = self._connection
        if connection is not None:
            connection.abort()
        self._wake()

    def _check_timeout(self) -> None:
        self._timer = None
        if self._complete or self._error is not None:
            return
        now = self._loop.time()
        if self._paused:
            # The client is slow, not vLLM: the clock restarts when reading resumes.
            self._last = now
        elif now - self._last >= self._timeout:
            self._fail(UpstreamTimeout("no answer in time"))
            return
        self._timer = self._loop.call_at(self._last + self._timeout, self._check_timeout)

    def _detach(self, *, abort: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        connection.response = None
        reusable = (
            not abort
            and self._complete
            and self._error is None
            and self._keep_alive
            and not connection.closed
            # An answer that came before the whole request was written: the rest of it would
            # precede the next request on this connection.
            and connection.transport is not None
            and connection.transport.get_write_buffer_size() == 0
        )
        if not reusable:
            connection.abort()
            return
        if self._paused:
            self._paused = False
            assert connection.transport is not None
            connection.transport.resume_reading()
        self._upstream.park(connection)

    # --- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self._delimited = True

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # An interim answer (100 Continue): the real one follows on the same connection.
            self.headers = []
            self._delimited = False
            self._interim = True
            return
        self.status = status
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > PAUSE_BYTES and not self._paused:
            connection = self._connection
            if connection is not None and connection.transport is not None:
                self._paused = True
                connection.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        assert self._parser is not None
        self._keep_alive = self._parser.should_keep_alive()
        self._complete = True
        self._wake()


class Upstream:
    """vLLM at `base_url`; `open` in the serving loop before use, `close` after."""

    def __init__(self, base_url: str, *, timeout_seconds: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL, got {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/").encode()
        self._host_line = b"Host: " + parts.netloc.encode() + b"\r\n"
        self._timeout = timeout_seconds
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "Upstream.open() was not awaited"
        return self._loop

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def send(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None,
        headers: Headers,
        timeout_seconds: float | None = None,
    ) -> UpstreamResponse:
        """Write the request; the answer is read from the returned response, which the caller
        must `release()`. Raises `UpstreamUnreachable` when no connection can be made."""
        lines = [
            method.encode("latin-1"),
            b" ",
            self._prefix,
            target.encode("latin-1"),
            b" HTTP/1.1\r\n",
            self._host_line,
        ]
        for name, value in headers:
            if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
                continue
            lines += (name, b": ", value, b"\r\n")
        if body or method == "POST":
            lines += (b"Content-Length: ", b"%d" % len(body or b""), b"\r\n")
        lines.append(b"\r\n")
        response = UpstreamResponse(
            self, request=b"".join(lines), body=body, timeout=timeout_seconds or self._timeout
        )
        await response.send(reuse=True)
        return response

    async def fetch(
        self, method: str, target: str, *, body: bytes | None, headers: Headers, timeout: float
    ) -> tuple[int, Headers, bytes]:
        """A whole answer within `timeout`: status, raw headers, body."""
        try:
            async with asyncio.timeout(timeout):
                response = await self.send(method, target, body=body, headers=headers)
                try:
                    await response.head()
                    content = await response.read()
                finally:
                    response.release()
        except TimeoutError as exc:
            raise UpstreamTimeout("no answer in time") from exc
        return response.status, response.headers, content

    async def health(self, timeout: float) -> int:
        """`GET /health`'s status; `TimeoutError` or `OSError` when it does not answer."""
        try:
            status, _, _ = await self.fetch(
                "GET", "/health", body=None, headers=[], timeout=timeout
            )
        except UpstreamTimeout as exc:
            raise TimeoutError(str(exc)) from exc
        except UpstreamError as exc:
            raise ConnectionError(str(exc)) from exc
        return status

    # --- the pool -----------------------------------------------------------------------------

    def idle(self) -> _Connection | None:
        """The most recently parked connection still open and fresh, or None."""
        idle = self._idle
        if not idle:
            return None
        now = self.loop.time()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    def park(self, connection: _Connection) -> None:
        connection.idle_since = self.loop.time()
        self._idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        """An idle connection the server closed."""
        if connection in self._idle:
            self._idle.remove(connection)

    async def connect(self) -> _Connection:
        try:
            async with asyncio.timeout(min(self._timeout, CONNECT_TIMEOUT_SECONDS)):
                _, connection = await self.loop.create_connection(
                    lambda: _Connection(self), self._host, self._port, ssl=self._ssl
                )
        except TimeoutError as exc:
            raise UpstreamUnreachable("connect timed out") from exc
        except OSError as exc:
            raise UpstreamUnreachable(type(exc).__name__) from exc
        return connection
