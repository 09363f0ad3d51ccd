"""The event every fan-out benchmark publishes, identical for our server, the reference and the floor.

``seq`` and ``sent_at`` are the last two keys of ``data`` so the load generator can find them
without parsing JSON (``"seq":<int>,"sent_at":<epoch seconds>``). ``sent_at`` is stamped by
the publishing server just before it hands the event to its fan-out, so latency covers the
whole path: broker (for ours), encode, per-connection queue, socket, client.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from cidadao_trio.protocol.events import AnomalyDetected

INVESTIGATION_ID = "INV-BENCH"
EVENT_TYPE = "anomaly_detected"


@attrs.frozen(kw_only=True)
class TimedAnomaly(AnomalyDetected):
    """An ``anomaly_detected`` that also carries the load's sequence number and send time."""

    padding: str | None = attrs.field(default=None, metadata={"omit_if_none": True})
    seq: int
    sent_at: float


def timed_anomaly(seq: int, pad: int = 0, investigation_id: str = INVESTIGATION_ID) -> TimedAnomaly:
    return TimedAnomaly(**anomaly_event(seq, pad, investigation_id))


def anomaly_event(seq: int, pad: int = 0, investigation_id: str = INVESTIGATION_ID) -> dict[str, Any]:
    """A realistic ``anomaly_detected`` payload (~450 bytes encoded), plus ``pad`` bytes."""
    data: dict[str, Any] = {
        "investigation_id": investigation_id,
        "anomaly_id": f"ANM-{seq:06d}",
        "anomaly_type": "price_outlier",
        "severity": "high",
        "confidence": 0.93,
        "description": "Valor do contrato 3,4 desvios-padrão acima da média da categoria.",
        "details": {
            "contract_id": f"CT-2026-{seq % 10000:05d}",
            "expected_value": 120000.0,
            "actual_value": 498500.0,
            "supplier": "Construtora Exemplo Ltda",
            "agency": "Ministério da Saúde",
        },
        "agent_id": "zumbi",
    }
    if pad > 0:
        data["padding"] = "x" * pad
    data["seq"] = seq
    data["sent_at"] = time.time()
    return data


def valid_investigation(query: dict[str, str]) -> str:
    """The ``investigation`` query parameter, checked like the server checks path ids."""
    investigation_id = query.get("investigation", INVESTIGATION_ID)
    if not (0 < len(investigation_id) <= 64) or not all(c.isalnum() or c in "_.:-" for c in investigation_id):
        raise ValueError(f"bad investigation id {investigation_id!r}")
    return investigation_id


def pace_deadline(start: float, index: int, rate: float) -> float | None:
    """When event ``index`` is due at ``rate`` events/s (None: as fast as possible)."""
    if rate <= 0:
        return None
    return start + index / rate
