"""Zumbi's detectors: pure functions that turn a list of contracts into anomalies.

Every detector has the shape ``(contracts, *, thresholds...) -> list[Anomaly]``: no I/O, no
randomness, no shared state, output sorted, so the same contracts always give the same
anomalies and each detector is tested (and benchmarked) on its own. They group first (by
item, buyer, buyer+supplier) so none compares every contract with every other one.

They are written for real procurement, where most unusual things are legal: an expensive
item is not overpriced, December is a busy month, the siblings of one ata de registro de
preços share their text, a continuing service is re-contracted every year, an art. 107
extension adds a year's value. Each rule below says what it does not flag and why.

Severity, "how strong the evidence is", per type:

======================  ====================================================================
price_deviation         unit price / median of its item: ≥ 4× critical, ≥ 2,5× high,
                        ≥ 1,8× medium, else low
supplier_concentration  share of the body's money: ≥ 90% critical, ≥ 75% high, ≥ 60% medium
spending_spike          month / seasonal baseline: ≥ 6× critical, ≥ 4× high, ≥ 3× medium,
                        else low
duplicate_contract      high; critical when values are within 2% and 15 days apart
contract_splitting      sum / art. 75 II limit of the year: ≥ 3× critical, ≥ 2× high,
                        ≥ 1,5× medium, else low; one level up for 3+ suppliers in turn
value_divergence        increase beyond the art. 125 limit: ≥ 100 p.p. critical, ≥ 50 high,
                        ≥ 15 medium, else low; a reduction is at most low
======================  ====================================================================

Confidence (0..1) says how much the data supports the finding, not how bad it is: it grows
with the size of the comparison group and with the margin past the threshold; it never
reaches 1: a detector sees numbers, not intent. Every anomaly is a signal to verify.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any, get_args

from ..portuguese import month_label, normalize_ascii
from .categories import item_identity, item_signature
from .legal import (
    AMENDMENT_LIMIT,
    EMERGENCY_MAX_DAYS,
    REFORM_AMENDMENT_LIMIT,
    dispensa_limit,
    legal_kind,
)
from .model import Anomaly, AnomalyType, Contract, Severity
from .money import format_brl, format_percent
from .suppliers import supplier_key

__all__ = [
    "ALL_DETECTORS",
    "ANOMALY_TYPES",
    "DISPENSA_THRESHOLD",
    "SEVERITIES",
    "VERIFY_NOTE",
    "Detector",
    "buyer_key",
    "detect_contract_splitting",
    "detect_duplicate_contracts",
    "detect_price_deviation",
    "detect_spending_spike",
    "detect_supplier_concentration",
    "detect_value_divergence",
    "jaccard",
    "object_tokens",
    "run_all",
]

Detector = Callable[[Sequence[Contract]], list[Anomaly]]

SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")

# The 2023 art. 75 II figure, kept for callers that want one number; the detectors use
# ``legal.dispensa_limit(year)`` of each contract's signing year.
DISPENSA_THRESHOLD = 57_208.33

VERIFY_NOTE = "Sinal para verificação, não prova de irregularidade."

# Words that say nothing about *what* was bought; dropping them keeps "aquisição de
# papel" and "aquisição do papel" identical and makes the Jaccard measure the content.
_STOPWORDS = frozenset(
    "a ao aos as com da das de do dos e em na nas no nos o os ou para pela pelas pelo "
    "pelos por sem sob sobre um uma umas uns".split()
)
# Words of procurement prose that do not tell one kind of object from another.
_GENERIC = frozenset(
    "aquisicao aquisicoes contratacao contratacoes empresa empresas especializada "
    "prestacao servico servicos fornecimento eventual eventuais futura registro precos "
    "preco objeto compra compras material materiais".split()
)


# --------------------------------------------------------------------------- formatting


def _format_ratio(ratio: float) -> str:
    """``2.84 -> "2,8"``: one decimal, Brazilian comma."""
    return f"{ratio:.1f}".replace(".", ",")


def _date(d: Any) -> str:
    return d.strftime("%d/%m/%Y") if d is not None else "—"


# --------------------------------------------------------------------------- shared helpers


def object_tokens(text: str) -> frozenset[str]:
    """The words of a contract object that carry meaning (normalized, stopwords dropped)."""
    return frozenset(w for w in normalize_ascii(text).split() if w not in _STOPWORDS)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|A ∩ B| / |A ∪ B|; two empty sets are not similar (nothing to compare)."""
    common = len(a & b)
    union = len(a) + len(b) - common
    return common / union if union else 0.0


