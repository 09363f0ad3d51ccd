"""Presence counts shared by every node in the broker's Redis (PROTOCOL.md §9).

Each node writes only its own counts: a hash per topic (``presence:<topic>``, a field per
node) and the set of topics it has written (``presence-node:<node>``). A sorted set
(``presence-nodes``) scores each node by when it stops counting; a node renews its score
at every report, so the total of a topic is the sum of the fields whose node is still
scored in the future, and a node that dies without a word stops counting once its score
passes. Whoever reports next removes a dead node's fields. A node found expired at its
own report (Redis away longer than the timeout) writes all its counts again.

Scores are wall-clock seconds (``clock``), so every node's clock is compared; the timeout
(the WebSocket heartbeat's, tens of seconds) dwarfs the skew of synchronised clocks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence

from coredis.commands import Script

from .redis import RedisBroker

# KEYS: presence-nodes, this node's topic set. ARGV: prefix, node, now, expiry, full (1|0),
# then topic, count pairs (count 0: no longer counted here). Returns 0, writing nothing,
# when the node had expired and ``full`` is 0: the caller then sends every count.
REPORT: Script[str] = Script(script="""
local prefix, node, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])) do
    if gone ~= node then
        local topics = prefix .. 'presence-node:' .. gone
        for _, topic in ipairs(redis.call('SMEMBERS', topics)) do
            redis.call('HDEL', prefix .. 'presence:' .. topic, gone)
        end
        redis.call('DEL', topics)
        redis.call('ZREM', KEYS[1], gone)
    end
end
local score = redis.call('ZSCORE', KEYS[1], node)
local live = score and tonumber(score) >= now
if ARGV[5] == '1' then
    for _, topic in ipairs(redis.call('SMEMBERS', KEYS[2])) do
        redis.call('HDEL', prefix .. 'presence:' .. topic, node)
    end
    redis.call('DEL', KEYS[2])
elseif not live then
    return 0
end
for i = 6, #ARGV, 2 do
    local key = prefix .. 'presence:' .. ARGV[i]
    if ARGV[i + 1] == '0' then
        redis.call('HDEL', key, node)
        redis.call('SREM', KEYS[2], ARGV[i])
    else
        redis.call('HSET', key, node, ARGV[i + 1])
        redis.call('SADD', KEYS[2], ARGV[i])
    end
end
redis.call('ZADD', KEYS[1], ARGV[4], node)
return 1
""")

# KEYS: presence-nodes. ARGV: prefix, now, topics. The sum over live nodes, per topic.
TOTALS: Script[str] = Script(script="""
local prefix, now = ARGV[1], tonumber(ARGV[2])
local live = {}
local totals = {}
for i = 3, #ARGV do
    local fields = redis.call('HGETALL', prefix .. 'presence:' .. ARGV[i])
    local total = 0
    for j = 1, #fields, 2 do
        local node = fields[j]
        if live[node] == nil then
            local score = redis.call('ZSCORE', KEYS[1], node)
            live[node] = (score and tonumber(score) >= now) or false
        end
        if live[node] then total = total + tonumber(fields[j + 1]) end
    end
    totals[#totals + 1] = total
end
return totals
""")

# KEYS: presence-nodes, this node's topic set. ARGV: prefix, node. A node that leaves in
# good order stops counting at once.
WITHDRAW: Script[str] = Script(script="""
for _, topic in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    redis.call('HDEL', ARGV[1] .. 'presence:' .. topic, ARGV[2])
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[2])
return 1
""")


class RedisTally:
    """:class:`~cidadao_trio.session.presence.Tally` over the broker's Redis."""

    shared = True

    def __init__(
        self, broker: RedisBroker, timeout: float, *, node: str = "", clock: Callable[[], float] = time.time
    ) -> None:
        self._broker = broker
        self._timeout = timeout
        # A restarted node is a new one: its previous life's counts expire on their own.
        self.node = f"{node or 'node'}/{os.urandom(4).hex()}"
        self._clock = clock
        self._prefix = broker.key("")
        self._keys = [broker.key("presence-nodes"), broker.key("presence-node:" + self.node)]

    async def report(self, changed: Mapping[str, int], everything: Callable[[], Mapping[str, int]]) -> None:
        """Write this node's changed counts and renew its heartbeat (all counts if it had expired)."""
        if not await self._report(changed, full=False):
            await self._report(everything(), full=True)

    async def _report(self, counts: Mapping[str, int], *, full: bool) -> bool:
        now = self._clock()
        args = [self._prefix, self.node, repr(now), repr(now + self._timeout), "1" if full else "0"]
        for topic, count in counts.items():
            args += [topic, str(count)]
        written = await self._broker.call(lambda c, _: REPORT(keys=self._keys, args=args, client=c))
        return bool(int(written))

    async def totals(self, topics: Sequence[str]) -> dict[str, int]:
        if not topics:
            return {}
        args = [self._prefix, repr(self._clock()), *topics]
        raw = await self._broker.call(lambda c, _: TOTALS(keys=self._keys[:1], args=args, client=c))
        return {topic: int(total) for topic, total in zip(topics, raw, strict=True)}

    async def withdraw(self) -> None:
        await self._broker.call(lambda c, _: WITHDRAW(keys=self._keys, args=[self._prefix, self.node], client=c))
