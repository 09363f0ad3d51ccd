"""Anita Garibaldi's pattern analysis: who gets the money, when, and how it is contracted.

Zumbi's detectors flag single contracts; Anita describes the whole scope, so a citizen
sees the context an anomaly sits in. Everything here is pure and deterministic (ties are
broken by name or id), so findings can be compared word by word in tests and replayed.
Money is always the contract's current value (``contract_value``): what is committed
today, amendments included.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..portuguese import month_label, normalize_ascii, plural
from .model import Contract
from .money import contract_value, format_brl, format_percent
from .scope import Filters
from .suppliers import establishment_key

__all__ = [
    "AGENT_ID",
    "AGENT_NAME",
    "Finding",
    "SupplierShare",
    "answer_question",
    "hhi",
    "pattern_findings",
    "top_suppliers",
]

AGENT_ID = "anita"
AGENT_NAME = "Anita Garibaldi"

# HHI bands on the 0-10.000 scale used by CADE and the US DoJ merger guidelines.
HHI_MODERATE = 1_500
HHI_HIGH = 2_500
# Share of the year's money signed in Oct-Dec above which we speak of a year-end rush
# (an even year puts 25% there).
LAST_QUARTER_RUSH = 0.35
# Share of the money contracted without licitação above which it deserves attention.
DIRECT_HIGH = 0.30

@attrs.frozen
class Finding:
    """One pattern an agent observed, explained in Portuguese with machine-readable details."""

    agent_id: str
    agent_name: str
    finding_type: str  # "top_suppliers", "supplier_concentration", "seasonality", ...
    summary: str  # Portuguese, one or two sentences
    details: Mapping[str, Any] = attrs.field(factory=dict)  # JSON-serializable


@attrs.frozen
class SupplierShare:
    """A supplier's slice of the money in scope."""

    name: str
    cnpj: str
    total: float  # BRL
    share: float  # 0..1 of the scope's total
    contracts: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cnpj": self.cnpj, "total": round(self.total, 2),
                "share": round(self.share, 4), "contracts": self.contracts}  # fmt: skip


# --------------------------------------------------------------------------- helpers


def _total(contracts: Sequence[Contract]) -> float:
    return sum(contract_value(c) for c in contracts)


def _finding(finding_type: str, summary: str, details: dict[str, Any]) -> Finding:
    return Finding(AGENT_ID, AGENT_NAME, finding_type, summary, details)


# --------------------------------------------------------------------------- suppliers


def _all_suppliers(contracts: Sequence[Contract]) -> list[SupplierShare]:
    """Every supplier, largest first (ties by name, then CNPJ)."""
    groups: dict[str, list[Contract]] = defaultdict(list)
    for c in contracts:
        groups[establishment_key(c)].append(c)
    grand = _total(contracts)
    shares = []
    for key, own in groups.items():
        total = _total(own)
        # The name on the supplier's largest contract: the most official-looking spelling.
        main = max(own, key=lambda c: (contract_value(c), c.id))
        shares.append(SupplierShare(
            name=main.supplier_name, cnpj=main.supplier_cnpj or key, total=total,
            share=total / grand if grand > 0 else 0.0, contracts=len(own),
        ))  # fmt: skip
    return sorted(shares, key=lambda s: (-s.total, s.name, s.cnpj))


def top_suppliers(contracts: Sequence[Contract], n: int = 5) -> list[SupplierShare]:
    """The ``n`` suppliers that received the most money, with their share of the total."""
    return _all_suppliers(contracts)[:n]


def hhi(contracts: Sequence[Contract]) -> float:
    """Herfindahl-Hirschman index of suppliers: Σ (share × 100)², from ~0 (spread) to 10.000."""
    return sum((s.share * 100) ** 2 for s in _all_suppliers(contracts))


def _hhi_level(value: float) -> str:
    if value >= HHI_HIGH:
        return "alta"
    if value >= HHI_MODERATE:
        return "moderada"
    return "baixa"


def _format_int(value: float) -> str:
    return f"{round(value):,}".replace(",", ".")


