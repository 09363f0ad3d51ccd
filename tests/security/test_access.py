"""Authentication, authorization and flood control on live (in-memory) connections."""

from __future__ import annotations

import json
import logging

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cidadao_trio.auth import mint_token
from cidadao_trio.protocol.codes import ErrorCode

from ..harness import (
    connect,
    is_turn_end,
    receive,
    receive_until,
    register_investigation,
    running_server,
    send,
    wait_closed,
)

SECRET = "test-secret-with-at-least-32-bytes!!"
CHAT = "/api/v1/ws/chat/"


def token(sub: str = "alice", **kwargs: object) -> str:
    return mint_token(SECRET, sub, **kwargs)  # type: ignore[arg-type]


def secured(**overrides: object) -> object:
    return running_server(jwt_secret=SECRET, **overrides)


async def expect_refusal(ws: object, code: str, close: int) -> dict:
    error = await receive(ws)  # type: ignore[arg-type]
    assert error["type"] == "error" and error["data"]["code"] == code
    closed = await wait_closed(ws)  # type: ignore[arg-type]
    assert closed.code == close
    return error


async def test_valid_query_token_connects(autojump_clock: trio.testing.MockClock) -> None:
    async with secured() as server, connect(server, f"{CHAT}s1?token={token()}") as ws:
        assert (await receive(ws))["type"] == "connection"
        (connection,) = server.connections
        assert connection.principal.sub == "alice"


async def test_bearer_header_token_connects(autojump_clock: trio.testing.MockClock) -> None:
    headers = [(b"Authorization", f"Bearer {token()}".encode())]
    async with secured() as server, connect(server, f"{CHAT}s1", headers=headers) as ws:
        assert (await receive(ws))["type"] == "connection"
        assert next(iter(server.connections)).principal.sub == "alice"


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        mint_token("another-secret-that-is-long-enough-000", "alice"),
        mint_token(SECRET, "alice", ttl=-120),
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.",
    ],
    ids=["garbage", "wrong-secret", "expired", "alg-none"],
)
async def test_bad_token_refused_1008(autojump_clock: trio.testing.MockClock, bad: str) -> None:
    async with secured() as server, connect(server, f"{CHAT}s1?token={bad}") as ws:
        error = await expect_refusal(ws, "UNAUTHORIZED", 1008)
        assert bad not in json.dumps(error)


async def test_required_mode_without_token_times_out(autojump_clock: trio.testing.MockClock) -> None:
    async with secured(auth="required") as server, connect(server, f"{CHAT}s1") as ws:
        start = trio.current_time()
        await expect_refusal(ws, "UNAUTHORIZED", 1008)
        assert 10 <= trio.current_time() - start <= 11


async def test_required_mode_accepts_first_auth_message(autojump_clock: trio.testing.MockClock) -> None:
    async with secured(auth="required") as server, connect(server, f"{CHAT}s1") as ws:
        await send(ws, "auth", {"token": token(ttl=600)})
        ok = await receive(ws)
        assert ok["type"] == "auth_ok" and ok["data"]["expires_at"].endswith("Z")
        assert (await receive(ws))["type"] == "connection"


async def test_required_mode_refuses_other_first_message(autojump_clock: trio.testing.MockClock) -> None:
    async with secured(auth="required") as server, connect(server, f"{CHAT}s1") as ws:
        await send(ws, "chat", {"message": "oi"})
        await expect_refusal(ws, "UNAUTHORIZED", 1008)


