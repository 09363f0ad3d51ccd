"""session/turns.py on its own: one turn at a time per session, cancel, failures, restarts.

A real LocalBroker over a MemoryStore and the records beside it; the agent is a fake whose
chunks wait on virtual time, so the order of everything published can be asserted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio
import trio.testing

from cidadao_trio.agents.base import AgentRequest, StreamedReply
from cidadao_trio.agents.router import AgentRouter
from cidadao_trio.broker.base import session_stream
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.protocol.events import ChatComplete, UserMessage
from cidadao_trio.records.base import OpenTurn, TurnRecord
from cidadao_trio.records.local import StoreRecords
from cidadao_trio.session.claims import claim_key
from cidadao_trio.session.turns import INTERRUPTED_REPLY, Turn, TurnQueue, TurnRunner

from ..harness import ListSink


@attrs.define
class ScriptedAgent:
    """Answers ``"<n> partes"`` with n chunks one virtual second apart; "falhe" raises."""

    agent_id: str = "drummond"
    agent_name: str = "Carlos Drummond de Andrade"
    started: list[str] = attrs.field(factory=list)

    def reply(self, request: AgentRequest) -> StreamedReply:
        self.started.append(request.message)

        async def chunks() -> AsyncIterator[str]:
            parts = int(request.message.split()[0]) if request.message[0].isdigit() else 1
            for n in range(parts):
                await trio.sleep(1)
                if request.message == "falhe":
                    raise RuntimeError("the agent broke")
                yield f"{request.message}#{n} "

        return StreamedReply(chunks(), suggested_actions=["E agora?"])


def messages(sink: ListSink) -> list[tuple[str, dict[str, Any]]]:
    return [(d.type, json.loads(d.text)["data"]) for d in sink.got]


@attrs.define
class Rig:
    broker: LocalBroker
    runner: TurnRunner
    agent: ScriptedAgent
    sink: ListSink
    queue: TurnQueue


async def rig(nursery: trio.Nursery, *, idle: list[str] | None = None, node: str = "") -> Rig:
    broker = LocalBroker()
    await nursery.start(broker.run)
    agent = ScriptedAgent()
    runner = TurnRunner(broker, StoreRecords(broker), AgentRouter(converse=agent), nursery, node)
    sink = ListSink()
    await broker.attach(session_stream("s1"), sink, None)
    on_idle = (lambda: idle.append("idle")) if idle is not None else (lambda: None)
    return Rig(broker, runner, agent, sink, TurnQueue("s1", 4, on_idle=on_idle))


async def test_a_sessions_turns_are_answered_one_at_a_time_in_order(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    idle: list[str] = []
    r = await rig(nursery, idle=idle)
    r.runner.submit(r.queue, Turn("2 partes", {}, "t1"))
    r.runner.submit(r.queue, Turn("1 parte", {}, "t2"))
    await trio.sleep(10)
    await r.broker.flush()
    got = messages(r.sink)
    kinds = [(kind, data.get("reply_to"), data.get("isTyping"), data.get("status")) for kind, data in got]
    assert kinds == [
        ("typing", None, True, None), ("chat", "t1", None, None), ("chat", "t1", None, None),
        ("chat_complete", "t1", None, "completed"), ("typing", None, False, None),
        ("typing", None, True, None), ("chat", "t2", None, None),
        ("chat_complete", "t2", None, "completed"), ("typing", None, False, None),
    ]
    first = got[3][1]
    assert first["content"] == "2 partes#0 2 partes#1 " and first["suggested_actions"] == ["E agora?"]
    assert [data["chunk_index"] for kind, data in got if kind == "chat"] == [0, 1, 0]
    assert idle == ["idle"] and not r.queue.worker_running


async def test_cancel_stops_the_reply_in_progress_and_drops_the_queued_turn_it_names(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    r = await rig(nursery)
    r.runner.submit(r.queue, Turn("5 partes", {}, "long"))
    r.runner.submit(r.queue, Turn("1 parte", {}, "queued"))
    await trio.sleep(2.5)  # two chunks out
    assert await r.runner.cancel(r.queue, "queued")  # never started
    assert await r.runner.cancel(r.queue, "long")
    await trio.sleep(10)
    await r.broker.flush()
    completes = [data for kind, data in messages(r.sink) if kind == "chat_complete"]
    assert [(c["reply_to"], c["status"]) for c in completes] == [("queued", "cancelled"), ("long", "cancelled")]
    assert completes[1]["content"] == "5 partes#0 5 partes#1 " and completes[1]["suggested_actions"] == []
    assert r.agent.started == ["5 partes"]  # the queued turn was never answered
    assert not await r.runner.cancel(r.queue, "long")  # nothing left to cancel


async def test_a_failing_agent_ends_its_turn_failed_and_the_next_turn_is_answered(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    r = await rig(nursery)
    r.runner.submit(r.queue, Turn("falhe", {}, "bad"))
    r.runner.submit(r.queue, Turn("1 parte", {}, "good"))
    await trio.sleep(10)
    await r.broker.flush()
    completes = [(d["reply_to"], d["status"]) for kind, d in messages(r.sink) if kind == "chat_complete"]
    assert completes == [("bad", "failed"), ("good", "completed")]
    assert await r.runner.records.open_turns() == []  # both ended in the records


async def test_turns_a_restart_cut_end_failed_except_another_nodes(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    r = await rig(nursery, node="a")
    records = r.runner.records
    for asked in ("q1", "q2"):  # both accepted: echoed in the session stream
        await r.broker.publish(session_stream("s1"), UserMessage(content="Olá", reply_to=asked))
    await records.begin_turn(OpenTurn("s1", "k1", TurnRecord("drummond", "Carlos Drummond de Andrade", "q1", "a")))
    await records.begin_turn(OpenTurn("s1", "k2", TurnRecord("zumbi", "Zumbi dos Palmares", "q2", "b")))
    await r.broker.flush()  # a read sees what is committed
    shared = TurnRunner(r.broker, records, AgentRouter(converse=r.agent), nursery, "a", shared_store=True)
    assert await shared.end_interrupted() == 1  # node b may still be answering q2
    await r.broker.flush()
    (kind, data), = completions(r.sink)
    assert kind == "chat_complete" and data["status"] == "failed" and data["reply_to"] == "q1"
    assert data["content"] == INTERRUPTED_REPLY and data["agent_id"] == "drummond"
    await r.broker.flush()
    assert [t.turn_key for t in await records.open_turns()] == ["k2"]
    alone = TurnRunner(r.broker, records, AgentRouter(converse=r.agent), nursery, "a")
    assert await alone.end_interrupted() == 1  # one node: nobody else can be answering it
    await r.broker.flush()
    assert await records.open_turns() == []


def completions(sink: ListSink) -> list[tuple[str, dict[str, Any]]]:
    return [(kind, data) for kind, data in messages(sink) if kind == "chat_complete"]


async def test_a_queued_turn_is_recorded_open_from_its_acceptance(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Queued behind another, a turn already has its record (a crash then leaves it for the
    restart to end); a cancelled or drained queued turn's record goes with it."""
    r = await rig(nursery)
    turns = [Turn("5 partes", {}, "long"), Turn("1 parte", {}, "cancelled"), Turn("1 parte", {}, "drained")]
    for turn in turns:
        await r.runner.open("s1", turn)
        r.runner.submit(r.queue, turn)
    await trio.sleep(1.5)
    await r.broker.flush()
    open_turns = {t.record.reply_to: t for t in await r.runner.records.open_turns()}
    assert set(open_turns) == {"long", "cancelled", "drained"}
    assert open_turns["drained"].record.agent_id == "drummond"  # the conversational agent ends it
    assert await r.runner.cancel(r.queue, "cancelled")
    cut = await r.runner.finish(trio.current_time())  # the drain's deadline is now
    await r.broker.flush()
    assert cut == 2
    assert [(d["reply_to"], d["status"]) for _, d in completions(r.sink)] == [
        ("cancelled", "cancelled"), ("drained", "failed"), ("long", "failed"),
    ]
    assert await r.runner.records.open_turns() == []