def agency_key(contract: Contract) -> str:
    """The órgão superior: its SIAFI code when known, else its normalized name, so that
    "MINISTÉRIO DA SAÚDE" and "Ministério da Saúde" (the portal prints both) are one body."""
    return contract.agency_code or normalize_ascii(contract.agency)


def agency_label(group: Sequence[Contract]) -> str:
    """How to name a body in a message: its most common spelling, preferring the one that
    is not all upper case ("Ministério da Saúde" over "MINISTÉRIO DA SAÚDE")."""
    counts = Counter(c.agency for c in group)
    return max(counts, key=lambda name: (not name.isupper(), counts[name], name))


def buyer_key(contract: Contract) -> str:
    """Who bought: the management unit (a UG code is unique in SIAFI) when known, else the
    agency; never the spelling of a name."""
    return f"UG {contract.ug}" if contract.ug else agency_key(contract)


def _buyer_label(contract: Contract) -> str:
    if contract.ug_name:
        return f"{contract.ug_name} (UG {contract.ug})" if contract.ug else contract.ug_name
    return f"UG {contract.ug} ({contract.agency})" if contract.ug else contract.agency


def _value(contract: Contract) -> float:
    """What the contract is worth today: the final value when known, else the initial one."""
    if contract.final_known and contract.global_value > 0:
        return contract.global_value
    return contract.initial_value


def _level(value: float, cuts: tuple[float, float, float]) -> Severity:
    """Map ``value`` onto low/medium/high/critical given the medium, high, critical cuts."""
    medium, high, critical = cuts
    if value >= critical:
        return "critical"
    if value >= high:
        return "high"
    if value >= medium:
        return "medium"
    return "low"


def _bump(severity: Severity, steps: int = 1) -> Severity:
    return SEVERITIES[min(len(SEVERITIES) - 1, SEVERITIES.index(severity) + steps)]


def _sample_factor(n: int, half: int) -> float:
    """n / (n + half): 0.5 at ``half`` observations, approaching 1 as evidence accumulates."""
    return n / (n + half)


def _clamp(x: float, lo: float = 0.0, hi: float = 0.95) -> float:
    return max(lo, min(hi, x))


def _base_details(contract: Contract, expected: float, actual: float) -> dict[str, Any]:
    """The keys every anomaly carries, so a UI can render any of them the same way."""
    return {
        "contract_id": contract.id,
        "expected_value": round(float(expected), 2),
        "actual_value": round(float(actual), 2),
        "supplier": contract.supplier_name,
        "supplier_cnpj": contract.supplier_cnpj,
        "agency": contract.agency,
        "buyer": _buyer_label(contract),
        "signed_on": contract.signed_on.isoformat(),
        "verification_note": VERIFY_NOTE,
    }


def _median_mad(values: Sequence[float]) -> tuple[float, float]:
    median = statistics.median(values)
    return median, statistics.median(abs(v - median) for v in values)


# --------------------------------------------------------------------------- 1. price


def _price_group(c: Contract) -> str:
    """Contracts whose unit prices may be compared: one catalogue item, or one named item
    in one unit ("frascos de insulina humana nph 100 ui/ml"); "" when nothing says so."""
    if c.item_code:
        return f"item {c.item_code}"
    identity = item_identity(c.object)
    return f"{c.category}|{identity}" if identity else ""


def detect_price_deviation(
    contracts: Sequence[Contract],
    *,
    min_peers: int = 8,
    robust_z: float = 3.5,
    min_ratio: float = 1.5,
    min_scale: float = 0.05,
) -> list[Anomaly]:
    """Unit prices far above what the same item usually costs (possible overpricing).

    Prices are compared only within a fine-grained group (the same catalogue code, or the
    same item named in the same unit) of at least ``min_peers`` contracts, across every
    agency; a rare, expensive item (an oncology drug, a CT scanner, an armoured vehicle)
    has no such group and is never called overpriced for being expensive. On the log
    scale, the robust z-score ``(log p - median) / (1.4826 MAD)`` must exceed ``robust_z``
    (the MAD is floored at ``min_scale`` so identical prices do not make every cent an
    outlier) and the price must be ``min_ratio`` times the median: freight, region and
    brand explain less. Prices below the peers are not flagged: paying less is no harm.
    """
    groups: dict[str, list[Contract]] = defaultdict(list)
    for c in contracts:
        if c.unit_price is not None and c.unit_price > 0:
            key = _price_group(c)
            if key:
                groups[key].append(c)

    found: list[Anomaly] = []
    for key in sorted(groups):
        group = groups[key]
        if len(group) < min_peers:
            continue
        logs = [math.log(float(c.unit_price)) for c in group]  # type: ignore[arg-type]
        median, mad = _median_mad(logs)
        scale = max(1.4826 * mad, min_scale)
        floor = median + math.log(min_ratio)
        for c, lp in zip(group, logs, strict=True):
            z = (lp - median) / scale
            if z > robust_z and lp >= floor:
                found.append(_price_anomaly(c, math.exp(median), z, len(group)))
    return _sorted(found)


