"""Connection lifecycle and the chat endpoint over in-memory streams, under virtual time."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
import wsproto
import wsproto.events
from trio_websocket import WebSocketConnection

from cidadao_trio.protocol.codes import ErrorCode
from cidadao_trio.server.connection import error_text
from cidadao_trio.server.server import Server
from cidadao_trio.session.chat import ChatEndpoint

from ..harness import (
    connect,
    is_turn_end,
    receive,
    receive_until,
    register_investigation,
    running_server,
    send,
    wait_closed,
)
from ..messages import message

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
DURABLE_ID = re.compile(r"[A-Za-z0-9]+-\d+")


@asynccontextmanager
async def _watching(server: Server, target: str, lockstep: bool = False) -> AsyncIterator[WebSocketConnection]:
    register_investigation(server, target.split("?")[0])
    async with connect(server, f"/api/v1/ws/investigations/{target}", lockstep=lockstep) as ws:
        yield ws


async def test_connection_message_first(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(server, "/api/v1/ws/chat/s1") as ws:
        hello = await receive(ws)
        assert hello["type"] == "connection"
        assert hello["data"] == {
            "status": "connected",
            "session_id": "s1",
            "message": "Conectado ao Cidadão.AI em tempo real",
            "resumed": False,
            "heartbeat_s": 30.0,
            "idle_timeout_s": 300.0,
            "max_message_bytes": 65536,
        }
        assert TIMESTAMP.fullmatch(hello["timestamp"])
        assert hello["id"].startswith("e-")


async def test_ping_pong_echoes_id(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(server, "/api/v1/ws/chat/s1") as ws:
        await receive(ws)
        await send(ws, "ping", id="p-1")
        pong = await receive(ws)
        assert pong["type"] == "pong" and pong["data"] == {"reply_to": "p-1"}
        await ws.send_message('{"type":"ping"}')
        assert (await receive(ws))["data"] == {}


async def test_full_chat_turn(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(server, "/api/v1/ws/chat/s1") as ws:
        await receive(ws)
        await send(ws, "chat", {"message": "Olá! O que você faz?"}, id="c1")
        turn = await receive_until(ws, is_turn_end)
        kinds = [m["type"] for m in turn]
        assert kinds[0] == "chat" and turn[0]["data"]["role"] == "user"
        assert turn[0]["data"]["content"] == "Olá! O que você faz?"
        assert kinds[1] == "typing" and turn[1]["data"] == {
            "agent": "processing", "agent_id": "drummond", "isTyping": True,
        }
        chunks = [m for m in turn if m["type"] == "chat" and m["data"]["role"] == "assistant"]
        assert len(chunks) > 1
        assert [c["data"]["chunk_index"] for c in chunks] == list(range(len(chunks)))
        assert all(c["data"]["chunk"] is True and c["data"]["reply_to"] == "c1" for c in chunks)
        assert all(c["data"]["agent_name"] == "Carlos Drummond de Andrade" for c in chunks)
        complete = turn[-2]
        assert complete["type"] == "chat_complete"
        assert complete["data"]["status"] == "completed"
        assert complete["data"]["content"] == "".join(c["data"]["content"] for c in chunks)
        assert complete["data"]["suggested_actions"]
        durable = [m for m in turn if m["type"] in ("chat", "chat_complete")]
        offsets = [int(m["id"].rsplit("-", 1)[1]) for m in durable]
        assert all(DURABLE_ID.fullmatch(m["id"]) for m in durable)
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


async def test_content_alias_is_accepted(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(server, "/api/v1/ws/chat/s1") as ws:
        await receive(ws)
        await send(ws, "chat", {"content": "oi"})
        first = await receive(ws)
        assert first["type"] == "chat" and first["data"]["content"] == "oi"


async def test_turns_answered_in_order_and_shared_by_tabs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_server(reply_chunk_delay=0.05) as server:
        async with connect(server, "/api/v1/ws/chat/s1") as tab1, connect(
            server, "/api/v1/ws/chat/s1"
        ) as tab2:
            await receive(tab1)
            await receive(tab2)
            for n in range(3):
                await send(tab1, "chat", {"message": f"pergunta {n}"}, id=f"q{n}")
            for tab in (tab1, tab2):
                completes = []
                users = []
                while len(completes) < 3:
                    message = await receive(tab)
                    if message["type"] == "chat_complete":
                        completes.append(message["data"]["reply_to"])
                    if message["type"] == "chat" and message["data"]["role"] == "user":
                        users.append(message["data"]["content"])
                assert completes == ["q0", "q1", "q2"]
                assert users == ["pergunta 0", "pergunta 1", "pergunta 2"]


async def test_typing_relayed_to_other_tabs_with_debounce(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_server() as server:
        async with connect(server, "/api/v1/ws/chat/s1") as tab1, connect(
            server, "/api/v1/ws/chat/s1"
        ) as tab2:
            await receive(tab1)
            await receive(tab2)
            for _ in range(5):
                await send(tab1, "typing", {"isTyping": True})
            await trio.sleep(1.5)
            await send(tab1, "typing", {"isTyping": False})
            await send(tab1, "ping", id="marker")
            await receive_until(tab1, lambda m: m["type"] == "pong")  # tab1 sees no echo
            await send(tab2, "ping", id="end")
            relayed = await receive_until(tab2, lambda m: m["type"] == "pong")
            typings = [m["data"] for m in relayed if m["type"] == "typing"]
            assert typings == [{"role": "user", "isTyping": True}, {"role": "user", "isTyping": False}]


async def test_cancel_stops_reply(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(reply_chunk_delay=1.0) as server, connect(
        server, "/api/v1/ws/chat/s1"
    ) as ws:
        await receive(ws)
        await send(ws, "chat", {"message": "Como funciona?"}, id="c1")
        await receive_until(ws, lambda m: m["type"] == "chat" and m["data"].get("chunk"))
        await send(ws, "cancel", {"reply_to": "c1"})
        rest = await receive_until(ws, lambda m: m["type"] == "chat_complete")
        assert rest[-1]["data"]["status"] == "cancelled"
        assert rest[-1]["data"]["reply_to"] == "c1"
        assert is_turn_end(await receive(ws))


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "INVALID_JSON"),
        ("[1, 2]", "INVALID_MESSAGE"),
        ('"text"', "INVALID_MESSAGE"),
        ('{"data": {}}', "INVALID_MESSAGE"),
        ('{"type": "chat", "data": {"message": ""}}', "INVALID_MESSAGE"),
        ('{"type": "chat", "data": {"message": 42}}', "INVALID_MESSAGE"),
        ('{"type": "chat", "data": "hi"}', "INVALID_MESSAGE"),
        ('{"type": "subscribe", "data": {"investigation_id": "../etc"}}', "INVALID_MESSAGE"),
        ('{"type": "launch_missiles"}', "UNKNOWN_TYPE"),
        ('{"type": "ping", "id": {"x": 1}}', "INVALID_MESSAGE"),
    ],
)
async def test_bad_input_gets_error_and_connection_carries_on(
    autojump_clock: trio.testing.MockClock, frame: str, code: str
) -> None:
    async with running_server() as server, connect(server, "/api/v1/ws/chat/s1") as ws:
        await receive(ws)
        await ws.send_message(frame)
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["data"]["code"] == code
        assert error["data"]["message"]
        await send(ws, "ping", id="still-here")
        assert (await receive(ws))["data"] == {"reply_to": "still-here"}


async def test_error_echoes_client_id(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(server, "/api/v1/ws/chat/s1") as ws:
        await receive(ws)
        await send(ws, "bogus", id=7)
        error = await receive(ws)
        assert error["data"]["code"] == "UNKNOWN_TYPE" and error["data"]["reply_to"] == 7


async def test_binary_frame_closes_1003(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(server, "/api/v1/ws/chat/s1") as ws:
        await receive(ws)
        await ws.send_message(b"\x00\x01")
        closed = await wait_closed(ws)
        assert closed.code == 1003


async def test_too_big_closes_1009(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(max_message_bytes=1024) as server, connect(
        server, "/api/v1/ws/chat/s1"
    ) as ws:
        await receive(ws)
        await send(ws, "chat", {"message": "x" * 2000})
        closed = await wait_closed(ws)
        assert closed.code == 1009


async def test_idle_timeout_closes_1000(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(server, "/api/v1/ws/chat/s1") as ws:
        await receive(ws)
        await trio.sleep(299)
        await send(ws, "ping")  # activity pushes the deadline
        await receive(ws)
        start = trio.current_time()
        closed = await wait_closed(ws)
        assert (closed.code, closed.reason) == (1000, "idle timeout")
        assert 299 <= trio.current_time() - start <= 301


async def test_unanswered_heartbeat_drops_connection(autojump_clock: trio.testing.MockClock) -> None:
    """A peer that completes the handshake and then never reads gets no pong in: dropped."""
    async with running_server() as server:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        server.spawn(server_stream)
        peer = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        await client_stream.send_all(
            peer.send(wsproto.events.Request(host="localhost", target="/api/v1/ws/chat/s1"))
        )
        while not any(isinstance(e, wsproto.events.AcceptConnection) for e in peer.events()):
            peer.receive_data(await client_stream.receive_some())
        await trio.sleep(1)
        assert len(server.connections) == 1
        started = trio.current_time()
        while server.connections:
            await trio.sleep(1)
        assert 39 <= trio.current_time() - started <= 45  # 30 s interval + 10 s to answer
        data = b""
        while chunk := await client_stream.receive_some():
            data += chunk
        peer.receive_data(data)
        events = list(peer.events())
        assert any(isinstance(e, wsproto.events.Ping) for e in events)
        closes = [e for e in events if isinstance(e, wsproto.events.CloseConnection)]
        assert closes and closes[0].code == 1011


async def test_heartbeat_keeps_live_client(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(idle_timeout=3600) as server, connect(
        server, "/api/v1/ws/chat/s1"
    ) as ws:
        await receive(ws)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_closed, ws)  # keep the client's reader draining pings
            await trio.sleep(600)
            assert len(server.connections) == 1
            nursery.cancel_scope.cancel()


async def test_connection_cap_refuses_with_overloaded(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(max_connections=2) as server:
        register_investigation(server, "INV-2026-001")
        async with connect(server, "/api/v1/ws/chat/a") as a, connect(
            server, "/api/v1/ws/investigations/INV-2026-001"
        ) as b:
            await receive(a)
            await receive(b)
            async with connect(server, "/api/v1/ws/chat/c") as c:
                error = await receive(c)
                assert error["type"] == "error"
                assert error["data"]["code"] == "OVERLOADED"
                assert error["data"]["retry_after"] > 0
                assert (await wait_closed(c)).code == 1013
            for ws in (a, b):
                await send(ws, "ping", id="ok")
                assert (await receive(ws))["type"] == "pong"


async def test_bad_session_id_refused_after_upgrade(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(server, "/api/v1/ws/chat/" + "x" * 65) as ws:
        error = await receive(ws)
        assert error["data"]["code"] == "INVALID_MESSAGE"
        assert (await wait_closed(ws)).code == 1008


async def test_handshake_timeout_closes_tcp(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        server.spawn(server_stream)
        await client_stream.send_all(b"GET /api/v1/ws/chat/s1 HTTP/1.1\r\nHost: x\r\n")
        start = trio.current_time()
        assert await client_stream.receive_some() == b""
        assert 10 <= trio.current_time() - start <= 10.5


async def test_bug_in_handler_closes_1011_and_others_carry_on(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ChatEndpoint.handle

    async def buggy(self, client, message):  # type: ignore[no-untyped-def]
        if self.session.id == "fragile":
            raise RuntimeError("bug")
        await original(self, client, message)

    monkeypatch.setattr(ChatEndpoint, "handle", buggy)
    async with running_server() as server:
        async with connect(server, "/api/v1/ws/chat/healthy") as healthy, connect(
            server, "/api/v1/ws/chat/fragile"
        ) as fragile:
            await receive(healthy)
            await receive(fragile)
            await send(fragile, "chat", {"message": "oi"})
            error = await receive(fragile)
            assert error["data"]["code"] == "INTERNAL_ERROR"
            assert (await wait_closed(fragile)).code == 1011
            await send(healthy, "chat", {"message": "oi"})
            turn = await receive_until(healthy, is_turn_end)
            assert any(m["type"] == "chat_complete" for m in turn)


async def test_shutdown_closes_1001(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.drain)
                closed = await wait_closed(ws)
            assert closed.code == 1001
            assert server.draining and not server.connections


async def test_investigation_endpoint_relays_and_refuses_chat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_server() as server, _watching(server, "INV-2026-007") as ws:
        hello = await receive(ws)
        assert hello["data"]["investigation_id"] == "INV-2026-007"
        await send(ws, "chat", {"message": "oi"}, id="x")
        refused = await receive(ws)
        assert refused["data"]["code"] == "UNSUPPORTED" and refused["data"]["reply_to"] == "x"
        await server.broker.publish(
            "investigation:INV-2026-007",
            message(
                "investigation_progress",
                {"investigation_id": "INV-2026-007", "progress": 10, "status": "data_retrieval"},
            ),
        )
        event = await receive(ws)
        assert event["type"] == "investigation_progress" and event["data"]["progress"] == 10
        assert DURABLE_ID.fullmatch(event["id"])


async def test_resume_replays_missed_messages(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await send(ws, "chat", {"message": "oi"})
            first_turn = await receive_until(ws, is_turn_end)
        last_seen = [m for m in first_turn if m["type"] == "chat"][0]["id"]
        missed_ids = [m["id"] for m in first_turn[1:] if m["type"] in ("chat", "chat_complete")]
        async with connect(server, f"/api/v1/ws/chat/s1?last_id={last_seen}") as again:
            hello = await receive(again)
            assert hello["data"]["resumed"] is True
            replay = [await receive(again) for _ in missed_ids]
            assert [m["id"] for m in replay] == missed_ids


async def test_unknown_cursor_gets_history_gap(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(
        server, "/api/v1/ws/chat/s1?last_id=deadbeef-42"
    ) as ws:
        hello = await receive(ws)
        assert hello["data"]["resumed"] is False
        gap = await receive(ws)
        assert gap["data"]["code"] == "HISTORY_GAP"


async def test_batch_mode_groups_pending_messages(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(batch_linger=0.005) as server, _watching(server, "INV-1?batch=1") as ws:
        await receive(ws)
        for progress in range(5):
            await server.broker.publish(
                "investigation:INV-1", message("anomaly_detected", {"investigation_id": "INV-1", "n": progress}))
        batch = await receive(ws)
        assert batch["type"] == "batch"
        assert batch["data"]["count"] == len(batch["data"]["messages"]) == 5
        assert [m["data"]["n"] for m in batch["data"]["messages"]] == list(range(5))


async def test_slow_consumer_closed_1013(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(outbox_messages=8) as server, _watching(
        server, "INV-1", lockstep=True
    ) as ws:
        await receive(ws)
        (connection,) = server.connections
        # The client stops reading: its TCP (lockstep) stalls and the outbox fills.
        for n in range(30):
            await server.broker.publish(
                "investigation:INV-1", message("anomaly_detected", {"investigation_id": "INV-1", "n": n}))
            await trio.sleep(0.1)
        assert connection.outbox.full_since is not None
        await trio.sleep(11)
        assert connection.intent is not None
        assert (connection.intent.code, connection.intent.reason) == (1013, "slow consumer")


def test_error_envelope_carries_retry_after() -> None:
    decoded = json.loads(error_text(ErrorCode.RATE_LIMIT, retry_after=1.5))
    assert decoded["type"] == "error"
    assert decoded["data"]["code"] == "RATE_LIMIT" and decoded["data"]["retry_after"] == 1.5
    assert "aguarde" in decoded["data"]["message"].lower()


async def test_session_state_is_released_when_unused(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(reply_chunk_delay=1.0) as server:
        async with connect(server, "/api/v1/ws/chat/short-lived") as ws:
            await receive(ws)
            await send(ws, "chat", {"message": "Olá"})
            await receive(ws)
        assert "short-lived" in server.hub.sessions  # its turn is still being answered
        await trio.sleep(60)
        assert "short-lived" not in server.hub.sessions
