"""Regressions of issue 11 items 1, 2, 3, 6 and 10: when and how a principal is settled (§6).

Each test reproduces an attack that succeeded before the fix: a session left open by the
browser login flow, a late ``auth`` bypassing the per-principal cap, a late ``auth`` on
one's own session refused, silent sockets from one address locking others out, and a
token inside its leeway expiring at once.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import trio
import trio.testing
import trio_websocket

from cidadao_trio.auth import mint_token

from ..harness import connect, receive, receive_until, running_server, send, tcp_server, wait_closed

SECRET = "test-secret-with-at-least-32-bytes!!"
CHAT = "/api/v1/ws/chat/"


def token(sub: str = "alice", **kwargs: Any) -> str:
    return mint_token(SECRET, sub, **kwargs)


async def expect_refusal(ws: trio_websocket.WebSocketConnection, code: str, close: int) -> dict[str, Any]:
    error = await receive(ws)
    assert error["type"] == "error" and error["data"]["code"] == code, error
    assert (await wait_closed(ws)).code == close
    return error


# --- item 1: an auth that arrives after an anonymous greeting claims the session -------


async def test_first_frame_auth_on_a_new_session_claims_it(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        async with connect(server, f"{CHAT}NEW") as alice:
            hello = await receive(alice)
            assert hello["type"] == "connection"
            await send(alice, "auth", {"token": token("alice")}, id="login")
            ok = await receive(alice)
            assert ok["type"] == "auth_ok" and ok["data"]["session_claimed"] is True
            await send(alice, "chat", {"message": "meu segredo"}, id="c1")
            echoed = await receive_until(alice, lambda m: m["type"] == "chat")
            epoch = echoed[-1]["id"].split("-")[0]
        assert await server.records.session_owner("NEW") == "user:alice"
        async with connect(server, f"{CHAT}NEW?last_id={epoch}-0") as stranger:
            await expect_refusal(stranger, "FORBIDDEN", 1008)  # after auth_timeout, no replay
        async with connect(server, f"{CHAT}NEW?token={token('bob')}&last_id={epoch}-0") as bob:
            await expect_refusal(bob, "FORBIDDEN", 1008)
        async with connect(server, f"{CHAT}NEW?token={token('alice')}&last_id={epoch}-0") as again:
            replay = await receive_until(again, lambda m: m["type"] == "chat")
            assert replay[-1]["data"]["content"] == "meu segredo"


async def test_a_claim_closes_the_other_anonymous_readers(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        async with connect(server, f"{CHAT}shared") as onlooker, connect(server, f"{CHAT}shared") as alice:
            await receive(onlooker)
            await receive(alice)
            await send(alice, "auth", {"token": token("alice")})
            assert (await receive(alice))["data"]["session_claimed"] is True
            await expect_refusal(onlooker, "FORBIDDEN", 1008)
            await send(alice, "ping", id="still-here")
            assert (await receive(alice))["data"] == {"reply_to": "still-here"}


async def test_investigations_after_a_claim_are_private(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        async with connect(server, f"{CHAT}login-flow") as ws:
            await receive(ws)
            session = server.hub.sessions["login-flow"]
            assert session.owner_key == "anon"
            await send(ws, "auth", {"token": token("alice")})
            assert (await receive(ws))["data"]["session_claimed"] is True
            assert session.owner_key == "user:alice"


async def test_a_renewal_on_an_owned_session_claims_nothing(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        async with connect(server, f"{CHAT}mine?token={token('alice')}") as ws:
            await receive(ws)
            await send(ws, "auth", {"token": token("alice")})
            ok = await receive(ws)
            assert ok["type"] == "auth_ok" and "session_claimed" not in ok["data"]
        assert await server.records.session_owner("mine") == "user:alice"


# --- item 2: the per-principal cap holds for late auth --------------------------------


async def test_late_auth_cannot_exceed_the_per_principal_cap(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(jwt_secret=SECRET, max_connections_per_principal=3) as server:
        async with trio.open_nursery() as nursery:
            answers: list[str] = []

            async def late_auth(index: int, done: trio.Event) -> None:
                async with connect(server, f"{CHAT}s{index}") as ws:
                    await receive(ws)
                    await send(ws, "auth", {"token": token("alice")}, id=f"a{index}")
                    reply = await receive(ws)
                    answers.append(reply["type"] if reply["type"] == "auth_ok" else reply["data"]["code"])
                    await done.wait()

            done = trio.Event()
            for index in range(7):
                nursery.start_soon(late_auth, index, done)
                await trio.sleep(1)
            assert sorted(answers) == ["OVERLOADED"] * 4 + ["auth_ok"] * 3
            assert server.admission.connections_of("user:alice") == 3
            refused = [c for c in server.connections if c.principal.is_anonymous]
            assert len(refused) == 4  # they keep their previous (anonymous) principal
            done.set()
        assert server.admission.connections_of("user:alice") == 0


async def test_first_message_auth_counts_against_the_cap(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(jwt_secret=SECRET, auth="required", max_connections_per_principal=1) as server:
        async with connect(server, f"{CHAT}a?token={token('alice')}") as first:
            await receive(first)
            async with connect(server, f"{CHAT}b") as second:
                await send(second, "auth", {"token": token("alice")})
                error = await expect_refusal(second, "OVERLOADED", 1013)
                assert error["data"]["retry_after"] > 0


# --- item 3: a late auth on one's own session waits auth_timeout, not 0.25 s --------


async def test_late_auth_on_ones_own_session_within_auth_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        async with connect(server, f"{CHAT}alices?token={token('alice')}") as ws:
            await receive(ws)
        async with connect(server, f"{CHAT}alices") as ws:
            await trio.sleep(5)  # far past the old 0.25 s grace, within auth_timeout (10 s)
            await send(ws, "auth", {"token": token("alice")}, id="late")
            ok = await receive(ws)
            assert ok["type"] == "auth_ok" and ok["data"]["reply_to"] == "late"
            assert (await receive(ws))["type"] == "connection"


# --- item 10: the expiry timer honours the leeway -----------------------------------


async def test_a_token_inside_its_leeway_is_not_expired_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        async with connect(server, f"{CHAT}s1?token={token(ttl=-10)}") as ws:  # 10 s past exp
            assert (await receive(ws))["type"] == "connection"
            started = trio.current_time()
            await send(ws, "ping", id="p")
            assert (await receive(ws))["type"] == "pong"
            error = await receive(ws)
            assert error["data"]["code"] == "TOKEN_EXPIRED"
            assert 19 <= trio.current_time() - started <= 21  # the 20 s left of the 30 s leeway


# --- item 6: silent unauthenticated sockets from one address (real sockets) ----------


async def test_silent_sockets_from_one_address_cannot_lock_others_out() -> None:
    async with tcp_server(
        jwt_secret=SECRET, auth="required", max_connections=50, max_pending_auth_per_address=16
    ) as (server, port):
        url = f"ws://127.0.0.1:{port}{CHAT}"
        async with trio.open_nursery() as attackers:
            send_refusal, refusals = trio.open_memory_channel[dict[str, Any]](64)

            async def silent(index: int) -> None:
                async with trio_websocket.open_websocket_url(f"{url}x{index}") as ws:
                    with contextlib.suppress(trio_websocket.ConnectionClosed):
                        send_refusal.send_nowait(json.loads(await ws.get_message()))

            for index in range(49):
                attackers.start_soon(silent, index)
            with trio.fail_after(10):
                refused = [await refusals.receive() for _ in range(49 - 16)]
            assert {m["data"]["code"] for m in refused} == {"OVERLOADED"}
            # The server is not full: a legitimate client with a token still gets in.
            for index in range(10):
                async with trio_websocket.open_websocket_url(f"{url}ok{index}?token={token(f'u{index}')}") as ws:
                    with trio.fail_after(10):
                        assert json.loads(await ws.get_message())["type"] == "connection"
            attackers.cancel_scope.cancel()


async def test_a_first_frame_auth_claims_a_new_session_over_tcp() -> None:
    async with tcp_server(jwt_secret=SECRET, auth_timeout=1.0) as (server, port):
        url = f"ws://127.0.0.1:{port}{CHAT}NEW"
        with trio.fail_after(10):
            async with trio_websocket.open_websocket_url(url) as ws:
                await ws.send_message(json.dumps({"type": "auth", "data": {"token": token("alice")}}))
                await ws.send_message(json.dumps({"type": "chat", "data": {"message": "segredo"}}))
                seen = []
                while not any(m["type"] == "chat" for m in seen):
                    seen.append(json.loads(await ws.get_message()))
                assert any(m["type"] == "auth_ok" and m["data"].get("session_claimed") for m in seen)
                epoch = next(m["id"] for m in seen if m["type"] == "chat").split("-")[0]
        with trio.fail_after(20):
            async with trio_websocket.open_websocket_url(f"{url}?last_id={epoch}-0") as ws:
                first = json.loads(await ws.get_message())
                assert first["type"] == "error" and first["data"]["code"] == "FORBIDDEN"
