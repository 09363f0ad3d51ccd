"""RedisBroker across two nodes (two broker instances on one Redis): PROTOCOL.md §4 holds
as if there were one server — shared offsets, resume anywhere, links, digest, records."""

from __future__ import annotations

import json

import trio

from cidadao_trio.broker import redis as redis_broker
from cidadao_trio.broker.base import investigation_stream, session_stream
from cidadao_trio.investigations.model import Investigation
from cidadao_trio.protocol.envelope import DurableId
from cidadao_trio.records.base import StoredReport
from cidadao_trio.records.redis import RedisRecords
from cidadao_trio.session.digest import read_digest

from ..messages import message
from .helpers import ListSink, cursor, hold_fan_out, offsets, started, wait_healthy
from .redis_process import RedisProcess

S = session_stream("s1")
INV = investigation_stream("INV-2026-001")


async def chats(broker: redis_broker.RedisBroker, n: int, stream: str = S, start: int = 0) -> list[str]:
    return [
        (await broker.publish(stream, message("chat", {"role": "user", "content": f"m{start + i}"}))).id
        for i in range(n)
    ]


async def progress(broker: redis_broker.RedisBroker, value: int) -> str:
    data = {"investigation_id": "INV-2026-001", "progress": value, "status": "anomaly_detection"}
    return (await broker.publish(INV, message("investigation_progress", data))).id


async def test_a_publish_reaches_a_sink_on_b_with_the_same_id(nursery: trio.Nursery, redis: RedisProcess) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    sink = ListSink()
    assert await b.attach(S, sink, None) == redis_broker.Attachment(False, 0)
    published = await chats(a, 3)
    assert await sink.wait_durable(3) == published
    assert offsets(published) == [1, 2, 3]
    assert len({cursor(i).epoch for i in published}) == 1
    assert [p["data"]["content"] for p in sink.payloads()] == ["m0", "m1", "m2"]
    assert [p["id"] for p in sink.payloads()] == published  # the id is inside the shared text
    await wait_healthy(a)
    await wait_healthy(b)


async def test_offsets_grow_by_one_whichever_node_publishes(nursery: trio.Nursery, redis: RedisProcess) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    ids = []
    for n in range(6):
        ids += await chats((a, b)[n % 2], 1, start=n)
    assert offsets(ids) == [1, 2, 3, 4, 5, 6]
    assert await a.last_id(S) == await b.last_id(S) == ids[-1]


async def test_concurrent_publishes_on_two_nodes_get_distinct_consecutive_offsets(
    nursery: trio.Nursery, redis: RedisProcess
) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    ids: list[str] = []

    async def burst(broker: redis_broker.RedisBroker, start: int) -> None:
        ids.extend(await chats(broker, 25, start=start))

    async with trio.open_nursery() as both:
        both.start_soon(burst, a, 0)
        both.start_soon(burst, b, 100)
    assert sorted(offsets(ids)) == list(range(1, 51))


async def test_resume_on_b_replays_exactly_what_was_missed_then_goes_live(
    nursery: trio.Nursery, redis: RedisProcess
) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    first = ListSink()
    await a.attach(S, first, None)
    published = await chats(a, 5)
    await first.wait_durable(5)
    a.detach(S, first)
    assert await b.cursor_is_valid(S, cursor(published[1]))
    second = ListSink()
    attachment = await b.attach(S, second, cursor(published[1]))
    assert attachment == redis_broker.Attachment(False, 3)
    assert second.durable_ids == published[2:]  # replayed before attach returned
    live = await chats(a, 2, start=5)
    assert await second.wait_durable(5) == published[2:] + live
    assert first.durable_ids == published  # detached: nothing more


async def test_a_cursor_of_another_epoch_or_the_future_is_a_gap(nursery: trio.Nursery, redis: RedisProcess) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    published = await chats(a, 2)
    epoch = cursor(published[0]).epoch
    for bad in (DurableId("other", 1), DurableId(epoch, 3)):
        assert not await b.cursor_is_valid(S, bad)
        sink = ListSink()
        assert await b.attach(S, sink, bad) == redis_broker.Attachment(True, 0)
        assert sink.got == []
        b.detach(S, sink)
    assert await b.cursor_is_valid(S, DurableId(epoch, 0))  # nothing lost yet: all replayable


