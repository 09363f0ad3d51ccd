"""The broker of one node, over its local store (SQLite or memory): durable streams with
offsets, bounded history, live fan-out, links.

Publishing assigns the next offset at once and queues the message on a bounded trio
memory channel. One writer task drains whatever is queued, applies it to the store in a
single transaction, and only then offers each message to the stream's live sinks, in
offset order. So a message is durable before any client sees it, many messages share one
commit, and a store that falls behind slows publishers (backpressure) rather than
growing a queue. Replays read only committed history, and a sink is registered in the
same step as the last replayed message, without awaiting: no message is lost or doubled
at the replay/live seam.

History in memory is a cache of the store. Each stream keeps its newest committed
messages in memory (``memory_messages``), and all streams together are held to ``memory_bytes`` (least recently
used streams give theirs up first); what falls out is read back from the store by offset
range, never a whole stream at once. A retained message is its WebSocket frame (the UTF-8
envelope, the only copy, also what the store is given to write) plus about a hundred
bytes. A session following an investigation keeps a reference (stream, offset) to each
event instead of a copy; its own id is spliced into the envelope when it is delivered.

With a store that is not durable (``--store memory``) memory is the only copy: nothing is
evicted, history is bounded by retention (``max_messages``, ``max_age``) alone.

A store that rejects writes (a full disk) is retried every second until it takes them:
what was queued is kept, in order, and committed once it recovers. Meanwhile ``healthy``
is False and new durable publishes raise :class:`StoreUnavailable` (nothing accepted),
as does a publish that cannot get a write slot within ``WRITE_SLOT_TIMEOUT``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import trio

from ..protocol.envelope import Body, DurableId, body, ephemeral_id, restamp
from ..protocol.events import Event
from ..protocol.frames import payload_size
from ..store.base import (
    Append,
    CreateStream,
    Link,
    MemoryStore,
    Op,
    Store,
    StoredMessage,
    Trim,
)
from .allocator import give_back
from .base import FAN_OUT_STEP, Attachment, Delivery, Sink, StoreUnavailable, fan_out

log = logging.getLogger(__name__)

WRITE_QUEUE_SIZE = 4096  # queued publishes before publishers wait for the store
WRITE_BATCH_MAX = 1024  # ops per transaction
WRITE_SLOT_TIMEOUT = 5.0  # seconds a publisher waits for the store before UNAVAILABLE
STORE_RETRY = 1.0  # seconds between attempts to write to a failing store
RETRY_AFTER = 5.0  # what a client is told to wait while the store fails
IDLE_STREAMS_CACHED = 1024  # streams without sinks kept in memory (durable stores only)
IDLE_STREAM_SECONDS = 60.0  # a stream without sinks this long leaves memory (durable stores only)
GIVE_BACK_BYTES = 1024 * 1024  # history freed by one sweep before memory is handed back to the OS
READ_PAGE = 500  # messages per store read
ENTRY_COST = 128  # bytes an entry costs beyond its frame (object, float, deque slot), measured
MEMORY_BYTES = 64 * 1024 * 1024
MEMORY_MESSAGES = 256  # newest messages per stream held in memory (durable stores only)


@attrs.define(slots=True, weakref_slot=False, eq=False)
class _Own:
    """A message of this stream; ``frame`` is its only copy in memory."""

    frame: bytes
    type: str
    created: float
    key: str | None


@attrs.define(slots=True, weakref_slot=False, eq=False)
class _Ref:
    """A copy of another stream's message (an investigation event in a session).

    ``own`` is the source entry itself when the store is not durable (memory is the only
    copy, so the copy keeps the text alive); with a durable store, the copy is read from
    the source's memory or, failing that, from the store.
    """

    source: str
    offset: int
    created: float
    own: _Own | None


_Entry = _Own | _Ref


def _cost(entry: _Entry) -> int:
    return ENTRY_COST + (len(entry.frame) if isinstance(entry, _Own) else 0)


def _text_of(frame: bytes) -> str:
    return str(memoryview(frame)[len(frame) - payload_size(frame) :], "utf-8")


@attrs.define(eq=False)
class _Stream:
    key: str
    epoch: str
    last_offset: int = 0  # assigned
    committed: int = 0  # durable in the store and offered to sinks
    history: deque[_Entry] = attrs.field(factory=deque)  # offsets first() .. last_offset
    complete: bool = True  # history holds every retained message (else the rest is in the store)
    cost: int = 0  # bytes of history charged to the memory budget
    sinks: list[Sink] = attrs.field(factory=list)
    links: set[str] = attrs.field(factory=set)

    def first(self) -> int:
        return self.last_offset - len(self.history) + 1

    def entry(self, offset: int) -> _Entry | None:
        index = offset - self.first()
        return self.history[index] if 0 <= index < len(self.history) else None

    def push(self, entry: _Entry) -> int:
        self.history.append(entry)
        cost = _cost(entry)
        self.cost += cost
        return cost

    def pop_oldest(self) -> int:
        cost = _cost(self.history.popleft())
        self.cost -= cost
        return cost

    def trim(self, now: float, max_messages: int, max_age: float) -> int:
        """Forget what retention no longer keeps; returns the bytes freed."""
        freed = 0
        while self.history and (len(self.history) > max_messages or now - self.history[0].created > max_age):
            freed += self.pop_oldest()
            self.complete = True  # what the store holds below this has expired too
        if len(self.history) >= max_messages:
            self.complete = True
        return freed


@attrs.frozen
class _Publish:
    """One queued write: store ops plus the deliveries to offer once they are committed."""

    ops: tuple[Op, ...]
    offers: tuple[tuple[_Stream, Delivery], ...]
    done: trio.Event | None = None  # set once committed and offered


def _offset(id: str) -> int:
    return int(id.rsplit("-", 1)[1])


class LocalBroker:
    def __init__(
        self,
        *,
        store: Store | None = None,
        max_messages: int = 1000,
        max_age: float = 24 * 3600.0,
        memory_bytes: int = MEMORY_BYTES,
        memory_messages: int = MEMORY_MESSAGES,
        clock: Callable[[], float] = time.time,
        observe_write: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.store: Store = store or MemoryStore()
        self.epoch = os.urandom(4).hex()  # for streams an ephemeral store cannot remember
        self._max_messages = max_messages
        self._max_age = max_age
        self._memory_bytes = memory_bytes
        self._memory_messages = max(1, memory_messages)
        self._clock = clock
        self._observe_write = observe_write
        self._streams: dict[str, _Stream] = {}
        self._idle: OrderedDict[str, float] = OrderedDict()  # streams without sinks -> since when
        self._recent: OrderedDict[str, None] = OrderedDict()  # streams holding history, LRU first
        self.held_bytes = 0  # history in memory, as charged to the budget
        self._loading: dict[str, trio.Event] = {}
        self._followers_of: dict[str, set[str]] = {}  # target -> sources (reverse links)
        self._pinned: Counter[str] = Counter()  # streams being loaded or read: not evictable
        self._store_lock = trio.CapacityLimiter(1)
        # The channel never blocks; the semaphore bounds it. A publisher waits for a slot
        # *before* taking offsets, so a cancelled publish cannot leave a hole.
        self._send, self._receive = trio.open_memory_channel[_Publish](math.inf)
        self._slots = trio.Semaphore(WRITE_QUEUE_SIZE)
        self.healthy = True
        self._failure = ""

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer: commit queued publishes in windows, then fan them out in order."""
        async with trio.open_nursery() as nursery:
            if self.store.durable:
                nursery.start_soon(self._sweep)
            task_status.started()
            await self._write()
            nursery.cancel_scope.cancel()

    async def _sweep(self) -> None:
        """Let streams nobody has attached to for ``IDLE_STREAM_SECONDS`` leave memory:
        after clients leave, their history is in the store and memory goes back."""
        while True:
            await trio.sleep(IDLE_STREAM_SECONDS / 2)
            since = self._clock() - IDLE_STREAM_SECONDS
            freed = 0
            for key, idle_since in list(self._idle.items()):
                if idle_since > since:
                    break
                stream = self._streams.get(key)
                if stream is None:
                    del self._idle[key]
                elif self._evictable(stream):
                    del self._idle[key]
                    freed += stream.cost
                    self._forget(stream)
            if freed >= GIVE_BACK_BYTES:
                give_back()  # otherwise the allocators keep it and RSS stays at its peak

    def _evictable(self, stream: _Stream) -> bool:
        return not stream.sinks and not self._pinned[stream.key] and stream.committed == stream.last_offset

    def _forget(self, stream: _Stream) -> None:
        del self._streams[stream.key]
        self.held_bytes -= stream.cost
        self._recent.pop(stream.key, None)

    async def _write(self) -> None:
        async with self._receive:
            async for first in self._receive:
                window = [first]
                ops = len(first.ops)
                while ops < WRITE_BATCH_MAX:
                    try:
                        item = self._receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    window.append(item)
                    ops += len(item.ops)
                await self._commit(window)
                for _ in window:
                    self._slots.release()

    async def _commit(self, window: list[_Publish]) -> None:
        ops = [op for item in window for op in item.ops]
        while ops:
            try:
                started = time.perf_counter()
                await self._in_store(self.store.apply, ops)
                self._observe_write(time.perf_counter() - started)
                break
            except Exception as error:  # a full disk, an I/O error: keep what was queued, retry
                if self.healthy:
                    self.healthy = False
                    self._failure = str(error) or type(error).__name__
                    log.error(
                        "store rejects writes (%s): retrying every %.0f s; new messages get UNAVAILABLE",
                        self._failure, STORE_RETRY,
                    )
                await trio.sleep(STORE_RETRY)
        if not self.healthy:
            self.healthy = True
            log.warning("store accepts writes again; queued messages committed")
        committed: dict[str, _Stream] = {}
        index = 0
        while index < len(window):
            offered = 0
            with fan_out():  # each connection then gets the whole step in one write
                while index < len(window) and offered < FAN_OUT_STEP:
                    item = window[index]
                    index += 1
                    for stream, delivery in item.offers:
                        if delivery.durable:
                            stream.committed = _offset(delivery.id)
                            committed[stream.key] = stream
                        for sink in list(stream.sinks):
                            sink.offer(delivery)
                        offered += len(stream.sinks)
                    if item.done is not None:
                        item.done.set()
            if index < len(window):  # a big window in steps: the loop (heartbeats, readers,
                await trio.lowlevel.checkpoint()  # writers draining into sockets) runs between
        for stream in committed.values():  # what was just committed may leave memory now
            self._shed(stream)
        self._fit()

    async def _hold(self, keys: Iterable[str], follow_links: bool = False, bounded: bool = True) -> None:
        """Load ``keys`` (and their followers), then take a write slot, with no await
        left before the caller assigns offsets: every stream it touches is the one in
        ``self._streams`` (not evicted and reloaded meanwhile) and its links are current.

        ``bounded``: raise :class:`StoreUnavailable` if the store is failing, or if no
        slot frees up within ``WRITE_SLOT_TIMEOUT`` (nothing has been accepted then).
        """
        while True:
            if bounded and not self.healthy:
                raise StoreUnavailable(self._failure, RETRY_AFTER)
            wanted = self._wanted(keys, follow_links)
            self._pinned.update(wanted)  # loading the last must not evict the first
            try:
                for key in wanted:
                    await self._stream(key)
                await self._take_slot(bounded)
            finally:
                self._pinned.subtract(wanted)
            if all(k in self._streams for k in self._wanted(keys, follow_links)):
                return
            self._slots.release()

    async def _take_slot(self, bounded: bool) -> None:
        """A write slot; waits (a schedule point) only when the queue is full.

        A burst published by one task without yielding is one window: one commit, and
        one write with every message of it per connection (full ``batch`` frames). A
        cancelled publisher still stops here.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._slots.acquire_nowait()
            return
        except trio.WouldBlock:
            pass
        with trio.move_on_after(WRITE_SLOT_TIMEOUT if bounded else math.inf) as waited:
            await self._slots.acquire()
        if waited.cancelled_caught:
            raise StoreUnavailable(self._failure or "the store is not keeping up", RETRY_AFTER)

    def _wanted(self, keys: Iterable[str], follow_links: bool) -> list[str]:
        wanted = list(keys)
        if follow_links:
            for key in list(wanted):
                stream = self._streams.get(key)
                wanted.extend(sorted(stream.links) if stream else ())
        return wanted

    async def _in_store(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.store.durable:  # dicts in memory: no thread (and none for virtual clocks)
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self._store_lock)

    async def flush(self) -> None:
        """Wait until everything published so far is committed (tests, shutdown)."""
        done = trio.Event()
        await self._hold((), bounded=False)
        self._send.send_nowait(_Publish((), (), done))
        await done.wait()

    # --- streams ---------------------------------------------------------------------

    async def _stream(self, key: str) -> _Stream:
        stream = self._streams.get(key)
        if stream is not None:
            self._touch(stream)
            return stream
        loading = self._loading.get(key)
        if loading is not None:
            await loading.wait()
            return await self._stream(key)
        self._loading[key] = event = trio.Event()
        try:
            head = await self._in_store(self.store.load_head, key)
            if head is None:
                stream = _Stream(key, self.epoch if not self.store.durable else os.urandom(4).hex())
                await self._slots.acquire()
                self._send.send_nowait(_Publish((CreateStream(key, stream.epoch),), ()))
            else:  # history stays in the store until it is read
                stream = _Stream(key, head.epoch, head.last_offset, head.last_offset, complete=head.last_offset == 0)
                stream.links.update(head.links)
                for target in head.links:
                    self._followers_of.setdefault(target, set()).add(key)
            self._streams[key] = stream
            self._touch(stream)
            return stream
        finally:
            del self._loading[key]
            event.set()

    def _touch(self, stream: _Stream) -> None:
        """Keep streams with sinks; forget the least recently used idle ones (durable only)."""
        self._idle.pop(stream.key, None)
        if stream.history:
            self._recent[stream.key] = None
            self._recent.move_to_end(stream.key)
        if stream.sinks:
            return
        self._idle[stream.key] = self._clock()
        if not self.store.durable:
            return
        while len(self._idle) > IDLE_STREAMS_CACHED:
            key, _ = self._idle.popitem(last=False)
            candidate = self._streams.get(key)
            if candidate is not None and self._evictable(candidate):
                self._forget(candidate)

    def _fit(self) -> None:
        """Give up the least recently used committed history until memory is within budget."""
        if not self.store.durable or self.held_bytes <= self._memory_bytes:
            return  # within budget, or memory is the only copy
        for key in list(self._recent):
            if self.held_bytes <= self._memory_bytes:
                return
            stream = self._streams.get(key)
            if stream is None:
                del self._recent[key]
                continue
            if self._pinned[key]:
                continue
            while stream.history and stream.first() <= stream.committed and self.held_bytes > self._memory_bytes:
                self.held_bytes -= stream.pop_oldest()
                stream.complete = False
            if not stream.history:
                del self._recent[key]

    def _trim(self, stream: _Stream) -> None:
        self.held_bytes -= stream.trim(self._clock(), self._max_messages, self._max_age)
        self._shed(stream)

    def _shed(self, stream: _Stream) -> None:
        """A resume rarely reaches far back, so memory keeps a stream's newest committed
        messages and the store the rest of the retention: memory stops growing once each
        active stream holds its tail, long before the byte budget is reached."""
        if not self.store.durable:
            return  # memory is the only copy: it keeps the whole retention
        while len(stream.history) > self._memory_messages and stream.first() <= stream.committed:
            self.held_bytes -= stream.pop_oldest()
            stream.complete = False

    def _push(self, stream: _Stream, entry: _Entry) -> None:
        self.held_bytes += stream.push(entry)
        self._trim(stream)
        self._recent[stream.key] = None
        self._recent.move_to_end(stream.key)

    def _append(
        self, stream: _Stream, message: Body, key: str | None, origin: int | None
    ) -> tuple[Delivery, _Own, list[Op]]:
        now = self._clock()
        stream.last_offset += 1
        id = f"{stream.epoch}-{stream.last_offset}"
        delivery = Delivery(message.type, message.stamp(id), id, True, origin, key)
        own = _Own(delivery.frame, message.type, now, key)
        self._push(stream, own)
        payload = memoryview(delivery.frame)[len(delivery.frame) - delivery.size :]  # no second copy
        ops: list[Op] = [Append(stream.key, StoredMessage(stream.last_offset, message.type, payload, now, key))]
        return delivery, own, ops + self._trim_ops(stream, now)

    def _append_copy(
        self, stream: _Stream, source: str, offset: int, own: _Own | None, type: str, text: str,
        key: str | None, origin: int | None,
    ) -> tuple[Delivery, list[Op]]:
        """Append a reference to ``source``'s message ``offset`` (its ``text``, any id)."""
        now = self._clock()
        stream.last_offset += 1
        id = f"{stream.epoch}-{stream.last_offset}"
        self._push(stream, _Ref(source, offset, now, None if self.store.durable else own))
        ops: list[Op] = [Append(stream.key, StoredMessage(stream.last_offset, type, "", now, key, (source, offset)))]
        delivery = Delivery(type, restamp(text, id), id, True, origin, key)
        return delivery, ops + self._trim_ops(stream, now)

    def _trim_ops(self, stream: _Stream, now: float) -> list[Op]:
        if stream.last_offset % 100 == 0:
            return [Trim(stream.key, stream.last_offset - self._max_messages, now - self._max_age)]
        return []

    # --- reading history ---------------------------------------------------------------

    def _resolve(self, stream: _Stream, offset: int, entry: _Entry) -> Delivery | None:
        """The committed message ``offset`` from memory, or None if only the store has it."""
        id = f"{stream.epoch}-{offset}"
        if isinstance(entry, _Own):
            return Delivery(entry.type, _text_of(entry.frame), id, True, None, entry.key, frame=entry.frame)
        own = entry.own
        if own is None:
            source = self._streams.get(entry.source)
            found = source.entry(entry.offset) if source is not None and entry.offset <= source.committed else None
            own = found if isinstance(found, _Own) else None
        if own is None:
            return None
        return Delivery(own.type, restamp(_text_of(own.frame), id), id, True, None, own.key)

    def _tail(self, stream: _Stream, after: int) -> list[Delivery] | None:
        """Committed messages after ``after``, if memory holds all of them (else None)."""
        first = stream.first()
        if after + 1 < first and not stream.complete:
            return None
        out = []
        for offset in range(max(after + 1, first), stream.committed + 1):
            delivery = self._resolve(stream, offset, stream.history[offset - first])
            if delivery is None:
                return None
            out.append(delivery)
        return out

    async def _page(self, stream: _Stream, after: int) -> list[Delivery]:
        """Committed messages after ``after`` as the store has them, up to ``READ_PAGE``."""
        rows: list[StoredMessage] = await self._in_store(
            self.store.load_messages, stream.key, after, stream.committed, READ_PAGE
        )
        out = []
        for row in rows:
            id = f"{stream.epoch}-{row.offset}"
            text = str(row.text)
            out.append(Delivery(row.type, restamp(text, id) if row.ref else text, id, True, None, row.coalesce_key))
        return out

    async def _read(self, stream: _Stream, after: int, sink: Sink) -> int:
        """Offer committed messages after ``after`` to ``sink``: the store's first, then
        memory's, the last step without awaiting (the caller registers ``sink`` right after)."""
        count = 0
        while True:
            tail = self._tail(stream, after)
            if tail is not None:
                for delivery in tail:
                    sink.offer(delivery)
                return count + len(tail)
            page = await self._page(stream, after)
            if not page:  # the store has nothing there: what memory holds is all there is
                if after >= stream.first() - 1:
                    log.warning("history of %s after offset %d is missing from the store", stream.key, after)
                    return count
                after = stream.first() - 1
                continue
            for delivery in page:
                sink.offer(delivery)
            count += len(page)
            after = _offset(page[-1].id)

    async def _oldest(self, stream: _Stream) -> int:
        """The oldest retained offset (``last_offset + 1`` when nothing is retained)."""
        self._trim(stream)
        if stream.complete:
            return stream.first()
        now = self._clock()
        found = await self._in_store(
            self.store.load_oldest, stream.key, stream.last_offset - self._max_messages + 1, now - self._max_age
        )
        return stream.first() if found is None else min(found, stream.first())

    # --- the Broker interface ------------------------------------------------------------

    async def publish(
        self,
        stream: str,
        event: Event,
        *,
        origin: int | None = None,
    ) -> Delivery:
        """Queue a message for ``stream`` (and, if durable, every stream that follows it)."""
        type = sys.intern(event.type)
        message = body(type, event.data())
        key = event.coalesce_key()
        if key is not None:
            key = sys.intern(key)  # one string per investigation, not one per message
        if not event.durable:
            delivery = Delivery(type, message.stamp(ephemeral_id()), "", False, origin, key)
            if not self.healthy:  # nothing to store: relay it now rather than behind the stuck writer
                target = await self._stream(stream)
                for sink in list(target.sinks):
                    sink.offer(delivery)
                return delivery
            await self._hold((stream,))
            self._send.send_nowait(_Publish((), ((self._streams[stream], delivery),)))
            return delivery
        await self._hold((stream,), follow_links=True)
        target = self._streams[stream]
        followers = [self._streams[k] for k in sorted(target.links)]
        delivery, own, ops = self._append(target, message, key, origin)
        offers = [(target, delivery)]
        for follower in followers:
            copy, copy_ops = self._append_copy(
                follower, stream, target.last_offset, own, type, delivery.text, key, origin
            )
            offers.append((follower, copy))
            ops.extend(copy_ops)
        self._send.send_nowait(_Publish(tuple(ops), tuple(offers)))
        self._fit()
        return delivery

    async def cursor_is_valid(self, stream: str, cursor: DurableId) -> bool:
        target = await self._stream(stream)
        if cursor.epoch != target.epoch or cursor.offset > target.last_offset:
            return False
        return cursor.offset >= await self._oldest(target) - 1

    async def attach(
        self, stream: str, sink: Sink, after: DurableId | None, *, from_oldest: bool = False
    ) -> Attachment:
        """Replay committed messages after the cursor (or, ``from_oldest``, everything
        retained) into ``sink``, then deliver live ones."""
        target = await self._stream(stream)
        self._pinned[stream] += 1  # the stream object must stay the live one while we read
        try:
            gap = after is not None and not await self.cursor_is_valid(stream, after)
            replayed = 0
            if from_oldest and after is None:
                after = DurableId(target.epoch, await self._oldest(target) - 1)
            if after is not None and not gap:
                replayed = await self._read(target, after.offset, sink)
            target.sinks.append(sink)
            self._idle.pop(stream, None)
        finally:
            self._pinned[stream] -= 1
        return Attachment(gap, replayed)

    def detach(self, stream: str, sink: Sink) -> None:
        target = self._streams.get(stream)
        if target is not None and sink in target.sinks:
            target.sinks.remove(sink)
            self._touch(target)

    async def link(self, source: str, target: str) -> int:
        """Copy (by reference) ``source``'s retained history into ``target``, then follow it live.

        Returns how many messages were copied. Linking twice copies nothing, and linking
        again after an unlink copies only what the target has not had yet.
        """
        self._pinned.update((source, target))
        try:
            origin = await self._stream(source)
            follower = await self._stream(target)
            if target in origin.links:
                return 0
            already = max(await self._last_copied(follower, source), await self._oldest(origin) - 1)
            stored: dict[int, Delivery] = {}  # what memory no longer holds, read before taking a slot
            if not origin.complete and already + 1 < origin.first():
                collected: list[Delivery] = []
                await self._read_upto(origin, already, origin.first() - 1, collected)
                stored = {_offset(d.id): d for d in collected}
            await self._hold((source, target))
        finally:
            self._pinned.subtract((source, target))
        origin, follower = self._streams[source], self._streams[target]
        if target in origin.links:
            self._slots.release()
            return 0
        self._trim(origin)
        ops: list[Op] = [Link(source, target, True)]
        offers = []
        start = max(already + 1, origin.first()) if origin.complete else already + 1
        for offset in range(start, origin.last_offset + 1):
            copy = self._copy_of(origin, offset, stored)
            if copy is None:
                continue
            ref_source, ref_offset, own, type, text, _ = copy
            # History copied on subscribe is a replay: never coalesced (§5), so no key.
            delivery, copy_ops = self._append_copy(follower, ref_source, ref_offset, own, type, text, None, None)
            offers.append((follower, delivery))
            ops.extend(copy_ops)
        origin.links.add(target)
        self._followers_of.setdefault(target, set()).add(source)
        self._send.send_nowait(_Publish(tuple(ops), tuple(offers)))
        self._fit()
        return len(offers)

    def _copy_of(
        self, origin: _Stream, offset: int, stored: dict[int, Delivery]
    ) -> tuple[str, int, _Own | None, str, str, str | None] | None:
        """(source, offset, entry, type, text, key) of what a copy of ``offset`` refers to."""
        entry = origin.entry(offset)
        if isinstance(entry, _Own):
            return origin.key, offset, entry, entry.type, _text_of(entry.frame), entry.key
        if isinstance(entry, _Ref):  # a copy of a copy refers to the original
            resolved = self._resolve(origin, offset, entry)
            if resolved is not None:
                return entry.source, entry.offset, entry.own, resolved.type, resolved.text, resolved.coalesce_key
            return None
        found = stored.get(offset)
        if found is None:
            return None
        return origin.key, offset, None, found.type, found.text, found.coalesce_key

    async def _read_upto(self, stream: _Stream, after: int, upto: int, out: list[Delivery]) -> None:
        while after < upto:
            page = [d for d in await self._page(stream, after) if _offset(d.id) <= upto]
            if not page:
                return
            out.extend(page)
            after = _offset(page[-1].id)

    async def _last_copied(self, follower: _Stream, source: str) -> int:
        """The last offset of ``source`` that ``follower`` already holds a copy of."""
        for entry in reversed(follower.history):
            if isinstance(entry, _Ref) and entry.source == source:
                return entry.offset
        if follower.complete:
            return 0
        return int(await self._in_store(self.store.load_last_ref, follower.key, source))

    async def unlink(self, source: str, target: str) -> None:
        await self._hold((source,))
        self._streams[source].links.discard(target)
        sources = self._followers_of.get(target)
        if sources is not None:
            sources.discard(source)
            if not sources:
                del self._followers_of[target]
        self._send.send_nowait(_Publish((Link(source, target, False),), ()))

    async def followed_by(self, target: str) -> list[str]:
        """The streams ``target`` follows (a session's investigations), across restarts."""
        stored = await self._in_store(self.store.links_to, target)
        sources = set(stored) | self._followers_of.get(target, set())
        return sorted([s for s in sources if target in (await self._stream(s)).links])

    async def retained(self, stream: str) -> list[Delivery]:
        """Every committed message ``stream`` retains, from memory or the store."""
        target = await self._stream(stream)
        entries: list[Delivery] = []
        self._pinned[stream] += 1
        try:
            await self._read(target, await self._oldest(target) - 1, _Collect(entries))
        finally:
            self._pinned[stream] -= 1
        return entries

    async def last_id(self, stream: str) -> str:
        """The id of the last committed message (offset 0 for an empty stream)."""
        target = await self._stream(stream)
        return f"{target.epoch}-{target.committed}"

    # --- the store's lane, for the records kept beside streams (records.local) -----------
    # Not part of ``Broker``: one writer orders every change to this broker's store.

    async def record(self, *ops: Op) -> None:
        """Queue store writes behind everything published so far (same transactions);
        raises :class:`StoreUnavailable` as a publish does."""
        await self._hold(())
        self._send.send_nowait(_Publish(ops, ()))

    async def query(self, read: Callable[..., Any], *args: Any) -> Any:
        """Run a store read (``store.load_...``) in the store's worker thread."""
        return await self._in_store(read, *args)


class _Collect:
    """A sink that keeps what it is offered (digests read history through it)."""

    def __init__(self, into: list[Delivery]) -> None:
        self.into = into

    def offer(self, delivery: Delivery) -> None:
        self.into.append(delivery)
