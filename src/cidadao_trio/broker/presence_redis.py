"""Presence counts shared by every node in the broker's Redis (PROTOCOL.md §9).

Each node writes only its own counts: a hash per topic (``presence:<topic>``, a field per
node) and the set of topics it has written (``presence-node:<node>``). A sorted set
(``presence-nodes``) scores each node by when it stops counting; a node renews its score
at every report, so the total of a topic is the sum of the fields whose node is still
scored in the future, and a node that dies without a word stops counting once its score
passes. Whoever reports next removes a dead node's fields. A node found expired at its
own report (Redis away longer than the timeout) writes all its counts again.

So that a tick costs what changed, not how many topics a node follows, every write of a
topic is logged in ``presence-changes`` (a sorted set: topic by the sequence number,
``presence-seq``, of its last change); each node reads the totals of the topics changed
since the sequence number it read last, and everything only when it is too far behind
(``KEPT_CHANGES``) or Redis lost the log.

Scores are wall-clock seconds (``clock``), so every node's clock is compared; the timeout
(the WebSocket heartbeat's, tens of seconds) dwarfs the skew of synchronised clocks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence

from coredis.commands import Script

from .redis import RedisBroker

KEPT_CHANGES = 100_000  # sequence numbers of change kept; a reader further behind reads everything

# Shared by the scripts that write: log a topic's change under a new sequence number.
_LOG_CHANGE = """
local seq = nil
local function changed(topic)
    if not seq then
        seq = redis.call('INCR', KEYS[4])
        redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (seq - KEPT))
    end
    redis.call('ZADD', KEYS[3], seq, topic)
end
""".replace("KEPT", str(KEPT_CHANGES))

# KEYS: presence-nodes, this node's topic set, presence-changes, presence-seq. ARGV:
# prefix, node, now, expiry, full (1|0), then topic, count pairs (count 0: no longer
# counted here). Returns 0, writing nothing, when the node had expired and ``full`` is 0:
# the caller then sends every count.
REPORT: Script[str] = Script(script=_LOG_CHANGE + """
local prefix, node, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])) do
    if gone ~= node then
        local topics = prefix .. 'presence-node:' .. gone
        for _, topic in ipairs(redis.call('SMEMBERS', topics)) do
            redis.call('HDEL', prefix .. 'presence:' .. topic, gone)
            changed(topic)
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
        changed(topic)
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
    changed(ARGV[i])
end
redis.call('ZADD', KEYS[1], ARGV[4], node)
return 1
""")

# KEYS: presence-nodes, presence-changes, presence-seq. ARGV: prefix, now, since (-1:
# none), topics. Returns the sequence number now, then topic, total pairs for the topics
# given and those changed after ``since`` (the sum over live nodes), or, when ``since``
# cannot be honoured (too old, or ahead of a log Redis lost), the number and "*".
TOTALS: Script[str] = Script(script="""
local prefix, now, since = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local topics, seen = {}, {}
for i = 4, #ARGV do
    if not seen[ARGV[i]] then seen[ARGV[i]] = true; topics[#topics + 1] = ARGV[i] end
end
if since >= 0 then
    if since > seq or seq - since >= KEPT then return {seq, '*'} end
    for _, topic in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. since, '+inf')) do
        if not seen[topic] then seen[topic] = true; topics[#topics + 1] = topic end
    end
end
local live = {}
local out = {seq}
for _, topic in ipairs(topics) do
    local fields = redis.call('HGETALL', prefix .. 'presence:' .. topic)
    local total = 0
    for j = 1, #fields, 2 do
        local node = fields[j]
        if live[node] == nil then
            local score = redis.call('ZSCORE', KEYS[1], node)
            live[node] = (score and tonumber(score) >= now) or false
        end
        if live[node] then total = total + tonumber(fields[j + 1]) end
    end
    out[#out + 1] = topic
    out[#out + 1] = total
end
return out
""".replace("KEPT", str(KEPT_CHANGES)))

# KEYS: as REPORT's. ARGV: prefix, node. A node that leaves in good order stops counting
# at once.
WITHDRAW: Script[str] = Script(script=_LOG_CHANGE + """
for _, topic in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    redis.call('HDEL', ARGV[1] .. 'presence:' .. topic, ARGV[2])
    changed(topic)
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
        self._nodes, self._changes, self._seq = (
            broker.key(name) for name in ("presence-nodes", "presence-changes", "presence-seq")
        )
        self._keys = [self._nodes, broker.key("presence-node:" + self.node), self._changes, self._seq]
        self._since = -1  # the change log's sequence number this node has read up to

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
        return (await self._totals(topics, -1))[1] or {} if topics else {}

    async def read(self, topics: Sequence[str], everything: Callable[[], Sequence[str]]) -> dict[str, int]:
        """The totals of ``topics`` and of every topic changed since the last read (all of
        ``everything`` the first time, or after falling behind the log)."""
        totals = None
        if self._since >= 0:
            seq, totals = await self._totals(topics, self._since)
        if totals is None:
            seq, totals = await self._totals(sorted({*topics, *everything()}), -1)
        self._since = seq
        return totals or {}

    async def _totals(self, topics: Sequence[str], since: int) -> tuple[int, dict[str, int] | None]:
        args = [self._prefix, repr(self._clock()), str(since), *topics]
        keys = [self._nodes, self._changes, self._seq]
        raw = await self._broker.call(lambda c, _: TOTALS(keys=keys, args=args, client=c))
        if len(raw) == 2 and raw[1] == "*":
            return int(raw[0]), None
        return int(raw[0]), {str(t): int(n) for t, n in zip(raw[1::2], raw[2::2], strict=True)}

    async def withdraw(self) -> None:
        await self._broker.call(lambda c, _: WITHDRAW(keys=self._keys, args=[self._prefix, self.node], client=c))
