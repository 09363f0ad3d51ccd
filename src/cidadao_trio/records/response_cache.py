"""The Portal API's response cache kept beside the records: shared by every node in Redis.

With ``--store redis`` every node reads and writes ``portal:<request>`` keys with Redis's
own expiry (``SET ... PX``), so a body and period one node fetched is not fetched again by
another. The local stores keep no cache table: their process's memory holds it
(``MemoryResponseCache``), as one process is the only reader. A cache is never worth a
wait: a Redis that does not answer within ``patience`` is a miss, and a write it refuses
is dropped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..broker.base import Broker, StoreUnavailable
from ..broker.local import LocalBroker
from ..investigations.portal_cache import MemoryResponseCache, ResponseCache

if TYPE_CHECKING:  # coredis is imported only where Redis is used
    from ..broker.redis import RedisBroker

log = logging.getLogger(__name__)

__all__ = ["RedisResponseCache", "open_response_cache"]


class RedisResponseCache:
    """:class:`~cidadao_trio.investigations.portal_cache.ResponseCache` in the broker's Redis."""

    def __init__(self, broker: RedisBroker, *, patience: float = 1.0) -> None:
        self._broker = broker
        self._patience = patience

    def _key(self, key: str) -> str:
        return self._broker.key("portal:" + key)

    async def get(self, key: str) -> str | None:
        name = self._key(key)
        with trio.move_on_after(self._patience):
            try:
                value: str | None = await self._broker.call(lambda c, _: c.get(name))
            except (StoreUnavailable, trio.ClosedResourceError):
                return None
            return value
        return None

    async def put(self, key: str, value: str, ttl: float) -> None:
        if ttl <= 0:
            return
        name, expiry = self._key(key), max(1, int(ttl * 1000))
        with trio.move_on_after(self._patience):
            try:
                await self._broker.call(lambda c, _: c.set(name, value, px=expiry))
            except (StoreUnavailable, trio.ClosedResourceError) as exc:
                log.info("portal cache: not stored (%s)", exc)


def open_response_cache(broker: Broker) -> ResponseCache:
    """Redis's for a cluster, this process's memory for the local stores."""
    if isinstance(broker, LocalBroker):
        return MemoryResponseCache()
    from ..broker.redis import RedisBroker

    assert isinstance(broker, RedisBroker), type(broker).__name__
    return RedisResponseCache(broker)
