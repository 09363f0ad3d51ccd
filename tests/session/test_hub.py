"""session/hub.py on its own: sessions and their owners, claims, and greeting + replay.

The participants are fakes (what the session layer needs of a connection); the broker and
the records are real (LocalBroker over a MemoryStore).
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio

from cidadao_trio.agents.router import AgentRouter
from cidadao_trio.auth import ANONYMOUS_OWNER, Principal
from cidadao_trio.broker.base import Delivery, investigation_stream, session_stream
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.config import Settings
from cidadao_trio.metrics import Metrics
from cidadao_trio.protocol.codes import CloseCode, ErrorCode
from cidadao_trio.protocol.envelope import encode, ephemeral_id
from cidadao_trio.protocol.events import Error, Event, InvestigationProgress, UserMessage
from cidadao_trio.records.local import StoreRecords
from cidadao_trio.session.hub import Hub
from cidadao_trio.session.outbox import Outbox
from cidadao_trio.session.turns import TurnRunner

from ..harness import TEST_DEFAULTS
from ..messages import message
from .test_turns import ScriptedAgent


@attrs.define(eq=False)
class FakeParticipant:
    id: int
    principal: Principal
    outbox: Outbox = attrs.field()
    closed: list[tuple[CloseCode, ErrorCode | None]] = attrs.field(factory=list)

    @outbox.default
    def _outbox(self) -> Outbox:
        return Outbox(self.id, 256, 1 << 20)

    def send(self, event: Event) -> None:
        eid = ephemeral_id()
        self.outbox.offer(Delivery(event.type, encode(event.type, event.data(), eid), eid, False))

    def error(self, code: ErrorCode, message: str | None = None, reply_to: Any = None,
              retry_after: float | None = None) -> None:
        self.send(Error(code=str(code), message=message or ""))

    def close(self, code: CloseCode, reason: str, error: ErrorCode | None = None,
              retry_after: float | None = None, message: str | None = None) -> None:
        self.closed.append((code, error))

    def received(self) -> list[dict[str, Any]]:
        return [json.loads(d.text) for d in self.outbox.take(10_000, 1 << 30)]


async def hub(nursery: trio.Nursery) -> Hub:
    broker = LocalBroker()
    await nursery.start(broker.run)
    records = StoreRecords(broker)
    runner = TurnRunner(broker, records, AgentRouter(converse=ScriptedAgent()), nursery)
    return Hub(Settings(**TEST_DEFAULTS), broker, runner, Metrics(), records)


async def test_a_session_is_kept_while_in_use_and_remembers_its_owner_after(nursery: trio.Nursery) -> None:
    h = await hub(nursery)
    session = await h.session("s1")
    assert session.owner_key is None and await h.session("s1") is session
    await h.claim(session, Principal("ana"))
    await h.claim(session, Principal("bia"))  # the first opener keeps it
    assert session.owner_key == "user:ana"
    h.release(session)  # idle: no connection, no turn running
    assert "s1" not in h.sessions
    await h.broker.flush()
    again = await h.session("s1")
    assert again is not session and again.owner_key == "user:ana"  # read back from the records


async def test_claiming_an_anonymous_session_closes_the_onlookers_who_may_not_open_it(nursery: trio.Nursery) -> None:
    h = await hub(nursery)
    session = await h.session("s1")
    await h.claim(session, Principal.anonymous())
    assert session.owner_key == ANONYMOUS_OWNER
    ana, onlooker = FakeParticipant(1, Principal("ana")), FakeParticipant(2, Principal.anonymous())
    session.members.update({ana, onlooker})
    assert await h.claim_anonymous(session, ana)
    assert session.owner_key == "user:ana"
    assert onlooker.closed == [(CloseCode.POLICY, ErrorCode.FORBIDDEN)] and ana.closed == []
    assert not await h.claim_anonymous(session, FakeParticipant(3, Principal("bia")))  # owned now
    assert session.owner_key == "user:ana"


async def test_greeting_then_replay_from_a_cursor_or_a_gap_and_a_digest(nursery: trio.Nursery) -> None:
    h = await hub(nursery)
    stream, inv = session_stream("s1"), investigation_stream("INV-2026-001")
    first = await h.broker.publish(stream, UserMessage(content="primeira", reply_to="a"))
    await h.broker.publish(stream, UserMessage(content="segunda", reply_to="b"))
    await h.broker.link(inv, stream)
    for pct in (30, 50):
        await h.broker.publish(inv, InvestigationProgress(
            investigation_id="INV-2026-001", progress=pct, status="anomaly_detection", message="m",
            records_processed=10, anomalies_detected=1,
        ))
    await h.broker.publish(inv, message("anomaly_detected", {"investigation_id": "INV-2026-001", "n": 1}))
    await h.broker.flush()

    resumed = FakeParticipant(1, Principal.anonymous())
    await h.open_stream(resumed, stream, first.id, {"session_id": "s1"}, [inv])
    got = resumed.received()
    assert got[0]["type"] == "connection" and got[0]["data"]["resumed"] is True
    assert got[0]["data"]["session_id"] == "s1"
    epoch = first.id.rsplit("-", 1)[0]
    kinds = ["chat", "investigation_progress", "investigation_progress", "anomaly_detected"]
    assert [m["type"] for m in got[1:]] == kinds
    assert got[1]["data"]["content"] == "segunda"
    assert [m["id"] for m in got[1:]] == [f"{epoch}-{n}" for n in (2, 3, 4, 5)]  # the session's own offsets

    lost = FakeParticipant(2, Principal.anonymous())
    await h.open_stream(lost, stream, f"{epoch}x-1", {"session_id": "s1"}, [inv])  # another epoch: gone
    got = lost.received()
    assert got[0]["type"] == "connection" and got[0]["data"]["resumed"] is False
    assert got[1]["type"] == "error" and got[1]["data"]["code"] == "HISTORY_GAP"
    digest = got[2:]
    assert [m["type"] for m in digest] == ["investigation_progress", "anomaly_detected"]
    assert digest[0]["data"]["progress"] == 50  # the latest progress only
    assert all(m["id"].startswith("e-") for m in digest)  # the client's cursor stays where it was

    fresh = FakeParticipant(3, Principal.anonymous())
    await h.open_stream(fresh, stream, None, {"session_id": "s1"}, [inv])
    assert [m["type"] for m in fresh.received()] == ["connection"]  # no cursor: live only


class TrimmingBroker(LocalBroker):
    """Retention moves past a cursor between the hub's check and its attach: the race."""

    trim_before_attach: str | None = None

    async def attach(self, stream: str, sink: Any, after: Any, *, from_oldest: bool = False) -> Any:
        if stream == self.trim_before_attach:
            self.trim_before_attach = None
            for n in range(5):  # max_messages=3: the cursor's message leaves retention
                await self.publish(stream, UserMessage(content=f"depois {n}", reply_to=f"t{n}"))
            await self.flush()
        return await super().attach(stream, sink, after, from_oldest=from_oldest)