async def test_a_turn_cut_before_its_echo_lets_its_id_go_and_one_cut_after_its_end_is_not_ended_twice(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The restart reads the session stream: no echo of q1 (the crash came between the claim
    and the echo) — its claim is forgotten, so the client's resend is run, and nothing is
    published; q2's chat_complete is there (the crash came before its record was ended) —
    no second one."""
    r = await rig(nursery, node="a")
    records = r.runner.records
    assert await records.accept_message("s1", claim_key("q1"), 60)
    await r.broker.publish(session_stream("s1"), UserMessage(content="Olá", reply_to="q2"))
    await r.broker.publish(session_stream("s1"), ChatComplete(
        status="completed", agent_id="drummond", agent_name="D", content="Oi", reply_to="q2"
    ))
    for key, asked in (("k1", "q1"), ("k2", "q2")):
        await records.begin_turn(OpenTurn("s1", key, TurnRecord("drummond", "D", asked, "a")))
    await r.broker.flush()
    restarted = TurnRunner(r.broker, records, AgentRouter(converse=r.agent), nursery, "a")
    assert await restarted.end_interrupted() == 0
    await r.broker.flush()
    assert [d["reply_to"] for _, d in completions(r.sink)] == ["q2"]
    assert await records.open_turns() == []
    assert await records.accept_message("s1", claim_key("q1"), 60)  # the resend is accepted
