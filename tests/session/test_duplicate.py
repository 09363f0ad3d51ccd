"""Safe resends (PROTOCOL.md §2, issue 20): a client message whose ``id`` the session has
already accepted is not executed again and is answered ``error DUPLICATE``, on this node,
after a restart, and when two nodes race with the same id."""

from __future__ import annotations

import asyncio
import json
import signal
from functools import partial
from pathlib import Path
from typing import Any

import trio
import trio.testing
import websockets

from cidadao_trio.broker.base import session_stream
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.config import Settings
from cidadao_trio.server.server import Server
from cidadao_trio.session.claims import claim_key
from cidadao_trio.store.base import MemoryStore

from ..harness import TEST_DEFAULTS, connect, is_turn_end, receive, receive_until, register_investigation, send
from ..multinode.helpers import LIMIT, greeted, node
from ..multinode.redis_process import redis_process
from ..process import serve


async def _history(server: Server, session_id: str) -> list[dict[str, Any]]:
    await server.broker.flush()
    return [json.loads(d.text) for d in await server.broker.retained(session_stream(session_id))]


def _user_messages(history: list[dict[str, Any]]) -> list[Any]:
    return [m["data"]["reply_to"] for m in history if m["type"] == "chat" and m["data"]["role"] == "user"]


def _completions(history: list[dict[str, Any]]) -> list[Any]:
    return [m["data"]["reply_to"] for m in history if m["type"] == "chat_complete"]


async def test_a_resent_chat_is_answered_duplicate_and_not_run_again(autojump_clock: trio.testing.MockClock) -> None:
    server = Server(Settings(**TEST_DEFAULTS), dataset=())
    async with server.running():
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await send(ws, "chat", {"message": "Olá"}, id="q1")
            await receive_until(ws, is_turn_end)
            await send(ws, "chat", {"message": "Olá"}, id="q1")  # resent on the same connection
            duplicate = await receive(ws)
        async with connect(server, "/api/v1/ws/chat/s1") as ws:  # and after a reconnect
            await receive(ws)
            await send(ws, "chat", {"message": "Olá"}, id="q1")
            again = await receive(ws)
            await send(ws, "chat", {"message": "Olá"}, id=1)  # a number is another id than "1"
            await receive_until(ws, is_turn_end)
            await send(ws, "cancel", {}, id="q1")  # an id is the session's, whatever the message type
            refused = await receive(ws)
        history = await _history(server, "s1")
    for answer in (duplicate, again):
        assert answer["type"] == "error" and answer["data"]["code"] == "DUPLICATE"
        assert answer["data"]["reply_to"] == "q1"
    assert refused["data"]["code"] == "DUPLICATE"
    assert _user_messages(history) == ["q1", 1] and _completions(history) == ["q1", 1]


async def test_a_refused_message_does_not_use_up_its_id(autojump_clock: trio.testing.MockClock) -> None:
    """Only an accepted message keeps its id: NOT_FOUND now, then accepted once it exists."""
    server = Server(Settings(**TEST_DEFAULTS), dataset=())
    async with server.running():
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await send(ws, "subscribe", {"investigation_id": "INV-2026-404"}, id="sub")
            assert (await receive(ws))["data"]["code"] == "NOT_FOUND"
            await send(ws, "subscribe", {"investigation_id": "INV-2026-404"}, id="sub")
            assert (await receive(ws))["data"]["code"] == "NOT_FOUND"  # not DUPLICATE