async def test_a_cursor_trimmed_between_greeting_and_attach_still_gets_history_gap(nursery: trio.Nursery) -> None:
    broker = TrimmingBroker(max_messages=3)
    await nursery.start(broker.run)
    records = StoreRecords(broker)
    runner = TurnRunner(broker, records, AgentRouter(converse=ScriptedAgent()), nursery)
    h = Hub(Settings(**TEST_DEFAULTS), broker, runner, Metrics(), records)
    stream = session_stream("s-trim")
    first = await broker.publish(stream, UserMessage(content="primeira", reply_to="a"))
    await broker.flush()
    broker.trim_before_attach = stream
    client = FakeParticipant(1, Principal.anonymous())
    await h.open_stream(client, stream, first.id, {"session_id": "s-trim"}, [])
    got = client.received()
    assert got[0]["type"] == "connection" and got[0]["data"]["resumed"] is True  # valid when greeted
    assert [m["data"]["code"] for m in got[1:] if m["type"] == "error"] == ["HISTORY_GAP"]
    assert got[1]["type"] == "error"  # before anything else: nothing live ahead of the gap
    later = await broker.publish(stream, UserMessage(content="ao vivo", reply_to="v"))
    await broker.flush()
    assert [m["id"] for m in client.received()] == [later.id]  # live again, once
    outcomes = {sample.labels["outcome"]: sample.value for metric in h.metrics.resumes.collect()
                for sample in metric.samples if sample.name.endswith("_total")}
    assert outcomes == {"history_gap": 1.0}  # counted once, as a gap