async def test_optional_mode_accepts_first_auth_message(autojump_clock: trio.testing.MockClock) -> None:
    async with secured() as server:
        async with connect(server, f"{CHAT}alices?token={token('alice')}") as ws:  # alice owns it
            await receive(ws)
        async with connect(server, f"{CHAT}alices") as ws:  # the console sends auth first
            await send(ws, "auth", {"token": token("alice")}, id="a1")
            ok = await receive(ws)
            assert ok["type"] == "auth_ok" and ok["data"]["reply_to"] == "a1"
            assert (await receive(ws))["type"] == "connection"
        async with connect(server, f"{CHAT}alices") as anonymous:  # waits auth_grace, then refused
            await expect_refusal(anonymous, "FORBIDDEN", 1008)
        async with connect(server, f"{CHAT}brand-new") as ws:  # anonymous admitted: greeted at once
            started = trio.current_time()
            assert (await receive(ws))["type"] == "connection"
            assert trio.current_time() - started < 0.01
            await send(ws, "auth", {"token": token("alice")}, id="a2")  # and upgraded later
            assert (await receive(ws))["data"]["reply_to"] == "a2"
            assert next(iter(server.connections)).principal.sub == "alice"


async def test_optional_mode_keeps_a_first_message_that_is_not_auth(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with secured() as server, connect(server, f"{CHAT}quick") as ws:
        await send(ws, "ping", id="first")
        assert (await receive(ws))["type"] == "connection"
        assert (await receive(ws))["data"] == {"reply_to": "first"}
        assert next(iter(server.connections)).principal.is_anonymous


async def test_session_belongs_to_first_principal(autojump_clock: trio.testing.MockClock) -> None:
    async with secured() as server:
        async with connect(server, f"{CHAT}mine?token={token('alice')}") as alice:
            await receive(alice)
        async with connect(server, f"{CHAT}mine?token={token('bob')}") as bob:
            await expect_refusal(bob, "FORBIDDEN", 1008)
        async with connect(server, f"{CHAT}mine") as anonymous:
            await expect_refusal(anonymous, "FORBIDDEN", 1008)
        async with connect(server, f"{CHAT}mine?token={token('alice')}") as again:
            assert (await receive(again))["type"] == "connection"


async def test_anonymous_session_open_to_id_holders(autojump_clock: trio.testing.MockClock) -> None:
    async with secured() as server:
        async with connect(server, f"{CHAT}shared") as first:
            await receive(first)
        async with connect(server, f"{CHAT}shared?token={token('bob')}") as bob:
            assert (await receive(bob))["type"] == "connection"


async def test_sid_claim_binds_token_to_one_session(autojump_clock: trio.testing.MockClock) -> None:
    bound = token("alice", session_id="only-this")
    async with secured() as server:
        async with connect(server, f"{CHAT}other?token={bound}") as ws:
            await expect_refusal(ws, "FORBIDDEN", 1008)
        async with connect(server, f"{CHAT}only-this?token={bound}") as ws:
            assert (await receive(ws))["type"] == "connection"


async def test_private_investigation_is_not_found_for_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with secured() as server:
        register_investigation(server, "INV-2026-001", owner_key="user:alice", public=False)
        async with connect(server, f"{CHAT}b?token={token('bob')}") as bob:
            await receive(bob)
            await send(bob, "subscribe", {"investigation_id": "INV-2026-001"}, id="s")
            refused = await receive(bob)
            assert refused["data"]["code"] == "NOT_FOUND" and refused["data"]["reply_to"] == "s"
            await send(bob, "subscribe", {"investigation_id": "INV-2026-404"})
            assert (await receive(bob))["data"]["code"] == "NOT_FOUND"  # same answer: no leak
        async with connect(
            server, f"/api/v1/ws/investigations/INV-2026-001?token={token('bob')}"
        ) as watch:
            await expect_refusal(watch, "NOT_FOUND", 1008)
        for who, roles in (("alice", ()), ("carol", ("auditor",)), ("dave", ("admin",))):
            async with connect(server, f"{CHAT}{who}?token={token(who, roles=roles)}") as ws:
                await receive(ws)
                await send(ws, "subscribe", {"investigation_id": "INV-2026-001"})
                assert (await receive(ws))["type"] == "subscribed"


async def test_token_expiry_closes_unless_renewed(autojump_clock: trio.testing.MockClock) -> None:
    async with secured() as server:
        async with connect(server, f"{CHAT}s1?token={token(ttl=60)}") as ws:
            await receive(ws)
            start = trio.current_time()
            error = await receive(ws)
            assert error["data"]["code"] == "TOKEN_EXPIRED"
            assert (await wait_closed(ws)).code == 1008
            assert 89 <= trio.current_time() - start <= 91  # exp plus the 30 s leeway (§6)
        async with connect(server, f"{CHAT}s2?token={token(ttl=60)}") as ws:
            await receive(ws)
            await trio.sleep(30)
            await send(ws, "auth", {"token": token(ttl=3600)}, id="renew")
            ok = await receive(ws)
            assert ok["type"] == "auth_ok" and ok["data"]["reply_to"] == "renew"
            await trio.sleep(90)
            await send(ws, "ping", id="alive")
            assert (await receive(ws))["type"] == "pong"


async def test_renewal_with_another_sub_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with secured() as server, connect(server, f"{CHAT}s1?token={token('alice')}") as ws:
        await receive(ws)
        await send(ws, "auth", {"token": token("mallory")})
        assert (await receive(ws))["data"]["code"] == "FORBIDDEN"
        await send(ws, "auth", {"token": "garbage"})
        assert (await receive(ws))["data"]["code"] == "UNAUTHORIZED"
        await send(ws, "ping", id="still")
        assert (await receive(ws))["data"]["reply_to"] == "still"
        assert next(iter(server.connections)).principal.sub == "alice"


async def test_rate_limit_refuses_then_closes_abusers(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(server, f"{CHAT}s1") as ws:
        await receive(ws)
        for n in range(25):
            await send(ws, "ping", id=n)
        replies = [await receive(ws) for _ in range(25)]
        assert sum(r["type"] == "pong" for r in replies) == 20
        refusals = [r for r in replies if r["type"] == "error"]
        assert len(refusals) == 5
        assert all(r["data"]["code"] == "RATE_LIMIT" and r["data"]["retry_after"] > 0 for r in refusals)
        assert [r["data"]["reply_to"] for r in refusals] == [20, 21, 22, 23, 24]  # which ones were dropped
        await trio.sleep(refusals[0]["data"]["retry_after"])
        await send(ws, "ping", id="after-wait")
        assert (await receive(ws))["data"]["reply_to"] == "after-wait"
        for n in range(60):
            await send(ws, "ping", id=n)
        assert (await wait_closed(ws)).code == 1008


async def test_per_principal_connection_cap(autojump_clock: trio.testing.MockClock) -> None:
    async with secured(max_connections_per_principal=2) as server:
        async with connect(server, f"{CHAT}a?token={token()}") as a, connect(
            server, f"{CHAT}b?token={token()}"
        ) as b:
            await receive(a)
            await receive(b)
            async with connect(server, f"{CHAT}c?token={token()}") as c:
                error = await expect_refusal(c, "OVERLOADED", 1013)
                assert error["data"]["retry_after"] > 0
            async with connect(server, f"{CHAT}d?token={token('bob')}") as d:
                assert (await receive(d))["type"] == "connection"


@pytest.mark.parametrize(
    ("origin", "allowed"), [(b"https://cidadao.ai", True), (b"https://evil.example", False), (None, True)]
)
async def test_allowed_origins(
    autojump_clock: trio.testing.MockClock, origin: bytes | None, allowed: bool
) -> None:
    headers = [(b"Origin", origin)] if origin else []
    async with running_server(allowed_origins="https://cidadao.ai, http://localhost:3000") as server:
        async with connect(server, f"{CHAT}s1", headers=headers) as ws:
            if allowed:
                assert (await receive(ws))["type"] == "connection"
            else:
                await expect_refusal(ws, "FORBIDDEN", 1008)


async def test_tokens_never_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good, renewed = token(ttl=60), token(ttl=3600)
    bad = mint_token("another-secret-that-is-long-enough-000", "alice")
    async with secured() as server:
        async with connect(server, f"{CHAT}s1?token={good}") as ws:
            await receive(ws)
            await send(ws, "auth", {"token": renewed})
            await send(ws, "auth", {"token": bad})
            await send(ws, "chat", {"message": "oi"})
            await receive_until(ws, is_turn_end)
        async with connect(server, f"{CHAT}s1?token={bad}") as ws:
            await wait_closed(ws)
    assert caplog.records, "the session produced log records"
    for secret in (good, renewed, bad, good.split(".")[2], bad.split(".")[2]):
        assert secret not in caplog.text


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["chat", "typing", "subscribe", "unsubscribe", "cancel", "ping", "auth", "x"])},
    optional={"data": _json_values, "id": _json_values},
)
_frames = st.one_of(
    _messages.map(json.dumps),
    _json_values.map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=60),
)
ALLOWED_CODES = {str(code) for code in ErrorCode}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(_frames, min_size=1, max_size=12))
def test_arbitrary_input_gets_only_protocol_answers(frames: list[str | bytes]) -> None:
    async def scenario() -> None:
        async with running_server() as server:
            async with connect(server, f"{CHAT}victim") as victim, connect(
                server, f"{CHAT}bystander"
            ) as bystander:
                await receive(victim)
                await receive(bystander)
                closed = False
                for frame in frames:
                    try:
                        await victim.send_message(frame)
                    except Exception:
                        closed = True
                        break
                    if isinstance(frame, bytes):
                        closed = True
                        break
                if not closed:
                    await send(victim, "ping", id="end-of-frames")
                    while True:
                        try:
                            message = await receive(victim)
                        except Exception:
                            break  # closed by a §7 rule (e.g. binary frame)
                        if message["type"] == "error":
                            assert message["data"]["code"] in ALLOWED_CODES
                        if message["type"] == "pong" and message["data"].get("reply_to") == "end-of-frames":
                            break
                await send(bystander, "ping", id="fine")
                assert (await receive(bystander))["data"]["reply_to"] == "fine"

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_investigations_from_a_shared_session_are_public(autojump_clock: trio.testing.MockClock) -> None:
    from ..contracts import small_dataset

    async with secured(dataset=small_dataset()) as server:
        async with connect(server, f"{CHAT}open-room") as anonymous:  # anon-owned session
            await receive(anonymous)
        async with connect(server, f"{CHAT}open-room?token={token('alice')}") as alice:
            await receive(alice)
            await send(alice, "chat", {"message": "Investigar contratos do Ministério da Saúde"})
            turn = await receive_until(alice, lambda m: m["type"] == "chat_complete")
            investigation_id = turn[-1]["data"]["investigation_id"]
        assert server.engine is not None
        assert (await server.engine.lookup(investigation_id)).public  # type: ignore[union-attr]
        async with connect(server, f"{CHAT}own-room?token={token('alice')}") as alice:
            await receive(alice)
            await send(alice, "chat", {"message": "Investigar contratos do Ministério da Educação"})
            turn = await receive_until(alice, lambda m: m["type"] == "chat_complete")
            private_id = turn[-1]["data"]["investigation_id"]
        assert not (await server.engine.lookup(private_id)).public  # type: ignore[union-attr]
        async with connect(server, f"{CHAT}open-room?token={token('carol', roles=('auditor',))}") as carol:
            await receive(carol)
            await send(carol, "subscribe", {"investigation_id": private_id}, id="leak?")
            refused = await receive(carol)
            assert refused["data"]["code"] == "FORBIDDEN" and refused["data"]["reply_to"] == "leak?"


async def test_connections_waiting_for_auth_count_against_the_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with secured(auth="required", max_connections=2) as server:
        async with connect(server, f"{CHAT}a") as a, connect(server, f"{CHAT}b") as b:
            await trio.sleep(1)  # both are waiting to authenticate
            async with connect(server, f"{CHAT}c") as c:
                await expect_refusal(c, "OVERLOADED", 1013)
            await send(a, "auth", {"token": token("alice")})
            assert (await receive(a))["type"] == "auth_ok"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.drain)
                await send(b, "auth", {"token": token("bob")})  # too late: the server drains
                assert (await wait_closed(b)).code == 1001
                assert (await wait_closed(a)).code == 1001
