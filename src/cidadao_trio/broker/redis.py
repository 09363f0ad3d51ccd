"""The Redis broker: several server processes behave as one (same semantics as LocalBroker).

Every durable message goes through one Lua script that assigns the stream's next offset,
appends the message to a Redis Stream, appends a copy to every stream that follows it and
PUBLISHes each copy on its stream's channel, all atomically: nodes never race for an
offset, and a message is stored before any node can deliver it.

Each node keeps one pub/sub connection, subscribed to the channels of the streams it has
sinks for. A reader task moves messages into a bounded trio channel; one fan-out task
builds each Delivery once and offers it to the local sinks in offset order. Whatever the
fan-out did not see (the channel overflowed, the connection dropped, a subscription was
younger than the message) it reads back with XRANGE from the last offset it handled: a
gap is filled from the stream and a duplicate is skipped by its offset.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import attrs
import coredis
import trio
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy
from coredis.tokens import PureToken

from ..protocol.envelope import Body, DurableId, body, ephemeral_id
from ..protocol.events import Event
from .base import FAN_OUT_STEP, Attachment, Delivery, Sink, fan_out
from .outage import OutageLog, reason

log = logging.getLogger(__name__)

INBOX_SIZE = 4096  # pub/sub messages waiting for the fan-out; past it, streams are re-read
PUBLISH_WINDOW = 256  # durable publishes per script call
# A pub/sub message arriving within GATHER_AFTER s of the last fan-out window's end (windows
# back to back: a burst) waits GATHER s for the ones behind it, then all go in one window.
GATHER_AFTER = 0.010
GATHER = 0.010
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0  # seconds between attempts while Redis is away
RETRYABLE = (RedisConnectionError, TimeoutError, OSError)  # OSError covers refused/reset
CONNECT_TIMEOUT = 2.0  # seconds for one connection attempt
DATA_LOST = (
    "redis lost its data (restarted without persistence, or flushed): session owners, history and "
    "investigations stored before are gone, so anyone may now open a session that had an owner; "
    "run redis with appendonly yes (README: Several nodes)"
)

# Keys, after the prefix P (one Redis, not Cluster: scripts build keys from P):
#   m:<stream>  hash e=epoch n=last offset     s:<stream>  Redis Stream, ids "<offset>-0"
#   c:<stream>  pub/sub channel                l:<source>  set: streams following it
#   f:<target>  set: streams it follows        copied:<source>  target -> last id copied
#   owners, investigations, turns (hashes), investigations:order (list), report:<id>,
#   n:<counter>: the records repository's (records.redis)
#   data-set  "<random id> <unix time>", written once with SET NX: if it changes under a
#             running node, Redis lost everything (see ``_check_data_set``)
# Entry fields: t=type p=envelope up to its id k=coalesce key c=created (unix s) u=token.
# Channel payload, one per line: epoch, offset, type, key, origin, envelope text (JSON:
# no raw newline). Every script gets ARGV[1] P, ARGV[2] a fresh epoch for streams that
# have none yet, ARGV[3] MAXLEN.
_PRELUDE = """
local P, CANDIDATE, MAXLEN = ARGV[1], ARGV[2], ARGV[3]
local function epoch_of(stream)
  local meta = P .. 'm:' .. stream
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then epoch = CANDIDATE; redis.call('HSET', meta, 'e', epoch) end
  return epoch
end
local function append(stream, t, p, k, c, origin, token, window)
  local epoch = epoch_of(stream)
  local n = redis.call('HINCRBY', P .. 'm:' .. stream, 'n', 1)
  redis.call('XADD', P .. 's:' .. stream, 'MAXLEN', MAXLEN, n .. '-0', 't', t, 'p', p, 'k', k, 'c', c, 'u', token)
  local id = epoch .. '-' .. n
  local channel, line = P .. 'c:' .. stream, table.concat({epoch, n, t, k, origin, p .. id .. '"}'}, '\\n')
  if window then  -- one PUBLISH per channel at the end of the script
    if not window[channel] then window[channel] = {}; table.insert(window, channel) end
    table.insert(window[channel], line)
  else
    redis.call('PUBLISH', channel, line)
  end
  return id
