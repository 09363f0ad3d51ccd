"""Who answers a chat: the agent interface and the agents themselves."""

from .base import Agent, AgentReply, AgentRequest, StreamedReply, split_chunks
from .drummond import FALLBACK, Drummond, Intent, compose_answer, match_intent

__all__ = [
    "FALLBACK",
    "Agent",
    "AgentReply",
    "AgentRequest",
    "Drummond",
    "Intent",
    "StreamedReply",
    "compose_answer",
    "match_intent",
    "split_chunks",
]
