"""Two in-process servers sharing one Redis behave as one server (issue 8): a session's
connections on different servers share the conversation, an investigation started on one
streams to a subscriber on the other, and its endpoints work everywhere. Real Redis I/O,
so real time; every wait is bounded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from cidadao_trio.investigations.model import Contract
from cidadao_trio.protocol.envelope import DurableId
from cidadao_trio.server.server import Server

from ..contracts import small_dataset
from ..harness import connect, http_get, is_turn_end, receive, receive_until, send
from .helpers import LIMIT, greeted, node
from .redis_process import RedisProcess


@asynccontextmanager
async def two_servers(url: str, dataset: Sequence[Contract] = ()) -> AsyncIterator[tuple[Server, Server]]:
    a, b = node(url, dataset), node(url, dataset)
    async with a.running(), b.running():
        yield a, b


def durable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if not m["id"].startswith("e-")]


def offset(message: dict[str, Any]) -> int:
    parsed = DurableId.parse(message["id"])
    assert parsed is not None
    return parsed.offset


async def test_a_sessions_connections_on_two_servers_share_the_conversation(redis: RedisProcess) -> None:
    with trio.fail_after(LIMIT):
        async with two_servers(redis.url) as (a, b):
            async with connect(a, "/api/v1/ws/chat/s1") as on_a, connect(b, "/api/v1/ws/chat/s1") as on_b:
                await greeted(on_a)
                await greeted(on_b)
                await send(on_a, "chat", {"message": "Olá! Quem é você?"}, id="q1")
                seen_a = await receive_until(on_a, is_turn_end)
                seen_b = await receive_until(on_b, is_turn_end)
                assert durable(seen_a) == durable(seen_b)  # same texts, same ids
                first = durable(seen_b)
                assert first[0]["type"] == "chat" and first[0]["data"] == {
                    "role": "user", "content": "Olá! Quem é você?", "reply_to": "q1",
                }
                assert first[-1]["type"] == "chat_complete" and first[-1]["data"]["status"] == "completed"
                assert any(m["type"] == "typing" and m["data"].get("isTyping") for m in seen_b)  # relayed
                await send(on_b, "chat", {"message": "Obrigado!"})
                second_a = durable(await receive_until(on_a, is_turn_end))
                second_b = durable(await receive_until(on_b, is_turn_end))
                assert second_a == second_b and second_a[0]["data"]["content"] == "Obrigado!"
                ids = [offset(m) for m in first + second_a]
                assert ids == list(range(ids[0], ids[0] + len(ids)))  # one stream, no gap
                assert await a.records.session_owner("s1") == await b.records.session_owner("s1") is not None


async def test_an_investigation_started_on_one_server_streams_to_the_other(redis: RedisProcess) -> None:
    with trio.fail_after(LIMIT):
        async with two_servers(redis.url, small_dataset()) as (a, b):
            async with connect(a, "/api/v1/ws/chat/s1") as on_a, connect(b, "/api/v1/ws/chat/s2") as on_b:
                await greeted(on_a)
                await greeted(on_b)
                await send(on_a, "chat", {"message": "Investigar contratos do Ministério da Saúde"})
                turn = await receive_until(on_a, lambda m: m["type"] == "chat_complete")
                investigation = turn[-1]["data"]["investigation_id"]
                assert investigation.startswith("INV-")
                await send(on_b, "subscribe", {"investigation_id": investigation}, id="sub")
                events = await receive_until(on_b, lambda m: m["type"] == "report_ready")
                assert events[0]["type"] == "subscribed" and events[0]["data"]["reply_to"] == "sub"
                types = [m["type"] for m in events]
                assert "anomaly_detected" in types and "agent_finding" in types
                progress = [m["data"]["progress"] for m in events if m["type"] == "investigation_progress"]
                assert progress[0] == 0 and progress[-1] == 100 and progress == sorted(progress)
                assert [offset(m) for m in events] == list(range(offset(events[0]), offset(events[0]) + len(events)))
                await receive_until(on_a, lambda m: m["type"] == "report_ready")  # A followed it too

            status, payload = await http_get(b, f"/api/v1/investigations/{investigation}")
            assert status == 200 and json.loads(payload)["status"] == "completed"
            status, report = await http_get(b, f"/api/v1/investigations/{investigation}/report?format=json")
            assert status == 200 and json.loads(report)
            path = f"/api/v1/ws/investigations/{investigation}"
            async with connect(b, path) as watch:  # no cursor: everything so far, then live
                assert (await receive(watch))["type"] == "connection"
                replayed = await receive_until(watch, lambda m: m["type"] == "report_ready")
                assert [m["type"] for m in replayed].count("anomaly_detected") == types.count("anomaly_detected")
                assert [offset(m) for m in replayed] == list(range(1, len(replayed) + 1))
            async with connect(b, f"{path}?last_id=elsewhere-0") as watch:
                assert (await receive(watch))["data"]["resumed"] is False
                assert (await receive(watch))["data"]["code"] == "HISTORY_GAP"
                digest = await receive_until(watch, lambda m: m["type"] == "report_ready")
                progress = [m["data"]["progress"] for m in digest if m["type"] == "investigation_progress"]
                assert progress == [100]  # the latest only, then every anomaly and the report
                assert [m["type"] for m in digest].count("anomaly_detected") == types.count("anomaly_detected")
                assert len(digest) == types.count("anomaly_detected") + 2
            last = events[-1]["id"]
            async with connect(b, f"/api/v1/ws/chat/s2?last_id={last}") as again:
                hello = await receive(again)
                assert hello["data"]["resumed"] is True
