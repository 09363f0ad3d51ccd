"""Figures Anita answers with that the pattern analysis does not give: one supplier's
contracts, and bodies ranked by spending. Pure functions over the dataset (run through
``engine.compute``), deterministic, so tests compare them word by word and a language
model only ever phrases numbers computed here."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Sequence

from ..investigations.analysis import top_suppliers
from ..investigations.model import Contract
from ..investigations.money import contract_value, format_brl, format_percent
from ..investigations.scope import Filters
from ..portuguese import normalize, plural

__all__ = ["COVERAGE", "agency_ranking", "outside_answer", "supplier_answer", "supplier_ranking"]

COVERAGE = (
    "Os dados carregados cobrem apenas contratos do governo federal (ministérios e os órgãos "
    "ligados a eles), no formato do Portal da Transparência."
)
_LEGAL_SUFFIX = re.compile(r"\b(ltda|s a|sa|s/a|me|epp|eireli|cia|companhia)\b")
_ORDINALS = ("1º", "2º", "3º", "4º", "5º")


def _core(name: str) -> str:
    return " ".join(_LEGAL_SUFFIX.sub(" ", normalize(name)).split())


def _selected(filters: Filters, contracts: Sequence[Contract]) -> list[Contract]:
    return [c for c in contracts if filters.matches(c)]


def supplier_answer(typed: str, filters: Filters, contracts: Sequence[Contract]) -> str:
    """What the government paid one company (by name as typed, or CNPJ), in the scope."""
    selected = _selected(filters, contracts)
    if typed.isdigit():
        own = [c for c in selected if c.supplier_cnpj == typed or c.supplier_cnpj[:8] == typed[:8]]
    else:
        core = _core(typed)
        own = [c for c in selected if core and (core in _core(c.supplier_name) or _core(c.supplier_name) == core)]
    if not own:
        names = sorted({c.supplier_name for c in selected})
        by_core = {_core(n): n for n in names}
        close = [by_core[k] for k in difflib.get_close_matches(_core(typed), list(by_core), n=3, cutoff=0.6)]
        guess = f" Você quis dizer {' ou '.join(close)}?" if close else ""
        return (f"Não encontrei contratos com a empresa “{typed}” em {filters.describe()} nos dados "
                f"carregados.{guess}")  # fmt: skip
    total = sum(contract_value(c) for c in own)
    grand = sum(contract_value(c) for c in selected)
    names = sorted({c.supplier_name for c in own})
    agencies: dict[str, float] = defaultdict(float)
    for c in own:
        agencies[c.agency] += contract_value(c)
    ranked = sorted(agencies.items(), key=lambda kv: (-kv[1], kv[0]))
    biggest = max(own, key=lambda c: (contract_value(c), c.id))
    first, last = min(c.signed_on for c in own), max(c.signed_on for c in own)
    who = names[0] if len(names) == 1 else f"{names[0]} (e grafias parecidas: {', '.join(names[1:3])})"
    bodies = "; ".join(f"{a}: {format_brl(v)}" for a, v in ranked[:3])
    return " ".join([
        (f"Em {filters.describe()}, {who} tem {plural(len(own), 'contrato', 'contratos')} que "
        f"{'soma' if len(own) == 1 else 'somam'} {format_brl(total)}, "
        f"{format_percent(total / grand if grand else 0.0)} do valor do recorte."),
        f"Por órgão: {bodies}.",
        (f"O maior é o {biggest.id}, de {format_brl(contract_value(biggest))}, assinado em "
        f"{biggest.signed_on:%d/%m/%Y}."),
        f"Os contratos vão de {first:%d/%m/%Y} a {last:%d/%m/%Y}.",
    ])  # fmt: skip


def agency_ranking(filters: Filters, contracts: Sequence[Contract], position: int | None = None) -> str:
    """Bodies ranked by the money of their contracts in the scope (agency filter ignored)."""
    scope = Filters(year=filters.year, min_value=filters.min_value)
    selected = _selected(scope, contracts)
    if not selected:
        return f"Não encontrei contratos em {scope.describe()} nos dados carregados."
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for c in selected:
        totals[c.agency][0] += contract_value(c)
        totals[c.agency][1] += 1
    grand = sum(t for t, _ in totals.values())
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    lines = [
        f"{_ORDINALS[i]} {agency}, com {format_brl(total)} ({format_percent(total / grand)}) em "
        f"{plural(int(count), 'contrato', 'contratos')}"
        for i, (agency, (total, count)) in enumerate(ranked[:5])
    ]
    head = f"Em {scope.describe()}, os órgãos que mais gastaram em contratos foram: {'; '.join(lines)}."
    tail = f" Ao todo, {plural(len(ranked), 'órgão soma', 'órgãos somam')} {format_brl(grand)}."
    if position is not None and 1 <= position <= len(ranked):
        agency, (total, _) = ranked[position - 1]
        head = f"O {position}º órgão que mais gastou é {agency}, com {format_brl(total)}. " + head
    return head + tail


def supplier_ranking(filters: Filters, contracts: Sequence[Contract], position: int | None = None) -> str:
    """The companies that received the most money in the scope."""
    selected = _selected(filters, contracts)
    if not selected:
        return f"Não encontrei contratos em {filters.describe()} nos dados carregados."
    top = top_suppliers(selected, 5)
    lines = [f"{_ORDINALS[i]} {s.name}, com {format_brl(s.total)} ({format_percent(s.share)})"
             for i, s in enumerate(top)]  # fmt: skip
    head = (f"Em {filters.describe()}, a empresa que mais recebeu foi {top[0].name}, com "
            f"{format_brl(top[0].total)} em {plural(top[0].contracts, 'contrato', 'contratos')}. "
            f"As maiores: {'; '.join(lines)}.")  # fmt: skip
    if position is not None and 2 <= position <= len(top):
        chosen = top[position - 1]
        head = (f"A {position}ª empresa que mais recebeu foi {chosen.name}, com {format_brl(chosen.total)} "
                f"({format_percent(chosen.share)}). " + head)  # fmt: skip
    return head


def outside_answer(named: str, contracts: Sequence[Contract]) -> str:
    """A body the data do not hold (a city hall, a state): say what they cover instead."""
    agencies = sorted({c.agency for c in contracts})
    listed = ", ".join(agencies[:6]) + (" e outros" if len(agencies) > 6 else "")
    have = f" Há contratos de {listed}." if agencies else ""
    return (
        f"{COVERAGE} {named[:1].upper() + named[1:]} não faz parte deles, então não tenho como "
        f"responder sobre esse órgão nem abrir uma investigação dele.{have} Para gastos de "
        "prefeituras e governos estaduais, consulte o portal da transparência do próprio município "
        "ou estado, ou o Tribunal de Contas do Estado."
    )
