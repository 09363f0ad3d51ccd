"""Regressions of issue 11 items 9 and 12: what the front door answers over plain HTTP.

Item 9: a 400 echoed the request line h11 refused, token included. Every error body is
now ``{"error": CODE, "message": ...}`` and quotes nothing of the request (§1). Item 12:
HEAD got no response at all; a malformed ``Sec-WebSocket-Key`` was upgraded; a private
investigation answered faster than a missing one (it skipped the store lookup).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from cidadao_trio.auth import mint_token
from cidadao_trio.server.server import Server

from ..harness import connect, receive, register_investigation, running_server, wait_closed

SECRET = "front-door-secret-with-32-bytes-xx!"
TOKEN = mint_token(SECRET, "alice")
GOOD_KEY = base64.b64encode(b"0123456789abcdef").decode()


async def exchange(server: Server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes to the front door; return status, headers and body of the answer."""
    client, served = trio.testing.memory_stream_pair()
    server.spawn(served)
    await client.send_all(request)
    response = b""
    with trio.fail_after(10):
        while chunk := await client.receive_some():
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def get(target: str, method: str = "GET", *extra: str) -> bytes:
    return "\r\n".join([f"{method} {target} HTTP/1.1", "Host: localhost", *extra, "", ""]).encode()


def assert_error_body(body: bytes, code: str, *secrets: str) -> None:
    decoded = json.loads(body)
    assert set(decoded) == {"error", "message"} and decoded["error"] == code, decoded
    assert isinstance(decoded["message"], str) and decoded["message"]
    for secret in secrets:
        assert secret.encode() not in body, f"{secret!r} echoed"


# --- item 9: error bodies are JSON and echo nothing -------------------------------------------


GARBAGE = [
    (f"GET / HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {TOKEN}\r\n\r\n".encode(), 400, "BAD_REQUEST"),
    (f"GET /healthz?token={TOKEN} HTTP/1.1\r\nHost: x\r\n{TOKEN}\r\n\r\n".encode(), 400, "BAD_REQUEST"),
    (f"{TOKEN} / HTTP/1.1\r\n\r\n".encode(), 400, "BAD_REQUEST"),
    (b"\x16\x03\x01\x02\x00\x01" + TOKEN.encode() + b"\r\n\r\n", 400, "BAD_REQUEST"),  # TLS to plain
    (f"GET / HTTP/1.1\r\nHost: x\r\nX-Token: {TOKEN}{'a' * 20000}\r\n\r\n".encode(), 431, "HEADERS_TOO_LARGE"),
]


@pytest.mark.parametrize(("request_bytes", "status", "code"), GARBAGE)
async def test_garbage_gets_a_json_error_that_quotes_nothing(
    autojump_clock: trio.testing.MockClock, request_bytes: bytes, status: int, code: str
) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        answer, headers, body = await exchange(server, request_bytes)
    assert answer == status
    assert headers["content-type"] == "application/json"
    assert_error_body(body, code, TOKEN, TOKEN[:20], "Authorization", "bytearray", "X-Token")


