"""Server-Sent Events (PROTOCOL.md §10) with a real HTTP client against a real server.

One server on 127.0.0.1 serves the whole module (its own thread); investigations are
published through the server API (§8), as a backend would. The slow consumer, the token
expiry and the drain run on in-memory servers with a virtual clock; the restart is a
subprocess on the SQLite store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio
import trio.testing

from cidadao_trio.auth import mint_token
from cidadao_trio.protocol.events import AgentFinding

from ..harness import register_investigation, running_server
from ..process import serve
from .streams import API_KEY, SAFETY, Shared, SseEvent, api, memory_sse, sse, threaded_server

SECRET = "sse-test-secret-with-at-least-32-bytes"


def token(sub: str, **kwargs: Any) -> str:
    return mint_token(SECRET, sub, **kwargs)


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    with threaded_server(
        api_keys=API_KEY, jwt_secret=SECRET, heartbeat_interval=0.2, max_connections_per_principal=2
    ) as running:
        yield running


def progress(n: int, status: str = "data_retrieval") -> dict[str, Any]:
    return {"type": "investigation_progress", "data": {"progress": n, "status": status, "message": f"passo {n}"}}


async def open_investigation(client: httpx.AsyncClient, **body: Any) -> str:
    answer = await client.post("/api/v1/investigations", json={"title": "SSE", **body}, headers=api())
    assert answer.status_code == 201, answer.text
    return str(answer.json()["investigation_id"])


async def publish(client: httpx.AsyncClient, investigation_id: str, *events: dict[str, Any]) -> list[str]:
    answer = await client.post(
        f"/api/v1/investigations/{investigation_id}/events", json={"events": list(events)}, headers=api()
    )
    assert answer.status_code == 202, answer.text
    return list(answer.json()["ids"])


async def test_an_investigation_streams_what_it_has_then_live(shared: Shared) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await open_investigation(client)
        first = await publish(client, investigation, progress(10), progress(20))
        async with sse(client, f"/api/v1/sse/investigations/{investigation}") as stream:
            greeting = await stream.next()
            assert greeting.event == "connection" and greeting.id is None
            assert greeting.data["data"]["investigation_id"] == investigation
            assert greeting.data["data"]["resumed"] is False
            replayed = [await stream.next(), await stream.next()]
            assert [e.id for e in replayed] == first == [e.data["id"] for e in replayed]
            assert [e.event for e in replayed] == ["investigation_progress"] * 2
            live = await publish(client, investigation, progress(30, "anomaly_detection"))
            event = await stream.next()
            assert event.id == live[0] and event.data["data"]["progress"] == 30
            assert stream.retry == 1000  # an EventSource reconnects a second after an end


async def test_last_event_id_resumes_without_gap_or_duplicate(shared: Shared) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await open_investigation(client)
        ids = await publish(client, investigation, *(progress(n) for n in range(1, 6)))
        path = f"/api/v1/sse/investigations/{investigation}"
        async with sse(client, path, headers={"last-event-id": ids[1]}) as stream:
            assert (await stream.next()).data["data"]["resumed"] is True
            assert [(await stream.next()).id for _ in range(3)] == ids[2:]
        # last_id= works too, and the header wins over it (an EventSource keeps its URL)
        async with sse(client, f"{path}?last_id={ids[0]}", headers={"last-event-id": ids[3]}) as stream:
            await stream.next()
            assert (await stream.next()).id == ids[4]


async def test_a_lost_cursor_gets_history_gap_then_a_digest(shared: Shared) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await open_investigation(client)
        await publish(client, investigation, progress(10), progress(40, "anomaly_detection"))
        path = f"/api/v1/sse/investigations/{investigation}"
        async with sse(client, path, headers={"last-event-id": "otherepoch-3"}) as stream:
            assert (await stream.next()).data["data"]["resumed"] is False
            gap = await stream.next()
            assert gap.event == "error" and gap.data["data"]["code"] == "HISTORY_GAP" and gap.id is None
            digest = await stream.next()
            assert digest.data["data"]["progress"] == 40 and digest.id is None  # latest progress, ephemeral


async def test_refusals_before_the_stream_are_http_statuses_with_json(shared: Shared) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as client:
        private = await open_investigation(client, owner="alice", public=False)
        cases = [
            ("/api/v1/sse/investigations/INV-1999-404", {}, 404, "NOT_FOUND"),
            (f"/api/v1/sse/investigations/{private}", {}, 404, "NOT_FOUND"),  # hidden, not forbidden (§6)
            (f"/api/v1/sse/investigations/{private}?token=not-a-jwt", {}, 401, "UNAUTHORIZED"),
            (f"/api/v1/sse/investigations/{private}", {"authorization": f"Bearer {token('bob')}"}, 404, "NOT_FOUND"),
        ]
        for path, headers, status, code in cases:
            answer = await client.get(path, headers=headers)
            assert (answer.status_code, answer.json()["error"]) == (status, code), path
            assert "not-a-jwt" not in answer.text
        async with sse(client, f"/api/v1/sse/investigations/{private}?token={token('alice')}") as stream:
            assert (await stream.next()).event == "connection"
        owned = f"/api/v1/sse/chat/owned-by-carol?token={token('carol')}"
        async with sse(client, owned) as stream:
            assert (await stream.next()).event == "connection"
        refused = await client.get(f"/api/v1/sse/chat/owned-by-carol?token={token('dave')}")
        assert (refused.status_code, refused.json()["error"]) == (403, "FORBIDDEN")
        head = await client.head(f"/api/v1/sse/investigations/{private}?token={token('alice')}")
        assert head.status_code == 200 and head.headers["content-type"].startswith("text/event-stream")


async def test_the_per_user_cap_answers_429(shared: Shared) -> None:
    path = f"/api/v1/sse/chat/capped?token={token('erin')}"
    async with httpx.AsyncClient(base_url=shared.url) as client:
        async with sse(client, path) as one, sse(client, path) as two:
            await one.next()
            await two.next()
            third = await client.get(path)
            assert (third.status_code, third.json()["error"]) == (429, "OVERLOADED")
            assert float(third.json()["retry_after"]) > 0 and int(third.headers["retry-after"]) >= 1
            assert (await client.head(path)).status_code == 429  # HEAD answers as GET would (§1)
        # The cap counts open streams only: the server frees a place when it sees the close,
        # which may come after the client's own close returns.
        with trio.fail_after(SAFETY):
            while (await client.head(path)).status_code == 429:
                await trio.sleep(0.01)
        async with sse(client, path) as again:
            assert (await again.next()).event == "connection"


async def test_chat_over_sse_with_posted_messages(shared: Shared) -> None:
    headers = {"authorization": f"Bearer {token('frank')}"}
    async with httpx.AsyncClient(base_url=shared.url) as client:
        async with sse(client, "/api/v1/sse/chat/sse-chat-1", headers=headers) as stream:
            await stream.next()
            message = {"type": "chat", "id": "m-1", "data": {"message": "Olá"}}
            posted = await client.post("/api/v1/chat/sse-chat-1/messages", json=message, headers=headers)
            assert (posted.status_code, posted.json()) == (202, {"reply_to": "m-1"})
            turn = await stream.until("chat_complete")
            user = turn[0]
            assert user.event == "chat" and user.data["data"] == {"role": "user", "content": "Olá", "reply_to": "m-1"}
            assert user.id is not None
            assert turn[-1].data["data"]["reply_to"] == "m-1" and turn[-1].data["data"]["status"] == "completed"
            again = await client.post("/api/v1/chat/sse-chat-1/messages", json=message, headers=headers)
            assert (again.status_code, again.json()["error"]) == (409, "DUPLICATE")
            stranger = {"authorization": f"Bearer {token('grace')}"}
            refused = await client.post("/api/v1/chat/sse-chat-1/messages", json=message, headers=stranger)
            assert (refused.status_code, refused.json()["error"]) == (403, "FORBIDDEN")
            bad = await client.post("/api/v1/chat/sse-chat-1/messages", content=b"{nope", headers=headers)
            assert (bad.status_code, bad.json()["error"]) == (400, "INVALID_JSON")
            unnamed = await client.post(
                "/api/v1/chat/sse-chat-1/messages", json={"type": "typing", "data": {"isTyping": True}}, headers=headers
            )
            assert unnamed.status_code == 202 and unnamed.json()["reply_to"]  # the server names it
            wrong = await client.get("/api/v1/chat/sse-chat-1/messages")
            assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


async def test_keep_alive_comments_and_batches(shared: Shared) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await open_investigation(client)
        ids = await publish(client, investigation, *(progress(n) for n in range(1, 4)))
        async with sse(client, f"/api/v1/sse/investigations/{investigation}?batch=1") as stream:
            seen: list[SseEvent] = []
            members: list[dict[str, Any]] = []
            while len([m for m in members if not m["id"].startswith("e-")]) < 3:
                seen.append(await stream.next())
                members += seen[-1].data["data"]["messages"] if seen[-1].event == "batch" else [seen[-1].data]
            assert [m["id"] for m in members if not m["id"].startswith("e-")] == ids
            assert any(e.event == "batch" for e in seen)  # queued together, sent together
            assert seen[-1].id == ids[-1]  # a batch's id: its last durable member's
            while not stream.comments:  # heartbeat_interval is 0.2 s here
                published = await publish(client, investigation, progress(50))
                assert (await stream.next()).id == published[0]
            assert stream.comments[0] == ": ping"


async def test_a_batch_event_holds_at_most_64_kib(shared: Shared) -> None:
    """§5's limits hold on SSE too: 64 messages or 64 KiB, whichever comes first."""
    finding = {"type": "agent_finding", "data": {"agent_id": "anita", "agent_name": "Anita Garibaldi",
                                                 "finding_type": "padrão", "summary": "x" * 4000, "details": {}}}
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await open_investigation(client)
        ids = await publish(client, investigation, *([finding] * 40))  # ~160 KB in all
        async with sse(client, f"/api/v1/sse/investigations/{investigation}?batch=1") as stream:
            sizes, members = [], []
            while len([m for m in members if not m["id"].startswith("e-")]) < 40:
                event = await stream.next()
                if event.event == "batch":
                    sizes.append(len(json.dumps(event.data).encode()))
                    members += event.data["data"]["messages"]
                else:
                    members.append(event.data)
    assert [m["id"] for m in members if not m["id"].startswith("e-")] == ids
    assert len(sizes) >= 3 and max(sizes) <= 64 * 1024 + 1024  # the envelope's few bytes beyond


