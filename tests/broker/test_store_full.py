"""Issue 11 item 7 at the broker: a store that cannot accept writes stalls nobody silently.

A genuinely full SQLite database (``PRAGMA max_page_count`` at its current size, on a real
file) makes every write fail with "database or disk is full"; raising the limit again is
space coming back. What was queued before is kept and committed once it recovers, new
publishes raise ``StoreUnavailable`` (nothing accepted, no offset taken), the log says so
once each way and never with a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from cidadao_trio.broker.base import Delivery, StoreUnavailable
from cidadao_trio.broker.local import WRITE_QUEUE_SIZE, LocalBroker
from cidadao_trio.store.sqlite import SqliteStore

from ..harness import until_committed
from ..messages import message

S = "session:s1"
BIG = "x" * 20_000  # a few pages per message: the database must grow to take it


class ListSink:
    def __init__(self) -> None:
        self.got: list[Delivery] = []

    def offer(self, delivery: Delivery) -> None:
        self.got.append(delivery)


def _fill_up(store: SqliteStore) -> None:
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")


def _make_room(store: SqliteStore) -> None:
    store._db.execute("PRAGMA max_page_count = 1073741823")




async def test_a_full_database_is_retried_then_recovers_by_itself(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cidadao_trio")
    store = SqliteStore(tmp_path / "full.sqlite3")
    broker = LocalBroker(store=store)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        live = ListSink()
        await broker.attach(S, live, None)
        first = await broker.publish(S, message("chat", {"content": "antes"}))
        await broker.flush()
        assert live.got == [first]

        _fill_up(store)
        queued = [await broker.publish(S, message("chat", {"content": f"{BIG}{n}"})) for n in range(3)]
        await until_committed(broker, lambda: not broker.healthy)
        assert live.got == [first]  # nothing is offered that is not committed
        with pytest.raises(StoreUnavailable) as refused:
            await broker.publish(S, message("chat", {"content": "durante"}))
        assert "full" in str(refused.value) and refused.value.retry_after > 0
        with pytest.raises(StoreUnavailable):
            await broker.record()
        typing = await broker.publish(S, message("typing", {"isTyping": True}))  # nothing to store: relayed
        assert live.got[-1] is typing
        await trio.sleep(30)  # many retries: still one line
        assert await broker.last_id(S) == first.id  # no offset was taken by the refusal

        _make_room(store)
        await until_committed(broker, lambda: broker.healthy)
        await broker.flush()
        assert [d.id for d in live.got if d.durable] == [first.id] + [d.id for d in queued]
        after = await broker.publish(S, message("chat", {"content": "depois"}))
        await broker.flush()
        assert live.got[-1] is after and after.id.endswith("-5")
        nursery.cancel_scope.cancel()
    store.close()

    failing = [r for r in caplog.records if "rejects writes" in r.getMessage()]
    recovered = [r for r in caplog.records if "accepts writes again" in r.getMessage()]
    assert len(failing) == 1 and "database or disk is full" in failing[0].getMessage()
    assert len(recovered) == 1
    assert not [r for r in caplog.records if r.exc_info]
    assert not [r for r in caplog.records if "cannot rollback" in r.getMessage()]


def test_a_failed_write_leaves_no_transaction_open(tmp_path: Path) -> None:
    """The rollback is only attempted inside a transaction (SQLite may end it itself)."""
    from cidadao_trio.store.base import Append, CreateStream, StoredMessage

    store = SqliteStore(tmp_path / "full.sqlite3")
    store.apply([CreateStream(S, "ab")])
    _fill_up(store)
    with pytest.raises(Exception, match="full"):
        store.apply([Append(S, StoredMessage(n, "chat", BIG, 0.0)) for n in range(1, 4)])
    assert not store._db.in_transaction
    _make_room(store)
    store.apply([Append(S, StoredMessage(1, "chat", BIG, 0.0))])
    assert [m.offset for m in store.load_messages(S, 0, 10, 10)] == [1]
    store.close()


async def test_a_publish_that_gets_no_write_slot_in_5_s_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    broker = LocalBroker()  # the writer is not running: the queue fills up and stays full
    await broker.last_id(S)  # creating the stream takes one slot
    for n in range(WRITE_QUEUE_SIZE - 1):
        await broker.publish(S, message("chat", {"n": n}))
    started = trio.current_time()
    with pytest.raises(StoreUnavailable):
        await broker.publish(S, message("chat", {"n": "late"}))
    assert trio.current_time() - started == pytest.approx(5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        await broker.flush()
        assert await broker.last_id(S) == f"{broker.epoch}-{WRITE_QUEUE_SIZE - 1}"  # no hole, no extra
        nursery.cancel_scope.cancel()
