"""Outbox (PROTOCOL.md §5): bounds, drop/coalesce policy, fullness timers, take() limits."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from cidadao_trio.broker.base import Delivery, fan_out
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.session.outbox import HARD_LIMIT_FACTOR, Outbox

from ..messages import message

NEVER_DROPPED = [
    "chat",
    "anomaly_detected",
    "agent_finding",
    "report_ready",
    "chat_complete",
    "subscribed",
    "unsubscribed",
    "investigation_failed",
    "error",
]


def make(
    type: str = "chat",
    label: str = "m",
    *,
    size: int | None = None,
    origin: int | None = None,
    inv: str | None = None,
    id: str = "",
) -> Delivery:
    """A delivery whose text is a JSON string of exactly ``size`` UTF-8 bytes (if given)."""
    if size is None:
        text = json.dumps(label)
    else:
        assert size >= len(label) + 2
        text = '"' + label + "." * (size - len(label) - 2) + '"'
    key = message(type, {"investigation_id": inv}).coalesce_key()
    delivery = Delivery(type, text, id, type not in ("typing", "pong", "error"), origin, key)
    json.loads(delivery.text)  # really JSON
    if size is not None:
        assert delivery.size == size
    return delivery


def progress(inv: str, pct: int, **kwargs: object) -> Delivery:
    return make("investigation_progress", f"{inv}:{pct}", inv=inv, **kwargs)  # type: ignore[arg-type]


def drain(outbox: Outbox) -> list[Delivery]:
    return outbox.take(10**9, 10**12)


def labels(deliveries: list[Delivery]) -> list[str]:
    return [json.loads(d.text).rstrip(".") for d in deliveries]


# --- bounds ---------------------------------------------------------------------------


def test_defaults_match_protocol() -> None:
    outbox = Outbox(1)
    assert outbox.max_messages == 256
    assert outbox.max_bytes == 1024 * 1024
    assert len(outbox) == 0 and outbox.pending_bytes == 0
    assert outbox.full_since is None and not outbox.overflowed


def test_delivery_size_is_utf8_bytes() -> None:
    assert Delivery("chat", '"ação"', "", True).size == len('"ação"'.encode())
    assert Delivery("chat", '"ação"', "", True).size == 8


async def test_count_bound_marks_full_only_when_over(autojump_clock: trio.testing.MockClock) -> None:
    outbox = Outbox(1, max_messages=3, max_bytes=10**9)
    for i in range(3):
        outbox.offer(make("chat", f"c{i}"))
    assert len(outbox) == 3
    assert outbox.full_since is None  # at the bound is not over it
    outbox.offer(make("chat", "c3"))
    assert len(outbox) == 4  # chat is never dropped
    assert outbox.full_since == trio.current_time()


async def test_byte_bound_marks_full() -> None:
    outbox = Outbox(1, max_messages=100, max_bytes=100)
    outbox.offer(make("chat", "a", size=60))
    outbox.offer(make("chat", "b", size=40))
    assert outbox.pending_bytes == 100
    assert outbox.full_since is None
    outbox.offer(make("chat", "c", size=10))
    assert outbox.pending_bytes == 110
    assert len(outbox) == 3
    assert outbox.full_since is not None


async def test_typing_accepted_below_bound() -> None:
    outbox = Outbox(1, max_messages=3)
    outbox.offer(make("typing", "t", origin=2))
    assert len(outbox) == 1
    assert outbox.dropped == 0


async def test_incoming_typing_dropped_when_full() -> None:
    outbox = Outbox(1, max_messages=3)
    for i in range(3):
        outbox.offer(make("chat", f"c{i}"))
    outbox.offer(make("typing", "t", origin=2))
    assert labels(drain(outbox)) == ["c0", "c1", "c2"]
    assert outbox.dropped == 1


async def test_incoming_typing_dropped_when_bytes_would_exceed() -> None:
    outbox = Outbox(1, max_messages=100, max_bytes=100)
    outbox.offer(make("chat", "a", size=95))
    outbox.offer(make("typing", "t", size=10, origin=2))
    assert len(outbox) == 1 and outbox.pending_bytes == 95
    assert outbox.dropped == 1
    assert outbox.full_since is None


async def test_pending_typing_dropped_first_to_make_room() -> None:
    outbox = Outbox(1, max_messages=3)
    outbox.offer(make("typing", "t0", origin=2))
    outbox.offer(make("chat", "c0"))
    outbox.offer(make("typing", "t1", origin=3))
    outbox.offer(make("chat", "c1"))
    assert outbox.dropped == 2
    assert outbox.full_since is None  # room was made, so it is not over its bound
    assert labels(drain(outbox)) == ["c0", "c1"]


async def test_newest_typing_replaces_pending_typing_when_full() -> None:
    outbox = Outbox(1, max_messages=3)
    outbox.offer(make("typing", "old", origin=2))
    outbox.offer(make("chat", "c0"))
    outbox.offer(make("chat", "c1"))
    outbox.offer(make("typing", "new", origin=2))
    assert labels(drain(outbox)) == ["c0", "c1", "new"]
    assert outbox.dropped == 1


async def test_pending_bytes_accounts_for_dropped_typing() -> None:
    outbox = Outbox(1, max_messages=100, max_bytes=100)
    outbox.offer(make("typing", "t", size=30, origin=2))
    outbox.offer(make("chat", "a", size=50))
    outbox.offer(make("chat", "b", size=40))
    assert outbox.pending_bytes == 90
    assert outbox.dropped == 1
    assert labels(drain(outbox)) == ["a", "b"]
    assert outbox.pending_bytes == 0


async def test_progress_coalesced_when_full_newest_at_end() -> None:
    outbox = Outbox(1, max_messages=3)
    outbox.offer(progress("INV-A", 10))
    outbox.offer(make("chat", "c0"))
    outbox.offer(progress("INV-B", 10))
    outbox.offer(progress("INV-A", 30))
    assert outbox.coalesced == 1
    assert outbox.dropped == 0
    assert outbox.full_since is None
    assert labels(drain(outbox)) == ["c0", "INV-B:10", "INV-A:30"]


async def test_all_pending_progress_of_same_investigation_coalesced() -> None:
    outbox = Outbox(1, max_messages=4)
    outbox.offer(progress("INV-A", 10))
    outbox.offer(progress("INV-A", 20))
    outbox.offer(make("chat", "c0"))
    outbox.offer(make("anomaly_detected", "an"))
    outbox.offer(progress("INV-A", 70))
    assert outbox.coalesced == 2
    assert labels(drain(outbox)) == ["c0", "an", "INV-A:70"]


async def test_progress_not_coalesced_below_bound() -> None:
    outbox = Outbox(1, max_messages=10)
    outbox.offer(progress("INV-A", 10))
    outbox.offer(progress("INV-A", 30))
    assert outbox.coalesced == 0
    assert labels(drain(outbox)) == ["INV-A:10", "INV-A:30"]


async def test_progress_of_other_investigation_not_coalesced() -> None:
    outbox = Outbox(1, max_messages=2)
    outbox.offer(progress("INV-A", 10))
    outbox.offer(progress("INV-B", 10))
    outbox.offer(progress("INV-C", 10))
    assert outbox.coalesced == 0
    assert labels(drain(outbox)) == ["INV-A:10", "INV-B:10", "INV-C:10"]


async def test_coalescing_frees_bytes() -> None:
    outbox = Outbox(1, max_messages=100, max_bytes=100)
    outbox.offer(make("investigation_progress", "A10", size=60, inv="A"))
    outbox.offer(make("chat", "c", size=30))
    outbox.offer(make("investigation_progress", "A30", size=60, inv="A"))
    assert outbox.pending_bytes == 90
    assert outbox.full_since is None
    assert labels(drain(outbox)) == ["c", "A30"]


@pytest.mark.parametrize("kind", NEVER_DROPPED)
async def test_never_dropped_types_survive_full_outbox(kind: str) -> None:
    outbox = Outbox(1, max_messages=3)
    sent = [f"{kind}{i}" for i in range(6)]
    for label in sent:
        outbox.offer(make(kind, label))
    assert len(outbox) == 6
    assert outbox.dropped == 0 and outbox.coalesced == 0
    assert outbox.full_since is not None
    assert labels(drain(outbox)) == sent


async def test_important_messages_kept_while_typing_and_progress_give_way() -> None:
    outbox = Outbox(1, max_messages=4)
    outbox.offer(make("chat", "chat"))
    outbox.offer(make("typing", "typing", origin=5))
    outbox.offer(progress("X", 10))
    outbox.offer(make("anomaly_detected", "anomaly"))
    outbox.offer(make("agent_finding", "finding"))  # over: typing goes
    outbox.offer(make("report_ready", "report"))  # still over, nothing droppable: queued
    outbox.offer(progress("X", 100))  # coalesces X:10
    assert labels(drain(outbox)) == ["chat", "anomaly", "finding", "report", "X:100"]
    assert outbox.dropped == 1 and outbox.coalesced == 1


# --- own relayed typing ---------------------------------------------------------------


async def test_own_typing_is_not_echoed() -> None:
    outbox = Outbox(7)
    outbox.offer(make("typing", "mine", origin=7))
    assert len(outbox) == 0 and outbox.pending_bytes == 0
    outbox.offer(make("typing", "theirs", origin=8))
    outbox.offer(make("typing", "agent", origin=None))
    outbox.offer(make("chat", "my own chat", origin=7))  # the user's message is shown everywhere
    assert labels(drain(outbox)) == ["theirs", "agent", "my own chat"]


# --- fullness, overflow ---------------------------------------------------------------


async def test_full_since_tracks_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    outbox = Outbox(1, max_messages=2)
    await trio.sleep(5)
    start = trio.current_time()
    for i in range(3):
        outbox.offer(make("chat", f"c{i}"))
    assert outbox.full_since == start
    await trio.sleep(3)
    outbox.offer(make("chat", "c3"))
    assert outbox.full_since == start  # stays at the moment it became full
    outbox.take(1)  # 3 left: still over
    assert outbox.full_since == start
    outbox.take(1)  # 2 left: at the bound, no longer over
    assert outbox.full_since is None
    await trio.sleep(1)
    outbox.offer(make("chat", "c4"))
    assert outbox.full_since == start + 4


async def test_full_since_cleared_when_drained_by_bytes() -> None:
    outbox = Outbox(1, max_messages=100, max_bytes=100)
    outbox.offer(make("chat", "a", size=80))
    outbox.offer(make("chat", "b", size=80))
    assert outbox.full_since is not None
    outbox.take(1)
    assert outbox.pending_bytes == 80
    assert outbox.full_since is None


async def test_overflowed_past_twice_the_count_bound() -> None:
    outbox = Outbox(1, max_messages=2)
    for i in range(HARD_LIMIT_FACTOR * 2):
        outbox.offer(make("chat", f"c{i}"))
    assert len(outbox) == 4
    assert not outbox.overflowed
    outbox.offer(make("chat", "c4"))
    assert outbox.overflowed


async def test_overflowed_past_twice_the_byte_bound() -> None:
    outbox = Outbox(1, max_messages=1000, max_bytes=100)
    outbox.offer(make("chat", "a", size=100))
    outbox.offer(make("chat", "b", size=100))
    assert outbox.pending_bytes == 200
    assert outbox.full_since is not None
    assert not outbox.overflowed
    outbox.offer(make("chat", "c", size=3))
    assert outbox.overflowed


async def test_single_message_larger_than_byte_bound_is_kept() -> None:
    outbox = Outbox(1, max_messages=10, max_bytes=50)
    outbox.offer(make("report_ready", "big", size=90))
    assert len(outbox) == 1
    assert outbox.full_since is not None
    assert not outbox.overflowed
    assert labels(outbox.take(1, 10)) == ["big"]
    assert outbox.full_since is None


# --- take -----------------------------------------------------------------------------


async def test_take_empty_returns_nothing() -> None:
    outbox = Outbox(1)
    assert outbox.take() == []
    assert outbox.take(64, 65536) == []


async def test_take_default_is_one_message_fifo() -> None:
    outbox = Outbox(1)
    for i in range(3):
        outbox.offer(make("chat", f"c{i}"))
    assert labels(outbox.take()) == ["c0"]
    assert labels(outbox.take()) == ["c1"]
    assert len(outbox) == 1


async def test_take_respects_message_limit() -> None:
    outbox = Outbox(1)
    for i in range(10):
        outbox.offer(make("chat", f"c{i}"))
    assert labels(outbox.take(4, 10**6)) == ["c0", "c1", "c2", "c3"]
    assert len(outbox) == 6


async def test_take_respects_byte_limit() -> None:
    outbox = Outbox(1)
    for label in "abcd":
        outbox.offer(make("chat", label, size=40))
    taken = outbox.take(64, 100)
    assert labels(taken) == ["a", "b"]  # a third would make 120 > 100
    assert outbox.pending_bytes == 80
    assert len(outbox) == 2


async def test_take_byte_limit_is_inclusive() -> None:
    outbox = Outbox(1)
    for label in "abc":
        outbox.offer(make("chat", label, size=50))
    assert labels(outbox.take(64, 100)) == ["a", "b"]


async def test_take_returns_one_even_if_it_exceeds_byte_limit() -> None:
    outbox = Outbox(1)
    outbox.offer(make("chat", "huge", size=500))
    outbox.offer(make("chat", "small", size=10))
    assert labels(outbox.take(64, 100)) == ["huge"]
    assert labels(outbox.take(64, 100)) == ["small"]
    assert outbox.pending_bytes == 0


async def test_take_stops_before_oversized_member_even_if_later_ones_fit() -> None:
    outbox = Outbox(1)
    outbox.offer(make("chat", "a", size=10))
    outbox.offer(make("chat", "big", size=500))
    outbox.offer(make("chat", "c", size=10))
    assert labels(outbox.take(64, 100)) == ["a"]  # order is preserved: no skipping ahead


# --- waiting --------------------------------------------------------------------------


async def test_wait_ready_wakes_on_offer(autojump_clock: trio.testing.MockClock) -> None:
    outbox = Outbox(1)
    woke: list[float] = []

    async def waiter() -> None:
        await outbox.wait_ready()
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(10)
        assert woke == []
        outbox.offer(make("chat", "x"))
        await trio.sleep(0.001)
        assert woke == [10]


async def test_wait_ready_returns_at_once_when_pending_and_blocks_after_drain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = Outbox(1)
    outbox.offer(make("chat", "x"))
    with trio.fail_after(0.001):
        await outbox.wait_ready()
    outbox.offer(make("chat", "y"))
    outbox.take(1)
    with trio.fail_after(0.001):
        await outbox.wait_ready()  # one is still pending
    outbox.take(1)
    with trio.move_on_after(5) as scope:
        await outbox.wait_ready()
    assert scope.cancelled_caught


async def test_wait_ready_not_woken_by_skipped_or_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = Outbox(3)
    outbox.offer(make("typing", "own", origin=3))
    with trio.move_on_after(1) as scope:
        await outbox.wait_ready()
    assert scope.cancelled_caught


async def test_told_when_it_becomes_full_and_when_it_drains(autojump_clock: trio.testing.MockClock) -> None:
    events: list[tuple[float, float | None]] = []
    outbox = Outbox(1, max_messages=2, on_full_changed=lambda: events.append((trio.current_time(), outbox.full_since)))
    await trio.sleep(1)
    outbox.offer(make("chat", "a"))
    outbox.offer(make("chat", "b"))  # at the bound: no change
    await trio.sleep(1)
    assert events == []
    outbox.offer(make("chat", "c"))  # over
    assert events == [(2, 2)]
    outbox.offer(make("chat", "d"))  # still full, within the ceiling (2 x 2): no change
    assert events == [(2, 2)] and not outbox.overflowed
    await trio.sleep(1)
    outbox.take(2)  # back to the bound
    assert events == [(2, 2), (3, None)]


async def test_told_when_it_overflows_while_already_full() -> None:
    told: list[bool] = []
    outbox = Outbox(1, max_messages=1, on_full_changed=lambda: told.append(outbox.overflowed))
    outbox.offer(make("chat", "a"))
    outbox.offer(make("chat", "b"))
    assert told == [False]  # full
    outbox.offer(make("chat", "c"))  # 3 > 2 * 1
    assert outbox.overflowed and told == [False, True]


# --- property -------------------------------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("offer"), st.sampled_from(["chat", "anomaly_detected", "report_ready"]),
              st.integers(2, 60), st.none()),
    st.tuples(st.just("offer"), st.just("typing"), st.integers(2, 60), st.sampled_from([1, 2, None])),
    st.tuples(st.just("offer"), st.just("investigation_progress"), st.integers(2, 60),
              st.sampled_from(["A", "B", "C"])),
    st.tuples(st.just("take"), st.none(), st.integers(0, 5), st.integers(1, 200)),
)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(_op, max_size=80),
    max_messages=st.integers(1, 8),
    max_bytes=st.integers(20, 400),
)
def test_outbox_policy_property(ops: list[tuple], max_messages: int, max_bytes: int) -> None:
    async def scenario() -> None:
        outbox = Outbox(1, max_messages=max_messages, max_bytes=max_bytes)
        delivered: list[Delivery] = []
        offered: list[Delivery] = []
        own_skipped = 0
        last_progress: dict[str, Delivery] = {}
        ever_over_hard = False
        serial = 0
        for op in ops:
            if op[0] == "offer":
                _, kind, size, extra = op
                serial += 1
                label = f"{serial}"
                if kind == "typing":
                    delivery = make(kind, label, size=max(size, len(label) + 2), origin=extra)
                    if extra == 1:
                        own_skipped += 1
                elif kind == "investigation_progress":
                    delivery = make(kind, label, size=max(size, len(label) + 2), inv=extra)
                    last_progress[extra] = delivery
                else:
                    delivery = make(kind, label, size=max(size, len(label) + 2))
                offered.append(delivery)
                outbox.offer(delivery)
            else:
                _, _, count, limit = op
                taken = outbox.take(count, limit)
                if count >= 1 and len(outbox) + len(taken) > 0:
                    assert len(taken) >= 1
                assert len(taken) <= count
                if len(taken) > 1:
                    assert sum(d.size for d in taken) <= limit
                delivered.extend(taken)
            # invariants after every step
            over = len(outbox) > max_messages or outbox.pending_bytes > max_bytes
            assert (outbox.full_since is not None) == over
            ever_over_hard |= (
                len(outbox) > HARD_LIMIT_FACTOR * max_messages
                or outbox.pending_bytes > HARD_LIMIT_FACTOR * max_bytes
            )
            assert outbox.overflowed == ever_over_hard
        pending_bytes = outbox.pending_bytes
        rest = drain(outbox)
        assert sum(d.size for d in rest) == pending_bytes
        assert outbox.pending_bytes == 0 and len(outbox) == 0
        delivered.extend(rest)

        # every delivery at most once; accounting adds up
        assert len({id(d) for d in delivered}) == len(delivered)
        assert len(delivered) + outbox.dropped + outbox.coalesced + own_skipped == len(offered)
        # never-dropped kinds: all of them, in offer order
        important = [d for d in offered if d.type in ("chat", "anomaly_detected", "report_ready")]
        assert [d for d in delivered if d in important] == important
        # own typing never delivered
        assert not any(d.type == "typing" and d.origin == 1 for d in delivered)
        # latest progress of each investigation always arrives, and progress never goes back
        for inv, last in last_progress.items():
            mine = [d for d in delivered if d.coalesce_key == f"progress:{inv}"]
            assert mine[-1] is last
            serials = [int(labels([d])[0]) for d in mine]
            assert serials == sorted(serials)

    trio.run(scenario)


def test_a_batch_frame_is_built_once_for_the_same_run_of_messages() -> None:
    from cidadao_trio.server.connection import BatchFrames

    cache = BatchFrames(size=2)
    items = [Delivery("chat", '{"n":1}', "e-1", True), Delivery("chat", '{"n":2}', "e-2", True)]
    text, frame = cache.frame(items)
    again_text, again_frame = cache.frame(list(items))
    assert again_frame is frame and again_text is text
    assert '"count":2' in text and frame.endswith(text.encode())
    other = cache.frame([items[1], items[0]])
    assert other[1] is not frame


# --- replay (§5: a replay is never coalesced or dropped) --------------------------------


async def test_replayed_progress_is_never_coalesced() -> None:
    outbox = Outbox(1, max_messages=4, hard_messages=4 + 10)  # a connection adds the retention
    with outbox.replaying():
        for pct in range(10):
            outbox.offer(progress("INV-A", pct, id=f"e1-{pct}"))
    assert outbox.coalesced == 0 and len(outbox) == 10
    assert outbox.full_since is not None and not outbox.overflowed  # full, within the hard ceiling
    assert [d.id for d in drain(outbox)] == [f"e1-{pct}" for pct in range(10)]


async def test_live_messages_after_a_replay_do_not_coalesce_it() -> None:
    outbox = Outbox(1, max_messages=3)
    with outbox.replaying():
        for pct in range(5):
            outbox.offer(progress("INV-A", pct))
    outbox.offer(progress("INV-A", 50))  # live, outbox full: only live ones may give way
    outbox.offer(progress("INV-A", 60))
    assert labels(drain(outbox)) == [f"INV-A:{pct}" for pct in range(5)] + ["INV-A:60"]
    assert outbox.coalesced == 1


async def test_a_replayed_copy_keeps_the_shared_frame_and_size() -> None:
    outbox = Outbox(1, max_messages=1)
    original = progress("INV-A", 10, id="e1-7")
    with outbox.replaying():
        outbox.offer(original)
    (queued,) = drain(outbox)
    assert queued.frame is original.frame and queued.size == original.size
    assert (queued.type, queued.text, queued.id, queued.coalesce_key) == (original.type, original.text, "e1-7", None)


async def test_protection_ends_with_the_block_and_nests() -> None:
    outbox = Outbox(1, max_messages=2)
    with outbox.replaying():
        with outbox.replaying():
            outbox.offer(progress("INV-A", 1))
        outbox.offer(progress("INV-A", 2))  # still inside the outer block
    outbox.offer(progress("INV-A", 3))
    outbox.offer(progress("INV-A", 4))  # over the bound: coalesces 3 only
    assert labels(drain(outbox)) == ["INV-A:1", "INV-A:2", "INV-A:4"]
    with pytest.raises(RuntimeError):
        with outbox.replaying():
            raise RuntimeError("a failing replay")
    outbox.offer(progress("INV-A", 5))
    outbox.offer(progress("INV-A", 6))
    outbox.offer(progress("INV-A", 7))
    assert labels(drain(outbox)) == ["INV-A:7"]  # not protected any more: 5 and 6 gave way


async def test_live_typing_during_a_replay_is_still_dropped_when_full() -> None:
    outbox = Outbox(1, max_messages=2)
    with outbox.replaying():
        for n in range(3):
            outbox.offer(make("chat", f"c{n}"))
        outbox.offer(make("typing", "t"))
    assert labels(drain(outbox)) == ["c0", "c1", "c2"]
    assert outbox.dropped == 1


async def test_a_replay_that_moves_restarts_the_slow_consumer_timer(autojump_clock: trio.testing.MockClock) -> None:
    outbox = Outbox(1, max_messages=4, hard_messages=4 + 20)
    with outbox.replaying():
        for pct in range(20):
            outbox.offer(progress("INV-A", pct))
    started = outbox.full_since
    assert started is not None
    await trio.sleep(8)
    outbox.take(1)  # the client reads a replayed message: the replay is paused, not stuck
    assert outbox.full_since == started + 8


async def test_live_messages_taken_do_not_restart_the_timer(autojump_clock: trio.testing.MockClock) -> None:
    outbox = Outbox(1, max_messages=2)
    for n in range(4):
        outbox.offer(make("chat", f"m{n}"))
    started = outbox.full_since
    await trio.sleep(8)
    outbox.take(1)
    assert outbox.full_since == started  # a slow live consumer is still timed


# --- fan-out windows: one flush per outbox, no wake-up per delivery -------------------------


async def test_offers_in_a_fan_out_window_are_flushed_once_each_at_its_end() -> None:
    flushed: list[tuple[str, list[str]]] = []
    a = Outbox(1, deliver=lambda: flushed.append(("a", labels(a.take_all()))))
    b = Outbox(2, deliver=lambda: flushed.append(("b", labels(b.take_all()))))
    with fan_out():
        for n in range(3):
            a.offer(make(label=f"m{n}"))
            b.offer(make(label=f"m{n}"))
            with fan_out():  # a nested window flushes with the outermost
                a.offer(make(label=f"x{n}"))
        assert flushed == [] and len(a) == 6 and len(b) == 3
    assert flushed == [("a", ["m0", "x0", "m1", "x1", "m2", "x2"]), ("b", ["m0", "m1", "m2"])]
    with fan_out():
        a.offer(make(label="again"))
    assert flushed[-1] == ("a", ["again"])  # listed again in the next window


async def test_a_window_wakes_no_waiter_until_it_ends_and_without_a_hook_wakes_once() -> None:
    outbox = Outbox(1)
    woke: list[int] = []

    async def consumer() -> None:
        await outbox.wait_ready()
        woke.append(len(outbox))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        with fan_out():
            for n in range(5):
                outbox.offer(make(label=f"m{n}"))
        await trio.testing.wait_all_tasks_blocked()
    assert woke == [5]  # one wake-up for the whole window


async def test_outside_a_window_an_offer_wakes_the_consumer_and_take_all_empties() -> None:
    delivered: list[int] = []
    outbox = Outbox(1, deliver=lambda: delivered.append(1))
    outbox.offer(make(label="direct"))
    assert delivered == []  # not a committed window: the consumer's task takes it
    with trio.fail_after(1):
        await outbox.wait_ready()
    assert labels(outbox.take_all()) == ["direct"] and len(outbox) == 0 and outbox.pending_bytes == 0
    with fan_out():
        pass
    assert delivered == []  # nothing offered: no flush


async def test_take_all_ends_a_replays_fullness_pause(autojump_clock: trio.testing.MockClock) -> None:
    outbox = Outbox(1, max_messages=2)
    with outbox.replaying():
        for n in range(4):
            outbox.offer(make(label=f"r{n}"))
    assert outbox.full_since is not None
    assert labels(outbox.take_all()) == ["r0", "r1", "r2", "r3"]
    assert outbox.full_since is None


async def test_a_sink_whose_flush_fails_strands_no_other_sink(caplog: pytest.LogCaptureFixture) -> None:
    got: list[str] = []

    def broken() -> None:
        raise RuntimeError("a bug in one consumer")

    bad = Outbox(1, deliver=broken)
    good = Outbox(2, deliver=lambda: got.extend(labels(good.take_all())))
    for round_ in ("one", "two"):
        with fan_out():
            bad.offer(make(label=round_))
            good.offer(make(label=round_))
    assert got == ["one", "two"]  # flushed in both windows, though listed after the bad one
    assert "a sink failed to flush" in caplog.text


async def test_a_burst_committed_at_once_reaches_fast_consumers_in_steps_not_as_slow_ones() -> None:
    """A thousand big events published by one task are committed in one window; offered in
    one fan-out step they would pile up past every outbox's ceiling before any flush and cut
    consumers that read at once (1013), and hold the loop for seconds."""
    broker = LocalBroker()
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        taken: list[int] = []
        sinks: list[Outbox] = []
        for n in range(100):
            outbox = Outbox(n)
            outbox.deliver = lambda o=outbox: taken.append(len(o.take_all()))  # type: ignore[misc]
            sinks.append(outbox)
            await broker.attach("investigation:burst", outbox, None)
        for n in range(1000):
            await broker.publish("investigation:burst", message("agent_finding", {"summary": "s" * 5000, "n": n}))
        await broker.flush()
        nursery.cancel_scope.cancel()
    assert not any(o.overflowed for o in sinks)
    assert sum(taken) == 100 * 1000  # every event to every consumer
    assert len(taken) > 100  # in several steps, not one