# --- on a virtual clock ---------------------------------------------------------------------


async def test_a_slow_reader_is_cut_and_resumes(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(outbox_messages=8, slow_consumer_timeout=5.0, heartbeat_interval=1000) as server:
        register_investigation(server, "INV-SLOW")
        async with memory_sse(server, lockstep=True) as client:
            assert await client.start("/api/v1/sse/investigations/INV-SLOW") == 200
            assert (await client.events(1))[0]["type"] == "connection"
            for n in range(400):  # the client reads nothing: its outbox fills (findings are never dropped)
                await server.broker.publish("investigation:INV-SLOW", AgentFinding(
                    investigation_id="INV-SLOW", agent_id="anita", agent_name="Anita", finding_type="t",
                    summary="x" * 500, details={"n": n},
                ))
            await trio.sleep(6)
            assert server.metrics.registry.get_sample_value("cidadao_slow_consumer_disconnects_total") == 1
            assert not server.sse.streams
        async with memory_sse(server) as client:  # its messages stayed in the stream for a resume
            assert await client.start("/api/v1/sse/investigations/INV-SLOW", [("last-event-id", "")]) == 200
            events = await client.events(401)
            assert [e["data"]["details"]["n"] for e in events[1:]] == list(range(400))


async def test_an_expiring_token_ends_the_stream_with_an_error(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(jwt_secret=SECRET, jwt_leeway=0.0, heartbeat_interval=1000) as server:
        async with memory_sse(server) as client:
            path = f"/api/v1/sse/chat/expiring?token={token('heidi', ttl=60)}"
            assert await client.start(path) == 200
            await trio.sleep(61)
            text = await client.read_all()
            assert "event: error" in text and '"TOKEN_EXPIRED"' in text and client.ended


async def test_the_drain_ends_streams_cleanly(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(heartbeat_interval=1000) as server:
        async with memory_sse(server) as client:
            assert await client.start("/api/v1/sse/chat/draining") == 200
            assert (await client.events(1))[0]["type"] == "connection"
            await server.drain()
            rest = await client.read_all()
            assert client.ended and "error" not in rest  # the terminating chunk: an end, not a cut
            assert client.parser.their_state is h11.MUST_CLOSE  # ended by its terminating chunk
        async with memory_sse(server) as client:  # a stream opened while draining ends at once, so an
            assert await client.start("/api/v1/sse/chat/late") == 200  # EventSource retries elsewhere
            assert (await client.read_all()).strip() == "retry: 1000" and client.parser.their_state is h11.MUST_CLOSE


# --- across a restart (a subprocess on the SQLite store) -------------------------------------


def test_last_event_id_resumes_across_a_restart(tmp_path: Path) -> None:
    settings = {"store": "sqlite", "data_dir": str(tmp_path), "api_keys": API_KEY, "drain_timeout": 1}

    def stream(port: int, last: str | None) -> Iterator[tuple[str | None, dict[str, Any]]]:
        headers = {"last-event-id": last} if last else {}
        with httpx.Client(timeout=SAFETY) as client, client.stream(
            "GET", f"http://127.0.0.1:{port}/api/v1/sse/investigations/{investigation}", headers=headers
        ) as response:
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if not line and "data" in fields:
                    yield fields.get("id"), json.loads(fields["data"])
                    fields = {}
                elif line and not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value

    def post(port: int, *events: dict[str, Any]) -> list[str]:
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/investigations/{investigation}/events",
            json={"events": list(events)}, headers=api(), timeout=SAFETY,
        )
        assert answer.status_code == 202, answer.text
        return list(answer.json()["ids"])

    with serve(**settings) as first:
        created = httpx.post(f"http://127.0.0.1:{first.port}/api/v1/investigations", json={"title": "R"},
                             headers=api(), timeout=SAFETY)
        investigation = created.json()["investigation_id"]
        before = post(first.port, progress(10), progress(20))
        seen = []
        for event_id, _ in stream(first.port, None):
            if event_id:
                seen.append(event_id)
            if len(seen) == 2:
                break
        assert seen == before
    with serve(**settings) as second:
        after = post(second.port, progress(30), progress(40))
        for event_id, envelope in stream(second.port, seen[-1]):
            if envelope["type"] == "connection":
                assert envelope["data"]["resumed"] is True
            elif event_id:
                seen.append(event_id)
            if len(seen) == 4:
                break
    assert seen == before + after
    offsets = [int(i.rsplit("-", 1)[1]) for i in seen]
    assert offsets == list(range(offsets[0], offsets[0] + 4))  # no gap, no duplicate


async def test_sse_subscribers_count_in_presence(shared: Shared) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await open_investigation(client)
        path = f"/api/v1/sse/investigations/{investigation}"
        async with sse(client, path) as first, sse(client, path) as second:
            await second.next()
            counts = [(await first.until("presence"))[-1].data["data"]["watching"]]
            while counts[-1] != 2:  # the counts are debounced (§9): the latest one says 2
                counts.append((await first.next()).data["data"].get("watching", counts[-1]))
            status = (await client.get(f"/api/v1/investigations/{investigation}")).json()
            assert status["watching"] == 2


def test_a_chat_post_from_another_origin_is_refused() -> None:
    """A text/plain POST is a simple request (no CORS preflight): the Origin allow-list must
    hold for the SSE chat's messages as for its stream and the WebSocket."""
    with threaded_server(allowed_origins="https://cidadao.ai") as running:
        message = {"type": "chat", "id": "o-1", "data": {"message": "Olá"}}
        with httpx.Client(base_url=running.url) as client:
            foreign = client.post("/api/v1/chat/origin-1/messages", content=json.dumps(message),
                                  headers={"origin": "https://evil.example", "content-type": "text/plain"})
            assert (foreign.status_code, foreign.json()["error"]) == (403, "FORBIDDEN")
            assert "evil" not in foreign.text  # nothing of the request echoed
            own = client.post("/api/v1/chat/origin-1/messages", json=message, headers={"origin": "https://cidadao.ai"})
            assert own.status_code == 202
