"""Faults: Redis restarts under load, a server dies. Clients stay connected (or resume on
the other server) and every acknowledged message arrives exactly once, in order."""

from __future__ import annotations

from typing import Any

import trio
import trio_websocket

from cidadao_trio.broker.base import session_stream

from ..harness import connect, receive, send
from ..messages import message
from .helpers import LIMIT, ListSink, cursor, greeted, node, started, wait_healthy
from .redis_process import RedisProcess

S = session_stream("s1")


async def _wait_for(check: Any, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.01)


async def test_a_redis_restart_keeps_clients_connected_and_loses_nothing(persistent_redis: RedisProcess) -> None:
    with trio.fail_after(LIMIT * 2):
        a, b = node(persistent_redis.url), node(persistent_redis.url)
        async with a.running(), b.running():
            async with connect(b, "/api/v1/ws/chat/s1") as ws:
                await greeted(ws)
                acked: list[str] = []
                received: list[str] = []
                stop, stopped = trio.Event(), trio.Event()

                async def publisher() -> None:
                    """Publishes go on through the outage: each returns once Redis has it."""
                    n = 0
                    while not stop.is_set():
                        delivery = await a.broker.publish(S, message("chat", {"role": "user", "content": f"m{n}"}))
                        acked.append(delivery.id)
                        n += 1
                        await trio.sleep(0.002)
                    stopped.set()

                async def reader() -> None:
                    while True:
                        message = await receive(ws)
                        if message["type"] == "chat":
                            received.append(message["id"])

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(publisher)
                    nursery.start_soon(reader)
                    await _wait_for(lambda: len(acked) >= 20)
                    await wait_healthy(a.broker)
                    await wait_healthy(b.broker)
                    await trio.to_thread.run_sync(persistent_redis.kill)
                    await wait_healthy(b.broker, False)
                    await wait_healthy(a.broker, False)
                    during = len(acked)
                    await trio.to_thread.run_sync(persistent_redis.start)
                    await wait_healthy(a.broker, timeout=15)
                    await wait_healthy(b.broker, timeout=15)
                    await _wait_for(lambda: len(acked) >= during + 20)
                    stop.set()
                    await stopped.wait()
                    await _wait_for(lambda: len(received) >= len(acked))
                    nursery.cancel_scope.cancel()
                assert received == acked  # exactly once, in order, none lost
                offsets = [int(i.rsplit("-", 1)[1]) for i in acked]
                assert offsets == list(range(1, len(acked) + 1))  # the epoch and offsets survived
                await send(ws, "ping", id="still-here")
                assert (await receive(ws))["type"] == "pong"  # the same connection, never closed


async def test_a_dead_server_s_client_resumes_on_the_other_without_loss(redis: RedisProcess) -> None:
    with trio.fail_after(LIMIT):
        a, b = node(redis.url), node(redis.url)
        async with b.running(), trio.open_nursery() as nursery:

            async def run_a(*, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    async with a.running():
                        task_status.started(scope)
                        await trio.sleep_forever()

            a_scope: trio.CancelScope = await nursery.start(run_a)
            seen: list[str] = []
            async with connect(a, "/api/v1/ws/chat/s1") as ws:
                await greeted(ws)
                for n in range(3):
                    await (a, b)[n % 2].broker.publish(S, message("chat", {"role": "user", "content": f"m{n}"}))
                while len(seen) < 3:
                    seen.append((await receive(ws))["id"])
                a_scope.cancel()  # server A goes away (its broker with it)
                try:
                    with trio.fail_after(5):
                        while True:
                            await receive(ws)
                except trio_websocket.ConnectionClosed:
                    pass
            missed = [
                (await b.broker.publish(S, message("chat", {"role": "user", "content": f"x{n}"}))).id
                for n in range(4)
            ]
            async with connect(b, f"/api/v1/ws/chat/s1?last_id={seen[-1]}") as ws:
                hello = await receive(ws)
                assert hello["data"]["resumed"] is True
                replayed = [(await receive(ws))["id"] for _ in missed]
                assert replayed == missed
                live = await b.broker.publish(S, message("chat", {"role": "user", "content": "live"}))
                assert (await receive(ws))["id"] == live.id
            ids = seen + missed + [live.id]
            assert [int(i.rsplit("-", 1)[1]) for i in ids] == list(range(1, 9))
            nursery.cancel_scope.cancel()


async def test_a_broker_started_while_redis_is_down_waits_and_then_works(
    nursery: trio.Nursery, redis: RedisProcess
) -> None:
    """Publishes wait (with backoff) instead of failing; healthy says why /readyz is 503."""
    await trio.to_thread.run_sync(redis.kill)
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    sink = ListSink()
    attached = trio.Event()
    answered = trio.Event()
    published: list[str] = []

    async def attach_then_publish() -> None:
        await b.attach(S, sink, None)
        attached.set()
        published.append((await a.publish(S, message("chat", {"role": "user", "content": "hi"}))).id)
        answered.set()

    nursery.start_soon(attach_then_publish)
    await trio.sleep(0.3)
    assert not a.healthy and not b.healthy and not attached.is_set()
    await trio.to_thread.run_sync(redis.start)
    await sink.wait_durable(1, timeout=15)
    with trio.fail_after(15):  # b's sink may hear of the message before a's publish returns
        await answered.wait()
    assert sink.durable_ids == published
    await wait_healthy(a)
    await wait_healthy(b)


async def test_a_publish_retried_after_a_lost_reply_is_stored_once(nursery: trio.Nursery, redis: RedisProcess) -> None:
    """The script ran but its reply was lost: the retry finds its token, appends nothing."""
    a = await started(nursery, redis.url)
    sink = ListSink()
    await a.attach(S, sink, None)
    call = a.call

    async def reply_lost_once(request: Any) -> Any:
        await call(lambda client, _: request(client, 0))  # executed, reply never seen
        return await call(lambda client, _: request(client, 1))  # the retry

    a.call = reply_lost_once  # type: ignore[method-assign]
    first = await a.publish(S, message("chat", {"role": "user", "content": "once"}))
    a.call = call  # type: ignore[method-assign]
    second = await a.publish(S, message("chat", {"role": "user", "content": "next"}))
    assert [first.id, second.id] == [f"{first.id.split('-')[0]}-{n}" for n in (1, 2)]
    assert await sink.wait_durable(2) == [first.id, second.id]


async def test_a_redis_that_lost_its_data_starts_a_new_epoch(nursery: trio.Nursery, redis: RedisProcess) -> None:
    """History really lost (no persistence): new ids say so, live clients keep receiving."""
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    sink = ListSink()
    await b.attach(S, sink, None)
    old = [(await a.publish(S, message("chat", {"role": "user", "content": f"m{n}"}))).id for n in range(2)]
    await sink.wait_durable(2)
    await trio.to_thread.run_sync(redis.restart)  # --appendonly no: everything is gone
    new = await a.publish(S, message("chat", {"role": "user", "content": "again"}))
    assert cursor(new.id).offset == 1 and cursor(new.id).epoch != cursor(old[0]).epoch
    assert await sink.wait_durable(3) == [*old, new.id]
    assert not await b.cursor_is_valid(S, cursor(old[-1]))  # a resume is told about the gap
