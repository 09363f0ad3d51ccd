"""Chat turns outlive their node (issue 20): a chat accepted by a node that then dies is,
when the client resends it to another node, answered exactly once — run there if it was
never echoed, answered there if it was only queued, ended failed if its answer was cut —
while a node that is alive keeps its own turns. Real Redis, real time, bounded waits.

Node A is a turn runner over the shared Redis doing what the chat endpoint does on
acceptance (open the turn's record, claim its id, echo it, queue it); cancelling its scope
is A dying mid-way (no drain). Node B is a whole server the client reconnects to.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from cidadao_trio.agents.base import AgentRequest, StreamedReply
from cidadao_trio.agents.router import AgentRouter
from cidadao_trio.broker.base import session_stream
from cidadao_trio.broker.redis import RedisBroker
from cidadao_trio.protocol.events import UserMessage
from cidadao_trio.records.redis import RedisRecords
from cidadao_trio.server.server import Server
from cidadao_trio.session.claims import claim_key
from cidadao_trio.session.turns import Turn, TurnQueue, TurnRunner

from ..harness import connect, receive, receive_until, send
from .helpers import LIMIT, WAIT, node
from .redis_process import RedisProcess, redis_process

LEASE = 0.5  # seconds: A's liveness record lapses this soon after A dies


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One Redis for the module: each test has its own session ids."""
    with redis_process(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server


@attrs.define
class HeldAgent:
    """Streams one chunk, then holds the turn until its node dies."""

    agent_id: str = "drummond"
    agent_name: str = "Carlos Drummond de Andrade"

    def reply(self, request: AgentRequest) -> StreamedReply:
        async def chunks() -> AsyncIterator[str]:
            yield "Um momento… "
            await trio.sleep_forever()

        return StreamedReply(chunks())


@attrs.define
class NodeA:
    runner: TurnRunner
    records: RedisRecords
    broker: RedisBroker

    async def accept(self, session_id: str, id: str, *, echo: bool = True, queue: TurnQueue | None = None) -> None:
        """The chat endpoint's acceptance, stopped after the claim unless ``echo``."""
        turn = Turn("Olá", {}, id)
        await self.runner.open(session_id, turn)
        assert await self.records.accept_message(session_id, claim_key(id), 3600)
        if echo:
            await self.broker.publish(session_stream(session_id), UserMessage(content="Olá", reply_to=id))
        if queue is not None:
            self.runner.submit(queue, turn)


@asynccontextmanager
async def node_a(url: str) -> AsyncIterator[tuple[NodeA, trio.CancelScope]]:
    with trio.CancelScope() as life:
        async with trio.open_nursery() as nursery:
            broker = RedisBroker(url)
            await nursery.start(broker.run)
            records = RedisRecords(broker)
            runner = TurnRunner(
                broker, records, AgentRouter(converse=HeldAgent()), nursery, "a", shared_store=True, lease=LEASE
            )
            yield NodeA(runner, records, broker), life
            nursery.cancel_scope.cancel()


async def lapsed(b: Server) -> None:
    """Until A's liveness record has expired (what B reads to know A is gone)."""
    with trio.fail_after(WAIT):
        while await b.records.cached("turns-alive:a") is not None:
            await trio.sleep(0.05)


async def history(b: Server, session_id: str) -> list[dict[str, Any]]:
    await b.broker.flush()
    return [json.loads(d.text) for d in await b.broker.retained(session_stream(session_id))]


def answers(messages: list[dict[str, Any]], id: str) -> list[tuple[str, Any]]:
    """(type, role, status or code) of what names ``id``, streamed chunks left out."""
    return [
        (m["type"], m["data"].get("role") or m["data"].get("status") or m["data"].get("code"))
        for m in messages
        if m["data"].get("reply_to") == id and not m["data"].get("chunk")
    ]


async def resend(ws: Any, id: str) -> list[dict[str, Any]]:
    """Send chat ``id`` again, then a ping: everything it caused arrives before the pong,
    except a turn queued here, whose end the caller waits for."""
    await send(ws, "chat", {"message": "Olá"}, id=id)
    await send(ws, "ping", id=f"after-{id}")
    return await receive_until(ws, lambda m: m["type"] == "pong")


async def test_a_message_a_dead_node_claimed_but_never_echoed_is_run_once(redis: RedisProcess) -> None:
    with trio.fail_after(LIMIT):
        b = node(redis.url, node_name="b", store="redis", redis_url=redis.url)
        async with b.running():
            async with node_a(redis.url) as (a, a_life):
                await a.accept("s-unechoed", "q1", echo=False)
                a_life.cancel()  # A dies between the claim and the echo
            await lapsed(b)
            async with connect(b, "/api/v1/ws/chat/s-unechoed") as ws:
                await receive(ws)
                await send(ws, "chat", {"message": "Olá"}, id="q1")
                seen = await receive_until(ws, lambda m: m["type"] == "chat_complete")
            stored = await history(b, "s-unechoed")
    assert answers(seen, "q1") == [("chat", "user"), ("chat_complete", "completed")]  # not DUPLICATE
    assert answers(stored, "q1") == [("chat", "user"), ("chat_complete", "completed")]


async def test_a_dead_nodes_turns_are_settled_once_by_their_resends(redis: RedisProcess) -> None:
    """A answers q0 (held mid-reply) with q1 queued behind it. Resent to B while A lives:
    DUPLICATE only. Once A is gone: q1, never begun, is answered by B; q0, cut, ends
    failed; resent again, both are just DUPLICATE."""
    session = "s-dead"
    with trio.fail_after(LIMIT):
        b = node(redis.url, node_name="b", store="redis", redis_url=redis.url)
        async with b.running():
            async with connect(b, f"/api/v1/ws/chat/{session}") as ws:
                await receive(ws)
                async with node_a(redis.url) as (a, a_life):
                    queue = TurnQueue(session, 4)
                    await a.accept(session, "q0", queue=queue)
                    await a.accept(session, "q1", queue=queue)
                    await receive_until(ws, lambda m: m["data"].get("reply_to") == "q0" and m["data"].get("chunk"))
                    while_alive = await resend(ws, "q1") + await resend(ws, "q0")
                    a_life.cancel()
                await lapsed(b)
                settled = await resend(ws, "q1")
                if ("chat_complete", "completed") not in answers(settled, "q1"):
                    settled += await receive_until(ws, lambda m: m["type"] == "chat_complete")
                settled += await resend(ws, "q0")
                if ("chat_complete", "failed") not in answers(settled, "q0"):  # through Redis: after the pong
                    settled += await receive_until(
                        ws, lambda m: m["type"] == "chat_complete" and m["data"].get("reply_to") == "q0")
                again = await resend(ws, "q1") + await resend(ws, "q0")
            stored = await history(b, session)
    assert answers(while_alive, "q1") == answers(while_alive, "q0") == [("error", "DUPLICATE")]
    # the error goes straight to the connection, the ending through the stream: either first
    assert sorted(answers(settled, "q1")) == [("chat_complete", "completed"), ("error", "DUPLICATE")]
    assert sorted(answers(settled, "q0")) == [("chat_complete", "failed"), ("error", "DUPLICATE")]
    assert answers(again, "q1") == answers(again, "q0") == [("error", "DUPLICATE")]
    assert answers(stored, "q1") == [("chat", "user"), ("chat_complete", "completed")]
    assert answers(stored, "q0") == [("chat", "user"), ("chat_complete", "failed")]
    complete = next(m for m in stored if m["type"] == "chat_complete" and m["data"]["reply_to"] == "q1")
    assert complete["data"]["agent_name"] == "Carlos Drummond de Andrade" and complete["data"]["content"]


async def test_a_silent_nodes_turns_are_settled_without_a_resend(redis: RedisProcess) -> None:
    """What nobody resends is settled by the others' watch (``end_abandoned``, run here at
    once rather than after its period): q0 cut mid-answer and q1 queued end failed, q2's
    claim (never echoed) is let go, so its resend runs; a live node's turn is left alone."""
    session = "s-silent"
    with trio.fail_after(LIMIT):
        b = node(redis.url, node_name="b", store="redis", redis_url=redis.url)
        async with b.running():
            async with node_a(redis.url) as (a, a_life):
                queue = TurnQueue(session, 4)
                await a.accept(session, "q0", queue=queue)
                await a.accept(session, "q1", queue=queue)
                await a.accept(session, "q2", echo=False)
                await b.broker.flush()
                assert await b.hub.runner.end_abandoned() == 0  # A is alive
                a_life.cancel()
            await lapsed(b)
            assert await b.hub.runner.end_abandoned() == 2
            assert await b.hub.runner.end_abandoned() == 0  # settled once
            async with connect(b, f"/api/v1/ws/chat/{session}") as ws:
                await receive(ws)
                await send(ws, "chat", {"message": "Olá"}, id="q2")
                await receive_until(ws, lambda m: m["type"] == "chat_complete")
            stored = await history(b, session)
            left = [t for t in await b.records.open_turns() if t.session_id == session]
    assert answers(stored, "q0") == answers(stored, "q1") == [("chat", "user"), ("chat_complete", "failed")]
    assert answers(stored, "q2") == [("chat", "user"), ("chat_complete", "completed")]
    assert left == []
