"""PROTOCOL.md §4: nothing is lost across reconnects, subscriptions, and restarts."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import trio
import trio.testing
import websockets

from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.protocol.envelope import DurableId
from cidadao_trio.records.local import StoreRecords
from cidadao_trio.store.sqlite import SqliteStore

from ..harness import (
    connect,
    is_turn_end,
    receive,
    receive_until,
    register_investigation,
    running_server,
    send,
)
from ..messages import message
from ..process import serve

INV = "INV-2026-001"


class ListSink:
    def __init__(self) -> None:
        self.deliveries: list = []

    def offer(self, delivery: object) -> None:
        self.deliveries.append(delivery)

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.deliveries]


async def progress(server: object, value: int) -> None:
    await server.broker.publish(  # type: ignore[attr-defined]
        f"investigation:{INV}",
        message("investigation_progress", {"investigation_id": INV, "progress": value, "status": "anomaly_detection"}),
    )


async def test_subscribe_replays_then_streams_live(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        register_investigation(server, INV)
        await progress(server, 10)
        await progress(server, 20)
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await send(ws, "subscribe", {"investigation_id": INV}, id="sub")
            await progress(server, 30)
            seen = await receive_until(ws, lambda m: m["data"].get("progress") == 30)
            assert seen[0]["type"] == "subscribed" and seen[0]["data"]["reply_to"] == "sub"
            assert [m["data"]["progress"] for m in seen[1:]] == [10, 20, 30]
            offsets = [DurableId.parse(m["id"]).offset for m in seen]  # type: ignore[union-attr]
            assert offsets == list(range(offsets[0], offsets[0] + 4))
            await send(ws, "subscribe", {"investigation_id": INV})  # harmless again
            assert (await receive(ws))["type"] == "subscribed"
            await progress(server, 40)
            again = await receive(ws)  # live, and not a second replay of 10..30
            assert again["data"]["progress"] == 40


async def test_subscriptions_belong_to_the_session(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        register_investigation(server, INV)
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await send(ws, "subscribe", {"investigation_id": INV})
            await receive(ws)
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await progress(server, 50)
            event = await receive(ws)
            assert event["type"] == "investigation_progress" and event["data"]["progress"] == 50
            await send(ws, "unsubscribe", {"investigation_id": INV})
            assert (await receive(ws))["type"] == "unsubscribed"
            await progress(server, 60)
            await send(ws, "ping", id="after")
            assert (await receive(ws))["type"] == "pong"  # nothing from the investigation


async def test_history_gap_sends_digest_then_live(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(history_messages=5) as server:
        register_investigation(server, INV)
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await send(ws, "subscribe", {"investigation_id": INV})
            first = await receive(ws)
        stream = f"investigation:{INV}"
        for value in (10, 30, 70):
            await progress(server, value)
        for n in range(3):
            await server.broker.publish(stream, message("anomaly_detected", {"investigation_id": INV, "n": n}))
        await server.broker.publish(stream, message("report_ready", {"investigation_id": INV, "url": "/r"}))
        async with connect(server, f"/api/v1/ws/chat/s1?last_id={first['id']}") as ws:
            hello = await receive(ws)
            assert hello["data"]["resumed"] is False
            assert (await receive(ws))["data"]["code"] == "HISTORY_GAP"
            digest = [await receive(ws) for _ in range(5)]
            assert [m["type"] for m in digest] == [
                "investigation_progress", "anomaly_detected", "anomaly_detected",
                "anomaly_detected", "report_ready",
            ]
            assert digest[0]["data"]["progress"] == 70
            assert all(m["id"].startswith("e-") for m in digest)
            await progress(server, 100)
            live = await receive(ws)
            assert live["data"]["progress"] == 100 and not live["id"].startswith("e-")


async def test_sqlite_history_survives_a_new_broker(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with trio.open_nursery() as nursery:
        broker = LocalBroker(store=SqliteStore(path))
        await nursery.start(broker.run)
        ids = [(await broker.publish("session:s", message("chat", {"n": n}))).id for n in range(5)]
        await StoreRecords(broker).save_session_owner("s", "user:alice")
        await broker.link("investigation:X", "session:s")
        await broker.flush()
        nursery.cancel_scope.cancel()
    broker.store.close()
    async with trio.open_nursery() as nursery:
        reborn = LocalBroker(store=SqliteStore(path))
        await nursery.start(reborn.run)
        assert await StoreRecords(reborn).session_owner("s") == "user:alice"
        assert await reborn.followed_by("session:s") == ["investigation:X"]
        sink = ListSink()
        attachment = await reborn.attach("session:s", sink, DurableId.parse(ids[1]))
        assert not attachment.gap and sink.ids == ids[2:]
        sixth = await reborn.publish("session:s", message("chat", {"n": 5}))
        await reborn.flush()
        assert sixth.id == f"{ids[0].split('-')[0]}-6" and sink.ids[-1] == sixth.id
        nursery.cancel_scope.cancel()
    reborn.store.close()


async def test_nothing_is_offered_before_it_is_committed(tmp_path: Path) -> None:
    """A sink sees a message only after the store has it (durable before sent)."""

    class CheckingSink(ListSink):
        def offer(self, delivery: object) -> None:
            row = store._db.execute(
                "SELECT 1 FROM messages WHERE stream = 'session:s' AND offset = ?",
                (int(delivery.id.rsplit("-", 1)[1]),),  # type: ignore[attr-defined]
            ).fetchone()
            assert row is not None
            super().offer(delivery)

    store = SqliteStore(tmp_path / "s.sqlite3")
    async with trio.open_nursery() as nursery:
        broker = LocalBroker(store=store)
        await nursery.start(broker.run)
        sink = CheckingSink()
        await broker.attach("session:s", sink, None)
        for n in range(50):
            await broker.publish("session:s", message("chat", {"n": n}))
        await broker.flush()
        assert len(sink.ids) == 50
        nursery.cancel_scope.cancel()
    store.close()


def _chat_and_collect(port: int, session: str, last_id: str | None = None, turns: int = 1) -> tuple[dict, list[dict]]:
    async def run() -> tuple[dict, list[dict]]:
        url = f"ws://127.0.0.1:{port}/api/v1/ws/chat/{session}"
        if last_id:
            url += f"?last_id={last_id}"
        async with websockets.connect(url) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            seen: list[dict] = []
            if last_id:  # drain the replay: up to and including the last turn's end
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    seen.append(message)
                    if message["type"] == "chat_complete" and message["data"]["reply_to"] == "last":
                        return hello, seen
            for n in range(turns):
                turn_id = "last" if n == turns - 1 else f"t{n}"
                await ws.send(json.dumps({"type": "chat", "data": {"message": "Olá"}, "id": turn_id}))
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    seen.append(message)
                    if is_turn_end(message):
                        break
            return hello, seen

    return asyncio.run(run())


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_resume_across_restart(tmp_path: Path, stop: signal.Signals) -> None:
    with serve(store="sqlite", data_dir=tmp_path) as server:
        _, seen = _chat_and_collect(server.port, "s1", turns=2)
        server.process.send_signal(stop)
        server.process.wait(timeout=15)
    durable = [m for m in seen if not m["id"].startswith("e-")]
    cursor = durable[2]["id"]
    with serve(store="sqlite", data_dir=tmp_path) as server:
        hello, replay = _chat_and_collect(server.port, "s1", last_id=cursor)
    assert hello["data"]["resumed"] is True
    assert [m["id"] for m in replay] == [m["id"] for m in durable[3:]]
    assert [m["data"] for m in replay] == [m["data"] for m in durable[3:]]


async def test_investigation_endpoint_replays_events_so_far(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        register_investigation(server, INV)
        await progress(server, 10)
        await progress(server, 20)
        async with connect(server, f"/api/v1/ws/investigations/{INV}") as ws:
            hello = await receive(ws)
            assert hello["data"]["resumed"] is False
            await progress(server, 30)
            seen = [await receive(ws) for _ in range(3)]
            assert [m["data"]["progress"] for m in seen] == [10, 20, 30]


async def test_resubscribing_copies_only_what_is_new(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        register_investigation(server, INV)
        for value in (10, 20, 30):
            await progress(server, value)
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await send(ws, "subscribe", {"investigation_id": INV})
            first = await receive_until(ws, lambda m: m["data"].get("progress") == 30)
            assert len(first) == 4
            await send(ws, "unsubscribe", {"investigation_id": INV})
            await receive(ws)
            await progress(server, 40)  # missed while not following: copied on the next subscribe
            await send(ws, "subscribe", {"investigation_id": INV})
            assert (await receive(ws))["type"] == "subscribed"
            await progress(server, 50)
            again = [(await receive(ws))["data"]["progress"] for _ in range(2)]
            assert again == [40, 50]  # and no second copy of 10..30


async def test_watch_replays_what_is_retained_after_trimming(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(history_messages=3) as server:
        register_investigation(server, INV)
        for value in range(10, 70, 10):
            await progress(server, value)
        async with connect(server, f"/api/v1/ws/investigations/{INV}") as ws:
            await receive(ws)
            assert [(await receive(ws))["data"]["progress"] for _ in range(3)] == [40, 50, 60]