end
local function publish_window(window)
  for _, channel in ipairs(window) do redis.call('PUBLISH', channel, table.concat(window[channel], '\\n')) end
end
"""

# ARGV[4]: n, then n groups of 7 (stream, type, prefix, key, created, origin, token),
# then retry ("1" on a retry). One committed window: every append of the n publishes,
# then one PUBLISH per channel carrying all of its entries (payload lines, 6 per entry).
# Returns, per publish, {count, id, follower, follower_id, ...} flattened. A retried
# publish whose token is already in its stream gets the first attempt's id, not a second append.
PUBLISH_MANY = _PRELUDE + """
local count, retry = tonumber(ARGV[4]), ARGV[#ARGV]
local window, out = {}, {}
for i = 0, count - 1 do
  local a = 5 + 7 * i
  local stream, token = ARGV[a], ARGV[a + 6]
  local found = nil
  if retry == '1' then
    for _, e in ipairs(redis.call('XREVRANGE', P .. 's:' .. stream, '+', '-', 'COUNT', MAXLEN)) do
      if e[2][10] == token then found = epoch_of(stream) .. '-' .. string.match(e[1], '^%d+'); break end
    end
  end
  if found then
    table.insert(out, 1); table.insert(out, found)
  else
    local ids = {append(stream, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], token, window)}
    local followers = redis.call('SMEMBERS', P .. 'l:' .. stream)
    table.sort(followers)
    for _, f in ipairs(followers) do
      table.insert(ids, f)
      table.insert(ids, append(f, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], '', '', window))
    end
    table.insert(out, #ids)
    for _, v in ipairs(ids) do table.insert(out, v) end
  end
end
publish_window(window)
return out
"""

# ARGV[4..7]: source, target, now, cutoff. Copies the source's live history into the
# target and records the link both ways. Returns {copied, last_id}; {0} if already linked.
# A relink copies only what came after the unlink (P..'copied:'..source, target -> id).
LINK = _PRELUDE + """
local source, target = ARGV[4], ARGV[5]
if redis.call('SADD', P .. 'l:' .. source, target) == 0 then return {0} end
redis.call('SADD', P .. 'f:' .. target, source)
local already = 0
local had = redis.call('HGET', P .. 'copied:' .. source, target)
if had and string.match(had, '^(.*)-') == epoch_of(source) then already = tonumber(string.match(had, '(%d+)$')) end
local copied, last = 0, ''
for _, e in ipairs(redis.call('XRANGE', P .. 's:' .. source, '(' .. already .. '-0', '+')) do
  local f = e[2]
  if tonumber(f[8]) >= tonumber(ARGV[7]) then
    last = append(target, f[2], f[4], f[6], ARGV[6], '', '')
    copied = copied + 1
  end
end
return {copied, last}
"""

# ARGV[4..6]: stream, cutoff, after ("" = no entries). Forgets entries older than the
# cutoff, then returns {epoch, last offset, first retained offset, entries after `after`}.
RANGE = _PRELUDE + """
local stream, cutoff = ARGV[4], tonumber(ARGV[5])
local skey = P .. 's:' .. stream
local epoch = epoch_of(stream)
local last = tonumber(redis.call('HGET', P .. 'm:' .. stream, 'n') or '0')
local head = redis.call('XRANGE', skey, '-', '+', 'COUNT', 1)
if head[1] and tonumber(head[1][2][8]) < cutoff then
  local keep, start, batch = nil, '-', nil
  repeat
    batch = redis.call('XRANGE', skey, start, '+', 'COUNT', 100)
    for _, e in ipairs(batch) do
      if tonumber(e[2][8]) >= cutoff then keep = e[1]; break end
    end
    if #batch > 0 then start = '(' .. batch[#batch][1] end
  until keep or #batch == 0
  if keep then redis.call('XTRIM', skey, 'MINID', keep) else redis.call('XTRIM', skey, 'MAXLEN', 0) end
  head = redis.call('XRANGE', skey, '-', '+', 'COUNT', 1)
end
local first = last + 1
if head[1] then first = tonumber(string.match(head[1][1], '^%d+')) end
local entries = {}
if ARGV[6] ~= '' then entries = redis.call('XRANGE', skey, (tonumber(ARGV[6]) + 1) .. '-0', '+') end
return {epoch, last, first, entries}
"""

# ARGV[4..5]: source, target. Removes the link both ways and remembers, for a relink,
# the last id the target had copied.
UNLINK = _PRELUDE + """
local source, target = ARGV[4], ARGV[5]
if redis.call('SREM', P .. 'l:' .. source, target) == 1 then
  redis.call('SREM', P .. 'f:' .. target, source)
  local n = redis.call('HGET', P .. 'm:' .. source, 'n') or '0'
  redis.call('HSET', P .. 'copied:' .. source, target, epoch_of(source) .. '-' .. n)
end
return 1
"""


@attrs.frozen
class _Range:
    """A stream as Redis holds it: epoch, last and first retained offsets, some entries."""

    epoch: str
    last: int
    first: int
    entries: list[tuple[int, Body, str | None]]

    @classmethod
    def parse(cls, raw: Any) -> _Range:
        epoch, last, first, entries = raw
        parsed = []
        for entry_id, fields in entries:
            parsed.append((int(entry_id.split("-", 1)[0]), Body(fields[1], fields[3]), fields[5] or None))
        return cls(epoch, int(last), int(first), parsed)

    def valid(self, cursor: DurableId) -> bool:
        return cursor.epoch == self.epoch and self.first - 1 <= cursor.offset <= self.last

    def deliveries(self) -> Iterator[tuple[int, Delivery]]:
        for offset, message, key in self.entries:
            id = f"{self.epoch}-{offset}"
            yield offset, Delivery(message.type, message.stamp(id), id, True, None, key)


@attrs.define(eq=False)
class _Attached:
    sink: Sink
    floor: int  # offsets at or below it were replayed by attach (or predate it): skip


@attrs.define(eq=False)
class _Publish:
    """A durable publish waiting for its window's script call."""

    args: tuple[str, ...]
    ids: list[str] = attrs.field(factory=list)  # {id, follower, follower_id, ...} once done
    failure: Exception | None = None
    done: trio.Event = attrs.field(factory=trio.Event)

    def fail(self, failure: Exception) -> None:
        self.failure = failure
        self.done.set()


@attrs.define(eq=False)
class _Local:
    """A stream with sinks on this node, as far as the fan-out has handled it."""

    key: str
    epoch: str = ""
    delivered: int = 0  # last offset the fan-out handled
    published: int = 0  # last offset this node appended to it (``flush`` waits for it)
    sinks: list[_Attached] = attrs.field(factory=list)
    attaching: int = 0  # attaches in progress keep it from being unsubscribed
    ready: trio.Event = attrs.field(factory=trio.Event)  # subscribed (or resynced later)

    def adopt(self, epoch: str) -> bool:
        """Take the epoch Redis reports; False if it changed (history lost: start over)."""
        if self.epoch == epoch:
            return True
        changed = bool(self.epoch)
        self.epoch, self.delivered, self.published = epoch, 0, 0
        for attached in self.sinks:
            attached.floor = 0
        return not changed

    def offer(self, delivery: Delivery, offset: int) -> None:
        for attached in self.sinks:
            if offset > attached.floor:
                attached.sink.offer(delivery)
        self.delivered = offset


class RedisBroker:
    def __init__(
        self,
        url: str,
        *,
        max_messages: int = 1000,
        max_age: float = 24 * 3600.0,
        prefix: str = "cidadao:",
        clock: Callable[[], float] = time.time,
        observe_write: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._url = url
        self._max_messages = max_messages
        self._max_age = max_age
        self._prefix = prefix
        self._clock = clock
        self._observe_write = observe_write
        self._node = os.urandom(4).hex()  # origins are connection ids, unique per node only
        self.healthy = False
        self.overflows = 0  # times the pub/sub inbox was full (streams were re-read)
        self.data_losses = 0  # times Redis was found emptied under this node
        self._data_set: str | None = None  # the marker this node saw last
        self._persistence_checked = False
        self._client: coredis.Redis[str] | None = None
        self._scripts: dict[str, Any] = {}
        self._started = trio.Event()
        self._commands_ok = True
        self._subscribed = False
        self._first_subscription = trio.Event()
        self._outage = OutageLog(log, trio.current_time, BACKOFF_MAX)
        self._pubsub: Any = None
        self._listening = trio.CancelScope()
        self._sub_lock = trio.Lock()  # SUBSCRIBE/UNSUBSCRIBE and the set of local streams
        self._local: dict[str, _Local] = {}
        self._resync: set[str] = set()
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[str, str] | None](INBOX_SIZE)
        self._idle = trio.Event()  # a stream lost its last sink
        self._changed = trio.Event()  # a write was acknowledged or a message delivered
        self._inflight = 0
        self._publishing: list[_Publish] = []  # durable publishes waiting for the next window
        self._publish_wanted = trio.Event()

    def key(self, name: str) -> str:
        return self._prefix + name

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the client, the pub/sub listener, the fan-out and the janitor."""
        # No retries inside coredis: a re-sent script would append twice. ``call`` retries,
        # telling the publish script to look for its token first.
        async with coredis.Redis.from_url(
            self._url,
            decode_responses=True,
            connect_timeout=CONNECT_TIMEOUT,
            stream_timeout=10.0,
            retry_policy=NoRetryPolicy(),
        ) as client:
            self._client = client
            scripts = (
                ("publish_many", PUBLISH_MANY), ("link", LINK), ("range", RANGE), ("unlink", UNLINK),
            )
            for name, source in scripts:
                self._scripts[name] = client.register_script(source)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._listen)
                    nursery.start_soon(self._fan_out)
                    nursery.start_soon(self._janitor)
                    nursery.start_soon(self._probe)
                    nursery.start_soon(self._publish_windows)
                    self._started.set()
                    await self._first_contact()
                    task_status.started()
            finally:
                self._client, self.healthy = None, False

    async def _first_contact(self) -> None:
        """Try Redis once before reporting "started", so that ``healthy`` tells the server
        whether start-up work may wait for Redis (reachable) or must not (it would block
        listening: the server listens anyway and /readyz answers 503)."""
        assert self._client is not None
        with trio.move_on_after(CONNECT_TIMEOUT + 1.0):
            try:
                await self._client.ping()
            except (RedisError, *RETRYABLE) as exc:
                self._health(commands=False)
                self._outage.failed(exc)
                return
            await self._first_subscription.wait()

    async def flush(self) -> None:
        """Wait until this node's writes are acknowledged and offered to its own sinks."""
        while self._inflight or any(s.published > s.delivered for s in self._local.values()):
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _health(self, *, commands: bool | None = None, subscribed: bool | None = None) -> None:
        if commands is not None:
            self._commands_ok = commands
        if subscribed is not None:
            self._subscribed = subscribed
        self.healthy = self._commands_ok and self._subscribed
        if self.healthy:
            self._outage.recovered()

    async def call(self, request: Callable[[coredis.Redis[str], int], Awaitable[Any]]) -> Any:
        """Run ``request(client, attempt)``, retrying with backoff while Redis is away."""
        await self._started.wait()
        delay, attempt = BACKOFF_MIN, 0
        while True:
            if self._client is None:
                raise trio.ClosedResourceError("the Redis broker is not running")
            try:
                result = await request(self._client, attempt)
            except RETRYABLE as exc:
                self._health(commands=False)
                self._outage.failed(exc)
                await trio.sleep(delay)
                delay, attempt = min(delay * 2, BACKOFF_MAX), attempt + 1
                continue
            self._health(commands=True)
            return result

    async def write(self, request: Callable[[coredis.Redis[str], int], Awaitable[Any]]) -> Any:
        """:meth:`call` for a write: :meth:`flush` waits for it (the records repository's
        writes go through here too, ``records.redis``)."""
        self._inflight += 1
        try:
            return await self.call(request)
        finally:
            self._inflight -= 1
            self._notify()

    async def _script(self, name: str, *args: str, retry_flag: bool = False) -> Any:
        """A script with the shared ARGV head; ``retry_flag`` appends "1" on retries."""
        await self._started.wait()
        script = self._scripts[name]
        return await self.write(
            lambda c, attempt: script(
                args=[self._prefix, os.urandom(4).hex(), str(self._max_messages), *args]
                + (["1" if attempt else "0"] if retry_flag else [])
            )
        )

    # --- the Broker interface ------------------------------------------------------------

    async def publish(
        self,
        stream: str,
        event: Event,
        *,
        origin: int | None = None,
    ) -> Delivery:
        """Append (durable types) and publish; returns once Redis has acknowledged it."""
        type = event.type
        message = body(type, event.data())
        key = event.coalesce_key()
        tag = f"{self._node}:{origin}" if origin is not None else ""
        if not event.durable:
            text = message.stamp(ephemeral_id())
            await self._publish_ephemeral(stream, "\n".join(("", "0", type, key or "", tag, text)))
            return Delivery(type, text, "", False, origin, key)
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller publishes nothing
        started = time.perf_counter()
        token = os.urandom(8).hex()
        queued = _Publish((stream, type, message.prefix, key or "", repr(self._clock()), tag, token))
        self._publishing.append(queued)
        self._publish_wanted.set()
        self._inflight += 1  # flush waits for it
        try:
            try:
                await queued.done.wait()
            except trio.Cancelled:
                if queued in self._publishing:  # not sent yet: withdrawn, as if never published
                    self._publishing.remove(queued)
                raise  # (once sent, Redis appends it: a cancelled caller cannot know its id)
            if queued.failure is not None:
                raise queued.failure
            ids = queued.ids
            self._observe_write(time.perf_counter() - started)
            self._note_published(stream, ids[0])
            for follower, follower_id in zip(ids[1::2], ids[2::2], strict=True):  # pairs by construction (PUBLISH)
                self._note_published(follower, follower_id)
        finally:
            self._inflight -= 1
            self._notify()
        return Delivery(type, message.stamp(ids[0]), ids[0], True, origin, key)

    async def _publish_windows(self) -> None:
        """Pipelined publishes: whatever was published while the previous script ran goes
        in one script call (one round trip, one PUBLISH per channel with all its entries)."""
        while True:
            await self._publish_wanted.wait()
            self._publish_wanted = trio.Event()
            while self._publishing:
                window, self._publishing = self._publishing[:PUBLISH_WINDOW], self._publishing[PUBLISH_WINDOW:]
                try:
                    flat = await self._script(
                        "publish_many", str(len(window)), *(arg for item in window for arg in item.args),
                        retry_flag=True,
                    )
                except Exception as failure:
                    for item in window:
                        item.fail(failure)
                    continue
                except BaseException:
                    for item in window:
                        item.fail(trio.ClosedResourceError("the Redis broker stopped"))
                    raise
                at = 0
                for item in window:
                    count = int(flat[at])
                    item.ids = [str(v) for v in flat[at + 1 : at + 1 + count]]
                    item.done.set()
                    at += 1 + count

    async def _publish_ephemeral(self, stream: str, payload: str) -> None:
        """Typing indicators may be dropped (PROTOCOL.md §5): one attempt, no waiting."""
        await self._started.wait()
        try:
            if self._client is not None:
                await self._client.publish(self.key("c:" + stream), payload)
        except RETRYABLE:
            log.info("dropped an ephemeral message: redis unavailable")

    def _note_published(self, stream: str, id: str) -> None:
        state = self._local.get(stream)
        parsed = DurableId.parse(id)
        if state is not None and parsed is not None and parsed.epoch == state.epoch:
            state.published = max(state.published, parsed.offset)

    async def _range(self, stream: str, after: int | None) -> _Range:
        cutoff = repr(self._clock() - self._max_age)
        return _Range.parse(await self._script("range", stream, cutoff, "" if after is None else str(after)))

    async def cursor_is_valid(self, stream: str, cursor: DurableId) -> bool:
        return (await self._range(stream, None)).valid(cursor)

    async def attach(
        self, stream: str, sink: Sink, after: DurableId | None, *, from_oldest: bool = False
    ) -> Attachment:
        """Subscribe, replay from the cursor (or, ``from_oldest``, everything retained)
        with XRANGE, then hand over to the fan-out.

        The sink joins with a floor, the last offset it was given: the fan-out offers it
        only later ones, so the seam between replay and live has no gap and no duplicate.
        """
        state = self._local.get(stream)
        fresh = state is None
        if state is None:
            state = self._local[stream] = _Local(stream)
        state.attaching += 1  # the janitor leaves it subscribed meanwhile
        try:
            await self._listen_to(state, fresh)
            start = after.offset if after is not None else 0 if from_oldest else None
            info = await self._range(stream, start)
            gap = after is not None and not info.valid(after)
            replaying = start is not None and not gap
            replay = list(info.deliveries()) if replaying else []
            last = info.last
            state.adopt(info.epoch)
            # The fan-out may have handled offsets past our read: read up to where it is.
            while replaying and state.delivered > last and state.epoch == info.epoch:
                more = await self._range(stream, last)
                replay += [(o, d) for o, d in more.deliveries() if o > last]
                last = max(last, more.last)
            for _, delivery in replay:
                sink.offer(delivery)
            floor = max(last, state.delivered)
            if not state.sinks:
                state.delivered = floor  # nobody else waits for older offsets
            state.sinks.append(_Attached(sink, floor))
            return Attachment(gap, len(replay))
        finally:
            state.attaching -= 1
            if not state.sinks:
                self._idle.set()

    async def _listen_to(self, state: _Local, fresh: bool) -> None:
        """Subscribe before anyone reads the stream (a listener reconnect resyncs it)."""
        if not fresh:
            await state.ready.wait()
            return
        try:
            async with self._sub_lock:
                if self._pubsub is not None and self._local.get(state.key) is state:
                    await self._subscribe(self._pubsub, [state.key])
        finally:
            state.ready.set()

    async def _subscribe(self, pubsub: Any, streams: list[str]) -> None:
        try:
            await pubsub.subscribe(*[self.key("c:" + s) for s in streams])
        except Exception as exc:
            log.warning("subscribe failed (%s); reconnecting the pub/sub connection", reason(exc))
            self._listening.cancel()  # the listener resubscribes everything and resyncs

    def detach(self, stream: str, sink: Sink) -> None:
        state = self._local.get(stream)
        if state is not None:
            state.sinks = [a for a in state.sinks if a.sink is not sink]
            if not state.sinks:
                self._idle.set()

    async def link(self, source: str, target: str) -> int:
        """Copy ``source``'s retained history into ``target``, then follow it live.

        Returns how many messages were copied. Linking twice copies nothing.
        """
        now = self._clock()
        raw = await self._script("link", source, target, repr(now), repr(now - self._max_age))
        if int(raw[0]):
            self._note_published(target, raw[1])
        return int(raw[0])

    async def unlink(self, source: str, target: str) -> None:
        await self._script("unlink", source, target)

    async def followed_by(self, target: str) -> list[str]:
        """The streams ``target`` follows (a session's investigations)."""
        return sorted(await self.call(lambda c, _: c.smembers(self.key("f:" + target))))

    async def retained(self, stream: str) -> list[Delivery]:
        """Every committed message ``stream`` retains."""
        return [delivery for _, delivery in (await self._range(stream, 0)).deliveries()]

    async def last_id(self, stream: str) -> str:
        info = await self._range(stream, None)
        return f"{info.epoch}-{info.last}"

    # --- this node's side of pub/sub -----------------------------------------------------

    async def _listen(self) -> None:
        """Keep one pub/sub connection; after each (re)connect, re-read every local stream."""
        delay = BACKOFF_MIN
        skip = len(self.key("c:"))
        assert self._client is not None
        while True:
            try:
                try:
                    async with self._client.pubsub(
                        ignore_subscribe_messages=True, retry_policy=NoRetryPolicy(), subscription_timeout=10.0
                    ) as ps:
                        with trio.CancelScope() as self._listening:
                            async with self._sub_lock:
                                if self._local:
                                    await ps.subscribe(*[self.key("c:" + s) for s in self._local])
                                self._pubsub = ps
                                self._resync.update(self._local)
                            await self._check_data_set()
                            self._wake()
                            self._health(subscribed=True)
                            self._first_subscription.set()
                            delay = BACKOFF_MIN
                            try:
                                await self._read(ps, skip)
                            finally:
                                # Never hand a subscribed connection back to the pool, and skip
                                # coredis's UNSUBSCRIBE on the way out (it fails once cancelled).
                                ps.channels.clear()
                                ps.patterns.clear()
                                ps.connection.invalidate()
                except* anyio.ClosedResourceError:
                    # coredis's own cleanup may still write UNSUBSCRIBE to the connection
                    # invalidated above (its task's race on the way out): nothing is lost.
                    log.debug("pub/sub connection closed under coredis's cleanup")
            except Exception as exc:
                self._health(subscribed=False)
                self._outage.failed(exc)
            finally:
                self._pubsub = None
                self._health(subscribed=False)
            await trio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _check_data_set(self) -> None:
        """After each (re)connect: is this still the data set this node knew?

        A Redis without persistence comes back empty from a restart, and an empty Redis
        looks like a new one: every session is unowned again. The marker, written once per
        data set, tells the two apart; every node that knew the old one logs it.
        """
        assert self._client is not None
        key = self.key("data-set")
        await self._client.set(key, f"{os.urandom(8).hex()} {int(self._clock())}", condition=PureToken.NX)
        current = await self._client.get(key)
        if self._data_set is not None and current != self._data_set:
            self.data_losses += 1
            log.error(DATA_LOST)
        self._data_set = current
        if not self._persistence_checked:
            self._persistence_checked = True
            await self._warn_without_persistence()

    async def _warn_without_persistence(self) -> None:
        """Say at start-up what a restart of this Redis would cost (CONFIG may be disabled)."""
        assert self._client is not None
        try:
            config = await self._client.config_get(["appendonly"])
        except RedisError as exc:
            log.debug("cannot read the redis persistence setting: %s", reason(exc))
            return
        if config.get("appendonly") == "no":
            log.warning(
                "redis runs with appendonly no: a restart of it loses what was written since its last "
                "snapshot (everything, without one), session owners included; run it with appendonly yes"
            )

    async def _read(self, ps: Any, skip: int) -> None:
        """Move messages into the bounded inbox; when it is full, mark the stream for a re-read."""
        while True:
            message = await ps.get_message()
            if message is None or message["type"] != "message":
                continue
            stream = message["channel"][skip:]
            try:
                self._inbox_send.send_nowait((stream, message["data"]))
            except trio.WouldBlock:
                self.overflows += 1
                self._resync.add(stream)

    def _wake(self) -> None:
        with contextlib.suppress(trio.WouldBlock):  # the fan-out has plenty to wake up for
            self._inbox_send.send_nowait(None)

    async def _fan_out(self) -> None:
        """The only task that offers live messages: one order per stream, no doubles.

        Whatever the inbox holds is offered in one ``fan_out`` window (one write per
        connection, full ``batch`` frames); a message that needs a read-back ends the
        window first (the window cannot await).

        During a burst the inbox alone would not fill: a publisher awaits Redis's reply
        before its next publish, so each script call carries only the publishes that were
        waiting (a few), and its pub/sub message arrives alone. Offered at once, every such
        window costs each connection a write (the dominant cost of a fan-out) for a few
        messages. So a message arriving while windows come back to back waits ``GATHER``
        for those behind it, as LocalBroker's commit finds a whole burst queued: a few ms
        of latency during a burst for several times fewer writes. After a quiet spell
        (``GATHER_AFTER``) a message goes out at once.
        """
        ended = -math.inf  # when the last window of messages (not a bare wake-up) ended
        async for first in self._inbox:
            if first is not None and trio.current_time() - ended < GATHER_AFTER:
                await trio.sleep(GATHER)  # a burst: let the windows behind this one arrive
            await self._deliver_window(first)
            if first is not None:
                ended = trio.current_time()

    async def _deliver_window(self, first: tuple[str, str] | None) -> None:
        """Offer ``first`` and whatever else the inbox holds now, in order."""
        items = [first]
        while len(items) < INBOX_SIZE:
            try:
                items.append(self._inbox.receive_nowait())
            except trio.WouldBlock:
                break
        while self._resync:
            state = self._local.get(self._resync.pop())
            if state is not None:
                await self._catch_up(state)
        behind: _Local | None = None
        index = 0
        while index < len(items):
            offered = 0
            with fan_out():
                while index < len(items) and offered < FAN_OUT_STEP:
                    item = items[index]
                    index += 1
                    if item is None:
                        continue
                    if (behind := self._deliver(*item)) is not None:
                        break
                    state = self._local.get(item[0])
                    if state is not None:  # offers made: entries (6 lines each) times sinks
                        offered += len(state.sinks) * ((item[1].count("\n") + 1) // 6)
            if behind is not None:
                await self._catch_up(behind)  # a gap, or another epoch: Redis has the truth
                behind = None
            elif index < len(items):
                await trio.lowlevel.checkpoint()  # a big inbox in steps: the loop runs between

    def _deliver(self, stream: str, payload: str) -> _Local | None:
        """Offer one pub/sub message (one entry, or a publish window's several, 6 lines
        each); the stream to read back if they cannot be offered in order."""
        state = self._local.get(stream)
        if state is None:
            return None
        lines = payload.split("\n")
        for at in range(0, len(lines) - 5, 6):
            behind = self._deliver_entry(state, *lines[at : at + 6])
            if behind is not None:
                return behind
        return None

    def _deliver_entry(
        self, state: _Local, epoch: str, offset_text: str, type: str, key: str, tag: str, text: str
    ) -> _Local | None:
        node, _, origin_text = tag.partition(":")
        origin = int(origin_text) if node == self._node else None
        if not epoch:
            ephemeral = Delivery(type, text, "", False, origin, key or None)
            for attached in state.sinks:
                attached.sink.offer(ephemeral)
            return None
        offset = int(offset_text)
        if not state.sinks or not state.epoch:  # an attach is reading Redis meanwhile
            state.adopt(epoch)
            state.delivered = max(state.delivered, offset)
            self._notify()
        elif epoch != state.epoch or offset > state.delivered + 1:
            return state
        elif offset == state.delivered + 1:
            state.offer(Delivery(type, text, f"{epoch}-{offset}", True, origin, key or None), offset)
            self._notify()
        return None

    async def _catch_up(self, state: _Local) -> None:
        """Offer what the stream holds past the last offset handled (XRANGE), in order."""
        for _ in range(2):
            info = await self._range(state.key, state.delivered)
            if self._local.get(state.key) is not state:
                return
            if state.adopt(info.epoch):
                break
        else:
            return
        if state.sinks and info.first > state.delivered + 1:
            log.warning("%s: offsets %d..%d expired before delivery", state.key, state.delivered + 1, info.first - 1)
        with fan_out():
            for offset, delivery in info.deliveries():
                if offset > state.delivered:
                    state.offer(delivery, offset)
        state.delivered = max(state.delivered, info.last)
        self._notify()

    async def _probe(self) -> None:
        """After a failed command, PING until Redis answers, so ``healthy`` recovers."""
        while True:
            await trio.sleep(1.0)
            if not self._commands_ok:
                with trio.move_on_after(2.0):
                    await self.call(lambda c, _: c.ping())

    async def _janitor(self) -> None:
        """Unsubscribe from streams that lost their last sink (``detach`` cannot await)."""
        while True:
            await self._idle.wait()
            self._idle = trio.Event()
            async with self._sub_lock:
                idle = [k for k, s in self._local.items() if not s.sinks and not s.attaching]
                for stream in idle:
                    del self._local[stream]
                if idle and self._pubsub is not None:
                    try:
                        await self._pubsub.unsubscribe(*[self.key("c:" + s) for s in idle])
                    except Exception as exc:
                        log.warning("unsubscribe failed (%s); reconnecting", reason(exc))
                        self._listening.cancel()
            self._notify()
