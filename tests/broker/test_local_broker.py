"""LocalBroker (PROTOCOL.md §4): offsets, ids, retention, resume without gap or duplicate, links.

The broker commits through one writer task (``run``) and offers messages to live sinks
only after the commit; ``flush`` waits for everything published so far. These tests use
the default ephemeral store and an injected clock.
"""

from __future__ import annotations

import json
import re
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cidadao_trio.broker.base import Delivery, investigation_stream, session_stream
from cidadao_trio.broker.local import WRITE_QUEUE_SIZE, LocalBroker
from cidadao_trio.protocol.envelope import DurableId
from cidadao_trio.session.digest import read_digest

from ..harness import ListSink
from ..messages import message

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
S = session_stream("s1")
INV = investigation_stream("INV-2026-001")


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def started(nursery: trio.Nursery, **kwargs: Any) -> LocalBroker:
    kwargs.setdefault("clock", FakeClock())
    broker = LocalBroker(**kwargs)
    await nursery.start(broker.run)
    return broker


def cursor(text: str) -> DurableId:
    parsed = DurableId.parse(text)
    assert parsed is not None
    return parsed


async def publish_chats(b: LocalBroker, stream: str, n: int, start: int = 0) -> list[Delivery]:
    out = [await b.publish(stream, message("chat", {"role": "user", "content": f"m{start + i}"})) for i in range(n)]
    await b.flush()
    return out


def ids(b: LocalBroker, *offsets: int) -> list[str]:
    return [f"{b.epoch}-{o}" for o in offsets]


# --- publish, ids ---------------------------------------------------------------------


