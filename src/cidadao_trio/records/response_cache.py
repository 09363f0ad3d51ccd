"""The Portal API's response cache, kept in the records: durable and shared like them.

With SQLite the responses survive a restart; with Redis every node reads what another
fetched (``Records.cache``: Redis's own expiry, ``SET ... PX``). A cache is never worth a
wait: a store that does not answer within ``patience`` is a miss, and a write it refuses
is dropped.
"""

from __future__ import annotations

import logging

import trio

from ..broker.base import StoreUnavailable
from ..investigations.portal_cache import ResponseCache
from .base import Records

log = logging.getLogger(__name__)

__all__ = ["RecordsResponseCache"]

PREFIX = "portal:"


class RecordsResponseCache(ResponseCache):
    """:class:`~cidadao_trio.investigations.portal_cache.ResponseCache` over :class:`Records`."""

    def __init__(self, records: Records, *, patience: float = 1.0) -> None:
        self._records = records
        self._patience = patience

    async def get(self, key: str) -> str | None:
        with trio.move_on_after(self._patience):
            try:
                return await self._records.cached(PREFIX + key)
            except (StoreUnavailable, trio.ClosedResourceError):
                return None
        return None

    async def put(self, key: str, value: str, ttl: float) -> None:
        with trio.move_on_after(self._patience):
            try:
                await self._records.cache(PREFIX + key, value, ttl)
            except (StoreUnavailable, trio.ClosedResourceError) as exc:
                log.info("portal cache: not stored (%s)", exc)
