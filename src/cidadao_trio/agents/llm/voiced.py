"""An agent whose grounded answer a language model writes, streamed token by token.

The wrapped agent still computes everything (``Grounded.ground``): the model gets those
figures and phrases them. When the model fails, the citizen gets the rule-based answer
with a short note; a reply the model began keeps what was sent and adds the note and the
rule-based answer after it (chunks already published cannot be taken back).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import attrs

from ..base import AgentRequest, Grounded, Grounding
from .client import ChatModel, ModelFailure
from .prompt import messages

__all__ = ["NOTES", "Voiced", "VoicedReply"]

# Why the model did not answer, as a citizen is told (keys: ModelFailure.outcome).
NOTES = {
    "refused": "o serviço de linguagem não aceitou a conexão",
    "unauthorized": "o serviço de linguagem recusou a credencial do servidor",
    "rate_limited": "o serviço de linguagem está no limite de uso",
    "upstream_error": "o serviço de linguagem respondeu com erro",
    "malformed": "o serviço de linguagem mandou uma resposta inválida",
    "timeout": "o serviço de linguagem demorou demais para responder",
    "interrupted": "a resposta do serviço de linguagem parou no meio",
}


def fallback_note(outcome: str) -> str:
    reason = NOTES.get(outcome, "o serviço de linguagem falhou")
    return f"(Nota: {reason}; esta é a resposta automática, calculada a partir dos dados.)"


@attrs.define
class Voiced:
    """``agent`` answers, ``model`` words it; ``history``: the model sees earlier turns."""

    agent: Grounded
    model: ChatModel
    history: bool = False
    agent_id: str = attrs.field(init=False)
    agent_name: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.agent_id, self.agent_name = self.agent.agent_id, self.agent.agent_name

    @property
    def engine(self) -> Any:
        """The wrapped agent's engine (the router wires Drummond's data origin from it)."""
        return getattr(self.agent, "engine", None)

    def reply(self, request: AgentRequest) -> VoicedReply:
        return VoicedReply(self, request)


@attrs.define
class VoicedReply:
    voiced: Voiced
    request: AgentRequest
    suggested_actions: list[str] = attrs.field(factory=list)
    investigation_id: str | None = None
    token_stream: bool = True  # tiny deltas: the relay merges them
    outcome: str | None = None  # the model's, once the reply ended (None: not asked)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[str]:
        grounding: Grounding = await self.voiced.agent.ground(self.request)
        self.suggested_actions = list(grounding.suggested_actions)
        self.investigation_id = grounding.investigation_id
        if grounding.facts is None:  # a refusal or a "not found": nothing for a model to phrase
            yield grounding.answer
            return
        prompt = messages(self.voiced.agent_name, grounding, self.request, history=self.voiced.history)
        sent = False
        try:
            async with aclosing(self.voiced.model.stream(prompt)) as deltas:
                async for delta in deltas:
                    sent = True
                    yield delta
            self.outcome = "completed"
        except ModelFailure as failure:
            self.outcome = failure.outcome
            note = fallback_note(failure.outcome)
            yield f"\n\n{note}\n\n{grounding.answer}" if sent else f"{grounding.answer}\n\n{note}"
