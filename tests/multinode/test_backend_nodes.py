"""The server API and SSE across two nodes on one Redis (issue 17): what a backend publishes
on node 1 reaches an SSE stream on node 2; an Idempotency-Key retried on the other node is
answered from the first; the investigation goes on from node 2 and its proof verifies.
Real Redis and real sockets, so real time; every wait is bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

from cidadao_trio.proofs.keyfile import load_public
from cidadao_trio.proofs.verify import verify

from ..server.streams import API_KEY, api, sse
from .helpers import LIMIT, node
from .redis_process import RedisProcess

SUMMARY = {"total_records": 3, "anomalies_found": 0, "total_value": 9.0, "suspicious_value": 0, "risk_score": 0.0}


@asynccontextmanager
async def two_nodes(url: str) -> AsyncIterator[tuple[str, str]]:
    a, b = node(url, api_keys=API_KEY), node(url, api_keys=API_KEY)
    async with a.running(), b.running(), trio.open_nursery() as nursery:
        ports = [(await nursery.start(s.serve_tcp))[0].socket.getsockname()[1] for s in (a, b)]
        yield f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
        nursery.cancel_scope.cancel()


def progress(n: int) -> dict[str, object]:
    return {"type": "investigation_progress", "data": {"progress": n, "status": "data_retrieval", "message": f"{n}%"}}


async def test_published_on_one_node_streams_over_sse_on_the_other(redis: RedisProcess) -> None:
    with trio.fail_after(LIMIT):
        async with two_nodes(redis.url) as (one, two), httpx.AsyncClient() as client:
            created = await client.post(f"{one}/api/v1/investigations", json={"title": "Dois nós"}, headers=api())
            investigation = created.json()["investigation_id"]
            events = f"/api/v1/investigations/{investigation}/events"
            async with sse(client, f"{two}/api/v1/sse/investigations/{investigation}") as stream:
                assert (await stream.next()).event == "connection"  # the record is found on node 2
                once = api(**{"idempotency-key": "k1"})
                first = await client.post(f"{one}{events}", json=progress(10), headers=once)
                assert first.status_code == 202
                received = await stream.next()
                assert received.id == first.json()["ids"][0] and received.data["data"]["progress"] == 10
                retried = await client.post(f"{two}{events}", json=progress(10), headers=once)
                assert retried.json() == first.json() and retried.headers["idempotent-replayed"] == "true"
                later = await client.post(f"{two}{events}", json={"events": [progress(60), {
                    "type": "report_ready", "data": {"summary": SUMMARY},
                }]}, headers=api())
                assert later.status_code == 202
                assert [(await stream.next()).id for _ in range(2)] == later.json()["ids"]
            ended = await client.post(f"{one}{events}", json=progress(99), headers=api())
            assert ended.status_code == 409  # node 1 sees it ended on node 2
            page = (await client.get(f"{one}{events}", headers=api())).json()
            report = (await client.get(f"{one}/api/v1/investigations/{investigation}/report?format=json")).json()
            keys = load_public((await client.get(f"{two}/api/v1/keys")).content)
    assert [e["id"] for e in page["events"]] == first.json()["ids"] + later.json()["ids"] and page["complete"]
    verdict = verify(report, events=page["events"], trusted=keys)  # one chain across both nodes
    assert verdict.ok, verdict.lines
