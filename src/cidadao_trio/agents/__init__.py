"""Who answers a chat: the agent interface and the agents themselves."""

from .base import Agent, AgentReply, AgentRequest, StreamedReply, split_chunks
from .drummond import FALLBACK, Drummond, Topic, compose_answer, match_topic

__all__ = [
    "FALLBACK",
    "Agent",
    "AgentReply",
    "AgentRequest",
    "Drummond",
    "StreamedReply",
    "Topic",
    "compose_answer",
    "match_topic",
    "split_chunks",
]