async def test_a_subscribe_claimed_by_a_node_that_died_before_answering_is_run_on_resend(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The id of "sub" was claimed and nothing else (the node died at once): its resend is
    run, not refused; once answered, a resend is DUPLICATE. An unsubscribe alike."""
    server = Server(Settings(**TEST_DEFAULTS), dataset=())
    async with server.running():
        register_investigation(server, "INV-2026-007")
        for id in ("sub", "unsub"):
            assert await server.records.accept_message("s1", claim_key(id), 3600)
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            answers = []
            for _ in range(2):  # the resend after the crash, then one more
                await send(ws, "subscribe", {"investigation_id": "INV-2026-007"}, id="sub")
                await send(ws, "unsubscribe", {"investigation_id": "INV-2026-007"}, id="unsub")
                await send(ws, "ping", id="after")
                answers += await receive_until(ws, lambda m: m["type"] == "pong")
        history = await _history(server, "s1")
    kinds = [(m["type"], m["data"].get("code"), m["data"].get("reply_to")) for m in answers if m["type"] != "pong"]
    assert kinds == [
        ("subscribed", None, "sub"), ("unsubscribed", None, "unsub"),
        ("error", "DUPLICATE", "sub"), ("error", "DUPLICATE", "unsub"),
    ]
    assert [m["type"] for m in history] == ["subscribed", "unsubscribed"]


async def test_an_accepted_id_outlives_a_restart(autojump_clock: trio.testing.MockClock) -> None:
    """The ids are records (the SQLite store's claims table; here the memory store's, kept
    across two brokers as a file is kept across two processes)."""
    store = MemoryStore()
    histories = []
    for attempt in range(2):
        server = Server(Settings(**TEST_DEFAULTS), broker=LocalBroker(store=store), dataset=())
        async with server.running():
            async with connect(server, "/api/v1/ws/chat/s1") as ws:
                await receive(ws)
                await send(ws, "chat", {"message": "Olá"}, id="q1")
                if attempt == 0:
                    await receive_until(ws, is_turn_end)
                else:
                    answer = await receive(ws)
            histories.append(await _history(server, "s1"))
    assert answer["data"]["code"] == "DUPLICATE" and answer["data"]["reply_to"] == "q1"
    assert _user_messages(histories[0]) == ["q1"] and _user_messages(histories[1]) == []


async def test_two_nodes_racing_with_one_id_run_it_once(tmp_path: Path) -> None:
    """The same id sent at once to two nodes of a cluster: one turn, one DUPLICATE."""
    with redis_process(tmp_path) as redis, trio.fail_after(LIMIT):
        a, b = node(redis.url), node(redis.url)
        async with a.running(), b.running():
            async with connect(a, "/api/v1/ws/chat/s1") as on_a, connect(b, "/api/v1/ws/chat/s1") as on_b:
                await greeted(on_a)
                await greeted(on_b)
                async with trio.open_nursery() as nursery:
                    for ws in (on_a, on_b):
                        nursery.start_soon(partial(send, ws, "chat", {"message": "Olá"}, id="q1"))
                errors = []
                for ws in (on_a, on_b):  # both tabs see the one turn; the loser's node says DUPLICATE
                    seen = await receive_until(ws, is_turn_end)
                    await send(ws, "ping", id="after")  # answered after the chat was handled
                    seen += await receive_until(ws, lambda m: m["type"] == "pong")
                    errors += [m["data"] for m in seen if m["type"] == "error"]
            history = await _history(a, "s1")
    assert [(e["code"], e["reply_to"]) for e in errors] == [("DUPLICATE", "q1")]
    assert _user_messages(history) == ["q1"] and _completions(history) == ["q1"]


def test_a_message_resent_after_a_sigkill_is_answered_duplicate(tmp_path: Path) -> None:
    """A real process: the turn q1 was answered, the node is killed, the client resends q1
    to the restarted node: DUPLICATE, and nothing of a second turn."""

    async def converse(port: int, then_resend: bool) -> list[dict[str, Any]]:
        async with websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws/chat/s1") as ws:
            seen = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
            await ws.send(json.dumps({"type": "chat", "data": {"message": "Olá"}, "id": "q1"}))
            if then_resend:
                await ws.send(json.dumps({"type": "ping", "id": "after"}))
            while seen[-1]["type"] != ("pong" if then_resend else "chat_complete"):
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return seen

    with serve(store="sqlite", data_dir=tmp_path) as server:
        first = asyncio.run(converse(server.port, False))
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=15)
    with serve(store="sqlite", data_dir=tmp_path) as server:
        again = asyncio.run(converse(server.port, True))
    assert first[-1]["data"]["status"] == "completed" and first[-1]["data"]["reply_to"] == "q1"
    assert [(m["type"], m["data"].get("code")) for m in again[1:]] == [("error", "DUPLICATE"), ("pong", None)]
    assert again[1]["data"]["reply_to"] == "q1"
