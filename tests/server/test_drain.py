"""Graceful drain (issue 20): on SIGTERM a node stops accepting, closes its connections with
1001 and lets the chat turns in progress finish within ``drain_timeout`` (§7)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import trio
import trio.testing
import websockets

from cidadao_trio.broker.base import session_stream
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.config import Settings
from cidadao_trio.investigations.scope import Filters
from cidadao_trio.server.server import Server
from cidadao_trio.store.base import MemoryStore

from ..contracts import HEALTH, small_dataset
from ..harness import TEST_DEFAULTS, connect, receive, receive_until, send, wait_closed
from ..process import serve


async def _session_history(server: Server, session_id: str) -> list[dict[str, Any]]:
    await server.broker.flush()
    return [json.loads(d.text) for d in await server.broker.retained(session_stream(session_id))]


async def test_drain_lets_a_streaming_reply_finish_and_closes_1001(autojump_clock: trio.testing.MockClock) -> None:
    settings = Settings(**{**TEST_DEFAULTS, "reply_chunk_delay": 0.5, "drain_timeout": 60})
    server = Server(settings, broker=LocalBroker(store=MemoryStore()), dataset=())
    async with server.running():
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await send(ws, "chat", {"message": "Olá, tudo bem?"}, id="q1")
            await receive_until(ws, lambda m: m["type"] == "chat" and m["data"]["role"] == "assistant")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.drain)
                closed = await wait_closed(ws)
        assert closed.code == 1001
        history = await _session_history(server, "s1")
    complete = [m["data"] for m in history if m["type"] == "chat_complete"]
    chunks = [m["data"] for m in history if m["type"] == "chat" and m["data"]["role"] == "assistant"]
    assert len(complete) == 1 and complete[0]["status"] == "completed" and complete[0]["reply_to"] == "q1"
    assert len(chunks) > 1 and [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert complete[0]["content"] == "".join(c["content"] for c in chunks)


async def test_a_turn_that_cannot_finish_in_time_ends_failed(autojump_clock: trio.testing.MockClock) -> None:
    settings = Settings(**{**TEST_DEFAULTS, "reply_chunk_delay": 30, "drain_timeout": 5})
    server = Server(settings, broker=LocalBroker(store=MemoryStore()), dataset=())
    async with server.running():
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await send(ws, "chat", {"message": "Olá, tudo bem?"}, id="q1")
            await send(ws, "chat", {"message": "E agora?"}, id="q2")  # queued behind q1
            await receive_until(ws, lambda m: m["type"] == "chat" and m["data"]["role"] == "assistant")
            await server.drain()  # returns: the wait is bounded by drain_timeout
        history = await _session_history(server, "s1")
    complete = {m["data"]["reply_to"]: m["data"] for m in history if m["type"] == "chat_complete"}
    assert complete["q1"]["status"] == "failed" and complete["q2"]["status"] == "failed"
    assert "reinici" in complete["q2"]["content"]


def test_sigterm_exits_after_the_turn_in_progress_completes(tmp_path: Path) -> None:
    async def start_turn(port: int) -> str:
        async with websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws/chat/s1") as ws:
            await asyncio.wait_for(ws.recv(), 10)
            await ws.send(json.dumps({"type": "chat", "data": {"message": "Olá, tudo bem?"}, "id": "q1"}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] == "chat" and message["data"]["role"] == "assistant":
                    return str(message["id"])

    async def resume(port: int, cursor: str) -> list[dict[str, Any]]:
        async with websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws/chat/s1?last_id={cursor}") as ws:
            seen = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
            while seen[-1]["type"] != "chat_complete":
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return seen

    with serve(store="sqlite", data_dir=tmp_path, reply_chunk_delay=0.3, drain_timeout=30) as server:
        cursor = asyncio.run(start_turn(server.port))
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
    with serve(store="sqlite", data_dir=tmp_path) as server:
        after = asyncio.run(resume(server.port, cursor))
    assert after[0]["type"] == "connection" and after[0]["data"]["resumed"] is True
    complete = after[-1]["data"]
    assert complete["status"] == "completed" and complete["reply_to"] == "q1"
    chunks = [m for m in after if m["type"] == "chat" and m["data"]["role"] == "assistant"]
    assert chunks and chunks[0]["data"]["chunk_index"] == 1  # contiguous after the cursor's chunk 0


async def test_drain_hands_a_running_investigation_over_instead_of_ending_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One node: the drain stops it unfinished with its run kept, for the next start to resume."""
    settings = Settings(**{**TEST_DEFAULTS, "investigation_step_delay": 60, "drain_timeout": 5})
    server = Server(settings, broker=LocalBroker(store=MemoryStore()), dataset=small_dataset())
    async with server.running():
        record = await server.engine.start(Filters(agency=HEALTH), "anon", public=True)
        await trio.sleep(1)  # walking: initializing, waiting out its step delay
        await server.drain()
        assert not server.engine.cancel(record.id)  # no longer running here
        await server.broker.flush()
        stored = await server.records.investigation(record.id)
        runs = await server.records.runs()
    assert stored is not None and not stored.finished  # neither cancelled nor failed
    assert [run.investigation_id for run in runs] == [record.id]