def _top_suppliers_finding(contracts: Sequence[Contract], scope: str) -> Finding:
    top = top_suppliers(contracts, 5)
    total = _total(contracts)
    combined = sum(s.share for s in top)
    listing = "; ".join(f"{s.name} ({format_percent(s.share)}, {format_brl(s.total)})"
                        for s in top)  # fmt: skip
    summary = (
        f"Os {plural(len(top), 'maior fornecedor', 'maiores fornecedores')} no recorte "
        f"“{scope}” concentram {format_percent(combined)} dos {format_brl(total)} "
        f"contratados: {listing}."
    )
    return _finding("top_suppliers", summary, {
        "scope": scope,
        "total_value": round(total, 2),
        "combined_share": round(combined, 4),
        "suppliers": [s.as_dict() for s in top],
    })  # fmt: skip


def _concentration_finding(contracts: Sequence[Contract], scope: str) -> Finding:
    value = hhi(contracts)
    level = _hhi_level(value)
    suppliers = len(_all_suppliers(contracts))
    equivalent = 10_000 / value if value > 0 else 0.0
    meaning = {
        "baixa": "o dinheiro está bem distribuído e há competição entre fornecedores",
        "moderada": "poucos fornecedores já dominam uma parte relevante dos gastos",
        "alta": "o mercado está nas mãos de poucos fornecedores, o que reduz a competição "
                "e merece atenção",
    }[level]  # fmt: skip
    summary = (
        f"O índice Herfindahl-Hirschman (HHI) do recorte “{scope}” é {_format_int(value)}, "
        f"concentração {level}: {meaning}. Equivale a {_format_int(equivalent)} fornecedores "
        f"de mesmo tamanho, entre {plural(suppliers, 'fornecedor', 'fornecedores')} no total."
    )
    return _finding("supplier_concentration", summary, {
        "scope": scope,
        "hhi": round(value, 1),
        "level": level,
        "suppliers": suppliers,
        "equivalent_suppliers": round(equivalent, 2),
        "thresholds": {"moderate": HHI_MODERATE, "high": HHI_HIGH},
    })  # fmt: skip


# --------------------------------------------------------------------------- time


def _monthly(contracts: Sequence[Contract]) -> dict[tuple[int, int], float]:
    months: dict[tuple[int, int], float] = defaultdict(float)
    for c in contracts:
        months[(c.signed_on.year, c.signed_on.month)] += contract_value(c)
    return dict(sorted(months.items()))


def _peak_month(contracts: Sequence[Contract]) -> tuple[tuple[int, int], float]:
    """The month with most money signed; the earliest one on a tie."""
    months = _monthly(contracts)
    peak = max(months, key=lambda m: (months[m], -m[0], -m[1]))
    return peak, months[peak]


def _seasonality_finding(contracts: Sequence[Contract], scope: str) -> Finding:
    total = _total(contracts)
    (year, month), peak_value = _peak_month(contracts)
    last_quarter = sum(contract_value(c) for c in contracts if c.signed_on.month >= 10)
    december = sum(contract_value(c) for c in contracts if c.signed_on.month == 12)
    q4_share = last_quarter / total if total > 0 else 0.0
    dec_share = december / total if total > 0 else 0.0
    peak_share = peak_value / total if total > 0 else 0.0
    rush = q4_share >= LAST_QUARTER_RUSH
    verdict = (
        "há uma corrida de fim de ano, quando compras às pressas para não perder o orçamento "
        "costumam ter menos planejamento e pesquisa de preços"
        if rush
        else "não há sinal de corrida de fim de ano (num ano uniforme, seriam 25%)"
    )
    summary = (
        f"No recorte “{scope}”, o mês de maior gasto foi {month_label(year, month)}, com "
        f"{format_brl(peak_value)} ({format_percent(peak_share)} do total). O último "
        f"trimestre concentra {format_percent(q4_share)} dos gastos e dezembro "
        f"{format_percent(dec_share)}: {verdict}."
    )
    return _finding("seasonality", summary, {
        "scope": scope,
        "peak_month": f"{year:04d}-{month:02d}",
        "peak_value": round(peak_value, 2),
        "peak_share": round(peak_share, 4),
        "last_quarter_share": round(q4_share, 4),
        "december_share": round(dec_share, 4),
        "year_end_rush": rush,
        "monthly": [{"month": f"{y:04d}-{m:02d}", "total": round(v, 2)}
                    for (y, m), v in _monthly(contracts).items()],
    })  # fmt: skip


# --------------------------------------------------------------------------- modality


def _modality_kind(modality: str) -> str:
    """"dispensa", "inexigibilidade" or "competitiva" (anything else, unknown included)."""
    norm = normalize_ascii(modality)
    if "dispensa" in norm:
        return "dispensa"
    if "inexigib" in norm:
        return "inexigibilidade"
    return "competitiva"


