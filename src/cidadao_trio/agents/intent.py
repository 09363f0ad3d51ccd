"""What a citizen's message asks for: which agent should act, and on which contracts.

Rule-based, like Drummond, so routing is instant, predictable and tested phrase by phrase.
``parse_intent`` decides the kind (investigate, analyze, report, status, converse) and
pulls out the filters a message can carry: an agency (by name, short name, acronym,
current or former official name, or SIAFI code), a management unit ("UG 250005"), a year
and a minimum contract value ("acima de R$ 1 milhão"). A ministry named but not known is
kept as ``Filters.unknown``, so the answer can offer the closest names instead of
investigating everything.

Kinds are tried in an order that lets the specific win over the generic: a request to
*generate* a report, then status questions ("como está a investigação?"), reports,
questions about the system itself ("o que é sobrepreço?", unless they name an agency or
year), investigations, data questions (a bare scope such as "MEC, 2025" counts as one),
and finally plain conversation.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

import attrs

from ..investigations.bodies import BODIES, body_of_code
from ..investigations.scope import Filters
from ..portuguese import fold, normalize

__all__ = [
    "AGENCY_ALIASES",
    "Intent",
    "IntentKind",
    "Ranking",
    "find_agency",
    "find_ug",
    "is_follow_up",
    "parse_amount",
    "parse_intent",
    "unknown_body",
]

IntentKind = Literal["investigate", "analyze", "report", "status", "converse"]


Ranking = Literal["agencies", "suppliers"]


@attrs.frozen
class Intent:
    """The routing decision for one message."""

    kind: IntentKind
    filters: Filters
    investigation_id: str | None = None  # e.g. "INV-2026-001", when the text names one
    ranking: Ranking | None = None  # "which bodies spent most?", "which company got most?"
    position: int | None = None  # "o segundo maior": 2
    supplier: str | None = None  # a company named as typed ("Científica Guará Ltda")
    outside: str | None = None  # a body outside federal contracts ("prefeitura de São Paulo")
    about_anomalies: bool = False  # asks for the anomalies of an investigation
    english: bool = False  # written in English: the answer says it answers in Portuguese
    follow_up: bool = False  # refers to the previous turn ("e em 2024?")
    text: str = attrs.field(default="", eq=False)  # what was understood: translated, joined to the previous question


# --------------------------------------------------------------------------- agencies

# Aliases are written accent-free and lower case; words are joined by any punctuation or
# space. Acronyms and single words that are also everyday Portuguese are left out or
# guarded ("mapa", "trabalho", "ciência" as in "tomar ciência", "energia solar",
# "defesa civil"), so a message is only routed to an agency it really names.
AGENCY_ALIASES: dict[str, tuple[str, ...]] = {
    "Ministério da Saúde": ("saude", "ms", "sus"),
    "Ministério da Educação": ("educacao", "mec"),
    "Ministério da Defesa": (
        "defesa(?![\\W_]+(?:agropecuaria|civil|sanitaria|do consumidor|da concorrencia))",
        "forcas armadas", "exercito", "marinha", "aeronautica",
    ),
    "Ministério da Justiça e Segurança Pública": (
        "justica", "mjsp", "seguranca publica", "policia federal", "policia rodoviaria federal",
        "prf",
    ),
    "Ministério da Fazenda": ("fazenda", "receita federal", "ministerio da economia"),
    "Ministério da Agricultura e Pecuária": (
        "agricultura", "pecuaria", "agropecuaria", "embrapa",
    ),
    "Ministério da Ciência, Tecnologia e Inovação": (
        "ministerio da ciencia", "ciencia e tecnologia", "ciencia tecnologia", "mcti",
    ),
    "Ministério das Cidades": ("ministerio das cidades", "mcid"),
    "Ministério dos Transportes": ("transportes", "dnit"),
    "Ministério do Meio Ambiente e Mudança do Clima": (
        "meio ambiente", "mma", "ibama", "icmbio", "mudanca do clima",
    ),
    "Ministério da Cultura": ("cultura", "minc", "iphan"),
    "Ministério do Desenvolvimento e Assistência Social": (
        "desenvolvimento social", "assistencia social", "mds", "bolsa familia",
        "combate a fome",
    ),
    "Ministério de Minas e Energia": ("minas e energia", "mme"),
    "Ministério das Comunicações": ("comunicacoes", "mcom", "anatel"),
    "Ministério do Trabalho e Emprego": ("ministerio do trabalho", "trabalho e emprego", "mte"),
    "Ministério dos Direitos Humanos e da Cidadania": ("direitos humanos", "mdhc"),
}


def _alias_pattern(alias: str) -> str:
    # "/" counts as part of a word: "Campo Grande/MS" is a state, not the Ministry of Health.
    body = alias.replace(" ", "[\\W_]+")
    return f"(?<![\\w/]){body}(?![\\w/])"


def _canonical_pattern(name: str) -> str:
    return _alias_pattern(normalize(name))


_OFFICIAL_NAMES = {b.name: b.names for b in BODIES}
_AGENCY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (agency, re.compile("|".join(
        [_canonical_pattern(agency)] + [_canonical_pattern(n) for n in _OFFICIAL_NAMES.get(agency, ())]
        + [_alias_pattern(a) for a in aliases]
    )))
    for agency, aliases in AGENCY_ALIASES.items()
)  # fmt: skip
# A SIAFI code said as one ("órgão 36000", "código SIAFI 36000") or a known code alone.
_BODY_CODE = re.compile(r"(?<![\w$.,])(?:(?:orgao|codigo|siafi|cod)\W+(?:siafi\W+)?)?(\d{5})(?![\w.,])")
_UG = re.compile(r"\b(?:ug|unidade gestora)\W+(\d{6})\b")
# "Ministério do Esporte", "Ministério dos Povos Indígenas": a body named, known or not.
_NAMED_BODY = re.compile(
    r"\bministerio\s+(?:(?:da|de|do|das|dos)\s+)?[a-z]+"
    r"(?:\s+(?:e\s+|da\s+|de\s+|do\s+|das\s+|dos\s+)?[a-z]+){0,3}"
)
_NOT_A_NAME = re.compile(r"\s+(?:em|no|na|nos|nas|acima|desde|entre|com|para|de|do|da|e)$")


def find_agency(text: str) -> str | None:
    """The agency the text names first (earliest mention, longest on a tie), by name or by
    a known SIAFI code, or None."""
    folded = fold(text)
    best: tuple[int, int, str] | None = None
    for agency, pattern in _AGENCY_PATTERNS:
        m = pattern.search(folded)
        if m:
            key = (m.start(), -len(m.group()), agency)
            best = key if best is None or key < best else best
    if best is None:
        for m in _BODY_CODE.finditer(_MONEY.sub(" ", folded)):  # "R$ 36000" is money
            body = body_of_code(m.group(1))
            if body is not None:
                return body.name
    return best[2] if best else None


def find_ug(text: str) -> str | None:
    """A management unit named by its code: "UG 250005", "unidade gestora 250005"."""
    m = _UG.search(fold(text))
    return m.group(1) if m else None


def unknown_body(text: str) -> str | None:
    """A ministry the text names that ``find_agency`` does not know ("Ministério do
    Esporte"), as typed (folded), or None."""
    if find_agency(text) is not None:
        return None
    m = _NAMED_BODY.search(normalize(text))
    if m is None:
        return None
    name = m.group()
    while _NOT_A_NAME.search(name):
        name = _NOT_A_NAME.sub("", name)
    return name


# --------------------------------------------------------------------------- amounts

_NUM = r"\d+(?:[.,]\d+)*"
_MULT = r"bilhoes|bilhao|bi|milhoes|milhao|mi|mil|k"
_MONEY = re.compile(
    rf"r\$\s*(?P<n1>{_NUM})(?:\s*(?P<m1>{_MULT})\b)?"
    rf"|(?<![\w.,])(?P<n2>{_NUM})\s*(?P<m2>{_MULT})\b"
    rf"|(?<![\w.,])(?P<n3>{_NUM})\s*reais\b"
)
_MULTIPLIERS = {"k": 1e3, "mil": 1e3, "mi": 1e6, "milhao": 1e6, "milhoes": 1e6,
                "bi": 1e9, "bilhao": 1e9, "bilhoes": 1e9}  # fmt: skip
# The comparator nearest before an amount decides whether it is a lower bound.
_COMPARATOR = re.compile(
    r"(?P<min>\bpelo menos\b|\bno minimo\b|\bacima\b|\bmaior(?:es)?\b|\bsuperior(?:es)?\b"
    r"|\bmais\b|\ba partir\b|>)"
    r"|(?P<max>\babaixo\b|\bmenor(?:es)?\b|\binferior(?:es)?\b|\bate\b|\bno maximo\b"
    r"|\bmenos\b|<)"
)
_THOUSANDS = re.compile(r"\d{1,3}(?:\.\d{3})+")


def _number(raw: str) -> float:
    """Brazilian first: "250.000,00" and "1,5" are read as 250000 and 1.5; "1.5" as 1.5."""
    if "," in raw:
        return float(raw.replace(".", "").replace(",", "."))
    if _THOUSANDS.fullmatch(raw):
        return float(raw.replace(".", ""))
    return float(raw)


def parse_amount(text: str) -> float | None:
    """The first lower-bound amount in the text, in BRL.

    An amount counts when it carries "R$", a multiplier ("mil", "milhão") or "reais"; a bare
    number is a year or a count, never money. Amounts after an upper bound ("até",
    "abaixo de") are skipped: Filters has no maximum, and using one as a minimum would
    invert the question.
    """
    folded = fold(text)
    for m in _MONEY.finditer(folded):
        raw = m.group("n1") or m.group("n2") or m.group("n3")
        mult = m.group("m1") or m.group("m2") or ""
        window = folded[max(0, m.start() - 30) : m.start()]
        comparators = list(_COMPARATOR.finditer(window))
        if comparators and comparators[-1].group("max"):
            continue
        try:
            value = _number(raw.rstrip(".,")) * _MULTIPLIERS.get(mult, 1.0)
        except ValueError:
            continue
        return round(value, 2)
    return None


# --------------------------------------------------------------------------- year and id

_INVESTIGATION_ID = re.compile(r"\binv[-\s]?(\d{4})[-\s]?(\d{1,6})\b", re.IGNORECASE)
_YEAR = re.compile(r"(?<![\d.,$])\b(20\d{2})\b(?![.,]?\d)")


def _investigation_id(text: str) -> str | None:
    m = _INVESTIGATION_ID.search(text)
    return f"INV-{m.group(1)}-{m.group(2)}" if m else None


def _year(text: str) -> int | None:
    """A year 2000-2099, ignoring digits inside amounts and investigation ids."""
    folded = _INVESTIGATION_ID.sub(" ", fold(text))
    folded = _MONEY.sub(" ", folded)
    m = _YEAR.search(folded)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- kinds


def _any(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_ANOMALY_WORDS = (r"(anomal|irregular|fraud|sobreprec|superfatur|fracionament|desvio|suspeit"
                  r"|corrupc|ilegal)")  # fmt: skip
_REPORT_REQUEST = _any(
    r"\b(ger|cri|emit|emiti|fac|faz|produz|elabor|escrev|mont|prepar|quero|preciso|mand|envi)"
    r"\w* (o |um |uma |a |meu |me )?(relatorio|resumo|dossie)",
)
_STATUS = _any(
    r"\bstatus\b", r"\bandamento\b", r"\bprogresso\b",
    r"\bcomo (esta|estao|anda|andam|vai|vao)\b(?! (o|os) (gastos?|contratos?|ministerio))",
    r"\bja (terminou|acabou|concluiu|terminaram|acabaram|(esta|ficou|estao|ficaram) pront)",
    r"\bem que (pe|etapa|fase|ponto)\b", r"\bsituacao da (investigacao|analise)\b",
    r"\bquanto falta\b",
)
_REPORT = _any(
    r"\brelatorios?\b", r"\bdossie\b",
    r"\bresum\w*\b.*\b(investigac|inv\b|apurac|auditori)",
)
_META_QUESTION = re.compile(
    r"^(?:(?:oi+|ola|bom dia|boa tarde|boa noite|drummond)\s+)*"
    r"(?:como (?!esta|anda|vai)|o que (?:e|sao|significa|faz|fazem|voce|vc)\b|oque e\b|que e\b"
    r"|qual (?:e )?a diferenca\b|para que serve|pra que serve|por que\b|porque\b"
    r"|o que (?:o |a )?(?:zumbi|anita|tiradentes|drummond|abaporu|agentes?)\b"
    r"|me explica|explique|explica\b|defina\b|quem (?:e|sao) (?:voce|vc|voces|os agentes)\b)"
)
_INVESTIGATE = _any(
    r"\binvestig\w*", r"\baudit(ar|e|em|ando|oria)\b", r"\bfiscaliz\w*", r"\bapur(ar|e)\b",
    r"\bpente fino\b", r"\bvarredura\b",
    rf"\b(procur|busc|busq|encontr|detect|identific|identifiqu|ach|verific|verifiqu|chec|chequ"
    rf"|analis|rastre|vasculh|cac)"
    rf"\w*\b.*\b{_ANOMALY_WORDS}",
    rf"\b(tem|ha|existe|existem|houve|teve)\b.*\b{_ANOMALY_WORDS}",
)
_ANALYZE = _any(
    r"\bgast(o|os|ou|aram|a|am|ar|ando|ei)?\b", r"\bdespesas?\b", r"\bfornecedor(es)?\b",
    r"\btop\b", r"\branking\b", r"\bquant[oa]s?\b(?! agentes?\b)", r"\bmaior(es)? contratos?\b",
    r"\bvalor(es)? total\b", r"\btotal\b", r"\bpor mes\b", r"\bmes a mes\b", r"\bmensa(l|is)\b",
    r"\bsazonal", r"\banalis\w*", r"\bpadr(ao|oes)\b", r"\bconcentrac", r"\bestatistic",
    r"\bmodalidade", r"\bquem (mais )?(recebeu|ganhou|vendeu|lucrou)",
    r"\bpag(ou|aram|amentos?)\b", r"\bcontratos\b.*\b(do|da|de|dos|das|em|acima|maiores)\b",
)


_DENOUNCE = _any(
    r"\bdenunci\w*", r"\bfala ?br\b", r"\bouvidoria\b",
    rf"\b(reportar|comunicar|informar|avisar|notificar)\b.*\b{_ANOMALY_WORDS}",
    r"\bonde (posso |devo |eu )?(reclamar|registrar|comunicar)\b",
)
_RANK_AGENCIES = _any(
    r"\b(ministerios|orgaos|pastas)\b.*\b(gast\w*|mais|maior(es)?|ranking|contrat\w*|despesas?)\b",
    r"\b(qual|quais|que) (ministerios?|orgaos?|pastas?)\b.*\b(mais|maior)\b",
    r"\branking\b.*\b(ministerios|orgaos)\b",
)
_RANK_SUPPLIERS = _any(
    r"\b(qual|quais|que) (a |as )?(empresas?|fornecedor(es|a|as)?|companhias?)\b.*"
    r"\b(receb\w*|ganh\w*|vend\w*|lucr\w*|mais|maior(es)?)\b",
    r"\bquem (mais )?(recebeu|ganhou|vendeu|lucrou)\b",
    r"\b(maiores|principais) (fornecedores|empresas)\b", r"\btop \d* ?(fornecedores|empresas)\b",
)
_POSITIONS = {"primeiro": 1, "segundo": 2, "terceiro": 3, "quarto": 4, "quinto": 5,
              "1o": 1, "2o": 2, "3o": 3, "4o": 4, "5o": 5}  # fmt: skip
_POSITION = re.compile(r"\b(primeir|segund|terceir|quart|quint|[1-5]o)(?:[oa]s?)?\b")
_OUTSIDE = re.compile(
    r"\b(prefeituras?|prefeit[oa]s?|municipios?|municipal|municipais|camaras? (municipa\w*|de vereadores)"
    r"|vereador\w*|governos? (do estado|estadua\w*|de [a-z]+)|estadua(l|is)|governador\w*"
    r"|assembleias? legislativas?|secretarias? (estadua\w*|municipa\w*|de estado))\b"
)
_OUTSIDE_NAME = re.compile(
    r"(?i)\b(?:a |o |da |do )?((?:prefeitura|munic[ií]pio|c[âa]mara|governo|secretaria|assembleia)"
    r"(?:\s+(?:d[eoa]s?|municipal|estadual|legislativa)?\s*[A-ZÀ-Ú][\wÀ-ú]*){1,4})"
)
_SUPPLIER_SUFFIX = re.compile(
    r"((?:[A-ZÀ-Ú0-9][\wÀ-ú&.\-]*\s+){0,6}[A-ZÀ-Ú0-9][\wÀ-ú&.\-]*\s+"
    r"(?:Ltda|LTDA|S\.?A\.?|S/A|EIRELI|Eireli|ME|EPP)\b\.?)"
)
_SUPPLIER_AFTER = re.compile(
    r"(?i:\b(?:empresa|fornecedora?|firma|companhia)\s+)"
    r"((?:[A-ZÀ-Ú0-9][\wÀ-ú&.\-]*)(?:\s+(?:d[eoa]s?|e|&)?\s*[A-ZÀ-Ú0-9][\wÀ-ú&.\-]*){0,6})"
)
_CNPJ = re.compile(r"\b(\d{2}\.?\d{3}\.?\d{3}/?\d{4}-?\d{2})\b")
_ASKS_ANOMALIES = re.compile(rf"\b(quais|quantas|liste|mostre|mostrar|ver|veja)\b.*\b{_ANOMALY_WORDS}")
_LOOK_FOR = re.compile(r"\b(procur|busc|busqu|investig|encontr|detect|verific|verifiqu|analis)(ar|e|em|a|ue|uem)\b")
_FOLLOW_UP = _any(
    r"^(e|mas e|e quanto|e sobre|e quanto a|tambem|agora)\b",
    r"^(o|a|e o|e a) (segund|terceir|quart|quint|ultim|outr|proxim)",
    r"^(explique|explica|detalhe|detalha|mais detalhes|continue|continua|por que|porque|como assim"
    r"|nao entendi|pode repetir|repita|e dai|resuma|me de mais)\b",
    r"\b(isso|disso|nisso|esse|essa|esses|essas|desse|dessa|desses|dessas|anterior|acima|ele|ela)\b",
)


def _kind(normalized: str, filters: Filters, investigation_id: str | None) -> IntentKind:
    if _REPORT_REQUEST.search(normalized):
        return "report"
    if _STATUS.search(normalized):
        return "status"
    if _REPORT.search(normalized):
        return "report"
    if _DENOUNCE.search(normalized):
        return "converse"  # where to report an irregularity: Drummond knows the channels
    if _ASKS_ANOMALIES.search(normalized) and (investigation_id is not None or filters == Filters()) \
            and not _LOOK_FOR.search(normalized):
        return "report"  # "quais as anomalias da investigação INV-2026-001?"
    if filters == Filters() and investigation_id is None and _META_QUESTION.search(normalized):
        return "converse"
    if _INVESTIGATE.search(normalized):
        return "investigate"
    if investigation_id is not None:
        return "status"  # "e a INV-2026-002?"
    if _ANALYZE.search(normalized) or filters != Filters() or _RANK_AGENCIES.search(normalized) \
            or _RANK_SUPPLIERS.search(normalized):
        return "analyze"  # a bare scope ("MEC, 2025") asks for its figures
    return "converse"


# --------------------------------------------------------------------------- English

# Messages in English are routed through a small vocabulary: enough to understand the
# questions this service answers, never a translation of the reply (always Portuguese).
_ENGLISH_MARKERS = frozenset(
    "the what which who how is are does did do spent spend spending most money contracts "
    "contract ministry ministries show tell please investigate report company companies "
    "supplier suppliers biggest largest government paid received about much many hello hi "
    "thanks thank you your data where from means mean score risk anomalies anomaly".split()
)
_PORTUGUESE_MARKERS = frozenset("de da do que o os as nao e um uma para com no na em quais qual".split())
_ENGLISH_PHRASES: tuple[tuple[str, str], ...] = (
    (r"\b(how (do i|can i|to|should i) )?report (an? |the )?(irregularit\w*|fraud|corruption|wrongdoing)",
     "como denunciar uma irregularidade"),
    (r"\brisk score\b", "pontuacao de risco"), (r"\bministry of health\b", "ministerio da saude"),
    (r"\bministry of education\b", "ministerio da educacao"),
    (r"\bministry of defen[cs]e\b", "ministerio da defesa"),
    (r"\bministry of justice\b", "ministerio da justica"), (r"\bwhat (is|are|does)\b", "o que e"),
    (r"\bwho are you\b", "quem e voce"), (r"\bhow much\b", "quanto"),
    (r"\bwhere does the data come from\b", "de onde vem os dados"),
    (r"\b(hello|hi|hey)\b", "ola"), (r"\bthank(s| you)\b", "obrigado"),
)
_ENGLISH_FILLERS = frozenset({"the", "a", "an", "did", "does", "do", "has", "have"})
_ENGLISH_WORDS = {
    "ministry": "ministerio", "ministries": "ministerios", "health": "saude", "education": "educacao",
    "defense": "defesa", "defence": "defesa", "justice": "justica", "spent": "gastou", "spend": "gasto",
    "spending": "gastos", "most": "mais", "biggest": "maiores", "largest": "maiores", "top": "maiores",
    "supplier": "fornecedor", "suppliers": "fornecedores", "vendor": "fornecedor", "company": "empresa",
    "companies": "empresas", "received": "recebeu", "paid": "pagou", "contracts": "contratos",
    "investigate": "investigar", "audit": "auditar", "investigation": "investigacao", "report": "relatorio",
    "status": "status", "progress": "progresso", "anomalies": "anomalias", "anomaly": "anomalia",
    "irregularities": "irregularidades", "fraud": "fraude", "overpricing": "sobrepreco",
    "overpriced": "sobrepreco", "which": "quais", "help": "ajuda", "data": "dados", "agents": "agentes",
    "total": "total", "bodies": "orgaos", "agencies": "orgaos", "agency": "orgao", "generate": "gerar",
    "money": "dinheiro", "government": "governo", "city": "prefeitura", "municipality": "municipio",
    "state": "estadual", "splitting": "fracionamento",
}


def _english(normalized: str) -> bool:
    words = normalized.split()
    english = {w for w in words if w in _ENGLISH_MARKERS}
    portuguese = {w for w in words if w in _PORTUGUESE_MARKERS}
    return len(english) >= 2 and len(english) > 2 * len(portuguese)


def _from_english(normalized: str) -> str:
    for pattern, portuguese in _ENGLISH_PHRASES:
        normalized = re.sub(pattern, portuguese, normalized)
    return " ".join(_ENGLISH_WORDS.get(w, w) for w in normalized.split() if w not in _ENGLISH_FILLERS)


# --------------------------------------------------------------------------- parts


def _supplier(message: str) -> str | None:
    """A company the message names: by CNPJ, a legal suffix ("... Ltda") or after "empresa"."""
    m = _CNPJ.search(message)
    if m:
        return re.sub(r"\D", "", m.group(1))
    m = _SUPPLIER_SUFFIX.search(message) or _SUPPLIER_AFTER.search(message)
    if m is None:
        return None
    name = re.sub(r"^(?:[Aa]|[Oo]|[Dd][ao]|[Pp]ara|[Àà])\s+", "", m.group(1).strip(" ?.!,"))
    return name if find_agency(name) is None and len(name) > 2 else None


def _outside(message: str, normalized: str) -> str | None:
    outside = _OUTSIDE.search(normalized)
    if outside is None:
        return None
    m = _OUTSIDE_NAME.search(message)
    return m.group(1).strip() if m else outside.group(0)


def _position(normalized: str) -> int | None:
    m = _POSITION.search(normalized)
    if m is None:
        return None
    stem = m.group(1)
    return next((n for key, n in _POSITIONS.items() if key.startswith(stem) or stem.startswith(key)), None)


def _ranking(normalized: str) -> Ranking | None:
    if _RANK_AGENCIES.search(normalized):
        return "agencies"
    if _RANK_SUPPLIERS.search(normalized):
        return "suppliers"
    return None


def _overlay(previous: Filters, current: Filters) -> Filters:
    """The previous question's scope with what the follow-up changes ("e em 2024?")."""
    return Filters(
        agency=current.agency or previous.agency, year=current.year or previous.year,
        min_value=current.min_value or previous.min_value, ug=current.ug or previous.ug,
        unknown=current.unknown if current.agency is None else None,
    )  # fmt: skip


def _single(message: str) -> Intent:
    english = _english(normalize(message))
    understood = _from_english(normalize(message)) if english else message
    normalized = normalize(understood)
    filters = Filters(
        agency=find_agency(understood), year=_year(understood), min_value=parse_amount(understood),
        ug=find_ug(understood), unknown=unknown_body(understood),
    )
    investigation_id = _investigation_id(message)
    outside = _outside(message, normalized) if filters.agency is None and filters.ug is None else None
    return Intent(
        kind=_kind(normalized, filters, investigation_id), filters=filters,
        investigation_id=investigation_id, ranking=_ranking(normalized), position=_position(normalized),
        supplier=_supplier(message), outside=outside, about_anomalies=bool(_ASKS_ANOMALIES.search(normalized)),
        english=english, text=understood,
    )  # fmt: skip


def is_follow_up(message: str) -> bool:
    """A short message that leans on the previous turn ("e em 2024?", "o segundo maior?")."""
    normalized = normalize(message)
    return len(normalized.split()) <= 8 and bool(_FOLLOW_UP.search(normalized))


@functools.lru_cache(maxsize=1024)  # pure; asked several times per turn (router, agent, prompt)
def parse_intent(message: str, previous: str | None = None) -> Intent:
    """Route a message: its kind, filters and the investigation it mentions, if any.

    ``previous`` is the session's last question: a follow-up keeps its kind and scope and
    changes only what it says (a year, a body, "the second one")."""
    intent = _single(message)
    if previous is None or not is_follow_up(message):
        return intent
    before = _single(previous)
    explicit = intent.kind in ("report", "status", "investigate") and intent.kind != before.kind
    return attrs.evolve(
        intent,
        kind=intent.kind if explicit else before.kind,
        filters=_overlay(before.filters, intent.filters),
        investigation_id=intent.investigation_id or before.investigation_id,
        ranking=intent.ranking or before.ranking,
        supplier=intent.supplier or before.supplier,
        outside=intent.outside or (before.outside if intent.filters.agency is None else None),
        about_anomalies=intent.about_anomalies or (before.about_anomalies and not explicit),
        english=intent.english,
        follow_up=True,
        text=f"{before.text} {intent.text}",
    )
