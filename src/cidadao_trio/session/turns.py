"""Chat turns: a session answers its turns one at a time, in the order they arrived.

Turns run in a server-level nursery, not in the connection that asked: a reply keeps
streaming into the session stream when the asking tab closes, and a reconnecting client
resumes it from its cursor.

A turn is recorded open (``Records.begin_turn``) from before its message's id is claimed
until its ``chat_complete``, queued or answering, so that whatever a crash cuts is settled
by the next start of its node (:meth:`TurnRunner.end_interrupted`): a turn whose message
the session stream shows ends ``failed``; one whose message never got there had its claim
let go, so the client's resend runs (§2).

Several nodes on one Redis: a node with open turns keeps a liveness record fresh
(``Records.cache``, ``lease`` seconds). A resend that reaches another node while the
node that accepted it is dead is settled there at once (:meth:`TurnRunner.take_over`):
run afresh if it was never echoed, answered here if it was only queued, ended failed if
its answer was cut — so a message resent after a kill is answered exactly once.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import orjson
import trio

from ..agents.base import Agent, AgentRequest
from ..agents.router import AgentRouter
from ..auth import Principal
from ..broker.base import Broker, Delivery, StoreUnavailable, session_stream
from ..protocol.events import AgentTyping, ChatComplete, ReplyChunk
from ..protocol.inbound import ReplyTo
from ..records.base import OpenTurn, Records, TurnRecord
from .claims import claim_key
from .follow import follow
from .relay import relay

log = logging.getLogger(__name__)


@attrs.frozen
class Turn:
    message: str
    context: Mapping[str, Any]
    reply_to: ReplyTo
    principal: Principal = attrs.field(factory=Principal.anonymous)
    shared_session: bool = True
    key: str = attrs.field(factory=lambda: secrets.token_hex(8), kw_only=True)  # its open-turn record


@attrs.define(eq=False)
class TurnQueue:
    """A session's pending turns and the one being answered."""

    session_id: str
    max_pending: int
    pending: deque[Turn] = attrs.field(factory=deque)
    current: Turn | None = None
    current_scope: trio.CancelScope | None = None
    worker_running: bool = False
    on_idle: Callable[[], None] = attrs.field(default=lambda: None, kw_only=True)  # the hub forgets it then

    @property
    def is_full(self) -> bool:
        return len(self.pending) >= self.max_pending

    def matches(self, turn: Turn, reply_to: ReplyTo) -> bool:
        return reply_to is None or turn.reply_to == reply_to


INTERRUPTED_REPLY = "A resposta foi interrompida porque o servidor reiniciou. Envie a pergunta de novo."


@attrs.frozen
class SessionLog:
    """What a session stream shows of its turns: the messages echoed and the turns ended,
    by ``reply_to`` (as JSON text: 1 and "1" differ)."""

    echoed: frozenset[str]
    started: frozenset[str]  # an agent's reply has begun streaming
    ended: frozenset[str]

    @classmethod
    def read(cls, deliveries: Iterable[Delivery]) -> SessionLog:
        echoed: set[str] = set()
        started: set[str] = set()
        ended: set[str] = set()
        for delivery in deliveries:
            if delivery.type not in ("chat", "chat_complete") or '"reply_to"' not in delivery.text:
                continue  # (the type is the message's own: nothing else bears on a turn)
            message = orjson.loads(delivery.text)
            data = message.get("data") or {}
            if message.get("type") == "chat":
                (echoed if data.get("role") == "user" else started).add(claim_key(data.get("reply_to")))
            elif message.get("type") == "chat_complete":
                ended.add(claim_key(data.get("reply_to")))
        return cls(frozenset(echoed), frozenset(started), frozenset(ended))


class Resend(enum.Enum):
    """What :meth:`TurnRunner.take_over` made of a resent chat its session had accepted."""

    DUPLICATE = "duplicate"  # its node is alive, or the turn was ended: nothing more to do
    FREED = "freed"  # it never reached the stream: its claim was let go, run it as new
    QUEUED = "queued"  # accepted and echoed, never begun: queued here, its record kept
    FAILED = "failed"  # its answer was cut: ended with chat_complete failed here


def _alive_key(node: str) -> str:
    return f"turns-alive:{node}"


