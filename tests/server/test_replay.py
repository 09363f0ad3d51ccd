"""Regression of issue 11 item 5: a resume replay larger than the outbox has no gaps (§5).

Resuming with ``last_id=<…>-44`` after a slow-consumer close replayed offsets 45, 49,
53, 55…: the outbox coalesced the replayed ``investigation_progress``. A replay is
never coalesced or dropped; backpressure on it only pauses it.
"""

from __future__ import annotations

import trio
import trio.testing

from cidadao_trio.server.server import Server

from ..harness import ListSink, connect, receive, register_investigation, running_server
from ..messages import message

PUBLISHED = 300  # more than the outbox's 256 messages


async def publish_progress(server: Server, investigation_id: str, count: int) -> list[str]:
    ids = []
    for step in range(count):
        delivery = await server.broker.publish(
            f"investigation:{investigation_id}",
            message(
                "investigation_progress",
                {"investigation_id": investigation_id, "phase": "analisando", "progress": step * 100 // count},
            ),
        )
        ids.append(delivery.id)
    return ids


def offset(durable_id: str) -> int:
    return int(durable_id.rsplit("-", 1)[1])


async def test_resume_replays_every_progress_message_to_a_slow_reader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_server() as server:
        register_investigation(server, "INV-1")
        ids = await publish_progress(server, "INV-1", PUBLISHED)
        cursor = ids[43]  # the client saw up to offset 44
        async with connect(server, f"/api/v1/ws/investigations/INV-1?last_id={cursor}") as ws:
            hello = await receive(ws)
            assert hello["type"] == "connection" and hello["data"]["resumed"] is True
            replayed: list[str] = []
            with trio.fail_after(60):
                while not replayed or replayed[-1] != ids[-1]:  # up to the newest message
                    await trio.sleep(0.01)  # a slow reader: 2.5 s for the whole replay, under 10 s
                    message = await receive(ws)
                    assert message["type"] == "investigation_progress"
                    replayed.append(message["id"])
            (connection,) = server.connections
            assert connection.outbox.coalesced == 0 and connection.intent is None
        assert replayed == ids[44:]
        offsets = [offset(i) for i in replayed]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))  # contiguous


async def test_a_replay_read_slower_than_the_slow_consumer_timeout_is_paused_not_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_server(outbox_messages=16) as server:  # the replay fills it for ~28 s
        register_investigation(server, "INV-3")
        ids = await publish_progress(server, "INV-3", PUBLISHED)
        path = f"/api/v1/ws/investigations/INV-3?last_id={ids[0]}"
        async with connect(server, path, lockstep=True) as ws:  # the socket pushes back
            assert (await receive(ws))["data"]["resumed"] is True
            replayed = []
            for _ in ids[1:]:
                await trio.sleep(0.1)  # 30 s for the whole replay: three slow-consumer timeouts
                replayed.append((await receive(ws))["id"])
            (connection,) = server.connections
            assert connection.intent is None
        assert replayed == ids[1:]

async def test_history_copied_on_subscribe_is_never_coalesced(autojump_clock: trio.testing.MockClock) -> None:
    """Subscribing copies the investigation's history into the session stream: that copy
    is a replay (§5), so it carries no coalesce key; live progress after it still may."""
    async with running_server() as server:
        register_investigation(server, "INV-2")
        await publish_progress(server, "INV-2", 5)
        sink = ListSink()
        await server.broker.attach("session:s1", sink, None, from_oldest=True)
        copied = await server.broker.link("investigation:INV-2", "session:s1")
        assert copied == 5
        await server.broker.flush()
        assert len(sink.got) == 5
        assert all(d.coalesce_key is None for d in sink.got)
        await publish_progress(server, "INV-2", 1)
        await server.broker.flush()
        assert sink.got[-1].coalesce_key is not None
