"""Zumbi's detectors: pure functions that turn a list of contracts into anomalies.

Every detector has the shape ``(contracts, *, thresholds...) -> list[Anomaly]``: no I/O, no
randomness, no shared state, output sorted, so the same contracts always give the same
anomalies and each detector is tested (and benchmarked) on its own. They group first (by
category, agency, agency+supplier) so none compares every contract with every other one.

Severity, "how extreme", per type (the first matching row wins):

======================  ====================================================================
price_deviation         unit price / median: ≥ 5× critical, ≥ 3× high, ≥ 2× medium, else low
supplier_concentration  share of the agency's money: ≥ 95% critical, ≥ 90% high, ≥ 80% medium,
                        else low
spending_spike          month / mean of the other months: ≥ 5× critical, ≥ 3× high,
                        ≥ 2× medium, else low
duplicate_contract      starts low; one level up for each of: same supplier, values within
                        10%, signed within 90 days (all three: critical)
contract_splitting      3 contracts medium, 4-5 high, ≥ 6 critical; one level up when all were
                        signed within 30 days
value_divergence        increase ≥ 200% critical, ≥ 100% high, ≥ 75% medium, else low;
                        a reduction is at most medium (a cut costs the public nothing)
======================  ====================================================================

Confidence (0..1) says how much the evidence supports the finding, not how bad it is: it
grows with the size of the comparison group (a median of 6 prices proves less than one of
60) and with how far past the threshold the value lies; each ``_confidence_*`` helper
documents its formula. It never reaches 1: a detector sees numbers, not intent.
"""

from __future__ import annotations

import math
import re
import statistics
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, get_args

from .model import Anomaly, AnomalyType, Contract, Severity

__all__ = [
    "ALL_DETECTORS",
    "ANOMALY_TYPES",
    "DISPENSA_THRESHOLD",
    "SEVERITIES",
    "Detector",
    "detect_contract_splitting",
    "detect_duplicate_contracts",
    "detect_price_deviation",
    "detect_spending_spike",
    "detect_supplier_concentration",
    "detect_value_divergence",
    "format_brl",
    "format_percent",
    "jaccard",
    "normalize_text",
    "object_tokens",
    "run_all",
]

Detector = Callable[[Sequence[Contract]], list[Anomaly]]

SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")

# Lei 14.133/2021 art. 75 II limit for goods and services, as updated by decree; the
# same figure the sample generator uses. Passed explicitly when it changes.
DISPENSA_THRESHOLD = 57_208.33

_MONTHS_PT = (
    "janeiro", "fevereiro", "março", "abril", "maio", "junho",
    "julho", "agosto", "setembro", "outubro", "novembro", "dezembro",
)  # fmt: skip

# Words that say nothing about *what* was bought; dropping them keeps "aquisição de
# papel" and "aquisição do papel" identical and makes the Jaccard measure the content.
_STOPWORDS = frozenset(
    "a ao aos as com da das de do dos e em na nas no nos o os ou para pela pelas pelo "
    "pelos por sem sob sobre um uma umas uns".split()
)
_NON_WORD = re.compile(r"[^a-z0-9]+")


# --------------------------------------------------------------------------- formatting


def format_brl(value: float) -> str:
    """Money as a Brazilian reads it: ``R$ 1.234.567,89`` (minus sign before the symbol)."""
    sign = "-" if value < 0 and round(abs(value), 2) > 0 else ""
    us = f"{abs(value):,.2f}"  # 1,234,567.89
    return f"{sign}R$ " + us.replace(",", "_").replace(".", ",").replace("_", ".")


def format_percent(fraction: float) -> str:
    """``0.823 -> "82%"``: citizens read whole percentages; decimals suggest false precision."""
    return f"{round(fraction * 100):.0f}%"


def _format_ratio(ratio: float) -> str:
    """``2.84 -> "2,8"``: one decimal, Brazilian comma."""
    return f"{ratio:.1f}".replace(".", ",")