async def test_offsets_start_at_one_and_grow_by_one_per_stream(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    first = await publish_chats(b, S, 3)
    other = await publish_chats(b, session_stream("s2"), 2)
    more = await publish_chats(b, S, 2)
    assert [d.id for d in first + more] == ids(b, 1, 2, 3, 4, 5)
    assert [d.id for d in other] == ids(b, 1, 2)


async def test_epoch_is_a_valid_id_part(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    delivery = (await publish_chats(b, S, 1))[0]
    assert DurableId.parse(delivery.id) == DurableId(b.epoch, 1)
    assert LocalBroker().epoch != b.epoch  # a fresh (ephemeral) broker says so with a fresh epoch


async def test_durable_delivery_text_is_the_envelope(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    delivery = await b.publish(S, message("chat", {"role": "assistant", "content": 'Olá, ação "x"'}), origin=9)
    assert delivery.durable and delivery.type == "chat" and delivery.origin == 9
    envelope = json.loads(delivery.text)
    assert set(envelope) == {"type", "data", "timestamp", "id"}
    assert envelope["type"] == "chat"
    assert envelope["data"] == {"role": "assistant", "content": 'Olá, ação "x"'}
    assert envelope["id"] == delivery.id == f"{b.epoch}-1"
    assert TIMESTAMP.fullmatch(envelope["timestamp"])
    assert delivery.size == len(delivery.text.encode())


async def test_progress_carries_coalesce_key(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    progress = message("investigation_progress", {"investigation_id": "INV-2026-001", "progress": 10})
    delivery = await b.publish(INV, progress)
    assert delivery.coalesce_key == "progress:INV-2026-001"
    assert (await b.publish(S, message("chat", {"content": "x"}))).coalesce_key is None


async def test_ephemeral_types_are_relayed_not_stored(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    sink = ListSink()
    await b.attach(S, sink, None)
    await b.publish(S, message("chat", {"content": "a"}))
    typing = await b.publish(S, message("typing", {"role": "user", "isTyping": True}), origin=4)
    pong = await b.publish(S, message("pong", {}))
    after = await b.publish(S, message("chat", {"content": "b"}))
    await b.flush()
    for delivery in (typing, pong):
        assert not delivery.durable
        envelope = json.loads(delivery.text)
        assert envelope["id"].startswith("e-")
        assert DurableId.parse(envelope["id"]) is None
        assert DurableId.parse(delivery.id) is None
    assert json.loads(typing.text)["id"] != json.loads(pong.text)["id"]
    assert typing.origin == 4
    assert after.id == f"{b.epoch}-2"  # ephemeral messages take no offset
    assert [d.type for d in sink.got] == ["chat", "typing", "pong", "chat"]  # publish order kept
    replay = ListSink()
    attachment = await b.attach(S, replay, cursor(f"{b.epoch}-0"))
    assert attachment.replayed == 2
    assert [d.type for d in replay.got] == ["chat", "chat"]


async def test_last_id(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    assert await b.last_id(S) == f"{b.epoch}-0"
    await publish_chats(b, S, 3)
    assert await b.last_id(S) == f"{b.epoch}-3"


# --- attach / resume ------------------------------------------------------------------


async def test_attach_without_cursor_gets_only_live(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await publish_chats(b, S, 3)
    sink = ListSink()
    attachment = await b.attach(S, sink, None)
    assert not attachment.gap and attachment.replayed == 0
    assert sink.got == []
    await publish_chats(b, S, 1)
    assert sink.durable_ids == ids(b, 4)


async def test_attach_replays_after_cursor_then_live(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await publish_chats(b, S, 5)
    sink = ListSink()
    attachment = await b.attach(S, sink, cursor(f"{b.epoch}-2"))
    assert not attachment.gap and attachment.replayed == 3
    await publish_chats(b, S, 2, start=5)
    assert sink.durable_ids == ids(b, 3, 4, 5, 6, 7)
    assert [p["data"]["content"] for p in sink.payloads()] == ["m2", "m3", "m4", "m5", "m6"]


async def test_attach_at_head_replays_nothing(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await publish_chats(b, S, 3)
    sink = ListSink()
    attachment = await b.attach(S, sink, cursor(f"{b.epoch}-3"))
    assert (attachment.gap, attachment.replayed) == (False, 0)
    await publish_chats(b, S, 1)
    assert sink.durable_ids == ids(b, 4)


async def test_attach_from_offset_zero_replays_everything(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await publish_chats(b, S, 3)
    sink = ListSink()
    attachment = await b.attach(S, sink, cursor(f"{b.epoch}-0"))
    assert attachment.replayed == 3 and not attachment.gap
    assert sink.durable_ids == ids(b, 1, 2, 3)


async def test_attach_with_invalid_cursor_reports_gap_and_stays_live(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await publish_chats(b, S, 3)
    other_epoch = "zz" if b.epoch != "zz" else "yy"
    for bad in (f"{other_epoch}-1", f"{b.epoch}-9"):
        sink = ListSink()
        attachment = await b.attach(S, sink, cursor(bad))
        assert attachment.gap and attachment.replayed == 0
        assert sink.got == []
        await publish_chats(b, S, 1)
        assert len(sink.durable_ids) == 1
        b.detach(S, sink)


async def test_attach_with_trimmed_cursor_reports_gap(nursery: trio.Nursery) -> None:
    b = await started(nursery, max_messages=3)
    await publish_chats(b, S, 6)
    sink = ListSink()
    attachment = await b.attach(S, sink, cursor(f"{b.epoch}-2"))
    assert attachment.gap and attachment.replayed == 0 and sink.got == []
    ok = ListSink()
    attachment = await b.attach(S, ok, cursor(f"{b.epoch}-3"))
    assert not attachment.gap and ok.durable_ids == ids(b, 4, 5, 6)


async def test_every_sink_gets_each_live_message_once(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    sinks = [ListSink() for _ in range(3)]
    for sink in sinks:
        await b.attach(S, sink, None)
    await publish_chats(b, S, 2)
    for sink in sinks:
        assert sink.durable_ids == ids(b, 1, 2)
    assert sinks[0].got[0] is sinks[1].got[0]  # one encoding shared by every sink


async def test_nothing_offered_before_commit_and_no_duplicate_at_the_seam(nursery: trio.Nursery) -> None:
    b = LocalBroker(clock=FakeClock())  # writer not started yet: nothing is committed
    early = ListSink()
    await b.attach(S, early, None)
    await b.publish(S, message("chat", {"content": "a"}))
    await b.publish(S, message("chat", {"content": "b"}))
    assert early.got == []  # not offered before it is committed
    assert await b.cursor_is_valid(S, cursor(f"{b.epoch}-0"))
    seam = ListSink()
    attachment = await b.attach(S, seam, cursor(f"{b.epoch}-0"))
    assert not attachment.gap and attachment.replayed == 0  # only committed history replays
    await nursery.start(b.run)
    await b.flush()
    assert early.durable_ids == seam.durable_ids == ids(b, 1, 2)  # live, once
    late = ListSink()
    assert (await b.attach(S, late, cursor(f"{b.epoch}-0"))).replayed == 2
    assert late.durable_ids == ids(b, 1, 2)


async def test_cancelled_publish_leaves_no_hole(nursery: trio.Nursery) -> None:
    """A publisher cancelled while the write queue is full must not burn an offset.

    Otherwise live clients see a gap (the offset is never offered) while a resume replays
    a message that never reached the store or any live sink.
    """
    b = LocalBroker(clock=FakeClock())
    live = ListSink()
    await b.attach(S, live, None)  # creating the stream queues one write
    for i in range(WRITE_QUEUE_SIZE - 1):  # fill the write queue (the writer is not running)
        with trio.fail_after(1):
            await b.publish(S, message("typing", {"i": i}))
    with trio.move_on_after(0.01) as scope:
        await b.publish(S, message("chat", {"content": "cancelled"}))
    assert scope.cancelled_caught  # it really was blocked, then cancelled
    await nursery.start(b.run)
    await b.publish(S, message("chat", {"content": "next"}))
    await b.flush()
    offsets = [cursor(i).offset for i in live.durable_ids]
    assert offsets == list(range(1, len(offsets) + 1)), f"live client saw offsets {offsets}"
    resumed = ListSink()
    await b.attach(S, resumed, cursor(f"{b.epoch}-0"))
    assert resumed.durable_ids == live.durable_ids  # replay agrees with what went live


# --- cursor_is_valid, retention -------------------------------------------------------


async def test_cursor_validity_basics(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    e = b.epoch
    await publish_chats(b, S, 3)
    assert await b.cursor_is_valid(S, cursor(f"{e}-0"))
    assert await b.cursor_is_valid(S, cursor(f"{e}-1"))
    assert await b.cursor_is_valid(S, cursor(f"{e}-3"))
    assert not await b.cursor_is_valid(S, cursor(f"{e}-4"))  # from the future
    assert not await b.cursor_is_valid(S, cursor(f"{e}x-1"))  # another epoch
    assert not await b.cursor_is_valid(session_stream("s2"), cursor(f"{e}-1"))  # nothing there


async def test_retention_by_count(nursery: trio.Nursery) -> None:
    b = await started(nursery, max_messages=3)
    e = b.epoch
    await publish_chats(b, S, 5)  # keeps 3, 4, 5
    assert await b.cursor_is_valid(S, cursor(f"{e}-5"))
    assert await b.cursor_is_valid(S, cursor(f"{e}-2"))  # the next one (3) is still retained
    assert not await b.cursor_is_valid(S, cursor(f"{e}-1"))
    assert not await b.cursor_is_valid(S, cursor(f"{e}-0"))
    sink = ListSink()
    await b.attach(S, sink, cursor(f"{e}-2"))
    assert sink.durable_ids == ids(b, 3, 4, 5)


async def test_retention_by_age(nursery: trio.Nursery) -> None:
    clock = FakeClock(0.0)
    b = await started(nursery, max_age=50.0, clock=clock)
    e = b.epoch
    await publish_chats(b, S, 3)  # created at 0
    clock.now = 100.0
    await publish_chats(b, S, 2, start=3)  # created at 100
    clock.now = 120.0
    assert await b.cursor_is_valid(S, cursor(f"{e}-3"))
    assert not await b.cursor_is_valid(S, cursor(f"{e}-2"))
    assert not await b.cursor_is_valid(S, cursor(f"{e}-0"))
    sink = ListSink()
    attachment = await b.attach(S, sink, cursor(f"{e}-3"))
    assert not attachment.gap and sink.durable_ids == ids(b, 4, 5)


async def test_retention_by_age_without_new_publishes(nursery: trio.Nursery) -> None:
    clock = FakeClock(0.0)
    b = await started(nursery, max_age=10.0, clock=clock)
    e = b.epoch
    await publish_chats(b, S, 3)
    clock.now = 5.0
    assert await b.cursor_is_valid(S, cursor(f"{e}-0"))
    clock.now = 11.0  # everything expired; only the head cursor can be honoured
    assert await b.cursor_is_valid(S, cursor(f"{e}-3"))
    assert not await b.cursor_is_valid(S, cursor(f"{e}-2"))
    sink = ListSink()
    attachment = await b.attach(S, sink, cursor(f"{e}-2"))
    assert attachment.gap and sink.got == []
    await publish_chats(b, S, 1)
    assert sink.durable_ids == ids(b, 4)  # offsets keep growing after expiry


async def test_retention_does_not_reset_offsets(nursery: trio.Nursery) -> None:
    b = await started(nursery, max_messages=2)
    assert [d.id for d in await publish_chats(b, S, 10)] == ids(b, *range(1, 11))


# --- link / unlink --------------------------------------------------------------------


async def test_link_copies_history_with_target_ids_then_follows(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await publish_chats(b, S, 2)
    src = [
        await b.publish(INV, message("investigation_progress", {"investigation_id": "INV-2026-001", "progress": p}))
        for p in (0, 10, 30)
    ]
    await b.flush()
    sink = ListSink()
    await b.attach(S, sink, cursor(f"{b.epoch}-2"))
    assert await b.link(INV, S) == 3
    await b.flush()
    assert sink.durable_ids == ids(b, 3, 4, 5)
    payloads = sink.payloads()
    assert [p["id"] for p in payloads] == ids(b, 3, 4, 5)
    assert [p["data"] for p in payloads] == [json.loads(d.text)["data"] for d in src]
    assert [p["timestamp"] for p in payloads] == [json.loads(d.text)["timestamp"] for d in src]
    assert all(d.coalesce_key is None for d in sink.got)  # a copy on subscribe is a replay: never coalesced

    data = {"investigation_id": "INV-2026-001", "anomaly_id": "a1"}
    live = await b.publish(INV, message("anomaly_detected", data), origin=3)
    await b.flush()
    assert live.id == f"{b.epoch}-4"  # the source's own id
    assert sink.durable_ids[-1] == f"{b.epoch}-6"  # the target's own id
    assert json.loads(sink.got[-1].text)["data"] == data
    assert sink.got[-1].origin == 3

    later = ListSink()  # the copies are durable in the target: a resume replays them
    await b.attach(S, later, cursor(f"{b.epoch}-2"))
    assert later.durable_ids == ids(b, 3, 4, 5, 6)


async def test_link_into_fresh_stream_starts_at_one(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await publish_chats(b, INV, 2)
    assert await b.link(INV, S) == 2
    await b.flush()
    sink = ListSink()
    await b.attach(S, sink, cursor(f"{b.epoch}-0"))
    assert sink.durable_ids == ids(b, 1, 2)


async def test_link_twice_copies_nothing(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await publish_chats(b, INV, 3)
    assert await b.link(INV, S) == 3
    await b.flush()
    sink = ListSink()
    await b.attach(S, sink, None)
    assert await b.link(INV, S) == 0
    await b.flush()
    assert sink.got == []
    await publish_chats(b, INV, 1)
    assert sink.durable_ids == ids(b, 4)  # followed once, not twice
    assert await b.followed_by(S) == [INV]


async def test_link_copies_only_retained_history(nursery: trio.Nursery) -> None:
    b = await started(nursery, max_messages=2)
    await publish_chats(b, INV, 5)
    assert await b.link(INV, S) == 2
    await b.flush()
    sink = ListSink()
    await b.attach(S, sink, cursor(f"{b.epoch}-0"))
    assert [p["data"]["content"] for p in sink.payloads()] == ["m3", "m4"]


async def test_link_to_several_targets(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await b.link(INV, session_stream("a"))
    await b.link(INV, session_stream("b"))
    a, c = ListSink(), ListSink()
    await b.attach(session_stream("a"), a, None)
    await b.attach(session_stream("b"), c, None)
    await publish_chats(b, INV, 2)
    assert a.durable_ids == c.durable_ids == ids(b, 1, 2)


async def test_ephemeral_not_copied_by_link(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await b.publish(INV, message("typing", {"isTyping": True}))
    await b.flush()
    assert await b.link(INV, S) == 0


async def test_unlink_stops_following(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    await b.link(INV, S)
    sink = ListSink()
    await b.attach(S, sink, None)
    await publish_chats(b, INV, 1)
    await b.unlink(INV, S)
    await publish_chats(b, INV, 2, start=1)
    assert sink.durable_ids == ids(b, 1)
    assert await b.followed_by(S) == []
    await b.unlink(INV, S)  # harmless twice
    await b.flush()


async def test_source_sinks_unaffected_by_link(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    src_sink = ListSink()
    await b.attach(INV, src_sink, None)
    await b.link(INV, S)
    await publish_chats(b, INV, 2)
    assert src_sink.durable_ids == ids(b, 1, 2)


# --- detach ---------------------------------------------------------------------------


async def test_detach_stops_delivery_to_that_sink_only(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    a, c = ListSink(), ListSink()
    await b.attach(S, a, None)
    await b.attach(S, c, None)
    await publish_chats(b, S, 1)
    b.detach(S, a)
    await b.publish(S, message("chat", {"content": "x"}))
    await b.publish(S, message("typing", {"isTyping": True}))
    await b.flush()
    assert a.durable_ids == ids(b, 1) and len(a.got) == 1
    assert c.durable_ids == ids(b, 1, 2) and len(c.got) == 3


async def test_detach_is_harmless_when_not_attached(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    b.detach(session_stream("unknown"), ListSink())
    await publish_chats(b, S, 1)
    sink = ListSink()
    b.detach(S, sink)
    await b.attach(S, sink, None)
    b.detach(S, sink)
    b.detach(S, sink)
    await publish_chats(b, S, 1)
    assert sink.got == []


# --- digest (HISTORY_GAP) -------------------------------------------------------------


async def test_digest_latest_progress_every_anomaly_and_report(nursery: trio.Nursery) -> None:
    b = await started(nursery)
    inv = {"investigation_id": "INV-2026-001"}
    await b.publish(INV, message("investigation_progress", {**inv, "progress": 10}))
    await b.publish(INV, message("anomaly_detected", {**inv, "anomaly_id": "a1"}))
    await b.publish(INV, message("agent_finding", {**inv, "summary": "s"}))
    await b.publish(INV, message("investigation_progress", {**inv, "progress": 70}))
    await b.publish(INV, message("anomaly_detected", {**inv, "anomaly_id": "a2"}))
    await b.publish(INV, message("report_ready", {**inv, "url": "/r"}))
    await b.flush()
    digest = await read_digest(b, [INV])
    kinds = [(d.type, json.loads(d.text)["data"]) for d in digest]
    assert kinds == [
        ("anomaly_detected", {**inv, "anomaly_id": "a1"}),
        ("investigation_progress", {**inv, "progress": 70}),
        ("anomaly_detected", {**inv, "anomaly_id": "a2"}),
        ("report_ready", {**inv, "url": "/r"}),
    ]
    for d in digest:
        assert not d.durable and json.loads(d.text)["id"].startswith("e-")


# --- property: resume never loses or repeats ------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 4)),
        st.tuples(st.just("publish_linked"), st.integers(1, 3)),
        st.tuples(st.just("typing"), st.just(1)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("disconnect"), st.just(0)),
        st.tuples(st.just("reconnect"), st.just(0)),
        st.tuples(st.just("tick"), st.integers(1, 100)),
        st.tuples(st.just("start_writer"), st.just(0)),
    ),
    max_size=60,
)


def _run(max_messages: int, max_age: float, ops: list[tuple[str, int]], attach_late: bool) -> None:
    async def scenario() -> None:
        clock = FakeClock(0.0)
        b = LocalBroker(max_messages=max_messages, max_age=max_age, clock=clock)
        e = b.epoch
        sink = ListSink()  # the client's view, across all its connections
        conn: ListSink | None = None
        published_at: list[float] = []  # creation time of each durable message of S
        gaps = 0
        async with trio.open_nursery() as nursery:
            writer_started = False

            async def start_writer() -> None:
                nonlocal writer_started
                if not writer_started:
                    writer_started = True
                    await nursery.start(b.run)

            async def connect() -> None:
                nonlocal conn, gaps
                conn = ListSink()
                conn.offer = sink.offer  # type: ignore[method-assign]  # one client, many connections
                seen = sink.durable_ids
                last = cursor(seen[-1]) if seen else cursor(f"{e}-0")
                total = len(published_at)
                attachment = await b.attach(S, conn, last)
                if attachment.gap:
                    gaps += 1
                    lost = [
                        i
                        for i in range(last.offset + 1, total + 1)
                        if i <= total - max_messages or clock.now - published_at[i - 1] > max_age
                    ]
                    assert lost, "a gap was reported although the whole history was retained"
                    assert attachment.replayed == 0
                    sink.got.clear()  # after a gap the client starts again from live messages
                else:
                    assert attachment.replayed <= total - last.offset

            await b.link(INV, S)
            if not attach_late:
                await connect()
            for op, n in ops:
                if op == "publish":
                    for _ in range(n):
                        published_at.append(clock.now)
                        delivery = await b.publish(S, message("chat", {"content": f"c{len(published_at)}"}))
                        assert delivery.id == f"{e}-{len(published_at)}"
                elif op == "publish_linked":
                    for _ in range(n):
                        published_at.append(clock.now)
                        await b.publish(INV, message("anomaly_detected", {"n": len(published_at)}))
                elif op == "typing":
                    await b.publish(S, message("typing", {"isTyping": True}))
                elif op == "flush" and writer_started:
                    await b.flush()
                elif op == "start_writer":
                    await start_writer()
                elif op == "disconnect" and conn is not None:
                    b.detach(S, conn)
                    conn = None
                elif op == "reconnect" and conn is None:
                    await connect()
                elif op == "tick":
                    clock.now += n
            await start_writer()
            await b.flush()
            if conn is None:
                await connect()
            total = len(published_at)
            got = sink.durable_ids
            if got:
                first = cursor(got[0]).offset
                assert got == [f"{e}-{i}" for i in range(first, total + 1)]
            if gaps == 0:
                assert got == [f"{e}-{i}" for i in range(1, total + 1)]
            for delivery in sink.got:
                envelope = json.loads(delivery.text)
                if delivery.durable:
                    assert envelope["id"] == delivery.id
                    n = cursor(delivery.id).offset
                    key = "content" if delivery.type == "chat" else "n"
                    assert envelope["data"][key] in (f"c{n}", n)
                else:
                    assert envelope["id"].startswith("e-")
            nursery.cancel_scope.cancel()

    trio.run(scenario)


@settings(max_examples=200, deadline=None)
@given(ops=_ops, attach_late=st.booleans())
def test_resume_yields_exact_sequence_when_retained(ops: list[tuple[str, int]], attach_late: bool) -> None:
    """Retention never exceeded: every durable id exactly once, in order, whatever the interleaving
    of publishes, commits, disconnects and resumes with the last id seen."""
    _run(max_messages=10_000, max_age=1e9, ops=ops, attach_late=attach_late)


@settings(max_examples=200, deadline=None)
@given(
    ops=_ops,
    attach_late=st.booleans(),
    max_messages=st.integers(1, 6),
    max_age=st.sampled_from([50.0, 150.0, 1e9]),
)
def test_resume_reports_gap_only_when_history_was_really_lost(
    ops: list[tuple[str, int]], attach_late: bool, max_messages: int, max_age: float
) -> None:
    """With small retention: no duplicate, no silent gap; a gap is flagged only when messages expired."""
    _run(max_messages=max_messages, max_age=max_age, ops=ops, attach_late=attach_late)


async def test_link_skips_expired_history(nursery: trio.Nursery) -> None:
    clock = FakeClock(0.0)
    b = await started(nursery, max_age=60.0, clock=clock)
    await publish_chats(b, INV, 2)  # created at 0
    clock.now = 50.0
    await publish_chats(b, INV, 1, start=2)  # created at 50
    clock.now = 100.0  # the first two expired
    assert await b.link(INV, S) == 1
    await b.flush()
    sink = ListSink()
    await b.attach(S, sink, cursor(f"{b.epoch}-0"))
    assert [p["data"]["content"] for p in sink.payloads()] == ["m2"]
