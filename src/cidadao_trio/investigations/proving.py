"""The engine's side of §11: each investigation's events chained as they are published,
and its report sealed with the chain head.

A :class:`ProofChain` per investigation follows what the engine publishes on the
investigation's stream. Its state (:class:`~cidadao_trio.proofs.chain.ChainMark`) goes
into the investigation's record at every save; a process that takes an investigation
over (a restart, another node) continues the chain from that mark plus the stream's
retained events after it: the stream is the truth, the mark spares re-reading it all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from ..broker.base import Broker, Delivery, investigation_stream
from ..proofs.canonical import canonical, sha256_hex
from ..proofs.chain import ChainMark, ProofChain
from ..proofs.sealing import Sealed, seal
from ..protocol.envelope import DurableId
from ..protocol.events import Event, InvestigationFailed, InvestigationProgress, ReportReady
from ..records.convert import converter
from ..records.signing_key import ServerKey
from .dataset import Dataset
from .model import Contract, Investigation
from .report import Report

log = logging.getLogger(__name__)

__all__ = ["Prover"]


class Prover:
    """Chains and seals the investigations of one engine."""

    def __init__(self, broker: Broker, key: ServerKey | None = None, *, dataset_file: str = "") -> None:
        self.broker = broker
        self.key = key or ServerKey()
        self._dataset_file = dataset_file  # --dataset: its bytes are what dataset_sha256 names
        self._chains: dict[str, ProofChain] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._digest: tuple[object, str] | None = None  # the loaded dataset's, computed once

    async def publish(self, record: Investigation, event: Event) -> Delivery:
        """Publish on the investigation's stream; chain it, in stream order."""
        lock = self._locks.setdefault(record.id, trio.Lock())
        async with lock:
            chain = self._chains.get(record.id) or await self._recover(record)
            delivery = await self.broker.publish(investigation_stream(record.id), event)
            if event.durable and not isinstance(event, ReportReady):
                chain.add(json.loads(delivery.text))
            if isinstance(event, InvestigationFailed) or (
                isinstance(event, InvestigationProgress) and event.status == "cancelled"
            ):
                self.forget(record.id)
        return delivery

    def mark(self, record: Investigation) -> ChainMark | None:
        """What the record keeps of its chain: ours while we publish it, else its own."""
        chain = self._chains.get(record.id)
        return chain.mark if chain is not None else record.chain

    def forget(self, investigation_id: str) -> None:
        self._chains.pop(investigation_id, None)
        self._locks.pop(investigation_id, None)

    async def _recover(self, record: Investigation) -> ProofChain:
        """The chain from the record's mark plus what the stream retains after it."""
        mark = record.chain
        after = DurableId.parse(mark.last_id) if mark is not None and mark.last_id else None
        chain = ProofChain(record.id, mark)
        retained = [json.loads(d.text) for d in await self.broker.retained(investigation_stream(record.id))]
        later = [e for e in retained if e.get("type") != ReportReady.type and _after(e, after)]
        if mark is not None and mark.events and after is None:
            log.warning("investigation %s: chain mark without a last id; proof may not verify", record.id)
        chain.extend(later)
        if later:
            log.info("investigation %s: chain continued from %d events", record.id, chain.mark.events)
        self._chains[record.id] = chain
        return chain

    def dataset_sha256(self, contracts: Sequence[Contract]) -> str:
        """Blocking. A ``--dataset`` file's bytes; else the contracts' canonical JSON."""
        if self._digest is not None and self._digest[0] is contracts:
            return self._digest[1]
        if isinstance(contracts, Dataset) and contracts.origin == "file" and self._dataset_file:
            digest = sha256_hex(Path(self._dataset_file).read_bytes())
        else:
            digest = contracts_sha256(contracts)
        if isinstance(contracts, Dataset):
            self._digest = (contracts, digest)
        return digest

    async def seal(self, record: Investigation, report: Report, dataset_sha256: str | None) -> Sealed:
        """The report with the proof over every event published so far (``report_ready`` next)."""
        chain = self._chains.get(record.id) or await self._recover(record)
        signer = await self.key.signer()
        sealed = seal(signer, record.id, chain.mark, dataset_sha256, report.as_json(), report.as_markdown())
        self.forget(record.id)
        return sealed


    async def seal_published(self, record: Investigation, report: Mapping[str, Any], markdown: str) -> Sealed:
        """An investigation run by a backend (§8): its report as published, no dataset
        this server read (``dataset_sha256`` null), over every event published so far."""
        chain = self._chains.get(record.id) or await self._recover(record)
        signer = await self.key.signer()
        sealed = seal(signer, record.id, chain.mark, None, report, markdown)
        self.forget(record.id)
        return sealed


def contracts_sha256(contracts: Sequence[Contract]) -> str:
    """SHA-256 of ``canonical`` of the contracts as JSON (what the sample and the API give)."""
    return sha256_hex(canonical(json.loads(json.dumps(converter.unstructure(list(contracts)), default=str))))


def _after(envelope: dict[str, object], after: DurableId | None) -> bool:
    if after is None:
        return True
    at = DurableId.parse(str(envelope.get("id", "")))
    return at is None or at.epoch != after.epoch or at.offset > after.offset
