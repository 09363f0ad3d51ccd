"""Zumbi's detectors on small, hand-made contract lists: each fires, stays silent, and explains."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cidadao_trio.investigations import detectors as d
from cidadao_trio.investigations.detectors import (
    ALL_DETECTORS,
    DISPENSA_THRESHOLD,
    SEVERITIES,
    detect_contract_splitting,
    detect_duplicate_contracts,
    detect_price_deviation,
    detect_spending_spike,
    detect_supplier_concentration,
    detect_value_divergence,
    format_brl,
    run_all,
)
from cidadao_trio.investigations.model import Anomaly, Contract

SAUDE = "Ministério da Saúde"
EDUCACAO = "Ministério da Educação"
DAY0 = dt.date(2025, 1, 6)
_ids = itertools.count(1)


def contract(
    *,
    id: str | None = None,
    agency: str = SAUDE,
    supplier: str = "Alfa Ltda",
    cnpj: str | None = None,
    object: str = "Prestação de serviços diversos número {n}",
    category: str = "",
    value: float = 10_000.0,
    global_value: float | None = None,
    signed_on: dt.date = DAY0,
    unit_price: float | None = None,
    modality: str = "Pregão Eletrônico",
) -> Contract:
    """A contract with harmless defaults; each test sets only what it is about."""
    n = next(_ids)
    return Contract(
        id=id or f"CT-{n:05d}",
        agency=agency,
        supplier_name=supplier,
        supplier_cnpj=cnpj if cnpj is not None else f"{abs(hash(supplier)) % 10**14:014d}",
        object=object.format(n=n),
        category=category,
        initial_value=value,
        global_value=value if global_value is None else global_value,
        signed_on=signed_on,
        quantity=None if unit_price is None else 100.0,
        unit_price=unit_price,
        modality=modality,
    )


def severity_rank(a: Anomaly) -> int:
    return SEVERITIES.index(a.severity)


def only(anomalies: Sequence[Anomaly]) -> Anomaly:
    assert len(anomalies) == 1, anomalies
    return anomalies[0]


# ------------------------------------------------------------------------ formatting


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1_234_567.89, "R$ 1.234.567,89"),
        (0, "R$ 0,00"),
        (0.5, "R$ 0,50"),
        (999.999, "R$ 1.000,00"),
        (57_208.33, "R$ 57.208,33"),
        (-1_234.5, "-R$ 1.234,50"),
        (-0.001, "R$ 0,00"),
    ],
)
def test_format_brl(value: float, text: str) -> None:
    assert format_brl(value) == text


def test_normalize_text_drops_accents_case_and_punctuation() -> None:
    assert d.normalize_text("Aquisição  de PAPEL-A4, (branco)!") == "aquisicao de papel a4 branco"
    assert d.object_tokens("Aquisição de papel para a unidade") == {
        "aquisicao",
        "papel",
        "unidade",
    }


# ------------------------------------------------------------------------ 1. price deviation


def price_group(prices: Sequence[float], category: str = "Papel A4") -> list[Contract]:
    return [contract(category=category, unit_price=p) for p in prices]


NORMAL_PRICES = [20.0, 21.0, 22.0, 20.5, 21.5, 23.0, 19.5, 22.5, 21.0, 20.0]


def test_price_deviation_flags_an_overpriced_contract() -> None:
    group = price_group(NORMAL_PRICES)
    outlier = contract(category="Papel A4", unit_price=84.0)
    a = only(detect_price_deviation([*group, outlier]))
    assert a.anomaly_type == "price_deviation"
    assert a.contract_ids == (outlier.id,)
    median = 21.0
    assert a.details["expected_value"] == median
    assert a.details["actual_value"] == 84.0
    assert a.details["peers"] == 11
    assert a.details["category"] == "Papel A4"
    assert a.description.startswith("Preço 300% acima da mediana de 11 contratos semelhantes")
    assert "R$ 84,00" in a.description and "R$ 21,00" in a.description


def test_price_deviation_silent_on_normal_prices_and_on_cheap_outliers() -> None:
    assert detect_price_deviation(price_group(NORMAL_PRICES)) == []
    cheap = contract(category="Papel A4", unit_price=1.0)
    assert detect_price_deviation([*price_group(NORMAL_PRICES), cheap]) == []


def test_price_deviation_needs_peers_a_category_and_a_unit_price() -> None:
    few = [*price_group([20.0, 21.0, 22.0]), contract(category="Papel A4", unit_price=500.0)]
    assert detect_price_deviation(few) == []  # 4 < 5 contracts in the category
    no_category = [*price_group(NORMAL_PRICES, category=""), contract(unit_price=500.0)]
    assert detect_price_deviation(no_category) == []
    unpriced = [*price_group(NORMAL_PRICES), contract(category="Papel A4", unit_price=None)]
    assert detect_price_deviation(unpriced) == []


def test_price_deviation_compares_only_within_the_category() -> None:
    paper = price_group(NORMAL_PRICES)
    servers = price_group([20_000.0, 21_000.0, 19_000.0, 20_500.0, 22_000.0], "Servidores")
    assert detect_price_deviation([*paper, *servers]) == []


def test_price_deviation_modified_z_edge() -> None:
    # Group [8, 9, 10, 11, 12, x]: median 10.5, MAD 1.5, so modified z > 3.5 iff x > 18.28;
    # the classic z of six values can never exceed 5/sqrt(6) ≈ 2.04, so only MAD decides.
    peers = [8.0, 9.0, 10.0, 11.0, 12.0]
    assert detect_price_deviation(price_group([*peers, 18.0])) == []
    a = only(detect_price_deviation(price_group([*peers, 18.6])))
    assert a.details["actual_value"] == 18.6
    assert a.details["modified_z"] > 3.5


def test_price_deviation_classic_z_catches_what_mad_misses() -> None:
    # Half the prices sit at 10, half at 30: median 20 and MAD 10 make 70 look tame
    # (modified z = 3.4), but with 41 contracts the classic z-score (≈ 3.7) sees it.
    prices = [10.0] * 20 + [30.0] * 20 + [70.0]
    a = only(detect_price_deviation(price_group(prices)))
    assert a.details["modified_z"] <= 3.5 < a.details["z_score"]
    assert detect_price_deviation(price_group(prices), classic_z=4.0) == []


def test_price_deviation_must_be_material_not_only_unusual() -> None:
    # 28 is statistically odd among tight prices (modified z ≈ 6) but only 33% above the
    # median: below the default 50% materiality, above a 30% one.
    group = price_group([*NORMAL_PRICES, 28.0])
    assert detect_price_deviation(group) == []
    a = only(detect_price_deviation(group, min_ratio=1.3))
    assert a.details["modified_z"] > 3.5
    assert a.description.startswith("Preço 33% acima da mediana")


def test_price_deviation_when_most_prices_are_equal() -> None:
    # MAD is 0; the mean-absolute-deviation fallback still separates 10 from 40.
    a = only(detect_price_deviation(price_group([10.0] * 8 + [40.0])))
    assert a.details["actual_value"] == 40.0


def test_price_deviation_severity_grows_with_the_ratio() -> None:
    def severity_for(price: float) -> str:
        return only(detect_price_deviation(price_group([*NORMAL_PRICES, price]))).severity

    assert severity_for(35.0) == "low"  # 1.7× the median
    assert severity_for(50.0) == "medium"  # 2.4×
    assert severity_for(70.0) == "high"  # 3.3×
    assert severity_for(120.0) == "critical"  # 5.7×


# ------------------------------------------------------------------------ 2. concentration


def agency_spending(shares: dict[str, list[float]], agency: str = SAUDE) -> list[Contract]:
    return [
        contract(agency=agency, supplier=supplier, value=value)
        for supplier, values in shares.items()
        for value in values
    ]


def test_supplier_concentration_edge_69_vs_71_percent() -> None:
    others = {f"Fornecedor {i}": [v] for i, v in enumerate([8_000.0, 8_000.0, 8_000.0])}
    below = agency_spending({"Alfa Ltda": [69_000.0], **others, "Beta": [7_000.0]})
    assert detect_supplier_concentration(below) == []
    above = agency_spending({"Alfa Ltda": [71_000.0], **others, "Beta": [5_000.0]})
    a = only(detect_supplier_concentration(above))
    assert a.details["share"] == pytest.approx(0.71)
    assert a.description == (
        "Fornecedor Alfa Ltda concentra 71% dos R$ 100.000,00 gastos pelo órgão "
        "Ministério da Saúde (1 de 5 contratos)"
    )


def test_supplier_concentration_lists_all_the_suppliers_contracts() -> None:
    contracts = agency_spending(
        {"Alfa Ltda": [30_000.0, 30_000.0, 25_000.0], "Beta": [5_000.0] * 3}
    )
    a = only(detect_supplier_concentration(contracts))
    alfa = sorted(c.id for c in contracts if c.supplier_name == "Alfa Ltda")
    assert list(a.contract_ids) == alfa
    assert a.details["supplier_contracts"] == 3
    assert a.details["agency_total"] == 100_000.0
    assert a.details["actual_value"] == 85_000.0
    assert a.details["expected_value"] == 70_000.0


def test_supplier_concentration_is_per_agency_and_needs_five_contracts() -> None:
    saude = agency_spending({"Alfa Ltda": [90_000.0], "Beta": [1_000.0] * 4})
    educacao = agency_spending({"Alfa Ltda": [10_000.0] * 2, "Gama": [10_000.0] * 3}, EDUCACAO)
    a = only(detect_supplier_concentration([*saude, *educacao]))
    assert a.details["agency"] == SAUDE
    small = agency_spending({"Alfa Ltda": [90_000.0], "Beta": [1_000.0] * 3})
    assert detect_supplier_concentration(small) == []


def test_supplier_concentration_uses_the_cnpj_not_the_spelling() -> None:
    contracts = [
        contract(supplier="ALFA LTDA", cnpj="11222333000181", value=40_000.0),
        contract(supplier="Alfa Ltda.", cnpj="11222333000181", value=40_000.0),
        *agency_spending({f"F{i}": [5_000.0] for i in range(4)}),
    ]
    assert only(detect_supplier_concentration(contracts)).details["share"] == 0.8


def test_supplier_concentration_severity_grows_with_the_share() -> None:
    def severity_for(share_pct: int) -> str:
        rest = (100 - share_pct) * 1_000.0 / 4
        contracts = agency_spending(
            {"Alfa Ltda": [share_pct * 1_000.0], **{f"F{i}": [rest] for i in range(4)}}
        )
        return only(detect_supplier_concentration(contracts)).severity

    assert [severity_for(p) for p in (75, 85, 92, 97)] == ["low", "medium", "high", "critical"]


# ------------------------------------------------------------------------ 3. spending spike


def monthly(totals: Sequence[float], agency: str = SAUDE) -> list[Contract]:
    """Two contracts per month (60% + 40% of the total), January 2025 onwards."""
    out = []
    for i, total in enumerate(totals):
        day = dt.date(2025 + i // 12, i % 12 + 1, 10)
        out.append(contract(agency=agency, value=total * 0.6, signed_on=day))
        out.append(contract(agency=agency, value=total * 0.4, signed_on=day))
    return out


CALM = [100_000.0, 95_000.0, 105_000.0, 98_000.0, 102_000.0, 100_000.0, 97_000.0, 103_000.0]


def test_spending_spike_flags_the_month_and_the_contracts_behind_it() -> None:
    contracts = monthly(CALM)
    big = contract(value=180_000.0, signed_on=dt.date(2025, 4, 20))
    a = only(detect_spending_spike([*contracts, big]))
    assert a.anomaly_type == "spending_spike"
    assert a.details["month"] == "2025-04"
    assert a.contract_ids == (big.id,)  # 180 000 alone explains the excess over ~100 000
    assert a.details["contract_id"] == big.id
    assert a.details["actual_value"] == 278_000.0
    assert a.description.startswith("Gastos de abril/2025 2,8 vezes acima da média mensal")
    assert "R$ 278.000,00" in a.description


def test_spending_spike_silent_on_calm_agencies_and_short_histories() -> None:
    assert detect_spending_spike(monthly(CALM)) == []
    short = monthly([100_000.0] * 4 + [900_000.0])  # five months is no baseline
    assert detect_spending_spike(short) == []


def test_spending_spike_needs_both_z_and_ratio() -> None:
    # A perfectly flat agency: 108 000 has an infinite z-score but is only 1.08× normal.
    flat = monthly([100_000.0] * 7 + [108_000.0])
    assert detect_spending_spike(flat) == []
    assert only(detect_spending_spike(flat, min_ratio=1.05)).details["month"] == "2025-08"
    # A wild agency: 2× its mean but its months vary too much for z > 2.
    wild = monthly([20_000.0, 180_000.0, 40_000.0, 160_000.0, 60_000.0, 140_000.0, 200_000.0])
    assert detect_spending_spike(wild) == []


def test_spending_spike_is_per_agency() -> None:
    saude = monthly(CALM)
    educacao = monthly([1_000_000.0] * 8, EDUCACAO)  # far larger, but steady
    assert detect_spending_spike([*saude, *educacao]) == []


def test_spending_spike_severity_grows_with_the_ratio() -> None:
    def severity_for(spike: float) -> str:
        return only(detect_spending_spike(monthly([*CALM, spike]))).severity

    assert [severity_for(x) for x in (160_000, 250_000, 350_000, 600_000)] == [
        "low",
        "medium",
        "high",
        "critical",
    ]


# ------------------------------------------------------------------------ 4. duplicates


BASE_OBJECT = "Aquisição de papel sulfite A4 branco resmas escritório unidade central Brasília"
# tokens: aquisicao papel sulfite a4 branco resmas escritorio unidade central brasilia (10)


def test_duplicate_contracts_jaccard_edge_08_vs_09() -> None:
    first = contract(object=BASE_OBJECT)
    plus_one = contract(object=BASE_OBJECT + " reciclado")  # 10/11 = 0.91
    a = only(detect_duplicate_contracts([first, plus_one]))
    assert a.contract_ids == (first.id, plus_one.id)
    assert a.details["similarity"] == pytest.approx(10 / 11, abs=1e-4)
    assert a.description.startswith(
        f"Contratos {first.id} e {plus_one.id} têm objetos praticamente idênticos "
        "(similaridade 91%)"
    )
    eight = "Aquisição de papel sulfite A4 branco resmas escritório unidade"
    plus_two = contract(object=eight + " reciclado urgente")  # 8/10 = 0.8
    assert detect_duplicate_contracts([contract(object=eight), plus_two]) == []
    swapped = [contract(object=eight + " reciclado"), contract(object=eight + " urgente")]
    assert detect_duplicate_contracts(swapped) == []  # 8/10 = 0.8 at equal sizes
    assert len(detect_duplicate_contracts(swapped, min_similarity=0.75)) == 1


def test_duplicate_contracts_ignore_case_accents_punctuation_and_stopwords() -> None:
    first = contract(object="Aquisição de PAPEL sulfite A4, para a unidade central.")
    second = contract(object="aquisicao papel sulfite a4 unidade central")
    assert only(detect_duplicate_contracts([first, second])).details["similarity"] == 1.0


def test_duplicate_contracts_only_within_an_agency() -> None:
    pair = [contract(object=BASE_OBJECT), contract(object=BASE_OBJECT, agency=EDUCACAO)]
    assert detect_duplicate_contracts(pair) == []


def test_duplicate_contracts_silent_on_different_objects_and_vague_ones() -> None:
    different = [
        contract(object="Aquisição de papel sulfite A4 para a unidade central"),
        contract(object="Manutenção predial preventiva e corretiva do edifício sede"),
        contract(object="Locação de veículos com motorista para a unidade central"),
    ]
    assert detect_duplicate_contracts(different) == []
    vague = [contract(object="Serviços gerais"), contract(object="Serviços gerais")]
    assert detect_duplicate_contracts(vague) == []


def test_duplicate_contracts_reports_each_pair_once() -> None:
    triple = [contract(object=BASE_OBJECT) for _ in range(3)]
    found = detect_duplicate_contracts(triple)
    pairs = {a.contract_ids for a in found}
    ids = sorted(c.id for c in triple)
    assert pairs == {(ids[0], ids[1]), (ids[0], ids[2]), (ids[1], ids[2])}
    assert len(found) == 3


def test_duplicate_contracts_severity_grows_with_corroboration() -> None:
    def severity_for(**second: Any) -> str:
        first = contract(object=BASE_OBJECT, supplier="Alfa", value=50_000.0)
        second_contract = contract(object=BASE_OBJECT, **second)
        return only(detect_duplicate_contracts([first, second_contract])).severity

    far = DAY0 + dt.timedelta(days=300)
    assert severity_for(supplier="Beta", value=90_000.0, signed_on=far) == "low"
    assert severity_for(supplier="Alfa", value=90_000.0, signed_on=far) == "medium"
    assert severity_for(supplier="Alfa", value=52_000.0, signed_on=far) == "high"
    assert severity_for(supplier="Alfa", value=52_000.0, signed_on=DAY0) == "critical"


WORDS = [f"w{i}" for i in range(12)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sets(st.sampled_from(WORDS), min_size=1, max_size=12), max_size=25))
def test_duplicate_prefix_filter_misses_nothing(sets: list[set[str]]) -> None:
    """The candidate generator must find every pair a brute-force comparison finds."""
    frozen = [frozenset(s) for s in sets]
    for threshold in (0.5, 0.85):
        brute = {
            (i, j)
            for i, j in itertools.combinations(range(len(frozen)), 2)
            if d.jaccard(frozen[i], frozen[j]) >= threshold
        }
        assert brute <= d._candidate_pairs(frozen, threshold)


# ------------------------------------------------------------------------ 5. splitting


def split_run(
    days: Sequence[int],
    value: float = 55_000.0,
    modality: str = "Dispensa de Licitação",
    supplier: str = "Alfa Ltda",
) -> list[Contract]:
    return [
        contract(
            supplier=supplier,
            value=value,
            modality=modality,
            signed_on=DAY0 + dt.timedelta(days=day),
        )
        for day in days
    ]


def test_contract_splitting_flags_three_contracts_just_under_the_limit() -> None:
    run = split_run([0, 15, 40])
    a = only(detect_contract_splitting(run))
    assert a.anomaly_type == "contract_splitting"
    assert a.contract_ids == tuple(c.id for c in run)
    assert a.details["contract_count"] == 3
    assert a.details["actual_value"] == 165_000.0
    assert a.details["expected_value"] == DISPENSA_THRESHOLD
    assert a.description == (
        "3 contratos de cerca de R$ 55.000,00 cada com Alfa Ltda, logo abaixo do limite de "
        "dispensa de R$ 57.208,33, em 40 dias (juntos somam R$ 165.000,00, o que exigiria "
        "licitação)"
    )


def test_contract_splitting_edges_count_and_window() -> None:
    assert detect_contract_splitting(split_run([0, 30])) == []  # two is not a pattern
    assert detect_contract_splitting(split_run([0, 50, 100])) == []  # 100 days > 90
    assert len(detect_contract_splitting(split_run([0, 45, 90]))) == 1  # 90 days is inside


def test_contract_splitting_edges_value_band() -> None:
    low = 0.8 * DISPENSA_THRESHOLD
    assert detect_contract_splitting(split_run([0, 10, 20], value=DISPENSA_THRESHOLD)) == []
    assert detect_contract_splitting(split_run([0, 10, 20], value=low - 1)) == []
    assert len(detect_contract_splitting(split_run([0, 10, 20], value=low))) == 1
    assert len(detect_contract_splitting(split_run([0, 10, 20], value=57_208.0))) == 1


def test_contract_splitting_modality_and_supplier() -> None:
    assert detect_contract_splitting(split_run([0, 10, 20], modality="Pregão Eletrônico")) == []
    assert len(detect_contract_splitting(split_run([0, 10, 20], modality=""))) == 1
    assert len(detect_contract_splitting(split_run([0, 10, 20], modality="DISPENSA"))) == 1
    mixed = [*split_run([0, 10]), *split_run([20], supplier="Beta")]
    assert detect_contract_splitting(mixed) == []


def test_contract_splitting_custom_threshold() -> None:
    run = split_run([0, 10, 20], value=45_000.0)
    assert detect_contract_splitting(run) == []  # 79% of 57 208,33
    assert len(detect_contract_splitting(run, threshold=50_000.0)) == 1


def test_contract_splitting_long_runs_split_into_separate_windows() -> None:
    found = detect_contract_splitting(split_run([0, 10, 20, 200, 210, 220]))
    assert [len(a.contract_ids) for a in found] == [3, 3]


def test_contract_splitting_severity_grows_with_count_and_tightness() -> None:
    assert only(detect_contract_splitting(split_run([0, 30, 60]))).severity == "medium"
    assert only(detect_contract_splitting(split_run([0, 10, 20]))).severity == "high"
    assert only(detect_contract_splitting(split_run([0, 20, 40, 60]))).severity == "high"
    assert only(detect_contract_splitting(split_run(range(0, 72, 12)))).severity == "critical"


# ------------------------------------------------------------------------ 6. divergence


def test_value_divergence_flags_a_large_increase() -> None:
    c = contract(value=100_000.0, global_value=185_000.0)
    a = only(detect_value_divergence([c]))
    assert a.contract_ids == (c.id,)
    assert a.details["expected_value"] == 100_000.0
    assert a.details["actual_value"] == 185_000.0
    assert a.description.startswith("Valor final 85% acima do valor inicial do contrato")
    assert "R$ 185.000,00" in a.description


def test_value_divergence_edges() -> None:
    assert detect_value_divergence([contract(value=100_000.0, global_value=150_000.0)]) == []
    assert len(detect_value_divergence([contract(value=100_000.0, global_value=151_000.0)])) == 1
    assert detect_value_divergence([contract(value=100_000.0, global_value=125_000.0)]) == []
    assert detect_value_divergence([contract(value=0.0, global_value=50_000.0)]) == []


def test_value_divergence_reductions_are_reported_mildly() -> None:
    a = only(detect_value_divergence([contract(value=100_000.0, global_value=40_000.0)]))
    assert a.description.startswith("Valor final 60% abaixo do valor inicial")
    assert a.severity == "low"
    deep = only(detect_value_divergence([contract(value=100_000.0, global_value=5_000.0)]))
    assert deep.severity == "medium"


def test_value_divergence_severity_grows_with_the_change() -> None:
    severities = [
        only(detect_value_divergence([contract(value=100.0, global_value=v)])).severity
        for v in (160.0, 180.0, 250.0, 400.0)
    ]
    assert severities == ["low", "medium", "high", "critical"]


# ------------------------------------------------------------------------ all together


def mixed_portfolio() -> list[Contract]:
    """A little of everything, so every detector has something to say."""
    rng = random.Random(7)
    contracts = [
        *price_group(NORMAL_PRICES),
        contract(category="Papel A4", unit_price=84.0),
        *agency_spending({"Monopólio SA": [500_000.0] * 4, "Beta": [10_000.0] * 2}, EDUCACAO),
        *monthly(CALM),
        contract(value=400_000.0, signed_on=dt.date(2025, 5, 3)),
        contract(object=BASE_OBJECT, value=30_000.0),
        contract(object=BASE_OBJECT, value=30_000.0),
        *split_run([0, 20, 41]),
        contract(value=20_000.0, global_value=70_000.0),
    ]
    rng.shuffle(contracts)
    return contracts


def test_run_all_covers_every_type_and_sorts_by_severity() -> None:
    found = run_all(mixed_portfolio())
    assert {a.anomaly_type for a in found} == set(d.ANOMALY_TYPES)
    ranks = [severity_rank(a) for a in found]
    assert ranks == sorted(ranks, reverse=True)


def test_run_all_is_deterministic_whatever_the_input_order() -> None:
    contracts = mixed_portfolio()
    expected = run_all(contracts)
    for seed in range(5):
        shuffled = list(contracts)
        random.Random(seed).shuffle(shuffled)
        assert run_all(shuffled) == expected
    assert run_all(list(reversed(contracts))) == expected


def test_all_detectors_are_registered_once() -> None:
    assert len(ALL_DETECTORS) == len(set(ALL_DETECTORS)) == 6
    assert run_all([]) == []
    for detector in ALL_DETECTORS:
        assert detector([]) == []


def _plain_json(value: Any) -> bool:
    if isinstance(value, list):
        return all(_plain_json(v) for v in value)
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


@pytest.mark.parametrize("detector", ALL_DETECTORS, ids=lambda f: f.__name__)
def test_every_anomaly_is_complete_and_serializable(detector: d.Detector) -> None:
    found = detector(mixed_portfolio())
    assert found, "the portfolio should trigger every detector"
    for a in found:
        assert a.severity in SEVERITIES
        assert 0.0 <= a.confidence <= 1.0
        assert a.contract_ids and all(isinstance(i, str) for i in a.contract_ids)
        assert {"contract_id", "expected_value", "actual_value", "supplier", "agency"} <= set(
            a.details
        )
        assert a.details["contract_id"] in a.contract_ids
        assert all(_plain_json(v) for v in a.details.values()), a.details
        assert orjson.loads(orjson.dumps(dict(a.details))) == dict(a.details)
        # Portuguese, with a number a citizen can check.
        assert any(ch.isdigit() for ch in a.description)
        assert any(w in a.description for w in (" de ", " do ", " dos ", " da "))


def test_confidence_grows_with_evidence() -> None:
    small = only(detect_price_deviation(price_group([20.0, 21.0, 22.0, 20.5, 90.0])))
    large = only(detect_price_deviation(price_group([*NORMAL_PRICES * 4, 90.0])))
    assert small.confidence < large.confidence
    mild = only(detect_value_divergence([contract(value=100.0, global_value=160.0)]))
    wild = only(detect_value_divergence([contract(value=100.0, global_value=400.0)]))
    assert mild.confidence < wild.confidence
