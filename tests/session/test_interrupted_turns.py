"""A chat turn cut by SIGKILL, answering or queued, ends after the restart with
``chat_complete`` failed (§7)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import trio
import trio.testing
import websockets

from cidadao_trio.agents import Drummond
from cidadao_trio.agents.router import AgentRouter
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.config import Settings
from cidadao_trio.records.local import StoreRecords
from cidadao_trio.server.server import Server
from cidadao_trio.session.turns import Turn, TurnQueue, TurnRunner
from cidadao_trio.store.base import MemoryStore, SaveTurn

from ..harness import TEST_DEFAULTS, connect, receive, receive_until, send
from ..process import serve


async def _recv(ws: Any) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return message


def test_a_turn_cut_by_sigkill_ends_failed_after_the_restart(tmp_path: Path) -> None:
    async def start_turn(port: int) -> str:
        async with websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws/chat/s1") as ws:
            await _recv(ws)
            await ws.send(json.dumps({"type": "chat", "data": {"message": "Olá, tudo bem?"}, "id": "q1"}))
            await ws.send(json.dumps({"type": "chat", "data": {"message": "E você?"}, "id": "q2"}))
            seen: set[tuple[str, str]] = set()
            while True:
                message = await _recv(ws)
                seen.add((message["data"].get("role"), message["data"].get("reply_to")))
                if {("assistant", "q1"), ("user", "q2")} <= seen:
                    return str(message["id"])  # q1 under way, q2 accepted and queued behind it

    async def resume(port: int, cursor: str) -> list[dict[str, Any]]:
        url = f"ws://127.0.0.1:{port}/api/v1/ws/chat/s1?last_id={cursor}"
        async with websockets.connect(url) as ws:
            assert (await _recv(ws))["data"]["resumed"] is True
            seen = []
            while [m["type"] for m in seen].count("chat_complete") < 2:
                seen.append(await _recv(ws))
            return seen

    with serve(store="sqlite", data_dir=tmp_path, reply_chunk_delay=5) as server:
        cursor = asyncio.run(start_turn(server.port))
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=15)
    with serve(store="sqlite", data_dir=tmp_path) as server:
        after = asyncio.run(resume(server.port, cursor))
    completes = [m["data"] for m in after if m["type"] == "chat_complete"]
    assert sorted((c["reply_to"], c["status"]) for c in completes) == [("q1", "failed"), ("q2", "failed")]
    assert all(c["agent_id"] and "reinici" in c["content"] for c in completes)


async def test_turns_answered_in_full_leave_nothing_to_end(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    server = Server(Settings(**TEST_DEFAULTS), broker=LocalBroker(store=store), dataset=())
    async with server.running():
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await send(ws, "chat", {"message": "Olá"}, id="q1")
            await receive_until(ws, lambda m: m["type"] == "chat_complete")
        await server.broker.flush()
        assert store.load_open_turns() == []
        assert await server.hub.runner.end_interrupted() == 0


async def test_another_nodes_open_turn_is_left_alone(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    store.apply([
        SaveTurn(
            "s1", "k1", json.dumps({"node": "other:8000", "reply_to": "x", "agent_id": "drummond", "agent_name": "D"})
        ),
        SaveTurn(
            "s2", "k2", json.dumps({"node": "me:8000", "reply_to": None, "agent_id": "drummond", "agent_name": "D"})
        ),
    ])
    broker = LocalBroker(store=store)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        runner = TurnRunner(
            broker, StoreRecords(broker), AgentRouter(converse=Drummond()), nursery, "me:8000", shared_store=True
        )
        assert await runner.end_interrupted() == 1
        await broker.flush()
        assert [turn[:2] for turn in store.load_open_turns()] == [("s1", "k1")]
        nursery.cancel_scope.cancel()


async def test_a_turn_begun_before_the_clean_up_runs_is_left_alone(autojump_clock: trio.testing.MockClock) -> None:
    """Redis down at start: the clean-up waits, a turn begins meanwhile; it is not ended."""
    store = MemoryStore()
    broker = LocalBroker(store=store)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        agents = AgentRouter(converse=Drummond(chunk_delay=1.0))
        runner = TurnRunner(broker, StoreRecords(broker), agents, nursery, "me:8000")
        queue = TurnQueue("s1", 4)
        runner.submit(queue, Turn("Olá, tudo bem?", {}, "q1"))
        await trio.sleep(0.5)  # the reply is streaming; its open-turn record is stored
        await broker.flush()
        assert len(store.load_open_turns()) == 1
        assert await runner.end_interrupted() == 0
        while queue.worker_running:
            await trio.sleep(1)
        await broker.flush()
        assert store.load_open_turns() == []
        nursery.cancel_scope.cancel()
