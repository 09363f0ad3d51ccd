"""A store that cannot accept writes answers ``UNAVAILABLE`` and loses nothing else (§7).

The broker raises :class:`StoreUnavailable` (its own tests cover when); here the connection
and the turn runner must turn it into one ``error`` with ``retry_after``, keep the
connection, the session and the other clients going, and work again once it recovers.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from cidadao_trio.broker.base import Delivery, StoreUnavailable
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.config import Settings
from cidadao_trio.investigations.scope import Filters
from cidadao_trio.protocol.events import Event
from cidadao_trio.records.local import StoreRecords
from cidadao_trio.server.server import Server

from ..harness import TEST_DEFAULTS, connect, is_turn_end, receive, receive_until, send

CHAT = "/api/v1/ws/chat/"


class FailingBroker(LocalBroker):
    """A memory broker whose durable publishes fail while ``failing`` is set."""

    failing = False

    async def publish(self, stream: str, event: Event, *, origin: int | None = None) -> Delivery:
        if self.failing and event.durable:
            raise StoreUnavailable("database or disk is full", retry_after=2.5)
        return await super().publish(stream, event, origin=origin)


async def test_a_chat_the_store_cannot_take_is_answered_unavailable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = FailingBroker()
    server = Server(Settings(**TEST_DEFAULTS), broker=broker, dataset=())
    async with server.running():
        async with connect(server, f"{CHAT}s1") as ws, connect(server, f"{CHAT}s2") as other:
            await receive(ws)
            await receive(other)
            broker.failing = True
            await send(ws, "chat", {"message": "Olá"}, id="c1")
            error = await receive(ws)
            assert error["type"] == "error"
            assert error["data"]["code"] == "UNAVAILABLE"
            assert error["data"]["reply_to"] == "c1" and error["data"]["retry_after"] == 2.5
            await send(ws, "ping", id="p")  # the connection carries on
            assert (await receive(ws))["data"] == {"reply_to": "p"}
            broker.failing = False  # the store recovered: the same message now goes through
            await send(ws, "chat", {"message": "Olá"}, id="c1")
            turn = await receive_until(ws, is_turn_end)
            assert turn[0]["type"] == "chat" and turn[0]["data"]["reply_to"] == "c1"
            assert any(m["type"] == "chat_complete" and m["data"]["status"] == "completed" for m in turn)
            await send(other, "ping", id="q")  # and nobody else noticed
            assert (await receive(other))["data"] == {"reply_to": "q"}


async def test_a_turn_cut_by_the_store_ends_without_a_traceback(
    autojump_clock: trio.testing.MockClock, caplog: Any
) -> None:
    broker = FailingBroker()
    server = Server(Settings(**{**TEST_DEFAULTS, "reply_chunk_delay": 0.01}), broker=broker, dataset=())
    async with server.running():
        async with connect(server, f"{CHAT}s1") as ws:
            await receive(ws)
            await send(ws, "chat", {"message": "Olá, tudo bem?"}, id="c1")
            await receive_until(ws, lambda m: m["type"] == "chat" and m["data"]["role"] == "assistant")
            broker.failing = True
            await trio.sleep(5)
            broker.failing = False
            await send(ws, "ping", id="p")
            await receive_until(ws, lambda m: m["type"] == "pong")
    assert not [r for r in caplog.records if r.exc_info]
    assert any("store" in r.getMessage() or "disk is full" in r.getMessage() for r in caplog.records)


class OwnerlessRecords(StoreRecords):
    """Records that cannot take a new session's owner."""

    async def save_session_owner(self, session_id: str, owner_key: str) -> None:
        raise StoreUnavailable("database or disk is full", retry_after=3.0)


async def test_a_session_the_store_cannot_record_is_refused_unavailable(
    autojump_clock: trio.testing.MockClock, caplog: Any
) -> None:
    broker = LocalBroker()
    server = Server(Settings(**TEST_DEFAULTS), broker=broker, dataset=(), records=OwnerlessRecords(broker))
    async with server.running():
        async with connect(server, f"{CHAT}new-session") as ws:
            error = await receive(ws)
            assert error["data"]["code"] == "UNAVAILABLE" and error["data"]["retry_after"] == 3.0
    assert not [r for r in caplog.records if r.exc_info]


async def test_an_investigation_cut_by_the_store_ends_without_a_traceback(
    autojump_clock: trio.testing.MockClock, caplog: Any
) -> None:
    broker = FailingBroker()
    server = Server(Settings(**{**TEST_DEFAULTS, "investigation_step_delay": 1.0}), broker=broker, dataset=())
    async with server.running():
        assert server.engine is not None
        record = await server.engine.start(Filters(), "anon", public=True)
        await trio.sleep(1.5)
        broker.failing = True
        await trio.sleep(10)
        broker.failing = False
        assert server.engine.records[record.id].status == "failed"
    assert not [r for r in caplog.records if r.exc_info]
    assert any(record.id in r.getMessage() for r in caplog.records)
