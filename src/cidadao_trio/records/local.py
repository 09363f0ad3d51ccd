"""Records kept by this process's store: SQLite (the embedded default) or memory.

The store's tables hold the records (``store.sqlite.SqliteStore``, ``store.base.MemoryStore``);
this is their typed async face. It goes through the broker that owns the store because
the store has one connection and one writer:

- reads run in the store's worker thread, one at a time with the broker's own reads;
- writes are ops queued on the broker's writer (:meth:`LocalBroker.record`), so they
  commit in the same transactions as the stream appends published before them, in
  order, and a store that cannot take writes refuses them with ``StoreUnavailable``
  (nothing accepted) exactly as it refuses a publish.
"""

from __future__ import annotations

import time

from ..broker.local import LocalBroker
from ..investigations.model import Investigation
from ..store.base import SaveClaim, SaveInvestigation, SaveReport, SaveSession, SaveTurn
from .base import OpenTurn, Run, StoredReport, TurnRecord
from .convert import dumps, loads

RUN = "run:"  # claims: an investigation running (one node: no lease, it is always this one's)
MESSAGE = "message:"  # claims: a client message id a session accepted (§2)
CACHE = "cache:"  # claims: a text kept until it expires (``Records.cache``)
# Accepted ids kept in memory too, until their claim is surely committed: the store's
# reads see a queued write only once committed (``Records``), and a resend can be quicker.
RECENT_SECONDS = 60.0
PRUNE_EVERY = 1024


class StoreRecords:
    """:class:`~cidadao_trio.records.base.Records` over a :class:`LocalBroker`'s store."""

    def __init__(self, broker: LocalBroker) -> None:
        self._broker = broker
        self._recent: dict[str, float] = {}  # message claim -> when accepted (monotonic)
        self._cache_writes = 0

    async def investigation(self, investigation_id: str) -> Investigation | None:
        raw: str | None = await self._broker.query(self._broker.store.load_investigation, investigation_id)
        return None if raw is None else loads(raw, Investigation)

    async def investigations(self) -> list[Investigation]:
        raws: list[str] = await self._broker.query(self._broker.store.load_investigations)
        return [loads(raw, Investigation) for raw in raws]

    async def save_investigation(self, investigation: Investigation) -> None:
        await self._broker.record(SaveInvestigation(investigation.id, dumps(investigation)))

    async def report(self, investigation_id: str) -> StoredReport | None:
        found: tuple[str, str] | None = await self._broker.query(self._broker.store.load_report, investigation_id)
        return None if found is None else StoredReport(*found)

    async def save_report(self, investigation_id: str, report: StoredReport) -> None:
        await self._broker.record(SaveReport(investigation_id, report.json, report.markdown))

    async def session_owner(self, session_id: str) -> str | None:
        owner: str | None = await self._broker.query(self._broker.store.load_session_owner, session_id)
        return owner

    async def save_session_owner(self, session_id: str, owner_key: str) -> None:
        await self._broker.record(SaveSession(session_id, owner_key))

    async def open_turns(self) -> list[OpenTurn]:
        rows: list[tuple[str, str, str]] = await self._broker.query(self._broker.store.load_open_turns)
        return [OpenTurn(session_id, key, loads(raw, TurnRecord)) for session_id, key, raw in rows]

    async def begin_turn(self, turn: OpenTurn) -> None:
        await self._broker.record(SaveTurn(turn.session_id, turn.turn_key, dumps(turn.record)))

    async def end_turn(self, session_id: str, turn_key: str) -> None:
        await self._broker.record(SaveTurn(session_id, turn_key, None))

    async def next_number(self, counter: str) -> int:
        """Taken at once, in the store's thread (not queued): the caller needs the number."""
        number: int = await self._broker.query(self._broker.store.next_number, counter)
        return number

    async def accept_message(self, session_id: str, message_id: str, ttl: float) -> bool:
        """One process owns this store: the check and the claim are atomic on its loop
        (``_recent`` before any await); the claim is queued ahead of the message's append."""
        name = f"{MESSAGE}{session_id}\x1f{message_id}"
        now = time.monotonic()
        seen = self._recent.get(name)
        if seen is not None and now - seen < RECENT_SECONDS:
            return False
        self._recent[name] = now
        prune = len(self._recent) > PRUNE_EVERY
        if prune:  # now and then, the expired go (memory here, the store's with this claim)
            self._recent = {k: t for k, t in self._recent.items() if now - t < RECENT_SECONDS}
        try:
            if await self._broker.query(self._broker.store.load_claim, name, time.time()) is not None:
                return False
            await self._broker.record(SaveClaim(name, "1", time.time() + ttl, time.time() if prune else None))
        except BaseException:
            self._recent.pop(name, None)
            raise
        return True

    async def forget_message(self, session_id: str, message_id: str) -> None:
        name = f"{MESSAGE}{session_id}\x1f{message_id}"
        self._recent.pop(name, None)
        await self._broker.record(SaveClaim(name, None))

    async def cached(self, key: str) -> str | None:
        value: str | None = await self._broker.query(self._broker.store.load_claim, CACHE + key, time.time())
        return value

    async def cache(self, key: str, value: str, ttl: float) -> None:
        """Kept as an expiring claim; every ``PRUNE_EVERY``th write also drops the expired."""
        if ttl <= 0:
            return
        self._cache_writes += 1
        now = time.time()
        prune = now if self._cache_writes % PRUNE_EVERY == 0 else None
        await self._broker.record(SaveClaim(CACHE + key, value, now + ttl, prune))

    async def begin_run(self, run: Run, node: str, ttl: float) -> None:
        await self._broker.record(SaveClaim(RUN + run.investigation_id, dumps(run)))

    async def runs(self) -> list[Run]:
        rows: list[tuple[str, str]] = await self._broker.query(self._broker.store.load_claims, RUN, time.time())
        return [loads(raw, Run) for _, raw in rows]

    async def claim_run(self, investigation_id: str, node: str, ttl: float) -> bool:
        return True  # no other node shares this store

    async def release_run(self, investigation_id: str, node: str) -> None:
        pass  # kept: this node's next start resumes it

    async def end_run(self, investigation_id: str) -> None:
        await self._broker.record(SaveClaim(RUN + investigation_id, None))

    def close(self) -> None:
        self._broker.store.close()