def _price_anomaly(c: Contract, median: float, z: float, peers: int) -> Anomaly:
    price = float(c.unit_price)  # type: ignore[arg-type]
    ratio = price / median
    quantity = c.quantity or (c.initial_value / price if price else 0.0)
    excess = (price - median) * quantity
    item = item_signature(c.object) or c.category or "item"
    confidence = _clamp(0.35 + 0.35 * _sample_factor(peers, 20) + 0.25 * min(1.0, (z - 3.5) / 6))
    details = _base_details(c, median, price)
    details.update(
        item=item,
        category=c.category,
        peers=peers,
        ratio=round(ratio, 3),
        robust_z=round(z, 2),
        quantity=quantity,
        unit_price=round(price, 2),
        median_unit_price=round(median, 2),
        excess_value=round(excess, 2),
        contract_value=round(c.initial_value, 2),
    )
    return Anomaly(
        anomaly_type="price_deviation",
        severity=_level(ratio, (1.8, 2.5, 4.0)),
        confidence=round(confidence, 3),
        description=(
            f"Preço unitário de {format_brl(price)} ({item}) no contrato {c.id} com "
            f"{c.supplier_name}, assinado em {_date(c.signed_on)}: {_format_ratio(ratio)} vezes "
            f"a mediana de {format_brl(median)} de {peers} contratos do mesmo item; o excesso "
            f"estimado é de {format_brl(excess)} sobre {format_brl(c.initial_value)}. {VERIFY_NOTE}"
        ),
        contract_ids=(c.id,),
        details=details,
    )


# --------------------------------------------------------------------------- 2. concentration


def detect_supplier_concentration(
    contracts: Sequence[Contract],
    *,
    min_share: float = 0.50,
    min_contracts: int = 5,
) -> list[Anomaly]:
    """One supplier (CNPJ root, whatever the spelling) receiving most of a body's money.

    Shares use the current value. Bodies with fewer than ``min_contracts`` contracts are
    skipped: with 2 contracts someone holds 50%+. Severity grows with the share.
    """
    by_agency: dict[str, list[Contract]] = defaultdict(list)
    for c in contracts:
        by_agency[agency_key(c)].append(c)

    found: list[Anomaly] = []
    for key_of_agency in sorted(by_agency):
        group = by_agency[key_of_agency]
        agency = agency_label(group)
        total = sum(_value(c) for c in group)
        if len(group) < min_contracts or total <= 0:
            continue
        by_supplier: dict[str, list[Contract]] = defaultdict(list)
        for c in group:
            by_supplier[supplier_key(c)].append(c)
        for key in sorted(by_supplier):
            own = by_supplier[key]
            supplier_total = sum(_value(c) for c in own)
            share = supplier_total / total
            if share > min_share:
                context = (agency, total, len(group), len(by_supplier), min_share)
                found.append(_concentration_anomaly(own, share, supplier_total, *context))
    return _sorted(found)


def _concentration_anomaly(
    own: list[Contract],
    share: float,
    supplier_total: float,
    agency: str,
    total: float,
    agency_contracts: int,
    suppliers: int,
    min_share: float,
) -> Anomaly:
    main = max(own, key=lambda c: (_value(c), c.id))
    ids = tuple(sorted(c.id for c in own))
    excess = (share - min_share) / (1 - min_share) if min_share < 1 else 1.0
    confidence = _clamp(0.1 + 0.4 * excess + 0.45 * _sample_factor(agency_contracts, 10))
    details = _base_details(main, min_share * total, supplier_total)
    details.update(
        share=round(share, 4),
        agency_total=round(total, 2),
        supplier_contracts=len(own),
        agency_contracts=agency_contracts,
        agency_suppliers=suppliers,
        names=sorted({c.supplier_name for c in own}),
    )
    return Anomaly(
        anomaly_type="supplier_concentration",
        severity=_level(share, (0.60, 0.75, 0.90)),
        confidence=round(confidence, 3),
        description=(
            f"Fornecedor {main.supplier_name} (CNPJ {main.supplier_cnpj or '—'}) concentra "
            f"{format_percent(share)} dos {format_brl(total)} contratados pelo órgão {agency}: "
            f"{format_brl(supplier_total)} em {len(own)} de {agency_contracts} contratos. "
            f"{VERIFY_NOTE}"
        ),
        contract_ids=ids,
        details=details,
    )


