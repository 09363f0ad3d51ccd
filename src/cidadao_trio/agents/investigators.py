"""The agents that work on data: Zumbi investigates, Anita analyses, Tiradentes reports,
Abaporu tells how investigations are going. Each streams its answer like Drummond."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

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
from ..portuguese import plural
from .base import AgentRequest, GroundedReply, Grounding, grounded_reply, split_chunks
from .figures import agency_ranking, outside_answer, supplier_answer, supplier_ranking
from .intent import Intent


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
        intent = self.request.intent
        filters = intent.filters
        principal = self.request.principal
        refusal = await _scope_refusal(self.zumbi.engine, filters)
        if intent.outside is not None and filters.agency is None and filters.ug is None:
            refusal = outside_answer(intent.outside, self.zumbi.engine.dataset), []
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

    def reply(self, request: AgentRequest) -> GroundedReply:
        return grounded_reply(self, request, self.chunk_delay)

    async def ground(self, request: AgentRequest) -> Grounding:
        intent = request.intent
        agency = intent.filters.agency or "Ministério da Saúde"
        actions = (f"Investigar contratos do {agency}", "O que é sobrepreço?")
        answer, grounded = await self._compose(intent)
        return Grounding(answer, answer if grounded else None, actions)

    async def _compose(self, intent: Intent) -> tuple[str, bool]:
        """The answer, and whether it carries figures (refusals have none to phrase)."""
        filters = intent.filters
        if not self.engine.ready.is_set():
            return "Ainda estou carregando os contratos. Tente de novo em alguns segundos.", False
        dataset = self.engine.dataset
        if intent.outside is not None:
            return await self.engine.compute(outside_answer, intent.outside, dataset), False
        if filters.unknown is not None and filters.agency is None and intent.ranking != "agencies":
            known = [b.name for b in BODIES] + [c.agency for c in dataset]  # not the whole dataset
            names = closest_names(filters.unknown, known)
            guess = f" Você quis dizer {' ou '.join(names)}?" if names else ""
            return f"Não reconheci o órgão “{filters.unknown}” nos dados carregados.{guess}", False
        if intent.supplier is not None:
            answer = await self.engine.compute(supplier_answer, intent.supplier, filters, dataset)
        elif intent.ranking == "agencies":
            answer = await self.engine.compute(agency_ranking, filters, dataset, intent.position)
        elif intent.ranking == "suppliers":
            answer = await self.engine.compute(supplier_ranking, filters, dataset, intent.position)
        else:
            answer = await self.engine.compute(answer_question, filters, dataset)
        if getattr(self.engine, "data_origin", "") == "sample":
            answer = (SAMPLE_WARNING + " " + answer)
        return answer, True


SAMPLE_WARNING = ("Atenção: estes números vêm da amostra sintética de demonstração, não de "
                  "dados reais do Portal da Transparência.")  # fmt: skip


@attrs.define
class Tiradentes:
    """Summarises the report of an investigation the user names (or the session's latest),
    or lists its anomalies when that is what was asked."""

    engine: InvestigationEngine
    chunk_delay: float = 0.0
    agent_id: str = "tiradentes"
    agent_name: str = "Tiradentes"

    def reply(self, request: AgentRequest) -> GroundedReply:
        return grounded_reply(self, request, self.chunk_delay)

    async def ground(self, request: AgentRequest) -> Grounding:
        actions = ("Investigar contratos do Ministério da Educação", "O que significa a pontuação de risco?")
        record, missing = await _pick(self.engine, request)
        if record is None:
            return Grounding(missing or _NOTHING_TO_REPORT, None, actions)
        stored = await self.engine.report(record.id) if record.status is InvestigationStatus.COMPLETED else None
        report = orjson.loads(stored.json) if stored else {}
        if request.intent.about_anomalies:
            answer = _anomalies_answer(record, report)
        elif record.status is not InvestigationStatus.COMPLETED:
            answer = (f"A investigação {record.id} ainda está {record.status.label} ({record.progress}%). "
                      "O relatório sai quando ela terminar.")  # fmt: skip
        else:
            summary = report.get("summary") or dict(record.summary or {})
            answer = _report_answer(record, summary)
        facts = answer
        if report.get("data_origin") == "sample" or getattr(self.engine, "data_origin", "") == "sample":
            facts = SAMPLE_WARNING + " " + answer
        return Grounding(answer, facts, actions + (f"Quais as anomalias da investigação {record.id}?",))


def _report_answer(record: Investigation, summary: Mapping[str, Any]) -> str:
    suspicious, total = float(summary.get("suspicious_value", 0)), float(summary.get("total_value", 0))
    return (
        f"Relatório da investigação {record.id} ({record.scope}): {summary.get('total_records', 0)} contratos "
        f"analisados, {summary.get('anomalies_found', 0)} anomalias, {format_brl(suspicious)} em contratos "
        f"suspeitos de um total de {format_brl(total)}. Risco {summary.get('risk_score', 0)} de 10. "
        f"O relatório completo está em /api/v1/investigations/{record.id}/report?format=markdown."
    )


_NOTHING_TO_REPORT = ("Esta conversa ainda não abriu nem acompanha nenhuma investigação, então não há "
                      "relatório para mostrar. Peça, por exemplo: “Investigar contratos do Ministério da Saúde”, "
                      "ou diga o número de uma investigação (INV-ano-número).")  # fmt: skip
_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
_SEVERITY_LABEL = {"critical": "crítica", "high": "alta", "medium": "média", "low": "baixa"}


def _anomalies_answer(record: Investigation, report: Mapping[str, Any]) -> str:
    """The investigation's anomalies, gravest first (the report's list; the count while it runs)."""
    if record.status is not InvestigationStatus.COMPLETED:
        return (f"A investigação {record.id} ainda está {record.status.label} ({record.progress}%) e encontrou "
                f"{plural(record.anomalies_detected, 'anomalia', 'anomalias')} até agora. Acompanhe-a para ver "
                "cada uma assim que aparecer, ou pergunte de novo quando terminar.")  # fmt: skip
    anomalies = sorted(report.get("anomalies") or (), key=lambda a: (_SEVERITY_ORDER.get(str(a.get("severity")), 9),
                                                                     -float(a.get("confidence") or 0)))  # fmt: skip
    if not anomalies:
        return f"A investigação {record.id} ({record.scope}) terminou sem encontrar anomalias."
    shown = "; ".join(
        f"{n}. ({_SEVERITY_LABEL.get(str(a.get('severity')), '?')}) {str(a.get('description', '')).rstrip('. ')}"
        for n, a in enumerate(anomalies[:5], 1)
    )
    more = f" Há mais {len(anomalies) - 5} no relatório completo." if len(anomalies) > 5 else ""
    return (f"A investigação {record.id} ({record.scope}) encontrou "
            f"{plural(len(anomalies), 'anomalia', 'anomalias')}. As mais graves: {shown}.{more} "
            f"Detalhes em /api/v1/investigations/{record.id}/report?format=markdown. "
            "Uma anomalia é um sinal para verificação, não uma prova.")  # fmt: skip


@attrs.define
class Abaporu:
    """Tells the status of an investigation the user names (or the session's latest)."""

    engine: InvestigationEngine
    chunk_delay: float = 0.0
    agent_id: str = "abaporu"
    agent_name: str = "Abaporu"

    def reply(self, request: AgentRequest) -> GroundedReply:
        return grounded_reply(self, request, self.chunk_delay)

    async def ground(self, request: AgentRequest) -> Grounding:
        record, missing = await _pick(self.engine, request)
        if record is None:
            text = missing or ("Esta conversa ainda não abriu nem acompanha nenhuma investigação. Quer começar uma? "
                               "Diga, por exemplo: “Investigar contratos do Ministério da Defesa”.")  # fmt: skip
            return Grounding(text, None, ("Investigar contratos do Ministério da Defesa",))
        text = (
            f"A investigação {record.id} ({record.scope}) está {record.status.label}: "
            f"{record.progress}% concluída, {record.records_processed} contratos analisados e "
            f"{record.anomalies_detected} anomalias encontradas."
        )
        text = f"{text} Motivo: {record.reason}" if record.reason else text
        actions = (f"Gerar relatório da investigação {record.id}", f"Quais as anomalias da investigação {record.id}?")
        return Grounding(text, text, actions)


async def _pick(engine: InvestigationEngine, request: AgentRequest) -> tuple[Investigation | None, str | None]:
    """The investigation named in the message (if this user may see it), else the newest one
    this session follows; with None, why not, in Portuguese. Another session's investigation
    is never picked unasked: "Gerar relatório" in a new session has nothing to report."""
    wanted = request.intent.investigation_id
    visible = [
        r for r in await engine.listing()
        if may_see_investigation(request.principal, r.owner_key, r.public)
    ]
    own = [r for r in visible if r.id in request.followed]
    if wanted is None:
        return (own[-1] if own else None), None
    found = next((r for r in visible if r.id == wanted), None)
    if found is not None:
        return found, None
    text = f"Não encontrei a investigação {wanted} entre as que você pode ver."
    if own:
        text += f" As desta conversa: {', '.join(r.id for r in own[-5:])}."
    elif visible:
        text += (f" Há {plural(len(visible), 'investigação visível', 'investigações visíveis')}; a mais "
                 f"recente é a {visible[-1].id}.")  # fmt: skip
    return None, text
