"""``cidadao_trio.client``: the sans-IO bookkeeping directly, the client against a real server.

The end-to-end tests run ``cidadao-trio serve`` in a subprocess on 127.0.0.1 (tests/process.py)
and talk to it through :class:`RealtimeClient` under Trio; those about a server's limits (auth,
overload, rate) use an in-process server on a loopback socket (tests/harness.py ``tcp_server``):
no process start for one setting each.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from cidadao_trio.auth import mint_token
from cidadao_trio.broker.base import session_stream
from cidadao_trio.client import (
    Backoff,
    ClientRefused,
    CursorTracker,
    Gap,
    OfflineQueue,
    Outgoing,
    QueueFull,
    RealtimeClient,
    Unacknowledged,
    endpoint_url,
    http_base,
    unpack,
    with_query,
)
from cidadao_trio.protocol.envelope import EPHEMERAL_PREFIX, DurableId
from cidadao_trio.server.server import Server

from .harness import running_server, tcp_server
from .process import ServerProcess, serve

SAFETY = 10.0  # seconds; a safety net, never a measured delay
SECRET = "client-test-secret-with-32-bytes-or-more"
FAST = Backoff(base=0.02, cap=0.1, random=random.Random(1))


def ids_of(messages: Iterable[dict[str, Any]]) -> list[str]:
    """The durable ids among ``messages``."""
    return [m["id"] for m in messages if isinstance(m.get("id"), str) and not m["id"].startswith(EPHEMERAL_PREFIX)]


def msg(id: str, type: str = "chat", **data: Any) -> dict[str, Any]:
    return {"type": type, "data": data, "timestamp": "2026-11-29T10:30:05.123Z", "id": id}


async def wait_for(predicate: Callable[[], bool], timeout: float = SAFETY) -> None:
    """Poll a condition under a deadline (state the client exposes, not a message)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def offsets(ids: list[str]) -> list[int]:
    parsed = [DurableId.parse(i) for i in ids]
    assert all(p is not None for p in parsed), ids
    assert len({p.epoch for p in parsed if p}) == 1, ids
    return [p.offset for p in parsed if p]


def assert_contiguous(ids: list[str]) -> None:
    got = offsets(ids)
    assert got == list(range(got[0], got[0] + len(got))), ids


# --- sans-IO: cursor, batches, backoff, queue, URLs ----------------------------------------


def test_tracker_drops_replayed_duplicates_and_records_gaps() -> None:
    tracker = CursorTracker()
    verdicts = [
        tracker.observe(m)
        for m in [
            msg("e-1-1", "connection"),
            msg("ab-1"),
            msg("ab-2"),
            msg("ab-2"),  # replayed
            msg("ab-1"),  # older still
            msg("e-1-2", "typing"),
            msg("ab-5"),  # 3 and 4 skipped
            msg("ab-6"),
        ]
    ]
    assert verdicts == [True, True, True, False, False, True, True, True]
    assert tracker.gaps == [Gap("ab-3", "ab-5")]
    assert tracker.duplicates == 2
    assert tracker.last_id == "ab-6"


def test_tracker_resumes_from_a_persisted_cursor() -> None:
    tracker = CursorTracker("ab-41")
    assert tracker.observe(msg("ab-41")) is False  # the server resent our cursor
    assert tracker.observe(msg("ab-42")) is True
    assert tracker.gaps == [] and tracker.last_id == "ab-42"


def test_tracker_accepts_a_new_base_after_history_gap() -> None:
    tracker = CursorTracker("ab-7")
    tracker.reset()
    assert tracker.last_id == "ab-7"  # kept until something replaces it: a reconnect asks again
    assert tracker.observe(msg("e-9-1", "anomaly_detected")) is True  # digest: ephemeral
    assert tracker.observe(msg("cd-900")) is True
    assert tracker.observe(msg("cd-901")) is True
    assert tracker.gaps == [] and tracker.last_id == "cd-901"
    assert tracker.observe(msg("cd-903")) is True  # normal rules again
    assert tracker.gaps == [Gap("cd-902", "cd-903")]


