"""The SLA's API keys, as sha256 hashes from the Secret the operator mounts.

The gateway never holds a key in clear: the Secret's `keys` file lists one sha256 hex digest per
line, the presented key is hashed and compared with `hmac.compare_digest` against every stored
digest (no early exit, so timing does not say which one matched). Kubernetes updates a mounted
Secret by swapping a symlink, so the file is re-read when its identity or mtime changes, checked
at most every `check_seconds`. A missing or unreadable file means no key is accepted.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from aiconn.contracts.gateway_pod import KEYS_FILE as KEYS_FILE
from aiconn.contracts.gateway_pod import hash_key as hash_key

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def parse_digests(text: str) -> tuple[str, ...]:
    """Digests from the keys file: one per line, blank lines ignored, malformed lines skipped."""
    digests = []
    for number, line in enumerate(text.splitlines(), start=1):
        digest = line.strip().lower()
        if not digest:
            continue
        if _DIGEST.match(digest):
            digests.append(digest)
        else:
            log.warning("keys file line %d is not a sha256 hex digest; skipped", number)
    return tuple(digests)


class KeyStore:
    """Accepted key digests, reloaded from `<directory>/keys` when the file changes."""

    def __init__(
        self,
        directory: Path,
        *,
        check_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = directory / KEYS_FILE
        self._check_seconds = check_seconds
        self._clock = clock
        self._checked_at: float | None = None
        self._identity: tuple[int, int, int] | None = None
        self._digests: tuple[str, ...] = ()
        self._missing = False

    def accepts(self, key: str | None) -> bool:
        """True when the key's digest is one of the stored digests."""
        self._maybe_reload()
        if not key:
            return False
        presented = hash_key(key)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return matched

    def _maybe_reload(self) -> None:
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._check_seconds:
            return
        self._checked_at = now
        try:
            stat = os.stat(self._path)
        except OSError:
            if not self._missing:
                log.warning("keys file %s is missing: no key is accepted", self._path)
                self._missing = True
            self._identity, self._digests = None, ()
            return
        self._missing = False
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if identity == self._identity:
            return
        try:
            text = self._path.read_text(encoding="utf-8")
        except OSError as exc:
            log.warning("keys file %s unreadable (%s): no key is accepted", self._path, exc)
            self._identity, self._digests = None, ()
            return
        self._identity, self._digests = identity, parse_digests(text)
        log.info("loaded %d key digests from %s", len(self._digests), self._path)
