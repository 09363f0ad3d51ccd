"""Messages of any kind for tests that exercise the broker with partial payloads.

The broker takes typed events (``protocol/events.py``); a broker test often needs only a
message's kind and a marker (``{"n": 3}``). ``message`` builds one that has the delivery
policy its kind has in the library (durable, droppable, coalescing), read from the classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import attrs

from cidadao_trio.protocol.events import (
    DROPPABLE_TYPES,
    DURABLE_KINDS,
    DURABLE_TYPES,
    EPHEMERAL_KINDS,
    Event,
)


@attrs.frozen
class AnyMessage:
    type: str
    payload: Mapping[str, Any]

    @property
    def durable(self) -> bool:
        return self.type in DURABLE_TYPES

    @property
    def droppable(self) -> bool:
        return self.type in DROPPABLE_TYPES

    def coalesce_key(self) -> str | None:
        for kind in (*DURABLE_KINDS, *EPHEMERAL_KINDS):
            if kind.type == self.type and kind.coalesce_key is not Event.coalesce_key:
                return kind.coalesce_key(SimpleNamespace(**self.payload))  # type: ignore[arg-type]
        return None

    def data(self) -> dict[str, Any]:
        return dict(self.payload)


def message(type: str, data: Mapping[str, Any]) -> Event:
    return AnyMessage(type, data)  # type: ignore[return-value]