async def test_retention_by_count_and_age(nursery: trio.Nursery, redis: RedisProcess) -> None:
    now = [1000.0]
    a = await started(nursery, redis.url, max_messages=3, max_age=100.0, clock=lambda: now[0])
    b = await started(nursery, redis.url, max_messages=3, max_age=100.0, clock=lambda: now[0])
    published = await chats(a, 5)
    assert not await b.cursor_is_valid(S, cursor(published[0]))  # offset 2 was trimmed
    assert await b.cursor_is_valid(S, cursor(published[1]))
    sink = ListSink()
    assert (await b.attach(S, sink, cursor(published[1]))).replayed == 3
    b.detach(S, sink)
    now[0] += 101.0
    assert not await b.cursor_is_valid(S, cursor(published[1]))  # expired
    assert await b.cursor_is_valid(S, cursor(published[-1]))  # seen everything: nothing missed
    assert await read_digest(b, [S]) == []


async def test_link_copies_history_and_streams_live_events_across_nodes(
    nursery: trio.Nursery, redis: RedisProcess
) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    await progress(a, 10)
    session = ListSink()
    await b.attach(S, session, None)
    subscribed = await b.publish(S, message("subscribed", {"investigation_id": "INV-2026-001"}))
    assert await b.link(INV, S) == 1
    assert await a.link(INV, S) == 0  # linking twice copies nothing
    await progress(a, 20)
    anomaly = await a.publish(
        INV, message("anomaly_detected", {"investigation_id": "INV-2026-001", "anomaly_id": "A1"})
    )
    ids = await session.wait_durable(4)
    assert offsets(ids) == [1, 2, 3, 4]
    assert ids[0] == subscribed.id
    assert [d.type for d in session.got] == [
        "subscribed", "investigation_progress", "investigation_progress", "anomaly_detected"
    ]
    assert [p["data"].get("progress") for p in session.payloads()][1:3] == [10, 20]
    assert session.got[1].coalesce_key == "progress:INV-2026-001"
    assert cursor(anomaly.id).offset == 3  # its own offset in the investigation stream
    assert await a.followed_by(S) == [INV]
    assert await a.followed_by(S) == [INV]
    await a.unlink(INV, S)
    assert await b.followed_by(S) == []
    await progress(a, 30)
    await a.publish(S, message("unsubscribed", {"investigation_id": "INV-2026-001"}))
    ids = await session.wait_durable(5)
    assert [d.type for d in session.got][-1] == "unsubscribed"  # progress 30 not copied
    assert offsets(ids)[-1] == 5


async def test_digest_is_latest_progress_every_anomaly_and_the_report(
    nursery: trio.Nursery, redis: RedisProcess
) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    data = {"investigation_id": "INV-2026-001"}
    await progress(a, 10)
    await a.publish(INV, message("anomaly_detected", {**data, "anomaly_id": "A1"}))
    await progress(a, 50)
    await a.publish(INV, message("agent_finding", {**data, "summary": "x"}))
    await a.publish(INV, message("anomaly_detected", {**data, "anomaly_id": "A2"}))
    await a.publish(INV, message("report_ready", data))
    digest = await read_digest(b, [INV])
    assert [d.type for d in digest] == [
        "anomaly_detected", "investigation_progress", "anomaly_detected", "report_ready"
    ]
    assert all(not d.durable and d.id.startswith("e-") for d in digest)
    payloads = [json.loads(d.text) for d in digest]
    assert payloads[1]["data"]["progress"] == 50
    assert [p["id"] for p in payloads] == [d.id for d in digest]


async def test_typing_is_relayed_but_not_stored_and_origin_is_local_only(
    nursery: trio.Nursery, redis: RedisProcess
) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    here, there = ListSink(), ListSink()
    await a.attach(S, here, None)
    await b.attach(S, there, None)
    typing = await a.publish(S, message("typing", {"role": "user", "isTyping": True}), origin=7)
    assert not typing.durable and typing.id == ""
    await here.wait_until(lambda s: len(s.got) == 1)
    await there.wait_until(lambda s: len(s.got) == 1)
    assert here.got[0].origin == 7  # the publishing node's own connection skips it
    assert there.got[0].origin is None  # connection 7 on B is somebody else
    assert here.got[0].text == there.got[0].text == typing.text
    assert (await b.last_id(S)).endswith("-0")  # nothing stored


