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
    "find_agency",
    "find_ug",
    "unknown_body",
    "parse_amount",
    "parse_intent",
]

IntentKind = Literal["investigate", "analyze", "report", "status", "converse"]


@attrs.frozen
class Intent:
    """The routing decision for one message."""

    kind: IntentKind
    filters: Filters
    investigation_id: str | None = None  # e.g. "INV-2026-001", when the text names one


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
_NAMED_BODY = re.compile(r"\bministerio\s+(?:(?:da|de|do|das|dos)\s+)?[a-z]+(?:\s+(?:e\s+|da\s+|de\s+|do\s+|das\s+|dos\s+)?[a-z]+){0,3}")
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


def _kind(normalized: str, filters: Filters, investigation_id: str | None) -> IntentKind:
    if _REPORT_REQUEST.search(normalized):
        return "report"
    if _STATUS.search(normalized):
        return "status"
    if _REPORT.search(normalized):
        return "report"
    if filters == Filters() and investigation_id is None and _META_QUESTION.search(normalized):
        return "converse"
    if _INVESTIGATE.search(normalized):
        return "investigate"
    if _ANALYZE.search(normalized) or filters != Filters():
        return "analyze"  # a bare scope ("MEC, 2025") asks for its figures
    return "converse"


def parse_intent(message: str) -> Intent:
    """Route a message: its kind, filters and the investigation it mentions, if any."""
    filters = Filters(
        agency=find_agency(message), year=_year(message), min_value=parse_amount(message),
        ug=find_ug(message), unknown=unknown_body(message),
    )
    investigation_id = _investigation_id(message)
    kind = _kind(normalize(message), filters, investigation_id)
    return Intent(kind=kind, filters=filters, investigation_id=investigation_id)
