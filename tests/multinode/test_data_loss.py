"""Issue 11 item 13: a Redis that comes back empty is noticed and logged loudly (ERROR).

Without persistence a restart empties Redis, and an empty Redis looks new: every session
is unowned again, so anyone could open alice's. The broker cannot bring the data back,
but the operator must learn it at once (and the README says to run Redis with AOF).
"""

from __future__ import annotations

import logging

import pytest
import trio

from cidadao_trio.broker.redis import RedisBroker
from cidadao_trio.records.redis import RedisRecords

from .helpers import LIMIT, started, wait_healthy
from .redis_process import RedisProcess

LOST = "redis lost its data"


async def _restart(redis: RedisProcess, broker: RedisBroker) -> None:
    await wait_healthy(broker)
    await trio.to_thread.run_sync(redis.kill)
    await wait_healthy(broker, False)
    await trio.to_thread.run_sync(redis.start)
    await wait_healthy(broker, timeout=15)  # reconnected, so the data set was checked


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_redis_restarted_empty_is_logged_once_as_an_error(
    redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cidadao_trio")
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            broker = await started(nursery, redis.url)
            await RedisRecords(broker).save_session_owner("alice-1", "user:alice")
            assert await RedisRecords(broker).session_owner("alice-1") == "user:alice"
            assert any("appendonly no" in r.getMessage() for r in caplog.records)  # said at start
            assert broker.data_losses == 0 and _errors(caplog) == []
            await _restart(redis, broker)
            assert broker.data_losses == 1
            assert await RedisRecords(broker).session_owner("alice-1") is None  # what the error line warns about
            nursery.cancel_scope.cancel()
    errors = _errors(caplog)
    assert len(errors) == 1 and errors[0].startswith(LOST) and "appendonly yes" in errors[0], errors


async def test_a_persistent_redis_restart_is_not_a_loss(
    persistent_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cidadao_trio")
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            broker = await started(nursery, persistent_redis.url)
            await RedisRecords(broker).save_session_owner("alice-1", "user:alice")
            await _restart(persistent_redis, broker)
            assert await RedisRecords(broker).session_owner("alice-1") == "user:alice"
            nursery.cancel_scope.cancel()
    assert broker.data_losses == 0
    assert not any(LOST in r.getMessage() or "appendonly no" in r.getMessage() for r in caplog.records)


async def test_every_node_that_knew_the_data_set_reports_it(redis: RedisProcess) -> None:
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            a, b = await started(nursery, redis.url), await started(nursery, redis.url)
            await _restart(redis, a)
            await wait_healthy(b, timeout=15)
            with trio.fail_after(10):
                while b.data_losses == 0:  # b reconnects on its own schedule
                    await trio.sleep(0.01)
            assert (a.data_losses, b.data_losses) == (1, 1)
            nursery.cancel_scope.cancel()
