"""The agents that work on data: Zumbi investigates, Anita analyses, Tiradentes reports,
Abaporu tells how investigations are going. Each streams its answer like Drummond."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import attrs
import orjson
import trio

from ..auth import may_see_investigation
from ..investigations.analysis import answer_question
from ..investigations.bodies import BODIES, closest_names
from ..investigations.engine import EngineBusy, InvestigationEngine
from ..investigations.model import Contract, Investigation, InvestigationStatus
from ..investigations.money import format_brl
from ..investigations.scope import Filters
from .base import AgentRequest, StreamedReply, split_chunks
from .intent import parse_intent


def _streamed(compose: Callable[[], Awaitable[str]], delay: float, actions: list[str]) -> StreamedReply:
    """An answer composed when the reply starts streaming (so ``cancel`` stops that too)."""

    async def chunks() -> AsyncIterator[str]:
        async for chunk in _stream(await compose(), delay):
            yield chunk

    return StreamedReply(chunks(), suggested_actions=actions)


async def _stream(text: str, delay: float) -> AsyncIterator[str]:
    for n, chunk in enumerate(split_chunks(text)):
        if n and delay > 0:
            await trio.sleep(delay)
        yield chunk


@attrs.define
class Zumbi:
    """Starts an investigation; the session is subscribed to it when the reply ends."""

    engine: InvestigationEngine
    chunk_delay: float = 0.0
    agent_id: str = "zumbi"
    agent_name: str = "Zumbi dos Palmares"

    def reply(self, request: AgentRequest) -> _InvestigationReply:
        return _InvestigationReply(self, request)


@attrs.define
class _InvestigationReply:
    """Starting the investigation is part of streaming the reply (so cancel stops it)."""

    zumbi: Zumbi
    request: AgentRequest
    suggested_actions: list[str] = attrs.field(factory=list)
    investigation_id: str | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[str]:
        filters = parse_intent(self.request.message).filters
        principal = self.request.principal
        refusal = await _scope_refusal(self.zumbi.engine, filters)
        if refusal is not None:
            text, names = refusal
            self.suggested_actions = [f"Investigar contratos do {name}" for name in names]
            async for chunk in _stream(text, self.zumbi.chunk_delay):
                yield chunk
            return
        try:
            record = await self.zumbi.engine.start(filters, principal.owner_key, public=self.request.public)
        except EngineBusy:
            self.suggested_actions = ["Qual o status das investigações?"]
            busy = "Há muitas investigações em andamento agora. Tente de novo em alguns minutos."
            async for chunk in _stream(busy, self.zumbi.chunk_delay):
                yield chunk
            return
        self.investigation_id = record.id
        self.suggested_actions = [
            f"Qual o status da investigação {record.id}?",
            f"Gerar relatório da investigação {record.id}",
            "Quais os maiores fornecedores do Ministério da Saúde?",
        ]
        text = (
            f"Abri a investigação {record.id} sobre {filters.describe()}. "
            "Vou cruzar preços com contratos semelhantes, procurar concentração de fornecedores, "
            "picos de gastos, contratos duplicados, fracionamento de despesas e aditivos fora do comum. "
            "Você verá o progresso e cada anomalia aqui, em tempo real."
        )
        try:
            async for chunk in _stream(text, self.zumbi.chunk_delay):
                yield chunk
        except trio.Cancelled:  # the citizen cancelled the reply: stop what it started
            self.zumbi.engine.cancel(record.id)
            raise


async def _scope_refusal(engine: InvestigationEngine, filters: Filters) -> tuple[str, list[str]] | None:
    """Why not to start, with the closest names, when the scope names a body we do not know
    or one that matches no contract: never investigate everything in its place, and never
    report "risco 0,0" for a typo."""
    if getattr(engine, "source", None) is not None:  # live data: the source finds the body, or fails saying why
        return None
    if filters.unknown is not None and filters.agency is None:
        known = [b.name for b in BODIES]
        if engine.ready.is_set():
            known += [c.agency for c in engine.dataset]
        names = closest_names(filters.unknown, known)
        return _no_match(f"“{filters.unknown}”", names), names
    if (filters.agency is None and filters.ug is None) or not engine.ready.is_set():
        return None
    if await engine.compute(_any_match, filters, engine.dataset):
        return None
    typed = filters.agency or f"UG {filters.ug}"
    names = closest_names(typed, {c.agency for c in engine.dataset}) if filters.agency else []
    in_data = await engine.compute(_any_match, Filters(agency=filters.agency, ug=filters.ug), engine.dataset)
    if in_data:  # the body is there, the year or minimum value leaves nothing
        return (f"Nenhum contrato de {filters.describe()} nos dados carregados. "
                "Tente outro ano ou um valor mínimo menor."), [filters.agency or typed]
    return _no_match(typed, names), names


def _any_match(filters: Filters, contracts: Sequence[Contract]) -> bool:
    return any(filters.matches(c) for c in contracts)


def _no_match(typed: str, names: list[str]) -> str:
    head = f"Não encontrei contratos de {typed} nos dados carregados, então não abri a investigação."
    if not names:
        return head + " Diga o nome do órgão como aparece no Portal da Transparência, a sigla ou o código SIAFI."
    options = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " ou " + names[-1]
    return f"{head} Você quis dizer {options}?"


@attrs.define
class Anita:
    """Answers data questions from the dataset with real figures."""

    engine: InvestigationEngine
    chunk_delay: float = 0.0
    agent_id: str = "anita"
    agent_name: str = "Anita Garibaldi"

    def reply(self, request: AgentRequest) -> StreamedReply:
        filters = parse_intent(request.message).filters
        agency = filters.agency or "Ministério da Saúde"
        actions = [f"Investigar contratos do {agency}", "O que é sobrepreço?"]
        return _streamed(lambda: self._compose(filters), self.chunk_delay, actions)

    async def _compose(self, filters: Filters) -> str:
        if not self.engine.ready.is_set():
            return "Ainda estou carregando os contratos. Tente de novo em alguns segundos."
        if filters.unknown is not None and filters.agency is None:  # not the whole dataset
            known = [b.name for b in BODIES] + [c.agency for c in self.engine.dataset]
            names = closest_names(filters.unknown, known)
            guess = f" Você quis dizer {' ou '.join(names)}?" if names else ""
            return f"Não reconheci o órgão “{filters.unknown}” nos dados carregados.{guess}"
        answer = await self.engine.compute(answer_question, filters, self.engine.dataset)
        if getattr(self.engine, "data_origin", "") == "sample":
            answer = ("Atenção: estes números vêm da amostra sintética de demonstração, não de "
                      "dados reais do Portal da Transparência. " + answer)
        return answer


@attrs.define
class Tiradentes:
    """Summarises the report of an investigation the user names (or the latest one)."""

    engine: InvestigationEngine
    chunk_delay: float = 0.0
    agent_id: str = "tiradentes"
    agent_name: str = "Tiradentes"

    def reply(self, request: AgentRequest) -> StreamedReply:
        actions = ["Investigar contratos do Ministério da Educação"]
        return _streamed(lambda: self._compose(request), self.chunk_delay, actions)

    async def _compose(self, request: AgentRequest) -> str:
        record = await _pick(self.engine, request)
        if record is None:
            return "Ainda não há investigação para relatar. Peça, por exemplo: “Investigar contratos do Ministério da Saúde”."
        if record.status is not InvestigationStatus.COMPLETED:
            return f"A investigação {record.id} ainda está {record.status.label} ({record.progress}%). O relatório sai quando ela terminar."
        stored = await self.engine.report(record.id)
        summary = orjson.loads(stored.json)["summary"] if stored else dict(record.summary or {})
        return (
            f"Relatório da investigação {record.id} ({record.scope}): {summary.get('total_records', 0)} contratos analisados, "
            f"{summary.get('anomalies_found', 0)} anomalias, {format_brl(float(summary.get('suspicious_value', 0)))} em contratos suspeitos "
            f"de um total de {format_brl(float(summary.get('total_value', 0)))}. Risco {summary.get('risk_score', 0)} de 10. "
            f"O relatório completo está em /api/v1/investigations/{record.id}/report?format=markdown."
        )


@attrs.define
class Abaporu:
    """Tells the status of an investigation the user names (or the latest visible one)."""

    engine: InvestigationEngine
    chunk_delay: float = 0.0
    agent_id: str = "abaporu"
    agent_name: str = "Abaporu"

    def reply(self, request: AgentRequest) -> StreamedReply:
        return _streamed(lambda: self._compose(request), self.chunk_delay, ["Gerar relatório"])

    async def _compose(self, request: AgentRequest) -> str:
        record = await _pick(self.engine, request)
        if record is None:
            return "Não encontrei investigações em andamento. Quer começar uma? Diga, por exemplo: “Investigar contratos do Ministério da Defesa”."
        text = (
            f"A investigação {record.id} ({record.scope}) está {record.status.label}: "
            f"{record.progress}% concluída, {record.records_processed} contratos analisados e "
            f"{record.anomalies_detected} anomalias encontradas."
        )
        return f"{text} Motivo: {record.reason}" if record.reason else text


async def _pick(engine: InvestigationEngine, request: AgentRequest) -> Investigation | None:
    """The investigation named in the message, or the newest one this user may see."""
    wanted = parse_intent(request.message).investigation_id
    visible = [
        r for r in await engine.listing()
        if may_see_investigation(request.principal, r.owner_key, r.public)
    ]
    if wanted is not None:
        return next((r for r in visible if r.id == wanted), None)
    return visible[-1] if visible else None