# --------------------------------------------------------------------------- 3. spike

# When no pooled history is available: December and November close the fiscal year.
_SEASON_PRIOR = {11: 1.3, 12: 2.5}
_COMPETITIVE_WORDS = ("pregao", "concorrencia", "tomada de precos", "leilao", "concurso")


def _competitive(c: Contract) -> bool:
    return legal_kind(c.legal_basis, c.modality, c.object) == "competitive" and any(
        w in normalize_ascii(c.modality) for w in _COMPETITIVE_WORDS
    )


def _seasonal_factors(
    monthly: dict[str, dict[tuple[int, int], float]], min_samples: int
) -> dict[int, float]:
    """Each calendar month's usual weight, pooled over every agency-year: the median of
    (month total / that agency's median month), never below the prior (1 for an ordinary
    month): a learned "quiet August" from a few years' noise would only invent spikes."""
    ratios: dict[int, list[float]] = defaultdict(list)
    for months in monthly.values():
        if len(months) < 6:
            continue
        base = statistics.median(months.values())
        if base <= 0:
            continue
        for (_, m), v in months.items():
            ratios[m].append(v / base)
    factors = {}
    for m in range(1, 13):
        prior = _SEASON_PRIOR.get(m, 1.0)
        if len(ratios[m]) >= min_samples:
            factors[m] = max(prior, statistics.median(ratios[m]))
        else:
            factors[m] = prior
    return factors


def _counted_contracts(
    by_month: dict[tuple[int, int], list[Contract]], large_competitive: float
) -> dict[tuple[int, int], list[Contract]]:
    """Each month's contracts without the large competed ones: a pregão or concorrência
    worth more than ``large_competitive`` of the body's median month is planned and public
    (a building, a scanner, a ministry's IT contract), not a surge of spending."""
    totals = [sum(c.initial_value for c in cs) for cs in by_month.values()]
    cap = large_competitive * statistics.median(totals)
    return {
        m: [c for c in cs if not (_competitive(c) and c.initial_value > cap)]
        for m, cs in by_month.items()
    }


