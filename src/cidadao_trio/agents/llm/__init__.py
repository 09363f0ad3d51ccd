"""Language-model answers, opt-in (``--llm-base-url``): an OpenAI-compatible streaming
client and the agents it voices. Without it the rule-based agents answer alone."""

from .client import ChatModel, ModelFailure, ModelMetrics, ModelSettings
from .voiced import NOTES, Voiced, VoicedReply, fallback_note

__all__ = [
    "NOTES",
    "ChatModel",
    "ModelFailure",
    "ModelMetrics",
    "ModelSettings",
    "Voiced",
    "VoicedReply",
    "fallback_note",
]
