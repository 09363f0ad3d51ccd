"""Server→client message kinds and the delivery policy each kind gets (PROTOCOL.md §3, §5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DURABLE_TYPES = frozenset(
    {
        "chat",
        "chat_complete",
        "subscribed",
        "unsubscribed",
        "investigation_progress",
        "anomaly_detected",
        "agent_finding",
        "report_ready",
        "investigation_failed",
    }
)

# Dropped first when an outbox is full; never durable.
DROPPABLE_TYPES = frozenset({"typing"})

CONNECTED_MESSAGE = "Conectado ao Cidadão.AI em tempo real"


def coalesce_key(type: str, data: Mapping[str, Any]) -> str | None:
    """Messages sharing a key replace each other in a full outbox (latest wins)."""
    if type == "investigation_progress":
        return f"progress:{data.get('investigation_id')}"
    return None