def test_tracker_reports_an_unannounced_epoch_change() -> None:
    tracker = CursorTracker()
    tracker.observe(msg("ab-3"))
    assert tracker.observe(msg("zz-1")) is True
    assert tracker.gaps == [Gap("ab-4", "zz-1")]
    assert tracker.observe(msg("ab-4")) is True  # other epoch: not comparable, not a duplicate


def test_coalesced_progress_is_reported_as_a_gap() -> None:
    tracker = CursorTracker()
    for m in [msg("ab-10", "investigation_progress"), msg("ab-12", "investigation_progress")]:
        assert tracker.observe(m)
    assert tracker.gaps == [Gap("ab-11", "ab-12")]


def test_batches_are_unpacked_in_order_and_deduplicated_by_member_id() -> None:
    batch = {"type": "batch", "id": "e-5", "data": {"count": 2, "messages": [msg("ab-1"), msg("ab-2")]}}
    assert [m["id"] for m in unpack(batch)] == ["ab-1", "ab-2"]
    assert unpack(msg("ab-3")) == [msg("ab-3")]
    tracker = CursorTracker()
    kept = [m for m in unpack(batch) + unpack(batch) if tracker.observe(m)]
    assert ids_of(kept) == ["ab-1", "ab-2"]


def test_backoff_is_full_jitter_doubling_to_the_cap() -> None:
    backoff = Backoff(random=random.Random(42))
    reference = random.Random(42)
    delays = [backoff.delay(attempt) for attempt in range(10)]
    expected = [reference.uniform(0, min(30.0, 0.5 * 2**attempt)) for attempt in range(10)]
    assert delays == expected
    assert all(0 <= d <= min(30.0, 0.5 * 2**n) for n, d in enumerate(delays))
    assert 0 <= backoff.delay(10_000) <= 30.0  # no overflow after a long outage


def test_backoff_honours_retry_after() -> None:
    backoff = Backoff(random=random.Random(3))
    assert backoff.delay(0, retry_after=5.0) == 5.0  # the jittered 0..0.5 s is shorter
    assert 0 <= backoff.delay(0, retry_after=None) <= 0.5


def test_offline_queue_is_bounded_and_requeues_in_send_order() -> None:
    queue = OfflineQueue(limit=3)
    for seq in (5, 6, 7):
        queue.put(Outgoing(seq, f"m{seq}", "{}"))
    with pytest.raises(QueueFull):
        queue.put(Outgoing(8, "m8", "{}"))
    first = queue.peek()
    assert first is not None and first.id == "m5"
    queue.done(first)
    queue.requeue(Outgoing(3, "m3", "{}"))  # refused earlier: goes back before everything
    queue.requeue(Outgoing(4, "m4", "{}"))
    order = []
    while (item := queue.peek()) is not None:
        order.append(item.id)
        queue.done(item)
    assert order == ["m3", "m4", "m6", "m7"]


def test_urls() -> None:
    assert endpoint_url("http://localhost:8000/", "chat", "s1") == "ws://localhost:8000/api/v1/ws/chat/s1"
    assert endpoint_url("https://x.org", "investigations", "INV-2026-001") == (
        "wss://x.org/api/v1/ws/investigations/INV-2026-001"
    )
    assert http_base("wss://x.org:8443/api/v1/ws/chat/s") == "https://x.org:8443"
    url = with_query("ws://h/p?token=t&last_id=old", last_id="ab-3", batch="1")
    assert url == "ws://h/p?token=t&last_id=ab-3&batch=1"
    assert with_query(url, last_id=None, batch=None) == "ws://h/p?token=t"


# --- against a real server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve() as running:
        yield running


def chat_url(server: ServerProcess, session: str) -> str:
    return server.ws_url(f"/api/v1/ws/chat/{session}")


def local_url(port: int, session: str) -> str:
    """A chat URL on an in-process ``tcp_server`` (real sockets; its limits are the subject)."""
    return f"ws://127.0.0.1:{port}/api/v1/ws/chat/{session}"


async def test_connects_and_pings(server: ServerProcess) -> None:
    client = RealtimeClient(chat_url(server, "ping-1"))
    async with client:
        assert client.connected and client.resumed is False
        assert client.server["session_id"] == "ping-1"
        assert client.server["max_message_bytes"] == 64 * 1024
        rtt = await client.ping()
        assert 0 <= rtt < SAFETY
    assert client.attempts == 1 and client.connections == 1 and not client.connected


