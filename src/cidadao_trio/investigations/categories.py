"""The purchase catalogue shared by the sample generator and the portal loader.

Price comparisons only make sense between like purchases, so every contract gets a
coarse category. The sample draws its contracts from this catalogue, and real portal
data is mapped onto the same names by keywords in the object text, so the detectors
see one vocabulary whatever the source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import attrs

from ..portuguese import strip_accents, to_ascii

__all__ = [
    "CATALOGUE", "CATEGORIES", "Category", "categorize", "item_identity",
    "item_signature", "parse_quantity", "parse_unit",
]  # fmt: skip

Kind = Literal["bem", "servico", "obra"]


@attrs.frozen
class Category:
    """A purchase type with its typical unit price, so outliers can be measured."""

    name: str  # "notebooks"; the Contract.category value
    kind: Kind  # goods, services or works: decides the wording of the object text
    item: str  # what is bought, as written after the unit: "notebook"
    unit: str  # "unidades", "litros", "m²"...
    unit_price: float  # typical price of one unit, BRL
    min_qty: int  # plausible quantities in one contract
    max_qty: int
    keywords: tuple[str, ...]  # accent-free, lower-case prefixes that identify it
    trades: tuple[str, ...]  # words for supplier names: "Tecnologia", "Construtora"


def _category(name: str, kind: Kind, item: str, unit: str, price: float, qty: tuple[int, int],
              keywords: str, trades: str) -> Category:
    return Category(name, kind, item, unit, price, qty[0], qty[1], tuple(keywords.split("|")),
                    tuple(trades.split("|")))


# Order matters for categorize(): specific items before generic ones.
CATALOGUE: tuple[Category, ...] = (
    _category("ambulâncias", "bem", "ambulância tipo B de suporte básico", "unidades",
              320_000.0, (1, 30), "ambulancia", "Veículos Especiais|Automotores"),
    _category("máquinas agrícolas", "bem", "trator agrícola de 75 cv", "unidades", 235_000.0,
              (1, 40), "trator|maquina agricola|maquinas agricolas|implemento agricola",
              "Máquinas Agrícolas|Agro"),
    _category("veículos", "bem", "veículo utilitário tipo pick-up 4x4", "unidades", 245_000.0,
              (1, 40), "veiculo|pick-up|caminhonete|automovel", "Veículos|Automotores"),
    _category("equipamentos hospitalares", "bem", "monitor multiparamétrico para UTI",
              "unidades", 18_500.0, (1, 300), "multiparametrico|equipamento hospitalar|"
              "equipamentos hospitalares|equipamento medico|desfibrilador|ventilador pulmonar",
              "Hospitalar|Equipamentos Médicos"),
    _category("medicamentos", "bem", "insulina humana NPH 100 UI/mL", "frascos", 24.90,
              (200, 300_000), "medicament|insulina|farmaco|vacina",
              "Farmacêutica|Distribuidora de Medicamentos"),
    _category("material de laboratório", "bem", "reagentes para diagnóstico laboratorial",
              "kits", 640.0, (5, 8_000), "reagente|laboratorial|material de laboratorio",
              "Diagnóstica|Científica"),
    _category("merenda escolar", "bem", "gêneros alimentícios para a merenda escolar", "kg",
              9.80, (500, 400_000), "merenda|generos alimenticios|alimentacao escolar",
              "Alimentos|Nutrição"),
    _category("cestas básicas", "bem", "cesta básica de alimentos", "unidades", 165.0,
              (50, 120_000), "cesta basica|cestas basicas", "Atacadista|Alimentos"),
    _category("mobiliário escolar", "bem", "mesa e cadeira escolar", "conjuntos", 420.0,
              (20, 8_000), "cadeira escolar|cadeiras escolares|mobiliario escolar|"
              "carteira escolar", "Móveis|Mobiliário"),
    _category("energia solar", "bem", "módulo fotovoltaico de 550 W", "unidades", 1_050.0,
              (10, 20_000), "fotovoltaic|energia solar|painel solar|paineis solares",
              "Energia Solar|Energia"),
    _category("notebooks", "bem", "notebook", "unidades", 5_200.0, (1, 2_500),
              "notebook|laptop", "Tecnologia|Informática"),
    _category("computadores", "bem", "computador desktop", "unidades", 4_100.0, (1, 3_000),
              "computador|desktop|microcomputador", "Informática|Computadores"),
    _category("software", "bem", "software de produtividade e colaboração em nuvem",
              "licenças", 1_150.0, (5, 20_000), "software|licenca", "Sistemas|Software"),
    _category("material de escritório", "bem", "papel sulfite A4", "resmas", 27.50,
              (50, 40_000), "papel a4|papel sulfite|resma|material de escritorio|"
              "material de expediente", "Papelaria|Comercial"),
    _category("fardamento", "bem", "uniforme operacional", "kits", 380.0, (10, 20_000),
              "uniforme|fardamento", "Confecções|Têxtil"),
    _category("combustível", "bem", "óleo diesel S10", "litros", 6.05, (1_000, 800_000),
              "combustive|diesel|gasolina|etanol", "Combustíveis|Petróleo"),
    _category("limpeza e conservação", "servico", "serviços de limpeza e conservação predial",
              "m²", 84.0, (200, 60_000), "limpeza|conservacao predial", "Serviços|Facilities"),
    _category("vigilância", "servico", "serviços de vigilância patrimonial armada", "postos",
              180_000.0, (1, 80), "vigilancia|seguranca patrimonial", "Segurança|Vigilância"),
    _category("telecomunicações", "servico", "serviços de internet em banda larga dedicada",
              "acessos", 14_400.0, (2, 1_500), "internet|telefonia|telecomunicac|banda larga|"
              "link de dados", "Telecom|Redes"),
    _category("capacitação", "servico", "serviços de capacitação profissional", "horas-aula",
              180.0, (40, 60_000), "capacitacao|treinamento|horas-aula|qualificacao "
              "profissional", "Educacional|Treinamentos"),
    _category("eventos culturais", "servico", "serviços de produção de eventos culturais",
              "diárias", 28_000.0, (1, 150), "eventos culturais|evento cultural|producao de "
              "eventos", "Produções Culturais|Eventos"),
    _category("pavimentação", "obra", "pavimentação asfáltica em CBUQ", "m²", 135.0,
              (500, 250_000), "pavimentac|asfalt|recapeamento", "Construtora|Engenharia"),
)

CATEGORIES: Mapping[str, Category] = {c.name: c for c in CATALOGUE}


_KEYWORD_RES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (c.name, re.compile(r"\b(?:" + "|".join(re.escape(k) for k in c.keywords) + ")"))
    for c in CATALOGUE
)


def categorize(object_text: str) -> str:
    """The catalogue category the object text talks about, or "" when none matches."""
    folded = strip_accents(object_text).lower()
    for name, pattern in _KEYWORD_RES:
        if pattern.search(folded):
            return name
    return ""


# Units a quantity may be counted in ("500 unidades", "1.200 kg", "30 postos").
_UNITS = frozenset(
    {
        "unidades", "unidade", "un", "und", "unid", "litros", "litro", "kg", "quilos",
        "quilogramas", "toneladas", "resmas", "caixas", "frascos", "ampolas", "comprimidos",
        "capsulas", "kits", "conjuntos", "licencas", "postos", "m2", "metros", "km", "horas",
        "horas-aula", "hora-aula", "diarias", "diaria", "acessos", "acesso", "cestas", "pares",
        "pacotes", "pecas", "posto", "licenca", "kit", "conjunto", "frasco", "resma", "caixa",
    }
)
_QUANTITY_RE = re.compile(
    r"(?<![\d.,])(\d{1,3}(?:\.\d{3})+|\d+)(?:,(\d+))?\s+(?:\([^)]*\)\s+)?([a-z0-9-]+)"
)


def parse_quantity(object_text: str) -> float | None:
    """The first "<number> <unit>" in the text ("Aquisição de 1.200 resmas" -> 1200.0).

    Only known units count, so "pelo período de 12 meses" or "Lei 14.133" are not read as
    quantities; a parenthesised number in words ("500 (quinhentas) unidades") is skipped.
    """
    for match in _QUANTITY_RE.finditer(strip_accents(object_text).lower()):
        whole, decimals, unit = match.groups()
        if unit in _UNITS:
            value = float(whole.replace(".", "") + ("." + decimals if decimals else ""))
            return value if value > 0 else None
    return None


# Words that end the name of an item in an object text: what follows is why, where or how.
_ITEM_END = frozenset(
    "para com destinado destinada destinados destinadas conforme incluindo em por visando "
    "mediante no na nos nas ao aos a atraves sob segundo pelo pela durante".split()
)
_ITEM_SKIP = frozenset("de do da dos das e".split())
_UNIT_SPLIT = re.compile(r"[^a-z0-9/-]+")


def parse_unit(object_text: str) -> str:
    """The unit of the first "<number> <unit>" in the text ("1.200 resmas" -> "resmas")."""
    for match in _QUANTITY_RE.finditer(to_ascii(object_text).lower()):
        if match.group(3) in _UNITS:
            return match.group(3)
    return ""


def item_identity(object_text: str) -> str:
    """"<unit>|<signature>" in one pass, the key prices are grouped by ("" if no quantity)."""
    unit, signature = _unit_and_signature(object_text, 5)
    return f"{unit}|{signature}" if signature else ""


def item_signature(object_text: str, max_words: int = 5) -> str:
    """What one unit is, as the text names it right after the quantity.

    "Aquisição de 500 frascos de trastuzumabe 440 mg, para o hospital" ->
    "trastuzumabe 440 mg". Prices are only compared between contracts whose items have
    the same signature (and unit): "medicamentos" lumps R$ 3 vials with R$ 95 vaccines,
    "frascos de insulina humana nph" does not. "" when the text states no quantity.
    """
    return _unit_and_signature(object_text, max_words)[1]


def _unit_and_signature(object_text: str, max_words: int) -> tuple[str, str]:
    folded = to_ascii(object_text).lower()
    for match in _QUANTITY_RE.finditer(folded):
        if match.group(3) not in _UNITS:
            continue
        kept = _item_words(folded[match.end():], max_words)
        if not kept:  # "serviços de limpeza predial, com 400 m²": the item came first
            before = [w for w in _UNIT_SPLIT.split(folded[:match.start()])
                      if w and w not in _ITEM_SKIP and w not in _ITEM_END]  # fmt: skip
            kept = [w for w in before if w not in _LEAD_WORDS][:max_words]
        return match.group(3), " ".join(kept)
    return "", ""


# Procurement verbs that open an object text and say nothing about the item.
_LEAD_WORDS = frozenset(
    "aquisicao contratacao empresa especializada prestacao servico servicos fornecimento "
    "registro precos eventual futura".split()
)


def _item_words(text: str, max_words: int) -> list[str]:
    words = [w for w in _UNIT_SPLIT.split(text) if w]
    while words and words[0] in _ITEM_SKIP:
        words.pop(0)
    kept: list[str] = []
    for word in words:
        if word in _ITEM_END or len(kept) >= max_words:
            break
        if word not in _ITEM_SKIP:
            kept.append(word)
    return kept