def detect_spending_spike(
    contracts: Sequence[Contract],
    *,
    min_ratio: float = 2.5,
    robust_z: float = 2.5,
    min_months: int = 8,
    min_scale: float = 0.25,
    pooled_samples: int = 8,
    large_competitive: float = 0.5,
    min_direct_share: float = 0.5,
) -> list[Anomaly]:
    """A month in which an agency signed far more than its seasonal baseline.

    The baseline is the agency's median month times the calendar month's seasonal factor,
    learned from every agency (December is busy everywhere) or, without enough history, a
    prior (Dec 2,5×, Nov 1,3×). Large competitive contracts (pregão, concorrência) do not
    make a spike: a publicly competed purchase worth more than ``large_competitive`` of the
    agency's median month is a planned big-ticket item (a building, a scanner, a ministry's
    IT contract), so those are set aside, in every month and in the seasonal factors;
    direct contracting (dispensa, inexigibilidade) always counts. The month must be
    ``min_ratio`` times its baseline and ``robust_z`` robust deviations above it on the log
    scale (the spread of the agency's busier-than-median months, floored at ``min_scale``),
    and direct contracting must make up at least ``min_direct_share`` of the excess: a month
    of several ordinary pregões is a planning matter, published and competed, not a signal.
    """
    months: dict[str, dict[tuple[int, int], list[Contract]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for c in contracts:
        months[agency_key(c)][(c.signed_on.year, c.signed_on.month)].append(c)
    counted = {a: _counted_contracts(by_month, large_competitive) for a, by_month in months.items()}
    monthly = {
        a: {m: sum(c.initial_value for c in cs) for m, cs in by_month.items()}
        for a, by_month in counted.items()
    }
    season = _seasonal_factors(monthly, pooled_samples)

    found: list[Anomaly] = []
    for agency in sorted(months):
        by_month = months[agency]
        if len(by_month) < min_months:
            continue
        adjusted = monthly[agency]
        deseason = {m: v / season[m[1]] for m, v in adjusted.items()}
        base = statistics.median(deseason.values())
        if base <= 0:
            continue
        logs = {m: math.log(max(v, base * 1e-3) / base) for m, v in deseason.items()}
        # The spread of the busy side only: quiet months of a small body (one R$ 5 mil
        # purchase) say nothing about how high its ordinary busy months go.
        upper = [x for x in logs.values() if x > 0]
        scale = max(1.4826 * statistics.median(upper) if upper else 0.0, min_scale)
        for month in sorted(by_month):
            ratio = deseason[month] / base
            z = logs[month] / scale
            if ratio < min_ratio or z < robust_z:
                continue
            expected = base * season[month[1]]
            direct = sum(c.initial_value for c in counted[agency][month] if not _competitive(c))
            if direct < min_direct_share * (adjusted[month] - expected):
                continue  # a month of several ordinary pregões: planned and public
            value = sum(c.initial_value for c in by_month[month])
            label = agency_label([c for cs in by_month.values() for c in cs])
            found.append(
                _spike_anomaly(
                    counted[agency][month], label, month, value,
                    adjusted[month], expected, ratio, z, len(by_month),
                )
            )
    return _sorted(found)


def _explaining_contracts(month_contracts: list[Contract], excess: float) -> list[Contract]:
    """The fewest largest contracts whose values add up to the month's excess over normal."""
    ranked = sorted(month_contracts, key=lambda c: (-c.initial_value, c.id))
    chosen: list[Contract] = []
    running = 0.0
    for c in ranked:
        chosen.append(c)
        running += c.initial_value
        if running >= excess:
            break
    return chosen


def _spike_anomaly(
    month_contracts: list[Contract],
    agency: str,
    month: tuple[int, int],
    value: float,
    adjusted: float,
    expected: float,
    ratio: float,
    z: float,
    n_months: int,
) -> Anomaly:
    chosen = _explaining_contracts(month_contracts, value - expected)
    z_part = 0.3 * min(1.0, (z - 2.5) / 4.0)
    confidence = _clamp(0.2 + 0.45 * _sample_factor(n_months, 12) + z_part)
    details = _base_details(chosen[0], expected, value)
    details.update(
        month=f"{month[0]:04d}-{month[1]:02d}",
        ratio=round(ratio, 3),
        robust_z=round(z, 2),
        months=n_months,
        month_contracts=len(month_contracts),
        adjusted_value=round(adjusted, 2),
    )
    top = ", ".join(f"{c.id} ({c.supplier_name}, {format_brl(c.initial_value)})" for c in chosen[:3])
    return Anomaly(
        anomaly_type="spending_spike",
        severity=_level(ratio, (3.0, 4.0, 6.0)),
        confidence=round(confidence, 3),
        description=(
            f"Gastos de {month_label(*month)} do órgão {agency}: {format_brl(value)}, "
            f"{_format_ratio(ratio)} vezes o esperado para o mês ({format_brl(expected)}, já "
            f"contando a sazonalidade); maiores contratos: {top}. {VERIFY_NOTE}"
        ),
        contract_ids=tuple(c.id for c in chosen),
        details=details,
    )


# --------------------------------------------------------------------------- 4. duplicates


def detect_duplicate_contracts(
    contracts: Sequence[Contract],
    *,
    min_similarity: float = 0.8,
    max_days: int = 60,
    max_value_gap: float = 0.10,
    min_tokens: int = 3,
) -> list[Anomaly]:
    """Two contracts that look like paying twice for one thing.

    Text alone is never enough: both must have the same buyer (UG, else agency) and the
    same supplier (CNPJ root), be signed within ``max_days`` of each other, have values
    within ``max_value_gap`` and objects sharing at least ``min_similarity`` of their
    words. Not duplicates: siblings of one licitação or ata de registro de preços (same
    Número Licitação), the annual re-contract of a continuing service (a year apart),
    objects that state different numbers (another quantity, lot or annex: another purchase)
    and objects too vague to compare (fewer than ``min_tokens`` words).
    """
    groups: dict[tuple[str, str], list[Contract]] = defaultdict(list)
    for c in contracts:
        groups[(buyer_key(c), supplier_key(c))].append(c)

    found: list[Anomaly] = []
    for key in sorted(groups):
        group = groups[key]
        if len(group) < 2:
            continue
        group.sort(key=lambda c: (c.signed_on, c.id))
        tokens = [object_tokens(c.object) for c in group]
        numbers = [_numbers(t) for t in tokens]  # once each: a busy supplier has many pairs
        values = [_value(c) for c in group]
        for i, first in enumerate(group):
            if len(tokens[i]) < min_tokens:
                continue
            for j in range(i + 1, len(group)):
                second = group[j]
                days = (second.signed_on - first.signed_on).days
                if days > max_days:
                    break
                if len(tokens[j]) < min_tokens:
                    continue
                if first.bidding and first.bidding == second.bidding:
                    continue  # siblings of one licitação / ata
                v1, v2 = values[i], values[j]
                if max(v1, v2) <= 0 or abs(v1 - v2) / max(v1, v2) > max_value_gap:
                    continue
                if numbers[i] != numbers[j]:
                    continue  # 809 vs 763 resmas, lote 1 vs lote 2: two purchases
                sim = jaccard(tokens[i], tokens[j])
                if sim >= min_similarity:
                    found.append(_duplicate_anomaly(first, second, sim, days))
    return _sorted(found)


def _numbers(tokens: frozenset[str]) -> frozenset[str]:
    """The quantities, lots and annexes an object states ("809", "2")."""
    return frozenset(t for t in tokens if t.isdigit())


def _duplicate_anomaly(first: Contract, second: Contract, sim: float, days: int) -> Anomaly:
    v1, v2 = _value(first), _value(second)
    gap = abs(v1 - v2) / max(v1, v2)
    severity: Severity = "critical" if gap <= 0.02 and days <= 15 else "high"
    confidence = _clamp(0.45 + 0.3 * (sim - 0.8) / 0.2 + 0.1 * (1 - days / 60) + 0.1 * (1 - gap / 0.1))
    details = _base_details(first, v1, v2)
    details.update(
        other_contract_id=second.id,
        other_signed_on=second.signed_on.isoformat(),
        similarity=round(sim, 4),
        days_apart=days,
        value_gap=round(gap, 4),
        object=first.object,
        other_object=second.object,
    )
    return Anomaly(
        anomaly_type="duplicate_contract",
        severity=severity,
        confidence=round(confidence, 3),
        description=(
            f"Contratos {first.id} ({_date(first.signed_on)}, {format_brl(v1)}) e {second.id} "
            f"({_date(second.signed_on)}, {format_brl(v2)}) do mesmo comprador, "
            f"{_buyer_label(first)}, com o mesmo fornecedor, {first.supplier_name}, e objetos "
            f"{format_percent(sim)} iguais, assinados com {days} dias de diferença e sem "
            f"licitação comum: possível pagamento em dobro. {VERIFY_NOTE}"
        ),
        contract_ids=(first.id, second.id),
        details=details,
    )


# --------------------------------------------------------------------------- 5. splitting


def nature_key(c: Contract) -> str:
    """"Objects of the same nature" (art. 75 §1º): the purchase category when known, else
    the first two words that say what was bought."""
    if c.category:
        return c.category
    words = [w for w in normalize_ascii(c.object).split()
             if w not in _STOPWORDS and w not in _GENERIC and not w.isdigit()]  # fmt: skip
    return " ".join(words[:2])


def detect_contract_splitting(
    contracts: Sequence[Contract],
    *,
    min_contracts: int = 2,
    limits: Callable[[int], float] | None = None,
) -> list[Anomaly]:
    """Small-value dispensas (art. 75 II) of one UG, fiscal year and nature that together
    pass the year's limit: a purchase split to avoid a licitação (art. 75 §1º).

    The sum is over every supplier, so a ring of suppliers taking turns is caught as well
    as one supplier; the limit is the one in force in the signing year (``legal.py``).
    Emergency dispensas (art. 75 VIII), other dispensas, inexigibilidade and competitive
    modalities do not count; neither does one contract alone above the limit (that is no
    splitting, and a small-value dispensa above it is another problem).
    """
    limit_of = limits or (lambda year: dispensa_limit(year).value)
    groups: dict[tuple[str, int, str], list[Contract]] = defaultdict(list)
    for c in contracts:
        if legal_kind(c.legal_basis, c.modality, c.object) != "small_purchase":
            continue
        if c.initial_value >= limit_of(c.signed_on.year):
            continue
        # Without the UG, a whole ministry's small purchases say nothing about one unit's
        # planning: fall back to what one supplier received (the classic split).
        buyer = buyer_key(c) if c.ug else f"{agency_key(c)}|{supplier_key(c)}"
        groups[(buyer, c.signed_on.year, nature_key(c))].append(c)

    found: list[Anomaly] = []
    for key in sorted(groups):
        cluster = sorted(groups[key], key=lambda c: (c.signed_on, c.id))
        limit = limit_of(key[1])
        total = sum(c.initial_value for c in cluster)
        if len(cluster) >= min_contracts and total > limit:
            found.append(_splitting_anomaly(cluster, key[1], key[2], limit))
    return _sorted(found)


def _splitting_anomaly(cluster: list[Contract], year: int, nature: str, limit: float) -> Anomaly:
    n = len(cluster)
    total = sum(c.initial_value for c in cluster)
    suppliers = sorted({c.supplier_name for c in cluster})
    roots = {supplier_key(c) for c in cluster}
    span = (cluster[-1].signed_on - cluster[0].signed_on).days
    ratio = total / limit
    severity = _level(ratio, (1.5, 2.0, 3.0))
    if len(roots) >= 3:
        severity = _bump(severity)
    confidence = _clamp(0.35 + 0.3 * min(1.0, (ratio - 1) / 2) + 0.3 * _sample_factor(n, 4))
    main = max(cluster, key=lambda c: (c.initial_value, c.id))
    details = _base_details(main, limit, total)
    source = dispensa_limit(year)
    details.update(
        contract_count=n,
        days_span=span,
        fiscal_year=year,
        nature=nature,
        dispensa_limit=limit,
        limit_source=source.source if source.year == year else f"{source.source} (ano {source.year})",
        suppliers=suppliers,
        signed_from=cluster[0].signed_on.isoformat(),
        signed_to=cluster[-1].signed_on.isoformat(),
    )
    who = suppliers[0] if len(suppliers) == 1 else f"{len(roots)} fornecedores ({', '.join(suppliers[:4])})"
    return Anomaly(
        anomaly_type="contract_splitting",
        severity=severity,
        confidence=round(confidence, 3),
        description=(
            f"{n} dispensas por valor de {_buyer_label(main)} em {year} para “{nature}”, com "
            f"{who}, de {_date(cluster[0].signed_on)} a {_date(cluster[-1].signed_on)}, somam "
            f"{format_brl(total)}, {_format_ratio(ratio)} vezes o limite de {format_brl(limit)} "
            f"do art. 75, II ({details['limit_source']}), que vale para a soma do exercício "
            f"(art. 75, § 1º, da Lei 14.133/2021). {VERIFY_NOTE}"
        ),
        contract_ids=tuple(c.id for c in cluster),
        details=details,
    )


# --------------------------------------------------------------------------- 6. divergence

_REFORM = re.compile(r"\breforma")


def _allowed_periods(c: Contract) -> int:
    """How many yearly periods the vigência covers: an art. 107 extension of a 12-month
    service adds one period's value, which is not an amendment (emergency: never)."""
    if c.starts_on is None or c.ends_on is None or c.ends_on <= c.starts_on:
        return 1
    if legal_kind(c.legal_basis, c.modality, c.object) == "emergency":
        return 1
    days = (c.ends_on - c.starts_on).days
    return max(1, math.ceil((days - 31) / 365.25))  # a month's grace for date rounding


def detect_value_divergence(
    contracts: Sequence[Contract],
    *,
    tolerance: float = 0.01,
    max_cut: float = 0.50,
) -> list[Anomaly]:
    """Final values beyond what amendments may add (art. 125 of Lei 14.133/2021).

    The allowed final value is ``initial × periods × (1 + limit)``: ``limit`` is 25% (50%
    for a reforma), ``periods`` the yearly periods the vigência covers, since an art. 107
    extension of a continuing service adds a year's value without amending it. An emergency
    dispensa (art. 75 VIII) may not be extended, and lasting over a year is itself flagged.
    A final value the source left blank or 0,00 is missing, not a 100% reduction; a cut
    beyond ``max_cut`` is reported as low (a rescission or a wrong record, harmless money).
    """
    found: list[Anomaly] = []
    for c in contracts:
        if c.initial_value <= 0:
            continue
        long = c.starts_on and c.ends_on and (c.ends_on - c.starts_on).days > EMERGENCY_MAX_DAYS
        if long and legal_kind(c.legal_basis, c.modality, c.object) == "emergency":
            found.append(_emergency_anomaly(c))
            continue
        if not c.final_known or c.global_value <= 0:
            continue
        ratio = c.global_value / c.initial_value
        if 1 - max_cut <= ratio <= 1 + AMENDMENT_LIMIT + tolerance:
            continue  # the common case, decided without reading the text
        if ratio < 1 - max_cut:
            found.append(_cut_anomaly(c))
            continue
        reform = _REFORM.search(normalize_ascii(c.object)) is not None
        limit = REFORM_AMENDMENT_LIMIT if reform else AMENDMENT_LIMIT
        periods = _allowed_periods(c)
        change = ratio / periods - 1
        if change > limit + tolerance:
            found.append(_divergence_anomaly(c, change, limit, periods))
    return _sorted(found)


def _divergence_anomaly(c: Contract, change: float, limit: float, periods: int) -> Anomaly:
    beyond = change - limit
    severity = _level(beyond, (0.15, 0.5, 1.0))
    confidence = _clamp(0.55 + 0.4 * min(1.0, beyond / 1.0))
    allowed = c.initial_value * periods * (1 + limit)
    details = _base_details(c, allowed, c.global_value)
    details.update(
        change=round(change, 4),
        amendment_limit=limit,
        periods=periods,
        legal_basis=c.legal_basis,
        starts_on=c.starts_on.isoformat() if c.starts_on else None,
        ends_on=c.ends_on.isoformat() if c.ends_on else None,
        excess_value=round(c.global_value - allowed, 2),
    )
    period_note = (f", já contando {periods} períodos anuais de vigência (art. 107)"
                   if periods > 1 else "")  # fmt: skip
    return Anomaly(
        anomaly_type="value_divergence",
        severity=severity,
        confidence=round(confidence, 3),
        description=(
            f"Contrato {c.id} com {c.supplier_name}, assinado em {_date(c.signed_on)}: valor "
            f"final de {format_brl(c.global_value)} contra {format_brl(c.initial_value)} "
            f"inicial, um acréscimo de {format_percent(change)}{period_note}, acima do limite "
            f"de {format_percent(limit)} do art. 125 da Lei 14.133/2021 (máximo "
            f"{format_brl(allowed)}). {VERIFY_NOTE}"
        ),
        contract_ids=(c.id,),
        details=details,
    )


def _cut_anomaly(c: Contract) -> Anomaly:
    change = (c.global_value - c.initial_value) / c.initial_value
    details = _base_details(c, c.initial_value, c.global_value)
    details.update(change=round(change, 4), direction="reduction")
    return Anomaly(
        anomaly_type="value_divergence",
        severity="low",
        confidence=0.5,
        description=(
            f"Contrato {c.id} com {c.supplier_name}, assinado em {_date(c.signed_on)}: valor "
            f"final de {format_brl(c.global_value)}, {format_percent(-change)} abaixo dos "
            f"{format_brl(c.initial_value)} iniciais; verificar se houve rescisão ou erro de "
            f"registro (uma redução não custa dinheiro público). {VERIFY_NOTE}"
        ),
        contract_ids=(c.id,),
        details=details,
    )


def _emergency_anomaly(c: Contract) -> Anomaly:
    days = (c.ends_on - c.starts_on).days  # type: ignore[operator]
    details = _base_details(c, c.initial_value, _value(c))
    details.update(
        legal_basis=c.legal_basis, vigencia_days=days,
        starts_on=c.starts_on.isoformat(), ends_on=c.ends_on.isoformat(),  # type: ignore[union-attr]
    )  # fmt: skip
    return Anomaly(
        anomaly_type="value_divergence",
        severity="high" if _value(c) > c.initial_value * 1.01 else "medium",
        confidence=0.8,
        description=(
            f"Contrato emergencial {c.id} com {c.supplier_name} (dispensa do art. 75, VIII) "
            f"vigora de {_date(c.starts_on)} a {_date(c.ends_on)}, {days} dias: a lei limita a "
            f"contratação emergencial a um ano, sem prorrogação; valor {format_brl(_value(c))} "
            f"contra {format_brl(c.initial_value)} inicial. {VERIFY_NOTE}"
        ),
        contract_ids=(c.id,),
        details=details,
    )


# --------------------------------------------------------------------------- all together


def _sort_key(a: Anomaly) -> tuple[int, str, str, str]:
    """Most severe first, then by type and contract, so output never depends on input order."""
    return (-SEVERITIES.index(a.severity), a.anomaly_type, a.contract_ids[0], a.description)


def _sorted(anomalies: list[Anomaly]) -> list[Anomaly]:
    return sorted(anomalies, key=_sort_key)


ALL_DETECTORS: tuple[Detector, ...] = (
    detect_price_deviation,
    detect_supplier_concentration,
    detect_spending_spike,
    detect_duplicate_contracts,
    detect_contract_splitting,
    detect_value_divergence,
)

ANOMALY_TYPES: tuple[AnomalyType, ...] = get_args(AnomalyType)  # declared once, in model.py


def run_all(contracts: Sequence[Contract]) -> list[Anomaly]:
    """Every detector with its default thresholds, merged and sorted deterministically."""
    found: list[Anomaly] = []
    for detector in ALL_DETECTORS:
        found.extend(detector(contracts))
    return _sorted(found)
