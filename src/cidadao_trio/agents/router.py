"""Which agent answers a message: Portuguese intent → agent (see ``intent.parse_intent``)."""

from __future__ import annotations

import attrs

from .base import Agent, AgentRequest
from .intent import parse_intent


@attrs.frozen
class AgentRouter:
    converse: Agent  # Drummond
    investigate: Agent | None = None  # Zumbi
    analyze: Agent | None = None  # Anita
    report: Agent | None = None  # Tiradentes
    status: Agent | None = None  # Abaporu

    def __attrs_post_init__(self) -> None:
        """Drummond answers "are the data real?" from what the engine loaded."""
        engine = next((getattr(a, "engine", None) for a in (self.investigate, self.analyze)
                       if getattr(a, "engine", None) is not None), None)  # fmt: skip
        if engine is not None and getattr(self.converse, "data_origin", "") is None:
            self.converse.data_origin = lambda: str(engine.data_origin)  # type: ignore[attr-defined]

    def route(self, request: AgentRequest) -> Agent:
        chosen = getattr(self, parse_intent(request.message).kind, None)
        return chosen if chosen is not None else self.converse