def _month_label(year: int, month: int) -> str:
    return f"{_MONTHS_PT[month - 1]}/{year}"


# --------------------------------------------------------------------------- shared helpers


def normalize_text(text: str) -> str:
    """Lower case, no accents, no punctuation, so spelling variants compare equal.

    "Aquisição  de PAPEL-A4" -> "aquisicao de papel a4".
    """
    # NFKD splits "ç" into "c" + cedilla and "²" into "2"; the ASCII round trip then drops
    # the marks in C, far faster than filtering characters one by one in Python.
    bare = unicodedata.normalize("NFKD", text.casefold()).encode("ascii", "ignore").decode()
    return _NON_WORD.sub(" ", bare).strip()


def object_tokens(text: str) -> frozenset[str]:
    """The words of a contract object that carry meaning (normalized, stopwords dropped)."""
    return frozenset(w for w in normalize_text(text).split() if w not in _STOPWORDS)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|A ∩ B| / |A ∪ B|; two empty sets are not similar (nothing to compare)."""
    common = len(a & b)
    union = len(a) + len(b) - common
    return common / union if union else 0.0


def _supplier_key(contract: Contract) -> str:
    """The CNPJ identifies a supplier; names vary in spelling, so they are only a fallback."""
    return contract.supplier_cnpj or normalize_text(contract.supplier_name)


def _value(contract: Contract) -> float:
    """What the contract is worth today: the global value, or the initial one if absent."""
    return contract.global_value if contract.global_value > 0 else contract.initial_value


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


def _clamp(x: float, lo: float = 0.0, hi: float = 0.99) -> float:
    return max(lo, min(hi, x))


def _base_details(contract: Contract, expected: float, actual: float) -> dict[str, Any]:
    """The keys every anomaly carries, so a UI can render any of them the same way."""
    return {
        "contract_id": contract.id,
        "expected_value": round(float(expected), 2),
        "actual_value": round(float(actual), 2),
        "supplier": contract.supplier_name,
        "agency": contract.agency,
    }


# --------------------------------------------------------------------------- 1. price


def detect_price_deviation(
    contracts: Sequence[Contract],
    *,
    min_peers: int = 5,
    modified_z: float = 3.5,
    classic_z: float = 2.5,
    min_ratio: float = 1.5,
) -> list[Anomaly]:
    """Unit prices far above what the same category usually costs (overpricing).

    Two tests, either suffices: the modified z-score (median/MAD, Iglewicz & Hoaglin) is
    not dragged by the outliers it hunts, so it works on small groups; the classic z-score
    catches the wide, well-populated categories where MAD is tiny relative to the spread.
    Statistics use the whole category (the contract included), which the robust test
    tolerates by design. Prices *below* the peers are not flagged: paying less is no harm.

    Being unusual is not enough: the price must also be material, ``min_ratio`` times the
    median (default 50% above). By chance alone the classic test flags about one honest
    price in 160 (the normal tail beyond 2.5σ), often a mere 20-30% above the median, which
    freight, region and brand explain; an auditor would not call that overpricing.
    """
    groups: dict[str, list[Contract]] = defaultdict(list)
    for c in contracts:
        if c.category and c.unit_price is not None and c.unit_price > 0:
            groups[c.category].append(c)

    found: list[Anomaly] = []
    for category in sorted(groups):
        group = groups[category]
        if len(group) < min_peers:
            continue
        prices = [float(c.unit_price) for c in group]  # type: ignore[arg-type]
        median = statistics.median(prices)
        mad = statistics.median(abs(p - median) for p in prices)
        # MAD is 0 when over half the prices are equal; the mean absolute deviation (scaled
        # to the same consistency, 1.2533 = sqrt(pi/2)) keeps the robust test usable.
        robust_scale = mad / 0.6745 if mad > 0 else 1.2533 * statistics.fmean(
            abs(p - median) for p in prices
        )
        mean = statistics.fmean(prices)
        stdev = statistics.pstdev(prices, mean)
        for c, price in zip(group, prices, strict=True):
            if price < min_ratio * median or price <= median:
                continue
            mz = (price - median) / robust_scale if robust_scale > 0 else 0.0
            z = (price - mean) / stdev if stdev > 0 else 0.0
            tests = (mz > modified_z) + (z > classic_z)
            if tests:
                found.append(_price_anomaly(c, price, median, mz, z, tests, len(group)))
    return _sorted(found)


def _price_anomaly(
    c: Contract, price: float, median: float, mz: float, z: float, tests: int, peers: int
) -> Anomaly:
    ratio = price / median
    above = ratio - 1
    category = c.category
    # Confidence: 0.45 for one test, 0.6 for both, plus up to 0.35 for a large peer group.
    confidence = _clamp(0.3 + 0.15 * tests + 0.35 * _sample_factor(peers, 20))
    details = _base_details(c, median, price)
    details.update(
        category=category,
        peers=peers,
        ratio=round(ratio, 3),
        modified_z=round(mz, 2),
        z_score=round(z, 2),
    )
    return Anomaly(
        anomaly_type="price_deviation",
        severity=_level(ratio, (2.0, 3.0, 5.0)),
        confidence=round(confidence, 3),
        description=(
            f"Preço {format_percent(above)} acima da mediana de {peers} contratos semelhantes "
            f"({category}): {format_brl(price)} por unidade, contra {format_brl(median)}"
        ),
        contract_ids=(c.id,),
        details=details,
    )


# --------------------------------------------------------------------------- 2. concentration


def detect_supplier_concentration(
    contracts: Sequence[Contract],
    *,
    min_share: float = 0.70,
    min_contracts: int = 5,
) -> list[Anomaly]:
    """One supplier receiving most of an agency's money: a sign of directed purchases.

    Shares use the current (global) value, the money actually committed. Agencies with
    fewer than ``min_contracts`` contracts are skipped: with 2 contracts someone holds 50%+.
    """
    by_agency: dict[str, list[Contract]] = defaultdict(list)
    for c in contracts:
        by_agency[c.agency].append(c)

    found: list[Anomaly] = []
    for agency in sorted(by_agency):
        group = by_agency[agency]
        total = sum(_value(c) for c in group)
        if len(group) < min_contracts or total <= 0:
            continue
        by_supplier: dict[str, list[Contract]] = defaultdict(list)
        for c in group:
            by_supplier[_supplier_key(c)].append(c)
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
    # Confidence: how far past the threshold (0..0.4) plus how many contracts back it (0..0.5).
    excess = (share - min_share) / (1 - min_share) if min_share < 1 else 1.0
    confidence = _clamp(0.1 + 0.4 * excess + 0.5 * _sample_factor(agency_contracts, 10))
    # Expected: the most a single supplier could hold without being flagged.
    details = _base_details(main, min_share * total, supplier_total)
    details.update(
        share=round(share, 4),
        agency_total=round(total, 2),
        supplier_cnpj=main.supplier_cnpj,
        supplier_contracts=len(own),
        agency_contracts=agency_contracts,
        agency_suppliers=suppliers,
    )
    return Anomaly(
        anomaly_type="supplier_concentration",
        severity=_level(share, (0.80, 0.90, 0.95)),
        confidence=round(confidence, 3),
        description=(
            f"Fornecedor {main.supplier_name} concentra {format_percent(share)} dos "
            f"{format_brl(total)} gastos pelo órgão {agency} "
            f"({len(own)} de {agency_contracts} contratos)"
        ),
        contract_ids=ids,
        details=details,
    )


# --------------------------------------------------------------------------- 3. spike


def detect_spending_spike(
    contracts: Sequence[Contract],
    *,
    z_threshold: float = 2.0,
    min_months: int = 6,
    min_ratio: float = 1.5,
) -> list[Anomaly]:
    """A month in which an agency signed far more than it usually does.

    Monthly totals use the initial value (what was committed when signing; amendments come
    later and are ``value_divergence``'s business). The z-score is computed against the
    agency's other months, so the spike does not inflate its own yardstick; ``min_ratio``
    (month ≥ 1.5× the usual mean) keeps calm agencies' ordinary wobble from being flagged.
    ``contract_ids`` are the largest contracts of the month that together explain the excess.
    """
    months: dict[str, dict[tuple[int, int], list[Contract]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for c in contracts:
        months[c.agency][(c.signed_on.year, c.signed_on.month)].append(c)

    found: list[Anomaly] = []
    for agency in sorted(months):
        by_month = months[agency]
        if len(by_month) < min_months:
            continue
        totals = {m: sum(c.initial_value for c in cs) for m, cs in by_month.items()}
        for month in sorted(totals):
            others = [v for m, v in totals.items() if m != month]
            mean = statistics.fmean(others)
            stdev = statistics.stdev(others) if len(others) > 1 else 0.0
            value = totals[month]
            if mean <= 0 or value < min_ratio * mean:
                continue
            z = (value - mean) / stdev if stdev > 0 else math.inf
            if z <= z_threshold:
                continue
            found.append(
                _spike_anomaly(by_month[month], agency, month, value, mean, z, len(totals))
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
    mean: float,
    z: float,
    n_months: int,
) -> Anomaly:
    ratio = value / mean
    chosen = _explaining_contracts(month_contracts, value - mean)
    # Confidence: how many months form the baseline (0..0.5) plus the z margin (0..0.4).
    z_part = 0.4 * min(1.0, (min(z, 10.0) - 2.0) / 4.0)
    confidence = _clamp(0.1 + 0.5 * _sample_factor(n_months, 6) + z_part)
    details = _base_details(chosen[0], mean, value)
    details.update(
        month=f"{month[0]:04d}-{month[1]:02d}",
        ratio=round(ratio, 3),
        z_score=round(z, 2) if math.isfinite(z) else 999.0,  # flat history: JSON has no inf
        months=n_months,
        month_contracts=len(month_contracts),
    )
    return Anomaly(
        anomaly_type="spending_spike",
        severity=_level(ratio, (2.0, 3.0, 5.0)),
        confidence=round(confidence, 3),
        description=(
            f"Gastos de {_month_label(*month)} {_format_ratio(ratio)} vezes acima da média "
            f"mensal do órgão {agency}: {format_brl(value)} contra {format_brl(mean)} por mês"
        ),
        contract_ids=tuple(c.id for c in chosen),
        details=details,
    )


# --------------------------------------------------------------------------- 4. duplicates


def detect_duplicate_contracts(
    contracts: Sequence[Contract],
    *,
    min_similarity: float = 0.85,
    min_tokens: int = 3,
) -> list[Anomaly]:
    """Two contracts of one agency buying practically the same thing (word Jaccard).

    Only pairs inside an agency are compared, and only pairs that share a rare word among
    their first few (prefix filtering, Chaudhuri et al. 2006): two sets with Jaccard ≥ t
    must share one of their ``|x| - ceil(t·|x|) + 1`` rarest words, so nothing is missed
    while most of the n² pairs are never looked at. Objects with fewer than ``min_tokens``
    meaningful words ("Serviços gerais") are too vague to call duplicates.
    """
    by_agency: dict[str, list[Contract]] = defaultdict(list)
    for c in contracts:
        by_agency[c.agency].append(c)

    found: list[Anomaly] = []
    for agency in sorted(by_agency):
        group = sorted(by_agency[agency], key=lambda c: c.id)
        tokens = [object_tokens(c.object) for c in group]
        keep = [i for i, t in enumerate(tokens) if len(t) >= min_tokens]
        sets = [tokens[i] for i in keep]
        for a, b in sorted(_candidate_pairs(sets, min_similarity)):
            sim = jaccard(sets[a], sets[b])
            if sim > min_similarity:
                found.append(_duplicate_anomaly(group[keep[a]], group[keep[b]], sim))
    return _sorted(found)


def _candidate_pairs(sets: list[frozenset[str]], threshold: float) -> set[tuple[int, int]]:
    """Index pairs (i < j) that may reach ``threshold``: they share a prefix word."""
    freq = Counter(tok for s in sets for tok in s)
    index: dict[str, list[int]] = defaultdict(list)
    pairs: set[tuple[int, int]] = set()
    sizes = [len(s) for s in sets]
    for i, s in enumerate(sets):
        ordered = sorted(s, key=lambda t: (freq[t], t))
        prefix = len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1
        for tok in ordered[:prefix]:
            for j in index[tok]:
                small, large = min(sizes[j], sizes[i]), max(sizes[j], sizes[i])
                if small >= threshold * large - 1e-9:  # length filter: J ≤ small/large
                    pairs.add((j, i))
            index[tok].append(i)
    return pairs


def _duplicate_anomaly(first: Contract, second: Contract, sim: float) -> Anomaly:
    same_supplier = _supplier_key(first) == _supplier_key(second)
    v1, v2 = _value(first), _value(second)
    close_values = max(v1, v2) > 0 and abs(v1 - v2) / max(v1, v2) <= 0.10
    days = abs((first.signed_on - second.signed_on).days)
    close_dates = days <= 90
    signals = same_supplier + close_values + close_dates
    severity = SEVERITIES[signals]
    # Confidence: similarity above threshold (0..0.3) plus 0.15 per corroborating signal.
    confidence = _clamp(0.4 + 0.3 * (sim - 0.85) / 0.15 + 0.15 * signals, 0.3)
    details = _base_details(first, v1, v2)
    details.update(
        other_contract_id=second.id,
        other_supplier=second.supplier_name,
        similarity=round(sim, 4),
        same_supplier=int(same_supplier),
        days_apart=days,
        object=first.object,
        other_object=second.object,
    )
    return Anomaly(
        anomaly_type="duplicate_contract",
        severity=severity,
        confidence=round(confidence, 3),
        description=(
            f"Contratos {first.id} e {second.id} têm objetos praticamente idênticos "
            f"(similaridade {format_percent(sim)}), assinados com {days} dias de diferença: "
            f"{format_brl(v1)} e {format_brl(v2)}"
        ),
        contract_ids=(first.id, second.id),
        details=details,
    )


# --------------------------------------------------------------------------- 5. splitting


def _looks_like_dispensa(modality: str) -> bool:
    """Splitting is done to stay under the dispensa limit; an unknown modality may hide it."""
    norm = normalize_text(modality)
    return not norm or "dispensa" in norm


def detect_contract_splitting(
    contracts: Sequence[Contract],
    *,
    threshold: float = DISPENSA_THRESHOLD,
    band: float = 0.80,
    min_contracts: int = 3,
    window_days: int = 90,
) -> list[Anomaly]:
    """Several contracts just under the dispensa limit, same agency and supplier, close in time.

    That is the signature of a purchase split to avoid a licitação (Lei 14.133, art. 75
    §1º forbids it). A contract counts when ``band·threshold ≤ value < threshold`` and its
    modality is a dispensa (or unknown: competitive modalities would gain nothing by it).
    Runs are cut greedily from the earliest contract, so each contract belongs to at most
    one anomaly.
    """
    groups: dict[tuple[str, str], list[Contract]] = defaultdict(list)
    low = band * threshold
    for c in contracts:
        if low <= c.initial_value < threshold and _looks_like_dispensa(c.modality):
            groups[(c.agency, _supplier_key(c))].append(c)

    found: list[Anomaly] = []
    for key in sorted(groups):
        run = sorted(groups[key], key=lambda c: (c.signed_on, c.id))
        for cluster in _time_clusters(run, window_days, min_contracts):
            found.append(_splitting_anomaly(cluster, threshold, min_contracts, window_days))
    return _sorted(found)


def _time_clusters(
    run: list[Contract], window_days: int, min_size: int
) -> Iterable[list[Contract]]:
    """Greedy, non-overlapping windows of ≥ ``min_size`` contracts spanning ≤ ``window_days``."""
    i = 0
    while i < len(run):
        j = i
        while j + 1 < len(run) and (run[j + 1].signed_on - run[i].signed_on).days <= window_days:
            j += 1
        if j - i + 1 >= min_size:
            yield run[i : j + 1]
            i = j + 1
        else:
            i += 1


def _splitting_anomaly(
    cluster: list[Contract], threshold: float, min_contracts: int, window_days: int
) -> Anomaly:
    n = len(cluster)
    total = sum(c.initial_value for c in cluster)
    mean = total / n
    span = (cluster[-1].signed_on - cluster[0].signed_on).days
    severity: Severity = "medium" if n <= 3 else "high" if n <= 5 else "critical"
    if span <= 30:
        severity = _bump(severity)
    # Confidence: more contracts (0..0.4), tighter in time (0..0.2), closer to the limit (0..0.2).
    closeness = 1 - (threshold - mean) / threshold / 0.2  # 1 right at the limit, 0 at 80%
    confidence = _clamp(
        0.2
        + 0.4 * _sample_factor(n - min_contracts + 1, 2)
        + 0.2 * (1 - span / window_days)
        + 0.2 * _clamp(closeness, 0.0, 1.0)
    )
    main = max(cluster, key=lambda c: (c.initial_value, c.id))
    details = _base_details(main, threshold, total)
    details.update(
        contract_count=n,
        days_span=span,
        mean_value=round(mean, 2),
        dispensa_threshold=threshold,
        supplier_cnpj=main.supplier_cnpj,
        signed_from=cluster[0].signed_on.isoformat(),
        signed_to=cluster[-1].signed_on.isoformat(),
    )
    return Anomaly(
        anomaly_type="contract_splitting",
        severity=severity,
        confidence=round(confidence, 3),
        description=(
            f"{n} contratos de cerca de {format_brl(mean)} cada com {main.supplier_name}, "
            f"logo abaixo do limite de dispensa de {format_brl(threshold)}, em {span} dias "
            f"(juntos somam {format_brl(total)}, o que exigiria licitação)"
        ),
        contract_ids=tuple(c.id for c in cluster),
        details=details,
    )


# --------------------------------------------------------------------------- 6. divergence


def detect_value_divergence(
    contracts: Sequence[Contract],
    *,
    max_change: float = 0.50,
) -> list[Anomaly]:
    """Contracts whose final value drifted far from the value signed.

    Lei 14.133 art. 125 caps amendments at 25% (50% for renovations), so a change beyond
    50% exceeds even the widest legal margin. Reductions are reported too, but milder.
    """
    found: list[Anomaly] = []
    for c in contracts:
        if c.initial_value <= 0:
            continue
        change = (c.global_value - c.initial_value) / c.initial_value
        if abs(change) > max_change:
            found.append(_divergence_anomaly(c, change, max_change))
    return _sorted(found)


def _divergence_anomaly(c: Contract, change: float, max_change: float) -> Anomaly:
    if change > 0:
        severity = _level(change, (0.75, 1.0, 2.0))
        direction = "acima"
    else:
        severity = "medium" if change <= -0.75 else "low"
        direction = "abaixo"
    # Confidence: how far past the limit, saturating at 4× it (0.5..0.95); the values are
    # recorded facts, only their meaning is uncertain, so it starts high.
    confidence = _clamp(0.5 + 0.45 * min(1.0, (abs(change) - max_change) / (3 * max_change)))
    details = _base_details(c, c.initial_value, c.global_value)
    details.update(change=round(change, 4))
    return Anomaly(
        anomaly_type="value_divergence",
        severity=severity,
        confidence=round(confidence, 3),
        description=(
            f"Valor final {format_percent(abs(change))} {direction} do valor inicial do "
            f"contrato {c.id}: {format_brl(c.global_value)} contra {format_brl(c.initial_value)}"
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
