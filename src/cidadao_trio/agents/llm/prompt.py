"""What a language model is told: Portuguese instructions, the figures code computed, and
(for Drummond) the session's recent turns. The model phrases; it never computes."""

from __future__ import annotations

from collections.abc import Sequence

from ..base import AgentRequest, Exchange, Grounding
from .client import Message

__all__ = ["INSTRUCTIONS", "messages"]

INSTRUCTIONS = (
    "Você é {agent_name}, agente do Cidadão.AI, um serviço que ajuda cidadãos brasileiros a "
    "entender os gastos públicos federais. Regras:\n"
    "1. Responda sempre em português do Brasil, com clareza e em poucas frases (no máximo três "
    "parágrafos curtos). Se a pergunta vier em outro idioma, diga que responde em português.\n"
    "2. Use somente os números, nomes, datas e fatos do bloco DADOS, que o sistema calculou. "
    "Não invente nem estime valores, contratos, empresas, investigações ou leis.\n"
    "3. Se os DADOS não respondem à pergunta, diga isso com franqueza e sugira uma pergunta que "
    "o Cidadão.AI sabe responder.\n"
    "4. Se os DADOS dizem que vêm da amostra sintética de demonstração, avise que não são dados "
    "reais; nunca os apresente como dados reais do Portal da Transparência.\n"
    "5. Uma anomalia é um sinal para verificação, não uma prova de irregularidade.\n"
)


def _history(exchanges: Sequence[Exchange]) -> list[Message]:
    turns: list[Message] = []
    for exchange in exchanges:
        turns.append({"role": "user", "content": exchange.question})
        turns.append({"role": "assistant", "content": exchange.answer})
    return turns


def messages(agent_name: str, grounding: Grounding, request: AgentRequest, *, history: bool) -> list[Message]:
    """System instructions with the DADOS block, earlier turns (bounded), the question."""
    system = INSTRUCTIONS.format(agent_name=agent_name) + f"\nDADOS:\n{grounding.facts or '(nenhum)'}"
    earlier = _history(request.history) if history else []
    return [{"role": "system", "content": system}, *earlier, {"role": "user", "content": request.message}]
