"""A small thread-safe LRU cache whose entries expire, for authentication and authorization answers.

Every request would otherwise cost the API server a TokenReview and a SubjectAccessReview. A few
seconds of reuse removes almost all of them while a revoked token or RoleBinding still stops
working within seconds. The size bound keeps a flood of random tokens from growing memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """At most `size` entries, each reused for `seconds` after it was stored."""

    def __init__(
        self, *, size: int, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = size
        self._seconds = seconds
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The live value for `key`, or None when absent or expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Store `value`; evict the least recently used entry when full."""
        if self._seconds <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + self._seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
