"""Drummond: the conversational agent of Cidadão.AI.

Rule-based on purpose: answers are predictable, instant, cost nothing and can be tested
word by word. Topics are tried in order, so the more specific ones come first (``"oi,
o que é sobrepreço?"`` is a question about sobrepreço, not a greeting).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import attrs
import trio

from ..portuguese import normalize
from .base import AgentRequest, Grounding, StreamedReply, split_chunks

__all__ = ["FALLBACK", "Drummond", "Topic", "compose_answer", "match_topic"]


@attrs.frozen
class Topic:
    """One thing a citizen may ask Drummond about, the patterns that recognize it and his
    answer (unlike ``intent.Intent``, which picks the agent that answers a message)."""

    name: str
    patterns: tuple[re.Pattern[str], ...]
    answer: str
    suggested_actions: tuple[str, ...]

    def matches(self, normalized: str) -> bool:
        return any(p.search(normalized) for p in self.patterns)


def _topic(name: str, patterns: list[str], answer: str, actions: list[str]) -> Topic:
    return Topic(name, tuple(re.compile(p) for p in patterns), answer, tuple(actions))


_EXAMPLE = "Investigar contratos do Ministério da Saúde"
_AGENTS_Q = "Quais agentes existem?"
_ANOMALY_Q = "O que é uma anomalia?"
_OVERPRICE_Q = "O que é sobrepreço?"
_SPLITTING_Q = "O que é fracionamento?"

_TOPICS: tuple[Topic, ...] = (
    _topic(
        "denounce",
        [r"\bdenunci", r"\bfala ?br\b", r"\bouvidoria\b",
         r"\b(reportar|comunicar|informar|avisar|notificar)\b.*\b(irregular|fraud|corrupc|desvio|ilegal)",
         r"\bonde (posso |devo |eu )?(reclamar|registrar|comunicar)\b"],
        "Para denunciar uma irregularidade com dinheiro federal, use a plataforma Fala.BR "
        "(falabr.cgu.gov.br), da Controladoria-Geral da União (CGU): ela aceita denúncias "
        "identificadas ou anônimas e encaminha ao órgão responsável. O Tribunal de Contas da "
        "União (TCU) recebe denúncias sobre contratos e licitações pela sua Ouvidoria "
        "(portal.tcu.gov.br). Se houver indício de crime, como fraude ou corrupção, procure o "
        "Ministério Público Federal (mpf.mp.br, na opção de denúncia). Descreva o contrato, o "
        "órgão, as datas e os valores, e anexe o relatório da investigação se tiver um. "
        "Lembre que uma anomalia apontada aqui é um sinal para verificação, não uma prova.",
        ["O que é uma anomalia?", _EXAMPLE, "Gerar relatório"],
    ),
    _topic(
        "risk_score",
        [r"\b(pontuacao|nota|indice|score|escore|grau|nivel) de risco\b", r"\brisco (de )?\d",
         r"\brisk score\b"],
        "A pontuação de risco vai de 0 a 10 e resume uma investigação. Metade dela mede o "
        "dinheiro envolvido: quanto do valor dos contratos está em contratos com anomalias, "
        "pesando mais as graves. A outra metade mede a densidade: quantas anomalias, pelo peso "
        "da gravidade, aparecem a cada 100 contratos. Até 3 o risco é baixo, de 3 a 6 moderado, "
        "de 6 a 8 alto e a partir de 8 crítico.{reading} A pontuação não é prova de "
        "irregularidade: indica onde olhar primeiro.",
        ["O que é uma anomalia?", "Gerar relatório", _EXAMPLE],
    ),
    _topic(
        "agents",
        [r"\bagentes?\b", r"\bzumbi\b", r"\banita\b", r"\btiradentes\b", r"\babaporu\b",
         r"\bequipe\b"],
        "O Cidadão.AI trabalha com uma equipe de agentes, cada um com um papel. "
        "Zumbi dos Palmares procura anomalias nos contratos, Anita Garibaldi analisa "
        "padrões nos gastos e Tiradentes escreve os relatórios. Abaporu informa o "
        "andamento das investigações, e eu, Drummond, converso com você e explico tudo "
        "pelo caminho.",
        [_EXAMPLE, _ANOMALY_Q, "Como investigar?"],
    ),
    _topic(
        "investigate",
        [r"\binvestig", r"\bfiscaliz", r"\bauditar\b", r"\bapurar\b"],
        "Para começar uma investigação, basta me dizer o que você quer analisar, por "
        f"exemplo: “{_EXAMPLE}”. O Zumbi dos Palmares examina os contratos em busca de "
        "anomalias, e você acompanha o progresso em tempo real. No fim, o Tiradentes "
        "prepara um relatório com tudo o que foi encontrado.",
        [_EXAMPLE, "Investigar contratos do Ministério da Educação", _ANOMALY_Q],
    ),
    _topic(
        "overpricing",
        [r"\bsobreprec", r"\bsuperfatur", r"\bpreco (muito )?(acima|alto|caro)"],
        "Sobrepreço acontece quando o governo paga por um produto ou serviço bem mais do "
        "que o preço de mercado, ou do que outros órgãos pagam pela mesma coisa. Um "
        "exemplo é um contrato com valor três vezes maior que a média de contratos "
        "parecidos. O Zumbi dos Palmares compara valores para apontar esses casos, que "
        "depois precisam ser verificados.",
        [_SPLITTING_Q, _EXAMPLE, _ANOMALY_Q],
    ),
    _topic(
        "splitting",
        [r"\bfracion", r"\bdividir (a |as )?compras?\b"],
        "Fracionamento é dividir uma compra grande em várias compras menores para ficar "
        "abaixo do valor que exige licitação. Assim o órgão contrata sem concorrência, o "
        "que a lei proíbe quando serve para fugir das regras. Um sinal típico são vários "
        "contratos parecidos, com o mesmo fornecedor, em poucos dias.",
        [_OVERPRICE_Q, "Investigar contratos do Ministério da Educação", _AGENTS_Q],
    ),
    _topic(
        "anomaly",
        [r"\banomal", r"\birregularidade", r"\bsuspeit"],
        "Uma anomalia é algo fora do padrão em um gasto público, que merece um olhar mais "
        "atento. Pode ser um preço muito acima da média, uma compra dividida para fugir "
        "da licitação ou um fornecedor que ganha contratos demais. Anomalia não é prova "
        "de irregularidade: é um sinal de alerta que precisa ser verificado.",
        [_OVERPRICE_Q, _SPLITTING_Q, _EXAMPLE],
    ),
    _topic(
        "privacy",
        [r"\bprivacidade\b", r"\blgpd\b", r"\bdados pessoais\b",
         r"\bmeus dados\b", r"\bseguranca\b", r"\bseguros?\b"],
        "Sua privacidade importa. As investigações usam apenas dados públicos sobre os "
        "gastos do governo, e você não precisa informar dados pessoais para conversar "
        "comigo. As mensagens ficam guardadas na sua sessão para que a conversa continue "
        "se a conexão cair, por isso evite compartilhar informações pessoais aqui.",
        ["De onde vêm os dados?", "Como funciona?", _EXAMPLE],
    ),
    _topic(
        "data_source",
        [r"\bfontes?\b", r"\bde onde\b", r"\bportal da transparencia\b", r"\bdados\b",
         r"\borigem\b", r"\breais\b", r"\bverdadeir", r"\bsintetic", r"\bamostra\b",
         r"\bficticio"],
        "Os dados vêm do Portal da Transparência do Governo Federal, mantido pela "
        "Controladoria-Geral da União (CGU). São informações públicas sobre contratos, "
        "licitações, convênios e despesas. O Cidadão.AI organiza e analisa esses dados "
        "para facilitar a sua fiscalização.",
        [_EXAMPLE, _ANOMALY_Q, "Como investigar?"],
    ),
    _topic(
        "help",
        [r"\bajud", r"\bsocorro\b", r"\bo que (voce|vc|tu) (faz|pode|sabe)",
         r"\bcomo (isso |voce |vc )?funciona", r"\bquem (e|es) (voce|vc|tu)\b",
         r"\bo que e (o )?cidadao ai\b", r"\bcomo (usar|uso|comeco)\b"],
        "Eu sou o Drummond e converso com você sobre os gastos públicos do governo "
        "federal. Junto com os outros agentes do Cidadão.AI, posso investigar contratos, "
        "encontrar anomalias como sobrepreço e fracionamento e preparar relatórios "
        f"claros. Para começar, escreva algo como “{_EXAMPLE}” e acompanhe a análise em "
        "tempo real.",
        [_EXAMPLE, _AGENTS_Q, "De onde vêm os dados?"],
    ),
    _topic(
        "thanks",
        [r"\bobrigad[oa]s?\b", r"\bbrigad[oa]\b", r"\bvaleu\b", r"\bagradec", r"\bgrat[oa]\b"],
        "Por nada! Fico feliz em ajudar. Acompanhar os gastos públicos é um direito de "
        "todo cidadão, e pode contar comigo sempre que precisar.",
        [_EXAMPLE, _OVERPRICE_Q, _AGENTS_Q],
    ),
    _topic(
        "goodbye",
        [r"\btchau\b", r"\badeus\b", r"\bate (logo|mais|breve|amanha|a proxima)\b",
         r"\bfalou\b", r"\bflw\b"],
        "Até logo! Foi um prazer conversar com você. Volte sempre que quiser acompanhar "
        "como o dinheiro público está sendo gasto.",
        [_EXAMPLE, _AGENTS_Q],
    ),
    _topic(
        "greeting",
        [r"\bola\b", r"\boi+\b", r"\bbom dia\b", r"\bboa tarde\b", r"\bboa noite\b",
         r"\be ai\b", r"\bsalve\b", r"\bhello\b"],
        "{salutation} Eu sou o Drummond, o agente de conversa do Cidadão.AI. Estou aqui "
        "para ajudar você a entender como o dinheiro público é gasto. Quer investigar os "
        "contratos de algum órgão ou conhecer os nossos agentes?",
        [_EXAMPLE, _AGENTS_Q, "Como funciona?"],
    ),
)

FALLBACK = _topic(
    "fallback",
    [],
    "Ainda não sei responder a isso, mas posso ajudar você com os gastos públicos. Você "
    f"pode pedir uma investigação, como “{_EXAMPLE}”, perguntar o que é sobrepreço ou "
    "fracionamento, ou conhecer os agentes do Cidadão.AI. Por onde quer começar?",
    [_EXAMPLE, _OVERPRICE_Q, _AGENTS_Q],
)

_SALUTATIONS = (("bom dia", "Bom dia!"), ("boa tarde", "Boa tarde!"), ("boa noite", "Boa noite!"))


def match_topic(message: str) -> Topic:
    """The first topic whose patterns match the message, or ``FALLBACK``."""
    normalized = normalize(message)
    return next((i for i in _TOPICS if i.matches(normalized)), FALLBACK)


SAMPLE_ANSWER = (
    "Não. Agora o servidor está usando a amostra sintética embutida, gerada para "
    "demonstração: os contratos, fornecedores e valores não são dados reais do Portal da "
    "Transparência, e as anomalias foram plantadas para testar os detectores. Para analisar "
    "dados reais, quem opera o servidor precisa iniciá-lo com um arquivo baixado do Portal "
    "da Transparência (opção --dataset)."
)
FILE_ANSWER = (
    "Os dados vêm de um arquivo do Portal da Transparência do Governo Federal, mantido pela "
    "Controladoria-Geral da União (CGU), carregado por quem opera este servidor. São "
    "informações públicas sobre contratos; as anomalias apontadas são sinais para "
    "verificação, não provas."
)
_UNKNOWN_ORIGIN = (
    "O Cidadão.AI trabalha com informações públicas de contratos no formato do Portal da "
    "Transparência do Governo Federal (CGU). Quem opera este servidor escolhe o arquivo; "
    "sem um arquivo, ele usa uma amostra sintética de demonstração."
)


_SCORE = re.compile(r"(?<![\d,.])(\d{1,2})(?:[,.](\d))?(?![\d%])")


def _risk_reading(message: str) -> str:
    """What the score the citizen quoted means ("risco 5,1" is moderate)."""
    m = _SCORE.search(message)
    if m is None:
        return ""
    score = float(f"{m.group(1)}.{m.group(2) or 0}")
    if score > 10:
        return ""
    level = "baixo" if score < 3 else "moderado" if score < 6 else "alto" if score < 8 else "crítico"
    shown = f"{m.group(1)},{m.group(2)}" if m.group(2) else m.group(1)
    return f" Uma pontuação de {shown} está na faixa de risco {level}."


def compose_answer(message: str, data_origin: str | None = None) -> tuple[Topic, str]:
    """The topic and the full answer text; greetings echo the time of day the user used.

    Questions about the data say plainly what the server runs on: the bundled synthetic
    sample is never presented as Portal da Transparência data (``data_origin``: "sample",
    "file", or None/"memory" when unknown).
    """
    topic = match_topic(message)
    if topic.name == "risk_score":
        return topic, topic.answer.format(reading=_risk_reading(message))
    if topic.name == "data_source":
        answer = {"sample": SAMPLE_ANSWER, "file": FILE_ANSWER}.get(data_origin or "", _UNKNOWN_ORIGIN)
        return topic, answer
    if topic.name != "greeting":
        return topic, topic.answer
    normalized = normalize(message)
    salutation = next((s for key, s in _SALUTATIONS if key in normalized), "Olá!")
    return topic, topic.answer.format(salutation=salutation)


@attrs.define
class Drummond:
    """Answers chat in Portuguese about Cidadão.AI; ``chunk_delay`` makes streaming feel live.

    Not frozen: ``Agent`` declares plain (settable) attributes, which a frozen class fails.
    """

    chunk_delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    # Where the server's contracts came from; the router wires it to the engine.
    data_origin: Callable[[], str] | None = None
    agent_id: str = attrs.field(default="drummond", init=False)
    agent_name: str = attrs.field(default="Carlos Drummond de Andrade", init=False)

    def reply(self, request: AgentRequest) -> StreamedReply:
        topic, answer = compose_answer(self._understood(request), self._origin())
        return StreamedReply(
            chunks=self._stream(split_chunks(answer)),
            suggested_actions=list(topic.suggested_actions),
        )

    async def ground(self, request: AgentRequest) -> Grounding:
        """For a language model: the canned answer as reference, what the data are, and the
        recent turns (so "explique melhor" has something to explain)."""
        origin = self._origin()
        topic, answer = compose_answer(self._understood(request), origin)
        origin_text = {"sample": SAMPLE_ANSWER, "file": FILE_ANSWER}.get(origin or "", _UNKNOWN_ORIGIN)
        facts = (
            f"Sobre os dados deste servidor: {origin_text}\n"
            f"Resposta de referência (texto pronto do Drummond para este assunto, “{topic.name}”): {answer}"
        )
        return Grounding(answer, facts, topic.suggested_actions)

    def _origin(self) -> str | None:
        return self.data_origin() if self.data_origin is not None else None

    @staticmethod
    def _understood(request: AgentRequest) -> str:
        """The message as routed: translated from English, or joined to the question it follows."""
        intent = request.intent
        return intent.text if (intent.english or intent.follow_up) and intent.text else request.message

    async def _stream(self, chunks: list[str]) -> AsyncIterator[str]:
        for index, chunk in enumerate(chunks):
            if index and self.chunk_delay > 0:
                await trio.sleep(self.chunk_delay)
            yield chunk
