"""Two real `cidadao-trio serve --store redis` processes behave as one server."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import websockets

from ..process import serve
from .redis_process import RedisProcess


async def _collect_turn(ws: Any) -> list[dict[str, Any]]:
    seen = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 15))
        seen.append(message)
        if message["type"] == "typing" and message["data"].get("isTyping") is False and "agent" in message["data"]:
            return seen


def test_two_processes_act_as_one_server_and_survive_a_sigkill(redis: RedisProcess) -> None:
    """One pair of processes (their start-ups are most of this test's time), two checks: an
    investigation started on A is served by B; a session open on both gets the same durable
    messages, and once A is killed its client resumes on B from its cursor."""
    settings = {"store": "redis", "redis_url": redis.url, "investigation_step_delay": 0}
    with serve(node_name="a", **settings) as a, serve(node_name="b", **settings) as b:

        async def investigation_across() -> str:
            async with websockets.connect(f"ws://127.0.0.1:{a.port}/api/v1/ws/chat/cidada") as ws:
                await ws.recv()
                ask = {"type": "chat", "data": {"message": "Investigar contratos do Ministério da Saúde"}}
                await ws.send(json.dumps(ask))
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if message["type"] == "chat_complete":
                        investigation_id = message["data"]["investigation_id"]
                        break
            watch_url = f"ws://127.0.0.1:{b.port}/api/v1/ws/investigations/{investigation_id}"
            async with websockets.connect(watch_url) as watch:
                await watch.recv()
                while True:
                    message = json.loads(await asyncio.wait_for(watch.recv(), 60))
                    if message["type"] == "report_ready":
                        return str(message["data"]["url"])

        url = asyncio.run(investigation_across())
        assert url.endswith("format=markdown")

        async def shared_session_then_sigkill() -> None:
            url_a = f"ws://127.0.0.1:{a.port}/api/v1/ws/chat/shared"
            url_b = f"ws://127.0.0.1:{b.port}/api/v1/ws/chat/shared"
            async with websockets.connect(url_a) as on_a, websockets.connect(url_b) as on_b:
                await on_a.recv()
                await on_b.recv()
                await on_a.send(json.dumps({"type": "chat", "data": {"message": "Olá"}, "id": "1"}))
                seen_a, seen_b = await _collect_turn(on_a), await _collect_turn(on_b)
                durable = [m for m in seen_a if not m["id"].startswith("e-")]
                assert [m["id"] for m in durable] == [m["id"] for m in seen_b if not m["id"].startswith("e-")]
                cursor = durable[1]["id"]
            a.process.send_signal(signal.SIGKILL)  # node A dies; its client moves to B
            a.process.wait(timeout=10)
            async with websockets.connect(f"{url_b}?last_id={cursor}") as again:
                hello = json.loads(await again.recv())
                assert hello["data"]["resumed"] is True
                replay = [json.loads(await asyncio.wait_for(again.recv(), 15)) for _ in durable[2:]]
                assert [m["id"] for m in replay] == [m["id"] for m in durable[2:]]

        asyncio.run(shared_session_then_sigkill())