async def test_every_route_error_is_json_without_the_request(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        register_investigation(server, "INV-1", owner_key="user:alice", public=False)
        cases: list[tuple[bytes, int, str]] = [
            (get(f"/nada/{TOKEN[:30]}?token={TOKEN}"), 404, "NOT_FOUND"),
            (get("/api/v1/investigations/INV-1", "GET", f"Authorization: Bearer {TOKEN}x"), 401, "UNAUTHORIZED"),
            (get(f"/api/v1/investigations/INV-9?token={mint_token(SECRET, 'bob')}"), 404, "NOT_FOUND"),
            (get(f"/api/v1/investigations/INV-1/report?format=pdf{TOKEN[:30]}&token={TOKEN}"), 400, "BAD_REQUEST"),
            (get(f"/healthz?token={TOKEN}", "POST", "Content-Length: 0"), 405, "METHOD_NOT_ALLOWED"),
            (get(f"/api/v1/ws/chat/s1?token={TOKEN}"), 426, "UPGRADE_REQUIRED"),
        ]
        for request_bytes, status, code in cases:
            answer, headers, body = await exchange(server, request_bytes)
            assert answer == status, (request_bytes, answer, body)
            assert headers["content-type"] == "application/json"
            assert_error_body(body, code, TOKEN[:20], "nada", "pdf", "INV-9", "s1")
        _, headers, _ = await exchange(server, get("/healthz", "DELETE"))
        assert headers["allow"] == "GET, HEAD"


async def test_readyz_while_draining_is_a_json_error(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        server.draining = True
        status, _, body = await exchange(server, get("/readyz"))
        server.draining = False
    assert status == 503
    assert_error_body(body, "UNAVAILABLE")


# --- item 12: HEAD, the WebSocket key, equal lookups ----------------------------------------


async def test_head_answers_every_get_route_without_a_body(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        register_investigation(server, "INV-1")
        assert server.engine is not None
        routes = [
            "/healthz",
            "/readyz",
            "/",
            "/index.html",
            "/api/v1/investigations/INV-1",
            "/api/v1/investigations/INV-1/report?format=json",  # no report yet: 404
            "/api/v1/investigations/INV-404",
            "/nowhere",
            "/api/v1/ws/chat/s1",  # a WebSocket path asked without Upgrade: 426
        ]
        for route in routes:
            got_status, got_headers, got_body = await exchange(server, get(route))
            head_status, head_headers, head_body = await exchange(server, get(route, "HEAD"))
            assert (head_status, head_headers) == (got_status, got_headers), route
            assert head_body == b"" and int(head_headers["content-length"]) == len(got_body) > 0, route
        status, headers, body = await exchange(server, get("/metrics", "HEAD"))
        assert status == 200 and body == b"" and headers["content-type"].startswith("text/plain")


MALFORMED_KEYS = [
    "abc",
    base64.b64encode(b"fifteen bytes!!").decode(),  # 15 bytes
    base64.b64encode(b"seventeen bytes!!").decode(),  # 17 bytes
    "!!!!!!!!!!!!!!!!!!!!!!==",  # 24 characters, not base64
    "",
]


@pytest.mark.parametrize("key", MALFORMED_KEYS)
async def test_malformed_websocket_key_is_refused_before_the_upgrade(
    autojump_clock: trio.testing.MockClock, key: str
) -> None:
    async with running_server() as server:
        request = get(
            "/api/v1/ws/chat/s1", "GET", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
        )
        status, _, body = await exchange(server, request)
        assert status == 400
        assert_error_body(body, "BAD_REQUEST")
        assert not server.connections


async def test_well_formed_key_upgrades_and_wrong_version_gets_426(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        upgrade = ("Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {GOOD_KEY}")
        old_version = get("/api/v1/ws/chat/s1", "GET", *upgrade, "Sec-WebSocket-Version: 8")
        status, headers, body = await exchange(server, old_version)
        assert status == 426 and headers["sec-websocket-version"] == "13"
        assert_error_body(body, "UPGRADE_REQUIRED")
        status, _, _ = await exchange(server, get("/api/v1/ws/chat/s1", "HEAD", *upgrade, "Sec-WebSocket-Version: 13"))
        assert status == 426  # only GET upgrades
        async with connect(server, "/api/v1/ws/chat/s1") as ws:  # the library's key: accepted
            assert (await receive(ws))["type"] == "connection"


def count_calls(target: Any, name: str) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    original: Callable[..., Any] = getattr(target, name)

    def counted(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    setattr(target, name, counted)
    return calls


async def test_private_and_missing_investigations_take_the_same_lookups_over_http(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_server(jwt_secret=SECRET) as server:
        register_investigation(server, "INV-1", owner_key="user:alice", public=False)
        store_reads = count_calls(server.broker.store, "load_investigation")
        answers = []
        for investigation_id in ("INV-1", "INV-2"):  # private (known here), missing
            for suffix in ("", f"?token={mint_token(SECRET, 'bob')}"):
                store_reads.clear()
                target = f"/api/v1/investigations/{investigation_id}{suffix}"
                status, headers, body = await exchange(server, get(target))
                answers.append((status, headers, body))
                assert store_reads == [(investigation_id,)]  # one store read, known or not
        assert all(answer == answers[0] for answer in answers)
        assert answers[0][0] == 404


async def test_private_and_missing_investigations_take_the_same_lookups_over_websocket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_server(jwt_secret=SECRET, auth_timeout=1.0) as server:
        register_investigation(server, "INV-1", owner_key="user:alice", public=False)
        lookups = count_calls(server.hub, "lookup")
        store_reads = count_calls(server.broker.store, "load_investigation")
        refusals = []
        for investigation_id in ("INV-1", "INV-2"):
            for suffix in ("", f"?token={mint_token(SECRET, 'bob')}"):
                lookups.clear()
                store_reads.clear()
                async with connect(server, f"/api/v1/ws/investigations/{investigation_id}{suffix}") as ws:
                    error = await receive(ws)
                    closed = await wait_closed(ws)
                refusals.append((error["data"], closed.code))
                assert [args for args in lookups] == [(investigation_id,)]
                assert store_reads == [(investigation_id,)]
        assert all(refusal == refusals[0] for refusal in refusals)
        assert refusals[0][0]["code"] == "NOT_FOUND" and refusals[0][1] == 1008