@attrs.define(eq=False)
class TurnRunner:
    """Answers turns; each is recorded open from its acceptance (:meth:`open`) to its end,
    so a turn a crash cut, queued or answering, is settled by the next start of its node."""

    broker: Broker
    records: Records
    agents: AgentRouter
    nursery: trio.Nursery
    node: str = ""  # turns begun here; several nodes share a Redis store
    shared_store: bool = False
    lease: float = 15.0  # shared store: a node silent this long has left its turns to others
    _begun: set[str] = attrs.field(factory=set, init=False)  # turn keys this process runs
    _working: set[TurnQueue] = attrs.field(factory=set, init=False)  # queues with a worker
    _idle: trio.Event = attrs.field(factory=trio.Event, init=False)  # set while none works
    _stopping: bool = attrs.field(default=False, init=False)  # a cut turn ends failed, not cancelled
    _beating: bool = attrs.field(default=False, init=False)  # the liveness record is being renewed

    def __attrs_post_init__(self) -> None:
        self._idle.set()

    async def finish(self, deadline: float, *, grace: float = 1.0) -> int:
        """Let every turn in progress or queued finish by ``deadline`` (the drain, §7); end
        the rest with ``chat_complete status:"failed"``. Returns how many were cut."""
        with trio.move_on_at(deadline):
            await self._idle.wait()
        cut = 0
        self._stopping = True
        for queue in list(self._working):
            for turn in list(queue.pending):
                queue.pending.remove(turn)
                converse = self.agents.converse
                await self._complete(queue.session_id, turn, converse, "failed", INTERRUPTED_REPLY, [], None)
                await self.close(queue.session_id, turn)
                cut += 1
            if queue.current_scope is not None:
                queue.current_scope.cancel()
                cut += 1
        with trio.move_on_after(grace):  # the cut turns' endings are being written
            await self._idle.wait()
        if cut:
            log.warning("drain: %d chat turns did not finish in time and ended as failed", cut)
        return cut

    async def end_interrupted(self) -> int:
        """Settle every turn a crash or restart of this node cut, queued or answering (§7;
        see :meth:`_settle`). Returns how many ended failed."""
        mine = [
            turn for turn in await self.records.open_turns()
            if turn.turn_key not in self._begun  # else live: begun here while the store was down
            and (not self.shared_store or turn.record.node == self.node)  # else another node's
        ]
        return await self._settle_all(mine, "a restart")

    async def end_abandoned(self) -> int:
        """Shared store: settle the open turns of every other node gone silent (its
        liveness record lapsed), so their citizens need not wait for that node's restart."""
        silent: dict[str, bool] = {}
        gone = []
        for turn in await self.records.open_turns():
            node = turn.record.node
            if node == self.node or turn.turn_key in self._begun:
                continue
            if node not in silent:
                silent[node] = not await self._alive(node)
            if silent[node]:
                gone.append(turn)
        return await self._settle_all(gone, "their node went silent")

    async def watch(self) -> None:
        """Shared store: :meth:`end_abandoned` every ``lease`` seconds, for as long as the node runs."""
        while True:
            await trio.sleep(self.lease)
            with contextlib.suppress(StoreUnavailable):  # the broker logs it; the next round retries
                await self.end_abandoned()

    async def _alive(self, node: str) -> bool:
        return node != self.node and await self.records.cached(_alive_key(node)) is not None

    async def _settle_all(self, turns: list[OpenTurn], why: str) -> int:
        by_session: dict[str, list[OpenTurn]] = {}
        for turn in turns:
            by_session.setdefault(turn.session_id, []).append(turn)
        outcomes = []
        for session_id, group in by_session.items():
            shown = SessionLog.read(await self.broker.retained(session_stream(session_id)))
            outcomes += [await self._settle(turn, shown) for turn in group]
        ended, forgotten = outcomes.count(Resend.FAILED), outcomes.count(Resend.FREED)
        if ended or forgotten:
            log.info("ended %d chat turns, forgot %d messages cut before their echo: %s", ended, forgotten, why)
        return ended

    async def _settle(
        self, turn: OpenTurn, shown: SessionLog, resend: tuple[TurnQueue, Turn] | None = None
    ) -> Resend | None:
        """End an open turn whose node can no longer answer it, as its session stream shows
        it: never echoed, its id's claim is let go, so the client's resend runs (§2);
        echoed, never begun and ``resend`` at hand, the resend is answered here; otherwise,
        unless its ``chat_complete`` is there already, it ends failed (§7). The stream is
        written before the record goes, so a crash in between settles it again, the same
        way. None: another node is settling it (one claim per turn on a shared store)."""
        session_id, record = turn.session_id, turn.record
        if self.shared_store and not await self.records.accept_message(
            session_id, f"settle:{turn.turn_key}", self.lease
        ):
            return None
        key = claim_key(record.reply_to)
        outcome = Resend.DUPLICATE
        if record.reply_to is not None and key not in shown.echoed:
            await self.records.forget_message(session_id, key)
            outcome = Resend.FREED
        elif resend is not None and key not in shown.started | shown.ended:
            self.submit(*resend)
            outcome = Resend.QUEUED
        elif record.reply_to is None or key not in shown.ended:
            await self.broker.publish(session_stream(session_id), ChatComplete(
                status="failed", agent_id=record.agent_id, agent_name=record.agent_name,
                content=INTERRUPTED_REPLY, reply_to=record.reply_to,
            ))
            outcome = Resend.FAILED
        await self.records.end_turn(session_id, turn.turn_key)
        return outcome

    async def open(self, session_id: str, turn: Turn) -> None:
        """Record ``turn`` open before its message's id is claimed and echoed: a crash at
        any point after this leaves a record for :meth:`end_interrupted` to settle. Until an
        agent is chosen, the one that ends it is the conversational agent."""
        converse = self.agents.converse
        self._begun.add(turn.key)
        record = TurnRecord(converse.agent_id, converse.agent_name, turn.reply_to, self.node)
        try:
            if self.shared_store and not self._beating:
                await self.records.cache(_alive_key(self.node), self.node, self.lease)
                self._beating = True
                self.nursery.start_soon(self._beat)
            await self.records.begin_turn(OpenTurn(session_id, turn.key, record))
        except BaseException:
            self._begun.discard(turn.key)
            raise

    async def _beat(self) -> None:
        """Keep this node's liveness record fresh while it has open turns (then it lapses)."""
        try:
            while self._begun:
                await trio.sleep(self.lease / 3)
                with contextlib.suppress(StoreUnavailable):  # the broker logs it; the next beat retries
                    await self.records.cache(_alive_key(self.node), self.node, self.lease)
        finally:
            self._beating = False

    async def take_over(self, queue: TurnQueue, turn: Turn) -> Resend:
        """A chat resent with an id its session had accepted (§2), on a shared store: if the
        node that accepted it is gone (its liveness record lapsed) and left the turn open,
        settle it here (:meth:`_settle`), so the resend is answered exactly once. ``turn``
        is the resend, its own record already open."""
        if not self.shared_store or turn.reply_to is None:
            return Resend.DUPLICATE
        key = claim_key(turn.reply_to)
        orphan = next((
            t for t in await self.records.open_turns()
            if t.session_id == queue.session_id and claim_key(t.record.reply_to) == key
            and t.turn_key not in self._begun
        ), None)
        if orphan is None or await self._alive(orphan.record.node):
            return Resend.DUPLICATE  # answered, or its node is alive and answering it
        shown = SessionLog.read(await self.broker.retained(session_stream(queue.session_id)))
        outcome = await self._settle(orphan, shown, (queue, turn))
        if outcome is not None:
            log.info("session %s: a resend of a turn left by %s: %s", queue.session_id, orphan.record.node,
                     outcome.value)
        return outcome if outcome in (Resend.FREED, Resend.QUEUED) else Resend.DUPLICATE

    async def close(self, session_id: str, turn: Turn) -> None:
        """The turn's record goes: it ended, or it was never accepted (DUPLICATE, refused).
        It is no longer live here either way: a record the store refused to end is settled
        like any other left open (at the next start), not held as live for ever."""
        try:
            await self.records.end_turn(session_id, turn.key)
        finally:
            self._begun.discard(turn.key)

    def submit(self, queue: TurnQueue, turn: Turn) -> None:
        queue.pending.append(turn)
        if not queue.worker_running:
            queue.worker_running = True
            if not self._working:
                self._idle = trio.Event()
            self._working.add(queue)
            self.nursery.start_soon(self._work, queue)

    async def cancel(self, queue: TurnQueue, reply_to: ReplyTo) -> bool:
        """Stop the reply in progress (and drop queued turns) matching ``reply_to``."""
        found = False
        for turn in [t for t in queue.pending if queue.matches(t, reply_to) and reply_to is not None]:
            queue.pending.remove(turn)
            await self._complete(queue.session_id, turn, self.agents.converse, "cancelled", "", [], None)
            await self.close(queue.session_id, turn)
            found = True
        if queue.current is not None and queue.current_scope is not None and queue.matches(queue.current, reply_to):
            queue.current_scope.cancel()
            found = True
        return found

    async def _work(self, queue: TurnQueue) -> None:
        try:
            while queue.pending:
                turn = queue.pending.popleft()
                try:
                    await self._answer(queue, turn)
                except StoreUnavailable as unavailable:  # the broker logs the store's state
                    log.warning("turn ended in session %s: %s", queue.session_id, unavailable)
                except Exception:  # never let one session's turn take the server down
                    log.exception("turn failed in session %s", queue.session_id)
        finally:
            queue.worker_running = False
            self._working.discard(queue)
            if not self._working:
                self._idle.set()
            queue.on_idle()

    async def _answer(self, queue: TurnQueue, turn: Turn) -> None:
        stream = session_stream(queue.session_id)
        request = AgentRequest(
            queue.session_id, turn.message, turn.context, turn.principal, turn.shared_session
        )
        request = await self.agents.prepare(request, self.broker)  # recent turns, followed investigations
        agent = self.agents.route(request)
        self._begun.add(turn.key)
        begun = TurnRecord(agent.agent_id, agent.agent_name, turn.reply_to, self.node)  # who answers it now
        await self.records.begin_turn(OpenTurn(queue.session_id, turn.key, begun))
        await self._typing(stream, agent, True)
        reply = agent.reply(request)
        parts: list[str] = []
        status = "completed"
        with trio.CancelScope() as scope:
            queue.current, queue.current_scope = turn, scope
            try:
                async def publish(chunk: str) -> None:
                    await self.broker.publish(stream, ReplyChunk(
                        content=chunk, agent_id=agent.agent_id, agent_name=agent.agent_name,
                        chunk_index=len(parts), reply_to=turn.reply_to,
                    ))
                    parts.append(chunk)

                await relay(reply, publish)  # a model's deltas merged; its stream closed on cancel
            except StoreUnavailable:
                status = "failed"  # ending the turn below may fail too; _work says so once
            except Exception:
                log.exception("agent %s failed in session %s", agent.agent_id, queue.session_id)
                status = "failed"
        queue.current = queue.current_scope = None
        if scope.cancelled_caught:
            status = "failed" if self._stopping else "cancelled"  # cut by the drain, or asked
        suggested = list(reply.suggested_actions) if status == "completed" else []
        investigation = reply.investigation_id if status == "completed" else None
        with trio.CancelScope(shield=True):
            await self._complete(queue.session_id, turn, agent, status, "".join(parts), suggested, investigation)
            await self.close(queue.session_id, turn)
            if investigation is not None:
                await follow(self.broker, queue.session_id, investigation)
            await self._typing(stream, agent, False)

    async def _complete(
        self,
        session_id: str,
        turn: Turn,
        agent: Agent,
        status: str,
        content: str,
        suggested_actions: list[str],
        investigation_id: str | None,
    ) -> None:
        await self.broker.publish(session_stream(session_id), ChatComplete(
            status=status, agent_id=agent.agent_id, agent_name=agent.agent_name, content=content,
            suggested_actions=suggested_actions, reply_to=turn.reply_to, investigation_id=investigation_id,
        ))

    async def _typing(self, stream: str, agent: Agent, is_typing: bool) -> None:
        state = "processing" if is_typing else "idle"
        await self.broker.publish(stream, AgentTyping(agent=state, agent_id=agent.agent_id, is_typing=is_typing))