def _modality_finding(contracts: Sequence[Contract], scope: str) -> Finding:
    total = _total(contracts)
    by_kind: dict[str, float] = defaultdict(float)
    by_modality: dict[str, list[Contract]] = defaultdict(list)
    for c in contracts:
        by_kind[_modality_kind(c.modality)] += contract_value(c)
        by_modality[c.modality.strip() or "Não informada"].append(c)

    def share(x: float) -> float:
        return x / total if total > 0 else 0.0

    direct_value = by_kind["dispensa"] + by_kind["inexigibilidade"]
    direct = share(direct_value)
    note = (
        "uma parcela alta: a regra é licitar, e cada contratação direta precisa de "
        "justificativa formal"
        if direct >= DIRECT_HIGH
        else "dentro do esperado, já que a regra é licitar"
    )
    dispensa, inexigibilidade = share(by_kind["dispensa"]), share(by_kind["inexigibilidade"])
    summary = (
        f"No recorte “{scope}”, {format_percent(direct)} do valor "
        f"({format_brl(direct_value)}) foi contratado sem licitação: "
        f"{format_percent(dispensa)} por dispensa e {format_percent(inexigibilidade)} por "
        f"inexigibilidade, {note}."
    )
    rows: list[dict[str, Any]] = sorted(
        ({"modality": name, "total": round(_total(cs), 2), "share": round(share(_total(cs)), 4),
          "contracts": len(cs)} for name, cs in by_modality.items()),
        key=lambda r: (-r["total"], r["modality"]),
    )  # fmt: skip
    return _finding("procurement_modality", summary, {
        "scope": scope,
        "direct_share": round(direct, 4),
        "direct_value": round(direct_value, 2),
        "dispensa_share": round(dispensa, 4),
        "inexigibilidade_share": round(inexigibilidade, 4),
        "by_modality": rows,
    })  # fmt: skip


def pattern_findings(contracts: Sequence[Contract], scope: str) -> list[Finding]:
    """Anita's four findings about the scope, in a fixed order; none for an empty scope."""
    if not contracts:
        return []
    return [
        _top_suppliers_finding(contracts, scope),
        _concentration_finding(contracts, scope),
        _seasonality_finding(contracts, scope),
        _modality_finding(contracts, scope),
    ]


# --------------------------------------------------------------------------- questions


def _no_match(scope: str) -> str:
    return (
        f"Não encontrei contratos para {scope}. Talvez não haja contratos com esses critérios "
        "nos dados disponíveis. Que tal tentar outro órgão, outro ano ou um valor mínimo "
        "menor? Por exemplo: “Quanto o Ministério da Saúde gastou em 2025?”"
    )


def answer_question(filters: Filters, contracts: Sequence[Contract]) -> str:
    """A short Portuguese answer with real figures for the contracts the filters select."""
    scope = filters.describe()
    selected = [c for c in contracts if filters.matches(c)]
    if not selected:
        return _no_match(scope)
    total = _total(selected)
    top = top_suppliers(selected, 5)
    biggest = max(selected, key=lambda c: (contract_value(c), c.id))
    (year, month), peak_value = _peak_month(selected)
    phrases = [f"{s.name}, com {format_brl(s.total)} ({format_percent(s.share)})" for s in top]
    if len(top) == 1:
        suppliers = [f"O único fornecedor é {phrases[0]}."]
    else:
        ranking = "; ".join(f"{i}º {p}" for i, p in enumerate(phrases, 1))
        suppliers = [
            f"Os {len(top)} maiores fornecedores são: {ranking}.",
            f"Juntos, eles recebem {format_percent(sum(s.share for s in top))} do total.",
        ]
    return " ".join([
        f"No recorte “{scope}”, encontrei "
        f"{plural(len(selected), 'contrato, que soma', 'contratos, que somam')} "
        f"{format_brl(total)}.",
        f"O valor médio é de {format_brl(total / len(selected))} por contrato.",
        *suppliers,
        f"O maior contrato é o {biggest.id}, de {format_brl(contract_value(biggest))}, com "
        f"{biggest.supplier_name}, assinado em {biggest.signed_on:%d/%m/%Y}.",
        f"O mês de maior gasto foi {month_label(year, month)}, com {format_brl(peak_value)}.",
    ])
