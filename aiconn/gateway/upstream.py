"""The one long-lived HTTP client session to vLLM.

aiohttp's client keeps idle connections in a per-host list and hands one out without scanning the
pool, and reads without a cancel scope per read; the httpx/httpcore stack it replaces walked every
pooled connection at each request start and end, which made the gateway's CPU per request grow
with concurrency (issue 14). The session never decompresses, never adds headers of its own, and
is opened inside the serving event loop. Transport failures become the gateway's own three
errors, so no library exception leaks past this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from yarl import URL

Headers = list[tuple[bytes, bytes]]


class UpstreamError(Exception):
    """vLLM could not be reached or did not finish its answer."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made."""


class UpstreamTimeout(UpstreamError):
    """Connected, but vLLM did not answer (or send its next bytes) in time."""


class Upstream:
    """vLLM at `base_url`; `open` in the serving loop before use, `close` after."""

    def __init__(self, base_url: str, *, timeout_seconds: float) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_seconds, sock_read=timeout_seconds
        )
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=None),
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, target: str) -> URL:
        return URL(self._base + target, encoded=True)

    @asynccontextmanager
    async def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None,
        headers: Headers,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The upstream's response, open for reading; closed (aborting vLLM's work) on exit
        unless read to its end."""
        assert self._session is not None, "Upstream.open() was not awaited"
        timeout = aiohttp.ClientTimeout(total=timeout_seconds) if timeout_seconds else self._timeout
        try:
            response = await self._session.request(
                method,
                self._url(target),
                data=body,
                headers=[
                    (name.decode("latin-1"), value.decode("latin-1")) for name, value in headers
                ],
                allow_redirects=False,
                timeout=timeout,
            )
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnreachable(type(exc).__name__) from exc
        except TimeoutError as exc:
            raise UpstreamTimeout("no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(type(exc).__name__) from exc
        try:
            yield response
        except TimeoutError as exc:
            raise UpstreamTimeout("no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(type(exc).__name__) from exc
        finally:
            if response.content.at_eof():
                response.release()
            else:
                response.close()

    async def fetch(
        self, method: str, target: str, *, body: bytes | None, headers: Headers, timeout: float
    ) -> tuple[int, Headers, bytes]:
        """A whole answer: status, raw headers, body."""
        async with self.request(
            method, target, body=body, headers=headers, timeout_seconds=timeout
        ) as response:
            return response.status, list(response.raw_headers), await response.read()

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


async def read_chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive."""
    while True:
        data = await response.content.readany()
        if not data:
            return
        yield data