async def test_session_owner_investigations_reports_are_shared(nursery: trio.Nursery, redis: RedisProcess) -> None:
    a = RedisRecords(await started(nursery, redis.url))
    b = RedisRecords(await started(nursery, redis.url))
    assert await b.session_owner("s1") is None
    await a.save_session_owner("s1", "user:ana")
    await b.save_session_owner("s1", "user:bob")  # the first owner stays
    assert await b.session_owner("s1") == await a.session_owner("s1") == "user:ana"
    first, second = (Investigation(f"INV-2026-00{n}", "t", "s", "anon", True) for n in (1, 2))
    await a.save_investigation(first)
    await a.save_investigation(second)
    updated = Investigation(first.id, "t", "s", "anon", True, status="completed")
    await b.save_investigation(updated)  # an update keeps its place
    assert await b.investigations() == [updated, second]
    assert await b.investigation("INV-2026-002") == second
    assert await b.investigation("INV-2026-404") is None
    assert await b.report("INV-2026-001") is None
    await a.save_report("INV-2026-001", StoredReport('{"r": 1}', "# R"))
    assert await b.report("INV-2026-001") == StoredReport('{"r": 1}', "# R")


async def test_next_number_is_atomic_across_nodes(nursery: trio.Nursery, redis: RedisProcess) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    numbers: list[int] = []

    async def take(broker: redis_broker.RedisBroker) -> None:
        numbers.append(await RedisRecords(broker).next_number("investigation:2026"))

    async with trio.open_nursery() as many:
        for n in range(40):
            many.start_soon(take, (a, b)[n % 2])
    assert sorted(numbers) == list(range(1, 41))
    assert await RedisRecords(a).next_number("investigation:2027") == 1


async def test_an_overflowing_inbox_is_refilled_from_the_stream(
    nursery: trio.Nursery, redis: RedisProcess, monkeypatch: object
) -> None:
    """A fan-out that falls behind loses pub/sub messages, then re-reads them: no gap."""
    monkeypatch.setattr(redis_broker, "INBOX_SIZE", 2)  # type: ignore[attr-defined]
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    sink = ListSink()
    await b.attach(S, sink, None)
    gate = hold_fan_out(b)
    published = await chats(a, 30)
    with trio.fail_after(10):
        while b.overflows < 27:  # one held by the fan-out, two queued, the rest dropped
            await trio.sleep(0.01)
    assert b.overflows == 27  # including the last one: only a re-read can bring it back
    gate.set()
    assert await sink.wait_durable(30) == published
    await trio.sleep(0.05)
    assert sink.durable_ids == published  # and nothing doubled later


async def test_relinking_copies_only_what_the_target_has_not_had(nursery: trio.Nursery, redis: RedisProcess) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    await progress(a, 10)
    assert await a.link(INV, S) == 1
    await progress(a, 20)  # copied live
    await b.unlink(INV, S)
    await progress(a, 30)  # not copied: unlinked
    assert await b.link(INV, S) == 1  # only 30: 10 and 20 are in the session already
    sink = ListSink()
    await b.attach(S, sink, None, from_oldest=True)
    assert [p["data"]["progress"] for p in sink.payloads()] == [10, 20, 30]
    assert offsets(sink.durable_ids) == [1, 2, 3]


async def test_from_oldest_replays_everything_retained_then_live(nursery: trio.Nursery, redis: RedisProcess) -> None:
    a = await started(nursery, redis.url, max_messages=3)
    b = await started(nursery, redis.url, max_messages=3)
    published = await chats(a, 5)
    sink = ListSink()
    attachment = await b.attach(S, sink, None, from_oldest=True)
    assert attachment == redis_broker.Attachment(False, 3)
    live = await chats(a, 1, start=5)
    assert await sink.wait_durable(4) == published[2:] + live


async def test_a_publish_cancelled_before_it_was_sent_is_not_appended(
    nursery: trio.Nursery, redis: RedisProcess
) -> None:
    """A caller cancelled before its publish is sent is told so and it is not in the stream
    (it was appended anyway: a chat echo could then appear with its turn forgotten)."""
    a = await started(nursery, redis.url)
    with trio.CancelScope() as scope:
        scope.cancel()
        await a.publish(S, message("chat", {"role": "user", "content": "cancelado"}))
    assert scope.cancelled_caught
    published = await chats(a, 1, start=1)
    assert offsets(published) == [1]  # the cancelled one took no offset
    assert [json.loads(d.text)["data"]["content"] for d in await a.retained(S)] == ["m1"]