@pytest.mark.parametrize("batch", [False, True])
async def test_a_chat_turn(server: ServerProcess, batch: bool) -> None:
    async with RealtimeClient(chat_url(server, f"turn-{batch}"), batch=batch) as client:
        turn = [m async for m in client.chat("Olá")]
    user, typing_on, *chunks, complete, typing_off = turn
    assert (user["type"], user["data"]["role"], user["data"]["content"]) == ("chat", "user", "Olá")
    assert typing_on["type"] == "typing" and typing_on["data"]["isTyping"] is True
    assert chunks and [c["data"]["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert {c["data"]["agent_name"] for c in chunks} == {"Carlos Drummond de Andrade"}
    assert complete["type"] == "chat_complete" and complete["data"]["status"] == "completed"
    assert complete["data"]["content"] == "".join(c["data"]["content"] for c in chunks)
    assert typing_off["type"] == "typing" and typing_off["data"]["isTyping"] is False
    assert_contiguous(ids_of(turn))
    assert client.last_id == complete["id"] and client.gaps == []


async def test_resume_after_the_server_is_killed_and_restarted(tmp_path: Path) -> None:
    """SIGKILL, restart on the same data dir (new port); meanwhile another connection of
    the session chats. On reconnect the client resumes: every durable id once, no gap."""
    data = str(tmp_path / "data")
    path = "/api/v1/ws/chat/resume-1"
    with ExitStack() as servers:
        first = servers.enter_context(serve(store="sqlite", data_dir=data))
        where = {"url": first.ws_url(path)}
        async with RealtimeClient(lambda: where["url"], backoff=FAST) as client:
            seen = [m async for m in client.chat("Olá")]
            first.process.kill()
            first.process.wait()
            await wait_for(lambda: not client.connected)
            second = servers.enter_context(serve(store="sqlite", data_dir=data))
            async with RealtimeClient(second.ws_url(path)) as other:
                assert other.resumed is False
                missed = [m async for m in other.chat("O que é fracionamento?")]
            where["url"] = second.ws_url(path)  # the old port is dead until now
            await wait_for(lambda: client.connected)
            assert client.resumed is True
            with trio.fail_after(SAFETY):
                async for message in client.messages():
                    seen.append(message)
                    if message["id"] == ids_of(missed)[-1]:
                        break
    durable = ids_of(seen)
    assert len(durable) == len(set(durable))
    assert_contiguous(durable)
    assert durable[-len(ids_of(missed)):] == ids_of(missed)  # replayed exactly, in order
    assert client.gaps == [] and client.tracker.duplicates == 0
    assert client.attempts >= 2 and client.connections == 2


async def test_offline_queue_is_flushed_in_order_after_a_history_gap() -> None:
    """The server dies with its memory store; sends made meanwhile wait in the queue. The
    new server cannot honour the cursor: HISTORY_GAP, a new epoch accepted, no false gap."""
    path = "/api/v1/ws/chat/offline-1"
    with ExitStack() as servers:
        first = servers.enter_context(serve())
        where = {"url": first.ws_url(path)}
        async with RealtimeClient(lambda: where["url"], backoff=FAST, queue_limit=2) as client:
            before = [m async for m in client.chat("Olá")]
            old_epoch = DurableId.parse(client.last_id or "")
            first.process.kill()
            first.process.wait()
            await wait_for(lambda: not client.connected)
            await client.send("ping", id="q1")
            await client.send("chat", {"message": "Quais agentes existem?"}, id="q2")
            with pytest.raises(QueueFull):
                await client.send("ping", id="q3")
            assert len(client.queue) == 2
            second = servers.enter_context(serve())
            where["url"] = second.ws_url(path)
            after = []
            with trio.fail_after(SAFETY):
                async for message in client.messages():
                    after.append(message)
                    if message["type"] == "chat_complete":
                        break
    kinds = [(m["type"], m["data"].get("code") or m["data"].get("reply_to")) for m in after]
    # the first greeting was held back by chat() (not part of its turn), then the new server's
    assert kinds[:4] == [("connection", None), ("connection", None), ("error", "HISTORY_GAP"), ("pong", "q1")]
    replies = [m for m in after if m["data"].get("reply_to") == "q2"]
    assert replies[0]["data"]["role"] == "user" and replies[-1]["type"] == "chat_complete"
    assert client.history_gaps == 1 and client.gaps == []
    assert len(client.queue) == 0
    new_epoch = DurableId.parse(client.last_id or "")
    assert old_epoch and new_epoch and new_epoch.epoch != old_epoch.epoch
    assert_contiguous(ids_of(after))
    assert ids_of(before) and not set(ids_of(before)) & set(ids_of(after))


async def test_policy_close_is_not_retried() -> None:
    async with tcp_server(auth="required", auth_timeout=0.5, jwt_secret=SECRET) as (_, port):
        url = local_url(port, "auth-1")
        client = RealtimeClient(url, backoff=FAST)
        with pytest.raises(ClientRefused) as refused:
            async with client:
                pass
        assert (refused.value.code, refused.value.error_code) == (1008, "UNAUTHORIZED")
        assert client.attempts == 1 and client.delays == []
        token = mint_token(SECRET, "alice", ttl=60)
        async with RealtimeClient(url, token=token) as authorized:  # Authorization: Bearer
            assert await authorized.ping() >= 0


async def test_overloaded_retry_after_is_honoured() -> None:
    async with tcp_server(max_connections=1, overload_retry_after=0.4) as (_, port):
        release = trio.Event()

        async def hold_the_only_slot(task_status: trio.TaskStatus[None]) -> None:
            async with RealtimeClient(local_url(port, "busy-1")):
                task_status.started()
                await release.wait()

        async with trio.open_nursery() as nursery:
            await nursery.start(hold_the_only_slot)
            waiting = RealtimeClient(local_url(port, "busy-2"), backoff=FAST, wait_connected=None)
            async with waiting:
                await wait_for(lambda: bool(waiting.delays))
                assert waiting.last_error is not None and waiting.last_error["code"] == "OVERLOADED"
                assert waiting.delays[0] >= 0.4  # not the 0..0.02 s the backoff alone allows
                assert not waiting.connected
                release.set()  # free the slot
                await wait_for(lambda: waiting.connected)
                assert await waiting.ping() >= 0


async def test_rate_limit_pauses_sending_and_resends_what_it_can_attribute() -> None:
    """Each ping is answered by a pong or refused with RATE_LIMIT; a refusal that names its
    message (``reply_to``) is sent again after ``retry_after``. (This server omits
    ``reply_to`` on RATE_LIMIT, since it refuses before parsing; then the client only pauses.)"""
    async with tcp_server(rate_burst=2, rate_messages=20, rate_window=1.0) as (_, port):
        async with RealtimeClient(local_url(port, "rate-1")) as client:
            for n in range(6):
                await client.send("ping", id=f"r{n}")
            pongs: list[str] = []
            attributed: list[str] = []
            unattributed = 0
            with trio.fail_after(SAFETY):
                async for message in client.messages():
                    data = message["data"]
                    if message["type"] == "error":
                        assert data["code"] == "RATE_LIMIT" and data["retry_after"] > 0, message
                        if "reply_to" in data:
                            attributed.append(data["reply_to"])
                        else:
                            unattributed += 1
                    elif message["type"] == "pong":
                        pongs.append(data["reply_to"])
                    if len(set(pongs)) + unattributed >= 6 and set(attributed) <= set(pongs):
                        break
            assert attributed or unattributed, "a burst of 2 must be exceeded by 6 pings"
            assert len(pongs) == len(set(pongs))
            assert await client.ping() >= 0  # still connected once the pause is over


def test_unacknowledged_messages_wait_for_a_reply_naming_them() -> None:
    pending = Unacknowledged()
    chat, ping, typing = Outgoing(1, "c1", "{}", True), Outgoing(2, "p1", "{}", True), Outgoing(3, "t", "{}")
    for item in (chat, ping, typing):
        pending.written(item)
    assert len(pending) == 2  # typing is never answered: not kept
    assert pending.answered("p1") is ping and pending.answered("p1") is None
    assert not pending.was_resent("c1")
    assert pending.take_all() == [chat] and len(pending) == 0
    pending.written(chat)  # the next connection sends it again
    assert pending.was_resent("c1") and pending.answered("c1") is chat
    assert pending.was_resent("c1")  # its DUPLICATE may arrive after the echo that answered it


# --- safe resends, against an in-process server (virtual time) ------------------------------


class Link(trio.abc.Stream):
    """One connection's bytes between the client and the in-process server. The test can
    drop them in one direction (lost in flight) and cut the link as a dead TCP connection."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.drop_up = False  # the client's bytes never reach the server
        self.drop_down = False  # the server's bytes never reach the client

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.drop_up:
            await trio.lowlevel.checkpoint()
        else:
            await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        while True:
            data = await self.inner.receive_some(max_bytes)
            if not data or not self.drop_down:
                return data

    async def aclose(self) -> None:
        await self.inner.aclose()


class Dialer:
    """The client's ``dial``: each attempt a fresh in-memory connection to ``server``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.links: list[Link] = []

    async def __call__(self, url: str) -> trio.abc.Stream:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        self.server.spawn(server_stream)
        self.links.append(Link(client_stream))
        return self.links[-1]


async def _session_history(server: Server, session_id: str) -> list[dict[str, Any]]:
    await server.broker.flush()
    return [orjson.loads(d.text) for d in await server.broker.retained(session_stream(session_id))]


def _completions(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in history if m["type"] == "chat_complete"]


def _replies(messages: Iterable[dict[str, Any]], id: str) -> list[tuple[str, str | None]]:
    """(type, role or status) of every message answering ``id``."""
    return [
        (m["type"], m["data"].get("role") or m["data"].get("status") or m["data"].get("code"))
        for m in messages
        if m["data"].get("reply_to") == id and not (m["type"] == "chat" and m["data"].get("chunk"))
    ]


async def _held(client: RealtimeClient) -> list[dict[str, Any]]:
    """What the client passed on besides the turns read through chat(), up to a quiet second."""
    seen: list[dict[str, Any]] = []
    with contextlib.suppress(trio.TooSlowError):
        async for message in client.messages(idle_timeout=1.0):
            seen.append(message)
    return seen


@pytest.mark.parametrize("lost", ["the message", "its answer"])
async def test_a_chat_cut_off_with_its_connection_is_answered_exactly_once(
    autojump_clock: trio.testing.MockClock, lost: str
) -> None:
    """The chat is written and the connection dies before the client sees it echoed: either
    the server never got it (resent, run once) or it ran the turn and the answer was lost
    (resent, DUPLICATE swallowed, the turn replayed from the cursor). Either way chat()
    yields one turn and the session holds one."""
    async with running_server() as server:
        dialer = Dialer(server)
        async with RealtimeClient("ws://localhost/api/v1/ws/chat/resend-1", dial=dialer, backoff=FAST) as client:
            [m async for m in client.chat("Olá")]  # a cursor to resume from
            link = dialer.links[-1]
            link.drop_up, link.drop_down = lost == "the message", lost == "its answer"
            turn: list[dict[str, Any]] = []

            async def converse() -> None:
                turn.extend([m async for m in client.chat("Quais agentes existem?", timeout=SAFETY)])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(converse)
                await wait_for(lambda: len(client.unacknowledged) == 1)  # written, not echoed
                while lost == "its answer" and len(_completions(await _session_history(server, "resend-1"))) < 2:
                    await trio.sleep(0.1)  # the server runs the whole turn meanwhile
                await link.aclose()  # the TCP connection dies under the client
            held = await _held(client)
        history = await _session_history(server, "resend-1")
    asked = [m["data"]["reply_to"] for m in history if m["data"].get("role") == "user"][-1]
    assert _replies(turn, asked) == [("chat", "user"), ("chat_complete", "completed")]
    assert _replies(history, asked) == [("chat", "user"), ("chat_complete", "completed")]
    assert client.connections == 2 and client.resumed is True and client.resent == 1
    assert client.already_accepted == (1 if lost == "its answer" else 0)
    assert [m for m in held if m["type"] == "error"] == []  # the DUPLICATE was an acknowledgement
    assert client.gaps == [] and len(client.unacknowledged) == 0
