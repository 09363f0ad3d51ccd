"""Responses of the Portal da Transparência kept for a while, so a second investigation of
the same body and period does not spend the API's quota again.

The client sees only :class:`ResponseCache`; the server keeps the texts in its records
(``records.response_cache.RecordsResponseCache``: SQLite, or the Redis every node shares),
a client used on its own in this process's memory (``MemoryResponseCache``). Keys never
hold the API key: they are the endpoint and its parameters.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import trio

__all__ = ["MemoryResponseCache", "ResponseCache"]


class ResponseCache(Protocol):
    """Response texts by request, each with its own expiry. A cache that cannot answer
    answers ``None`` (a miss): the API is asked instead, never an error."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, ttl: float) -> None: ...


class MemoryResponseCache:
    """In this process only; the oldest entries go first past ``max_entries``."""

    def __init__(self, *, max_entries: int = 4096, clock: Callable[[], float] = trio.current_time) -> None:
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def get(self, key: str) -> str | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return value

    async def put(self, key: str, value: str, ttl: float) -> None:
        if ttl <= 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + ttl, value)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
