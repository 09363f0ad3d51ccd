"""Chat turns: a session answers its turns one at a time, in the order they arrived.

Turns run in a server-level nursery, not in the connection that asked: a reply keeps
streaming into the session stream when the asking tab closes, and a reconnecting client
resumes it from its cursor.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from ..agents.base import Agent, AgentRequest
from ..agents.router import AgentRouter
from ..auth import Principal
from ..broker.base import Broker, StoreUnavailable, session_stream
from ..protocol.events import AgentTyping, ChatComplete, ReplyChunk
from ..protocol.inbound import ReplyTo
from ..records.base import OpenTurn, Records, TurnRecord
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


@attrs.define(eq=False)
class TurnRunner:
    """Answers turns; each is recorded open while it runs (``Records.begin_turn``), so a
    turn a crash cut is ended as failed by the next start of its node."""

    broker: Broker
    records: Records
    agents: AgentRouter
    nursery: trio.Nursery
    node: str = ""  # turns begun here; several nodes share a Redis store
    shared_store: bool = False
    _begun: set[str] = attrs.field(factory=set, init=False)  # turn keys this process runs
    _working: set[TurnQueue] = attrs.field(factory=set, init=False)  # queues with a worker
    _idle: trio.Event = attrs.field(factory=trio.Event, init=False)  # set while none works
    _stopping: bool = attrs.field(default=False, init=False)  # a cut turn ends failed, not cancelled

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
        """End, as failed, every turn a crash or restart of this node cut (§7)."""
        ended = 0
        for turn in await self.records.open_turns():
            record = turn.record
            if turn.turn_key in self._begun or (self.shared_store and record.node != self.node):
                continue  # live: this process (begun while the store was down) or another node
            interrupted = ChatComplete(
                status="failed", agent_id=record.agent_id, agent_name=record.agent_name,
                content=INTERRUPTED_REPLY, reply_to=record.reply_to,
            )
            await self.broker.publish(session_stream(turn.session_id), interrupted)
            await self.records.end_turn(turn.session_id, turn.turn_key)
            ended += 1
        if ended:
            log.info("ended %d chat turns interrupted by a restart", ended)
        return ended

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
        turn_key = secrets.token_hex(8)
        self._begun.add(turn_key)
        begun = TurnRecord(agent.agent_id, agent.agent_name, turn.reply_to, self.node)
        await self.records.begin_turn(OpenTurn(queue.session_id, turn_key, begun))
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
            await self.records.end_turn(queue.session_id, turn_key)
            self._begun.discard(turn_key)
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
