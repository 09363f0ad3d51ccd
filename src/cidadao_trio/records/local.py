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

from ..broker.local import LocalBroker
from ..investigations.model import Investigation
from ..store.base import SaveInvestigation, SaveReport, SaveSession, SaveTurn
from .base import OpenTurn, StoredReport, TurnRecord
from .convert import dumps, loads


class StoreRecords:
    """:class:`~cidadao_trio.records.base.Records` over a :class:`LocalBroker`'s store."""

    def __init__(self, broker: LocalBroker) -> None:
        self._broker = broker

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

    def close(self) -> None:
        self._broker.store.close()
