"""Records every node of a cluster shares, in the Redis its broker uses.

Each write is one command or one script, so it is atomic, and safe to retry after a
lost reply (the broker retries while Redis is away): a claimed session keeps its first
owner, an investigation saved twice keeps its place. Only ``next_number`` may skip a
number on such a retry. Keys, after the broker's prefix: ``owners``, ``investigations``,
``turns`` and ``runs`` (hashes), ``investigations:order`` (list), ``report:<id>``, ``n:<counter>``,
and claims that Redis expires: ``lease:<investigation>`` (the node running it) and
``message:<session>…<id>`` (a client message id accepted, §2), and ``cache:<key>`` (a
text kept by ``Records.cache``).
"""

from __future__ import annotations

import secrets
from typing import Any

from coredis.commands import Script

from ..auth import ANONYMOUS_OWNER
from ..broker.redis import RedisBroker
from ..investigations.model import Investigation
from .base import OpenTurn, Run, StoredReport, TurnRecord
from .convert import dumps, loads

# KEYS: owners. ARGV: session, owner, the anonymous owner. The first owner wins; a user
# may claim an anonymous session.
CLAIM_SESSION: Script[str] = Script(script="""
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if (not owner) or owner == ARGV[3] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
""")

# KEYS: investigations, investigations:order. ARGV: id, record. An update keeps its place.
SAVE_INVESTIGATION: Script[str] = Script(script="""
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[1]) end
return 1
""")

# KEYS: a claim. ARGV: holder, time to live (ms). Taken when free or already this
# holder's (a retry after a lost reply, a lease renewed); Redis expires it.
CLAIM: Script[str] = Script(script="""
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
""")

# KEYS: a claim. ARGV: holder. Dropped only by its holder.
RELEASE: Script[str] = Script(script="""
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
""")

_TURN_SEPARATOR = "\x1f"  # session id and turn key in one field of the turns hash


class RedisRecords:
    """:class:`~cidadao_trio.records.base.Records` in the broker's Redis, shared by all nodes."""

    def __init__(self, broker: RedisBroker) -> None:
        self._broker = broker
        self._key = broker.key

    async def _read(self, request: Any) -> Any:
        return await self._broker.call(lambda c, _: request(c))

    async def investigation(self, investigation_id: str) -> Investigation | None:
        raw = await self._read(lambda c: c.hget(self._key("investigations"), investigation_id))
        return None if raw is None else loads(raw, Investigation)

    async def investigations(self) -> list[Investigation]:
        ids = await self._read(lambda c: c.lrange(self._key("investigations:order"), 0, -1))
        if not ids:
            return []
        raws = await self._read(lambda c: c.hmget(self._key("investigations"), ids))
        return [loads(raw, Investigation) for raw in raws if raw is not None]

    async def save_investigation(self, investigation: Investigation) -> None:
        keys = [self._key("investigations"), self._key("investigations:order")]
        args = [investigation.id, dumps(investigation)]
        await self._broker.write(lambda c, _: SAVE_INVESTIGATION(keys=keys, args=args, client=c))

    async def report(self, investigation_id: str) -> StoredReport | None:
        key = self._key("report:" + investigation_id)
        json, markdown = await self._read(lambda c: c.hmget(key, ["json", "markdown"]))
        return None if json is None else StoredReport(json, markdown)

    async def save_report(self, investigation_id: str, report: StoredReport) -> None:
        key = self._key("report:" + investigation_id)
        fields = {"json": report.json, "markdown": report.markdown}
        await self._broker.write(lambda c, _: c.hset(key, fields))

    async def session_owner(self, session_id: str) -> str | None:
        owner: str | None = await self._read(lambda c: c.hget(self._key("owners"), session_id))
        return owner

    async def save_session_owner(self, session_id: str, owner_key: str) -> None:
        keys, args = [self._key("owners")], [session_id, owner_key, ANONYMOUS_OWNER]
        await self._broker.write(lambda c, _: CLAIM_SESSION(keys=keys, args=args, client=c))

    async def open_turns(self) -> list[OpenTurn]:
        turns = await self._read(lambda c: c.hgetall(self._key("turns")))
        out = []
        for field, raw in turns.items():
            session_id, turn_key = field.split(_TURN_SEPARATOR, 1)
            out.append(OpenTurn(session_id, turn_key, loads(raw, TurnRecord)))
        return out

    async def begin_turn(self, turn: OpenTurn) -> None:
        field = f"{turn.session_id}{_TURN_SEPARATOR}{turn.turn_key}"
        record = dumps(turn.record)
        await self._broker.write(lambda c, _: c.hset(self._key("turns"), {field: record}))

    async def end_turn(self, session_id: str, turn_key: str) -> None:
        field = f"{session_id}{_TURN_SEPARATOR}{turn_key}"
        await self._broker.write(lambda c, _: c.hdel(self._key("turns"), [field]))

    async def next_number(self, counter: str) -> int:
        """INCR is atomic across nodes; a retry after a lost reply may skip a number."""
        return int(await self._broker.write(lambda c, _: c.incr(self._key("n:" + counter))))

    async def _claim(self, key: str, holder: str, ttl: float) -> bool:
        args = [holder, str(max(1, int(ttl * 1000)))]
        return int(await self._broker.write(lambda c, _: CLAIM(keys=[key], args=args, client=c))) == 1

    async def accept_message(self, session_id: str, message_id: str, ttl: float) -> bool:
        """One script: of two nodes racing with the same id, one takes the key. The holder
        is unique to this call, so a retry after a lost reply still reads as its own."""
        key = self._key(f"message:{session_id}{_TURN_SEPARATOR}{message_id}")
        return await self._claim(key, secrets.token_hex(8), ttl)

    async def forget_message(self, session_id: str, message_id: str) -> None:
        key = self._key(f"message:{session_id}{_TURN_SEPARATOR}{message_id}")
        await self._broker.write(lambda c, _: c.delete([key]))

    async def cached(self, key: str) -> str | None:
        value: str | None = await self._read(lambda c: c.get(self._key("cache:" + key)))
        return value

    async def cache(self, key: str, value: str, ttl: float) -> None:
        if ttl <= 0:
            return
        name, expiry = self._key("cache:" + key), max(1, int(ttl * 1000))
        await self._broker.write(lambda c, _: c.set(name, value, px=expiry))

    async def begin_run(self, run: Run, node: str, ttl: float) -> None:
        """The lease first: another node listing runs must never find this one unleased."""
        await self.claim_run(run.investigation_id, node, ttl)
        raw = dumps(run)
        await self._broker.write(lambda c, _: c.hset(self._key("runs"), {run.investigation_id: raw}))

    async def runs(self) -> list[Run]:
        raws = await self._read(lambda c: c.hgetall(self._key("runs")))
        return [loads(raw, Run) for _, raw in sorted(raws.items())]

    async def claim_run(self, investigation_id: str, node: str, ttl: float) -> bool:
        return await self._claim(self._key("lease:" + investigation_id), node, ttl)

    async def release_run(self, investigation_id: str, node: str) -> None:
        key = self._key("lease:" + investigation_id)
        await self._broker.write(lambda c, _: RELEASE(keys=[key], args=[node], client=c))

    async def end_run(self, investigation_id: str) -> None:
        await self._broker.write(lambda c, _: c.hdel(self._key("runs"), [investigation_id]))
        await self._broker.write(lambda c, _: c.delete([self._key("lease:" + investigation_id)]))

    def close(self) -> None:
        pass  # the connection belongs to RedisBroker.run
