"""The server API for backends (PROTOCOL.md §8) with a real HTTP client against a real
server on 127.0.0.1 (one for the module, in its own thread)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing
import trio_websocket

from cidadao_trio.proofs.keyfile import load_public
from cidadao_trio.proofs.verify import verify

from ..harness import running_server
from .streams import API_KEY, SAFETY, Shared, api, memory_sse, sse, threaded_server

SUMMARY = {
    "total_records": 12, "anomalies_found": 1, "total_value": 1000.0, "suspicious_value": 250.0, "risk_score": 0.4,
}


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    with threaded_server(api_keys=f"{API_KEY}, second-key-for-tests") as running:
        yield running


def progress(n: int) -> dict[str, Any]:
    data = {"progress": n, "status": "anomaly_detection", "message": f"{n}%"}
    return {"type": "investigation_progress", "data": data}


def anomaly(n: int, **data: Any) -> dict[str, Any]:
    return {"type": "anomaly_detected", "data": {
        "anomaly_id": f"A{n}", "anomaly_type": "price_deviation", "severity": "high", "confidence": 0.9,
        "description": "Preço 300% acima da mediana", "details": {"contract_id": f"C{n}"}, **data,
    }}


async def create(client: httpx.AsyncClient, **body: Any) -> str:
    answer = await client.post("/api/v1/investigations", json={"title": "Contratos de TI", **body}, headers=api())
    assert answer.status_code == 201, answer.text
    return str(answer.json()["investigation_id"])


async def publish(client: httpx.AsyncClient, investigation_id: str, body: Any, **headers: str) -> httpx.Response:
    return await client.post(f"/api/v1/investigations/{investigation_id}/events", json=body, headers=api(**headers))


async def history(client: httpx.AsyncClient, investigation_id: str, query: str = "", **headers: str) -> Any:
    answer = await client.get(f"/api/v1/investigations/{investigation_id}/events{query}", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_published_events_reach_websocket_sse_and_following_sessions(shared: Shared) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await create(client)
        assert investigation.startswith("INV-2") and len(investigation) == len("INV-2026-001")
        ws_url = f"ws://127.0.0.1:{shared.port}"
        async with trio_websocket.open_websocket_url(f"{ws_url}/api/v1/ws/investigations/{investigation}") as watcher, \
                trio_websocket.open_websocket_url(f"{ws_url}/api/v1/ws/chat/follows-{investigation}") as chat, \
                sse(client, f"/api/v1/sse/investigations/{investigation}") as stream:
            assert json.loads(await watcher.get_message())["type"] == "connection"
            assert json.loads(await chat.get_message())["type"] == "connection"
            await chat.send_message(json.dumps({"type": "subscribe", "data": {"investigation_id": investigation}}))
            assert json.loads(await chat.get_message())["type"] == "subscribed"
            await stream.next()
            answer = await publish(client, investigation, {"events": [progress(30), anomaly(1)]})
            assert answer.status_code == 202
            ids = answer.json()["ids"]
            with trio.fail_after(SAFETY):
                over_ws = [json.loads(await watcher.get_message()) for _ in ids]
                copied = [json.loads(await chat.get_message()) for _ in ids]
            over_sse = [await stream.next() for _ in ids]
        assert [m["id"] for m in over_ws] == ids == [e.id for e in over_sse]
        assert [m["type"] for m in copied] == ["investigation_progress", "anomaly_detected"]
        assert copied[1]["data"] == over_ws[1]["data"] == {
            "investigation_id": investigation, **anomaly(1)["data"], "agent_id": "external",
        }
        status = (await client.get(f"/api/v1/investigations/{investigation}")).json()
        assert (status["status"], status["progress"], status["anomalies_detected"]) == ("anomaly_detection", 30, 1)


async def test_a_retry_with_the_same_idempotency_key_appends_once(shared: Shared) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await create(client)
        first = await publish(client, investigation, progress(10), **{"idempotency-key": "retry-1"})
        again = await publish(client, investigation, progress(10), **{"idempotency-key": "retry-1"})
        assert first.status_code == again.status_code == 202 and first.json() == again.json()
        assert again.headers["idempotent-replayed"] == "true"
        other = await publish(client, investigation, progress(20), **{"idempotency-key": "retry-1"})
        assert (other.status_code, other.json()["error"]) == (422, "IDEMPOTENCY_MISMATCH")
        other_key = await client.post(
            f"/api/v1/investigations/{investigation}/events", json=progress(10),
            headers=api("second-key-for-tests", **{"idempotency-key": "retry-1"}),
        )
        assert other_key.status_code == 202 and other_key.json() != first.json()  # keys are per API key
        page = await history(client, investigation, **api())
        assert [e["id"] for e in page["events"]] == first.json()["ids"] + other_key.json()["ids"]


async def test_a_bad_event_is_refused_with_its_index_and_nothing_appended(shared: Shared) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await create(client)
        cases = [
            ({"events": [progress(10), anomaly(1), anomaly(2, severity="grave")]}, 2, "severity"),
            ({"events": [progress(10), {"type": "agent_finding", "data": {"agent_id": "x"}}]}, 1, "agent_name"),
            ({"events": [{"type": "chat", "data": {}}]}, 0, "type"),
            ({"type": "investigation_progress", "data": {**progress(101)["data"], "status": "x"}}, 0, "progress"),
            ({"events": [anomaly(1, investigation_id="INV-1999-999")]}, 0, "investigation_id"),
            ({"events": [anomaly(1, surprise=True)]}, 0, "data"),  # an unknown name is not echoed (§1)
            ({"events": [{"type": "investigation_failed", "data": {"reason": "r"}}, progress(1)]}, 1, "type"),
            ({"events": []}, 0, "events"),
        ]
        for body, index, field in cases:
            answer = await publish(client, investigation, body)
            assert answer.status_code == 400, body
            refused = answer.json()
            assert (refused["error"], refused["index"], refused["field"]) == ("INVALID_MESSAGE", index, field), body
            assert f"Evento {index}" in refused["message"] and "surprise" not in answer.text
        assert (await history(client, investigation, **api()))["events"] == []
        too_many = await publish(client, investigation, {"events": [progress(1)] * 1001})
        assert too_many.status_code == 400 and too_many.json()["field"] == "events"


async def test_history_pages_by_offset_until_complete(shared: Shared) -> None:
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await create(client, owner="alice", public=False)
        ids = (await publish(client, investigation, {"events": [progress(n) for n in range(1, 6)]})).json()["ids"]
        offsets = [int(i.rsplit("-", 1)[1]) for i in ids]
        page = await history(client, investigation, f"?after={offsets[0] - 1}&limit=2", **api())
        assert [e["id"] for e in page["events"]] == ids[:2]
        assert page["next_after"] == offsets[1] and page["complete"] is False
        assert page["epoch"] == ids[0].rsplit("-", 1)[0]
        page = await history(client, investigation, f"?after={page['next_after']}&limit=1000", **api())
        assert [e["id"] for e in page["events"]] == ids[2:] and page["complete"] is False  # still running
        ended = await publish(client, investigation, {"type": "report_ready", "data": {"summary": SUMMARY}})
        page = await history(client, investigation, f"?after={page['next_after']}", **api())
        assert [e["id"] for e in page["events"]] == ended.json()["ids"] and page["complete"] is True
        empty = await history(client, investigation, f"?after={page['next_after']}", **api())
        assert empty["events"] == [] and empty["next_after"] == page["next_after"] and empty["complete"] is True
        hidden = await client.get(f"/api/v1/investigations/{investigation}/events")  # private, anonymous
        assert (hidden.status_code, hidden.json()["error"]) == (404, "NOT_FOUND")
        bad = await client.get(f"/api/v1/investigations/{investigation}/events?limit=1001", headers=api())
        assert bad.status_code == 400


async def test_report_ready_ends_it_and_its_report_verifies(shared: Shared) -> None:
    markdown = "# Contratos de TI\n\nUma anomalia de preço.\n"
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await create(client)
        await publish(client, investigation, {"events": [progress(50), anomaly(1)]})
        ready = {"type": "report_ready", "data": {"summary": SUMMARY, "report": markdown}}
        answer = await publish(client, investigation, ready)
        assert answer.status_code == 202
        late = await publish(client, investigation, progress(99))
        assert (late.status_code, late.json()["error"]) == (409, "CONFLICT")
        served = await client.get(f"/api/v1/investigations/{investigation}/report?format=markdown")
        assert served.status_code == 200 and served.text == markdown
        report = (await client.get(f"/api/v1/investigations/{investigation}/report?format=json")).json()
        html = await client.get(f"/api/v1/investigations/{investigation}/report?format=html")
        assert html.status_code == 200 and "Uma anomalia de preço." in html.text
        events = (await history(client, investigation))["events"]
        keys = load_public((await client.get("/api/v1/keys")).content)
        status = (await client.get(f"/api/v1/investigations/{investigation}")).json()
    assert status["status"] == "completed" and status["summary"] == SUMMARY
    ready = events[-1]
    assert ready["type"] == "report_ready" and ready["data"]["proof"]["dataset_sha256"] is None
    assert ready["data"]["url"] == f"/api/v1/investigations/{investigation}/report?format=markdown"
    assert "report" not in ready["data"]  # served by the report route, not streamed
    verdict = verify(report, events=events, trusted=keys)
    assert verdict.ok, verdict.lines


async def test_messages_appended_to_a_session(shared: Shared) -> None:
    body: dict[str, Any] = {"type": "chat", "data": {"role": "assistant", "content": "Seu relatório está pronto.",
                                     "agent_id": "tiradentes", "agent_name": "Tiradentes"}}
    async with httpx.AsyncClient(base_url=shared.url) as client:
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{shared.port}/api/v1/ws/chat/backend-1") as ws:
            await ws.get_message()
            answer = await client.post("/api/v1/sessions/backend-1/messages", json=body, headers=api())
            assert answer.status_code == 202
            with trio.fail_after(SAFETY):
                message = json.loads(await ws.get_message())
        assert message["id"] == answer.json()["ids"][0]
        assert message["data"] == {**body["data"], "chunk": False}
        empty = {"type": "chat", "data": {}}
        refused = await client.post("/api/v1/sessions/backend-1/messages", json=empty, headers=api())
        assert (refused.status_code, refused.json()["field"]) == (400, "content")


async def test_keys_body_limits_and_the_key_never_logged(shared: Shared, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(base_url=shared.url) as client:
        investigation = await create(client)
        assert (await publish(client, investigation, progress(5))).status_code == 202
        wrong = await client.post(f"/api/v1/investigations/{investigation}/events", json=progress(5),
                                  headers=api(API_KEY + "x"))
        absent = await client.post("/api/v1/investigations", json={"title": "x"})
        assert wrong.status_code == absent.status_code == 401
        assert API_KEY not in wrong.text
        huge = await client.post(f"/api/v1/investigations/{investigation}/events", headers=api(),
                                 content=b'{"events": [' + b" " * (4 * 1024 * 1024) + b"]}")
        assert (huge.status_code, huge.json()["error"]) == (413, "PAYLOAD_TOO_LARGE")
        garbage = await client.post(f"/api/v1/investigations/{investigation}/events", headers=api(), content=b"{")
        assert (garbage.status_code, garbage.json()["error"]) == (400, "INVALID_JSON")
        unknown = await publish(client, "INV-1999-404", progress(5))
        assert unknown.status_code == 404
        bad_public = await client.post("/api/v1/investigations", json={"title": "x", "public": "yes"}, headers=api())
        assert (bad_public.status_code, bad_public.json()["field"]) == (400, "public")
    assert "server API: 1 events published" in caplog.text  # the operator's one line
    assert API_KEY not in caplog.text and "second-key-for-tests" not in caplog.text


async def test_without_keys_the_routes_do_not_exist(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, memory_sse(server) as client:
        request = b'POST /api/v1/investigations HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}'
        await client.stream.send_all(request)
        response = b""
        while chunk := await client.stream.receive_some():
            response += chunk
        assert response.startswith(b"HTTP/1.1 404 ") and b'"NOT_FOUND"' in response


def test_events_accepted_but_not_committed_in_time_are_not_appended_again_by_a_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past 5 s without a commit the events already have ids and will be committed: the POST
    answers 503, and its retry with the same Idempotency-Key gets those ids (not a copy)."""
    monkeypatch.setattr("cidadao_trio.server.backend_api.DURABLE_WITHIN", 0.2)
    with threaded_server(api_keys=API_KEY) as running, httpx.Client(base_url=running.url, timeout=SAFETY) as client:
        broker = running.server.app.broker

        async def stalled() -> None:
            await trio.sleep_forever()

        created = client.post("/api/v1/investigations", json={"title": "lenta"}, headers=api())
        investigation = created.json()["investigation_id"]
        path = f"/api/v1/investigations/{investigation}/events"
        headers = api(**{"idempotency-key": "slow-1"})
        broker.flush = stalled  # a store slow to commit (looked up on each call)
        try:
            late = client.post(path, json=progress(10), headers=headers)
        finally:
            del broker.flush  # the class's again
        assert (late.status_code, late.json()["error"]) == (503, "UNAVAILABLE")
        assert "Idempotency-Key" in late.json()["message"]
        retry = client.post(path, json=progress(10), headers=headers)
        assert retry.status_code == 202 and retry.headers.get("idempotent-replayed") == "true"
        page = client.get(f"{path}?after=0", headers=api()).json()
        assert [e["id"] for e in page["events"]] == retry.json()["ids"]  # appended once
