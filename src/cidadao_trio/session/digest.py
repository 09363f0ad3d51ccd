"""What a client that lost history is sent instead (PROTOCOL.md §4 ``HISTORY_GAP``).

For each investigation its session follows: the latest progress, every anomaly and the
report, in stream order, as ephemeral messages (the client's cursor stays where it was).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..broker.base import Broker, Delivery
from ..protocol.envelope import ephemeral_id, restamp
from ..protocol.events import AnomalyDetected, InvestigationProgress, ReportReady

KEPT = frozenset({AnomalyDetected.type, ReportReady.type})


def digest_of(history: Sequence[Delivery]) -> list[Delivery]:
    """One investigation's digest, from what its stream retains (oldest first)."""
    progress = [d for d in history if d.type == InvestigationProgress.type][-1:]
    last_progress = progress[0] if progress else None
    kept = [d for d in history if d.type in KEPT or d is last_progress]
    return [Delivery(d.type, restamp(d.text, eid), eid, False) for d in kept for eid in (ephemeral_id(),)]


async def read_digest(broker: Broker, streams: Iterable[str]) -> list[Delivery]:
    digest: list[Delivery] = []
    for stream in streams:
        digest.extend(digest_of(await broker.retained(stream)))
    return digest
