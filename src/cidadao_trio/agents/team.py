"""The agents a server runs, from its settings: rule-based by default; with
``llm_base_url``, Drummond, Anita, Tiradentes and Abaporu are voiced by a language model
(Zumbi, who starts investigations, keeps his fixed reply)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..config import Settings
from ..investigations.engine import InvestigationEngine
from .drummond import Drummond
from .investigators import Abaporu, Anita, Tiradentes, Zumbi
from .llm import ChatModel, ModelMetrics, ModelSettings, Voiced
from .router import AgentRouter

__all__ = ["API_KEY_VARIABLE", "build_team", "model_settings"]

API_KEY_VARIABLE = "CIDADAO_LLM_API_KEY"  # the key comes from here only, never a flag or file


def model_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> ModelSettings | None:
    """The model client's settings, or None when no model is configured."""
    if not settings.llm_base_url:
        return None
    environ = os.environ if environ is None else environ
    return ModelSettings(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=environ.get(API_KEY_VARIABLE, ""),
        first_token_timeout=settings.llm_timeout,
        max_tokens=settings.llm_max_tokens,
        max_concurrency=settings.llm_max_concurrency,
    )


def build_team(
    engine: InvestigationEngine,
    settings: Settings,
    metrics: ModelMetrics | None = None,
    environ: Mapping[str, str] | None = None,
) -> AgentRouter:
    delay = settings.reply_chunk_delay
    drummond, zumbi = Drummond(chunk_delay=delay), Zumbi(engine, delay)
    anita, tiradentes, abaporu = Anita(engine, delay), Tiradentes(engine, delay), Abaporu(engine, delay)
    configured = model_settings(settings, environ)
    if configured is None:
        return AgentRouter(converse=drummond, investigate=zumbi, analyze=anita, report=tiradentes, status=abaporu)
    model = ChatModel(configured, metrics)
    return AgentRouter(
        converse=Voiced(drummond, model, history=True),
        investigate=zumbi,
        analyze=Voiced(anita, model),
        report=Voiced(tiradentes, model),
        status=Voiced(abaporu, model),
    )
