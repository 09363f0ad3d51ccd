"""The hash chain of §11 over one investigation's durable events, in stream order.

``h_0 = SHA-256("cidadao-trio:" + investigation_id)``, ``h_k = SHA-256(h_{k-1} ||
canonical(envelope_k))``. :class:`ChainMark` is what a record keeps of it (head, count and
the id of the last event chained) so another process can continue it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .canonical import canonical

GENESIS_PREFIX = "cidadao-trio:"


def genesis(investigation_id: str) -> bytes:
    return hashlib.sha256((GENESIS_PREFIX + investigation_id).encode()).digest()


def link(head: bytes, envelope: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(head + canonical(envelope)).digest()


@attrs.frozen
class ChainMark:
    """How far a chain got: ``head`` in lower-case hex, ``events`` chained, ``last_id``
    the stream id of the last one ("" before the first)."""

    head: str
    events: int = 0
    last_id: str = ""


class ProofChain:
    """One investigation's chain as its events are published (one per investigation)."""

    def __init__(self, investigation_id: str, mark: ChainMark | None = None) -> None:
        self.investigation_id = investigation_id
        self._head = bytes.fromhex(mark.head) if mark is not None else genesis(investigation_id)
        self._events = mark.events if mark is not None else 0
        self._last_id = mark.last_id if mark is not None else ""

    def add(self, envelope: Mapping[str, Any]) -> None:
        self._head = link(self._head, envelope)
        self._events += 1
        self._last_id = str(envelope.get("id", ""))

    def extend(self, envelopes: Iterable[Mapping[str, Any]]) -> None:
        for envelope in envelopes:
            self.add(envelope)

    @property
    def mark(self) -> ChainMark:
        return ChainMark(self._head.hex(), self._events, self._last_id)


def chain_of(investigation_id: str, envelopes: Iterable[Mapping[str, Any]]) -> ChainMark:
    chain = ProofChain(investigation_id)
    chain.extend(envelopes)
    return chain.mark
