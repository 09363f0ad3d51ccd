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

    def route(self, request: AgentRequest) -> Agent:
        chosen = getattr(self, parse_intent(request.message).kind, None)
        return chosen if chosen is not None else self.converse
