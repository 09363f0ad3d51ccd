"""/metrics exposes what operators need, with bounded labels and never a token."""

from __future__ import annotations

import re

import trio
import trio.testing

from cidadao_trio.auth import mint_token
from cidadao_trio.investigations.scope import Filters

from .contracts import small_dataset
from .harness import connect, http_get, is_turn_end, receive, receive_until, running_server, send, wait_closed

SECRET = "metrics-test-secret-with-32-bytes-xx"


def value(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" ([0-9.e+-]+)"
    match = re.search(pattern, text)
    assert match is not None, f"{name}{{{labels}}} not in scrape"
    return float(match.group(1))


async def test_scrape_counts_what_happened(autojump_clock: trio.testing.MockClock) -> None:
    bad_token = mint_token("another-secret-that-is-long-enough-000", "eve")
    async with running_server(jwt_secret=SECRET, dataset=small_dataset()) as server:
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            hello = await receive(ws)
            await send(ws, "chat", {"message": "Olá"})
            turn = await receive_until(ws, is_turn_end)
            await ws.send_message("{broken")
            await receive(ws)
            status, body = await http_get(server, "/metrics")
            scrape = body.decode()
            assert status == 200
            assert value(scrape, "cidadao_connections_open", 'endpoint="chat"') == 1
            assert value(scrape, "cidadao_messages_in_total", 'type="chat"') == 1
            assert value(scrape, "cidadao_messages_in_total", 'type="other"') == 1
            assert value(scrape, "cidadao_messages_out_total", 'type="chat_complete"') == 1
            assert value(scrape, "cidadao_store_write_seconds_count") >= 1
        cursor = [m for m in turn if m["type"] == "chat"][0]["id"]
        async with connect(server, f"/api/v1/ws/chat/s1?last_id={cursor}") as ws:
            await receive(ws)
        async with connect(server, "/api/v1/ws/chat/s1?last_id=nope-1") as ws:
            await receive(ws)
        async with connect(server, f"/api/v1/ws/chat/s2?token={bad_token}") as ws:
            await wait_closed(ws)
        async with connect(server, "/api/v1/ws/chat/s3") as ws:
            await receive(ws)
            for n in range(21):
                await send(ws, "ping", id=n)
            for _ in range(21):
                await receive(ws)
        assert server.engine is not None
        await server.engine.start(Filters(), "anon", public=True)
        await trio.sleep(10)
        status, body = await http_get(server, "/metrics")
        scrape = body.decode()
        assert value(scrape, "cidadao_resumes_total", 'outcome="resumed"') == 1
        assert value(scrape, "cidadao_resumes_total", 'outcome="history_gap"') == 1
        assert value(scrape, "cidadao_auth_failures_total", 'reason="bad_signature"') == 1
        assert value(scrape, "cidadao_rate_limit_refusals_total") == 1
        assert value(scrape, "cidadao_disconnects_total", 'code="1008"') == 1
        assert value(scrape, "cidadao_connects_total", 'endpoint="chat"') == 4  # the refused one never got in
        assert value(scrape, "cidadao_connections_open", 'endpoint="chat"') == 0
        assert value(scrape, "cidadao_investigations", 'status="completed"') == 1
        assert bad_token not in scrape and hello["id"] not in scrape
