"""Zumbi's detectors on small, hand-made cases: each rule fires, and each legitimately unusual
case of real procurement (issue 12) stays silent."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from cidadao_trio.investigations import detectors as d
from cidadao_trio.investigations.cnpj import cnpj_check_digits
from cidadao_trio.investigations.detectors import (
    ALL_DETECTORS,
    SEVERITIES,
    detect_contract_splitting,
    detect_duplicate_contracts,
    detect_price_deviation,
    detect_spending_spike,
    detect_supplier_concentration,
    detect_value_divergence,
    run_all,
)
from cidadao_trio.investigations.legal import dispensa_limit, legal_kind
from cidadao_trio.investigations.model import Anomaly, Contract

SAUDE = "Ministério da Saúde"
EDUCACAO = "Ministério da Educação"
DAY0 = dt.date(2025, 1, 6)
DISPENSA_II = "Lei 14.133/2021, Art. 75, II"
EMERGENCIA = "Lei 14.133/2021, Art. 75, VIII"
_ids = itertools.count(1)


def cnpj(n: int, branch: int = 1) -> str:
    base = f"{n % 90_000_000 + 10_000_000:08d}{branch:04d}"
    return base + cnpj_check_digits(base)


def contract(
    *,
    id: str | None = None,
    agency: str = SAUDE,
    supplier: str = "Alfa Ltda",
    supplier_cnpj: str | None = None,
    object: str = "Prestação de serviços diversos número {n}",
    category: str = "",
    value: float = 10_000.0,
    global_value: float | None = None,
    signed_on: dt.date = DAY0,
    unit_price: float | None = None,
    quantity: float | None = None,
    modality: str = "Pregão Eletrônico",
    legal_basis: str = "",
    ug: str = "",
    bidding: str = "",
    starts_on: dt.date | None = None,
    ends_on: dt.date | None = None,
    final_known: bool = True,
    item_code: str = "",
) -> Contract:
    """A contract with harmless defaults; each test sets only what it is about."""
    n = next(_ids)
    return Contract(
        id=id or f"CT-{n:05d}",
        agency=agency,
        supplier_name=supplier,
        supplier_cnpj=supplier_cnpj if supplier_cnpj is not None else cnpj(abs(hash(supplier)) % 10**8),
        object=object.format(n=n),
        category=category,
        initial_value=value,
        global_value=value if global_value is None else global_value,
        signed_on=signed_on,
        quantity=quantity if quantity is not None else (None if unit_price is None else 100.0),
        unit_price=unit_price,
        modality=modality,
        legal_basis=legal_basis,
        ug=ug,
        bidding=bidding,
        starts_on=starts_on,
        ends_on=ends_on,
        final_known=final_known,
        item_code=item_code,
    )


def only(anomalies: Sequence[Anomaly]) -> Anomaly:
    assert len(anomalies) == 1, anomalies
    return anomalies[0]


# ------------------------------------------------------------------------ legal table


def test_dispensa_limit_of_the_signing_year_with_its_source() -> None:
    assert dispensa_limit(2023).value == 57_208.33
    assert (dispensa_limit(2024).value, dispensa_limit(2024).source) == (59_906.02, "Decreto 11.871/2023")
    assert (dispensa_limit(2025).value, dispensa_limit(2025).source) == (62_725.59, "Decreto 12.343/2024")
    assert (dispensa_limit(2026).value, dispensa_limit(2026).source) == (65_492.11, "Decreto 12.807/2025")


@pytest.mark.parametrize(
    ("basis", "modality", "kind"),
    [("Lei 14.133/2021, Art. 75, II", "Dispensa", "small_purchase"),
     ("LEI 14133 ART 75 INCISO II", "", "small_purchase"),
     ("Lei 14.133/2021, Art. 75, VIII", "Dispensa", "emergency"),
     ("Art. 75, XII", "Dispensa", "other_dispensa"),
     ("Lei 14.133/2021, Art. 74, I", "Inexigibilidade", "inexigibilidade"),
     ("", "Dispensa de Licitação", "small_purchase"),
     ("Lei 14.133/2021, Art. 28, I", "Pregão", "competitive"),
     ("Lei 14.133/2021, Art. 28, I", "Dispensa", "competitive")],
)
def test_legal_kind_reads_the_fundamento_legal(basis: str, modality: str, kind: str) -> None:
    assert legal_kind(basis, modality) == kind


# ------------------------------------------------------------------------ 1. price

PAPER = "Aquisição de 100 resmas de papel sulfite A4 75g, para a unidade {n}"


def paper_peers(n: int = 12, price: float = 27.0) -> list[Contract]:
    return [contract(object=PAPER, category="material de escritório",
                     unit_price=price * (1 + 0.04 * ((i % 5) - 2)), value=price * 100)
            for i in range(n)]  # fmt: skip


def test_price_deviation_flags_an_overpriced_item_and_shows_the_excess() -> None:
    peers = paper_peers()
    bad = contract(object=PAPER, category="material de escritório", unit_price=81.0, value=8100)
    a = only(detect_price_deviation([*peers, bad]))
    assert a.contract_ids == (bad.id,)
    assert a.details["excess_value"] == pytest.approx((81.0 - a.details["median_unit_price"]) * 100, rel=1e-3)
    assert a.details["excess_value"] < bad.initial_value  # the excess, not the whole contract
    assert bad.supplier_name in a.description and "verificação" in a.description


def test_price_deviation_an_expensive_item_alone_is_not_overpriced() -> None:
    """Oncology drugs, CT scanners, armoured vehicles: no comparable group, no flag."""
    peers = paper_peers()
    oncology = [contract(object="Aquisição de 40 frascos de trastuzumabe 440 mg, para o hospital {n}",
                         category="medicamentos", unit_price=9_800.0 * (1 + 0.01 * i), quantity=40,
                         value=392_000) for i in range(3)]  # fmt: skip
    scanner = contract(object="Aquisição de 1 unidade de tomógrafo computadorizado 128 canais",
                       unit_price=4_500_000.0, quantity=1, value=4_500_000)
    assert detect_price_deviation([*peers, *oncology, scanner]) == []


def test_price_deviation_compares_items_not_coarse_categories() -> None:
    """R$ 3 vials and R$ 95 vaccines share the category "medicamentos" but not the item."""
    dipirona = [contract(object="Aquisição de 1.000 ampolas de dipirona 500 mg/ml, lote {n}",
                         category="medicamentos", unit_price=3.0 + 0.05 * (i % 3), quantity=1000)
                for i in range(10)]  # fmt: skip
    vacina = [contract(object="Aquisição de 1.000 frascos de vacina influenza trivalente, lote {n}",
                       category="medicamentos", unit_price=95.0 + (i % 3), quantity=1000)
              for i in range(10)]  # fmt: skip
    assert detect_price_deviation([*dipirona, *vacina]) == []


def test_price_deviation_needs_enough_peers() -> None:
    peers = paper_peers(6)
    bad = contract(object=PAPER, category="material de escritório", unit_price=200.0)
    assert detect_price_deviation([*peers, bad]) == []
    assert len(detect_price_deviation([*peers, bad], min_peers=5)) == 1


def test_price_deviation_groups_by_item_code_when_the_item_file_gives_one() -> None:
    peers = [contract(object="Material {n}", item_code="461734", unit_price=27.0 + i % 3)
             for i in range(10)]  # fmt: skip
    bad = contract(object="Outro texto qualquer", item_code="461734", unit_price=90.0)
    assert only(detect_price_deviation([*peers, bad])).contract_ids == (bad.id,)


def test_price_deviation_must_be_material_and_below_is_fine() -> None:
    peers = paper_peers(12, 27.0)
    mild = contract(object=PAPER, category="material de escritório", unit_price=36.0)  # +33%
    cheap = contract(object=PAPER, category="material de escritório", unit_price=5.0)
    assert detect_price_deviation([*peers, mild, cheap]) == []


def test_price_deviation_severity_grows_with_the_ratio() -> None:
    peers = paper_peers(20)
    levels = []
    for price in (55.0, 70.0, 110.0):
        bad = contract(object=PAPER, category="material de escritório", unit_price=price)
        levels.append(SEVERITIES.index(only(detect_price_deviation([*peers, bad])).severity))
    assert levels == sorted(levels) and levels[0] < levels[-1]


# ------------------------------------------------------------------------ 2. concentration


def test_supplier_concentration_severity_grows_with_the_share() -> None:
    def case(share: float) -> Anomaly:
        big = contract(supplier="Grande", value=share * 1000)
        rest = [contract(supplier=f"Outro {i}", value=(1 - share) * 1000 / 5) for i in range(5)]
        return only(detect_supplier_concentration([big, *rest]))

    assert case(0.77).severity == "high"  # 77% of a ministry's money is not "Baixa"
    assert case(0.95).severity == "critical"
    assert SEVERITIES.index(case(0.55).severity) < SEVERITIES.index(case(0.77).severity)


def test_supplier_concentration_joins_name_variants_and_branches_of_one_cnpj_root() -> None:
    a = contract(supplier="ALFA LTDA", supplier_cnpj=cnpj(123, 1), value=300)
    b = contract(supplier="Alfa Comércio Ltda.", supplier_cnpj=cnpj(123, 2), value=300)
    rest = [contract(supplier=f"Outro {i}", value=100) for i in range(4)]
    found = only(detect_supplier_concentration([a, b, *rest]))
    assert set(found.contract_ids) == {a.id, b.id}


def test_supplier_concentration_needs_five_contracts() -> None:
    assert detect_supplier_concentration([contract(supplier="Um"), contract(supplier="Dois")]) == []


# ------------------------------------------------------------------------ 3. spike


def months_of(agency: str, per_month: float, months: int = 24, december: float = 2.4,
              start: int = 2024) -> list[Contract]:
    out = []
    for k in range(months):
        year, month = start + k // 12, 1 + k % 12
        value = per_month * (december if month == 12 else 1.0) * (1 + 0.05 * (k % 3))
        for part in range(4):
            out.append(contract(agency=agency, value=value / 4, signed_on=dt.date(year, month, 3 + part)))
    return out


def test_spending_spike_flags_a_month_far_above_its_seasonal_baseline() -> None:
    data = months_of(SAUDE, 100_000)
    spike = [contract(agency=SAUDE, value=150_000, signed_on=dt.date(2024, 5, 10 + i),
                      modality="Dispensa de Licitação") for i in range(4)]  # fmt: skip
    a = only(detect_spending_spike([*data, *spike]))
    assert a.details["month"] == "2024-05"
    assert {c.id for c in spike} <= set(a.contract_ids)
    assert "vezes o esperado" in a.description


def test_spending_spike_december_is_normal() -> None:
    data = [*months_of(SAUDE, 100_000, december=2.8), *months_of(EDUCACAO, 80_000, december=2.2)]
    assert detect_spending_spike(data) == []


def test_spending_spike_ignores_one_large_competitive_contract() -> None:
    data = months_of(SAUDE, 100_000)
    big = contract(agency=SAUDE, value=900_000, signed_on=dt.date(2024, 6, 20),
                   modality="Pregão Eletrônico", legal_basis="Lei 14.133/2021, Art. 28, I")
    assert detect_spending_spike([*data, big]) == []
    # The same money through a dispensa is a spike.
    direct = contract(agency=SAUDE, value=900_000, signed_on=dt.date(2024, 6, 20),
                      modality="Dispensa de Licitação")
    assert len(detect_spending_spike([*data, direct])) == 1


def test_spending_spike_needs_a_history() -> None:
    data = months_of(SAUDE, 100_000, months=5)
    spike = contract(agency=SAUDE, value=2_000_000, signed_on=dt.date(2024, 3, 9), modality="Dispensa")
    assert detect_spending_spike([*data, spike]) == []


def test_spending_spike_one_body_whatever_the_spelling_of_its_name() -> None:
    """The portal prints "MINISTÉRIO DA SAÚDE" beside "Ministério da Saúde": one history."""
    data = months_of(SAUDE, 100_000)
    spike = [contract(agency=SAUDE.upper(), value=150_000, signed_on=dt.date(2024, 5, 10 + i),
                      modality="Dispensa de Licitação") for i in range(4)]  # fmt: skip
    a = only(detect_spending_spike([*data, *spike]))
    assert a.details["month"] == "2024-05"
    assert SAUDE in a.description and SAUDE.upper() not in a.description


def test_spending_spike_joins_names_of_one_siafi_code() -> None:
    data = [attrs_evolve(c, agency_code="36000") for c in months_of(SAUDE, 100_000)]
    spike = [attrs_evolve(contract(agency="MS", value=150_000, signed_on=dt.date(2024, 5, 10 + i),
                                   modality="Dispensa de Licitação"), agency_code="36000")
             for i in range(4)]  # fmt: skip
    assert only(detect_spending_spike([*data, *spike])).details["month"] == "2024-05"


def test_spending_spike_ignores_several_large_competitive_contracts() -> None:
    """Two concorrências for buildings in one month are planned and public, not a surge."""
    data = months_of(SAUDE, 100_000)
    works = [contract(agency=SAUDE, value=600_000, signed_on=dt.date(2024, 6, 20 + i),
                      modality="Concorrência", legal_basis="Lei 14.133/2021, Art. 28, II")
             for i in range(2)]  # fmt: skip
    assert detect_spending_spike([*data, *works]) == []


def test_spending_spike_a_month_of_ordinary_pregoes_is_not_a_spike() -> None:
    """Many mid-size pregões (each below half a normal month) add up to 4x: still competed."""
    data = months_of(SAUDE, 100_000)
    pregoes = [contract(agency=SAUDE, value=40_000, signed_on=dt.date(2024, 6, 1 + i),
                        modality="Pregão Eletrônico", legal_basis="Lei 14.133/2021, Art. 28, I")
               for i in range(8)]  # fmt: skip
    assert detect_spending_spike([*data, *pregoes]) == []
    # The same money by inexigibilidade is a spike.
    direct = [attrs_evolve(c, modality="Inexigibilidade de Licitação",
                           legal_basis="Lei 14.133/2021, Art. 74, I") for c in pregoes]  # fmt: skip
    assert only(detect_spending_spike([*data, *direct])).details["month"] == "2024-06"


def test_spending_spike_quiet_months_of_a_small_body_do_not_hide_a_spike() -> None:
    """A small ministry alternates busy and almost empty months; its busy months set the
    spread, so R$ 1 mi of direct contracting in one month still stands out, and its
    ordinary busy months do not."""
    data = []
    for k in range(24):
        value = (100_000, 5_000, 120_000, 3_000)[k % 4]
        data.append(contract(agency=SAUDE, value=value, signed_on=dt.date(2024 + k // 12, 1 + k % 12, 5)))
    spike = contract(agency=SAUDE, value=1_000_000, signed_on=dt.date(2024, 7, 15),
                     modality="Inexigibilidade de Licitação")
    assert detect_spending_spike(data) == []
    assert only(detect_spending_spike([*data, spike])).details["month"] == "2024-07"


# ------------------------------------------------------------------------ 4. duplicates

VIG = "Contratação de serviços de vigilância patrimonial armada para a sede regional {x}"


def dup_pair(days: int = 10, gap: float = 0.0, **second: Any) -> list[Contract]:
    base = dict(object=VIG.replace("{x}", "Norte"), value=100_000.0, ug="250005",
                supplier="Vigia Ltda", supplier_cnpj=cnpj(777))
    first = contract(**{**base, "signed_on": DAY0})
    other = {**base, "value": 100_000.0 * (1 - gap), "signed_on": DAY0 + dt.timedelta(days=days), **second}
    return [first, contract(**other)]


def test_duplicate_same_buyer_supplier_object_time_and_value() -> None:
    pair = dup_pair()
    a = only(detect_duplicate_contracts(pair))
    assert a.contract_ids == (pair[0].id, pair[1].id)
    assert a.severity == "critical"
    assert "Vigia Ltda" in a.description and "R$ 100.000,00" in a.description


def test_duplicate_text_alone_is_never_enough() -> None:
    assert detect_duplicate_contracts(dup_pair(supplier="Outra", supplier_cnpj=cnpj(888))) == []
    assert detect_duplicate_contracts(dup_pair(ug="250006")) == []  # another buyer
    assert detect_duplicate_contracts(dup_pair(days=95)) == []  # 90+ days apart
    assert detect_duplicate_contracts(dup_pair(gap=0.3)) == []  # different value


def test_duplicate_ata_siblings_are_not_duplicates() -> None:
    pair = dup_pair(bidding="250005/00012/2024")
    pair[0] = contract(**{**{k: getattr(pair[0], k) for k in ("object", "ug", "signed_on")},
                          "value": 100_000.0, "supplier": "Vigia Ltda", "supplier_cnpj": cnpj(777),
                          "bidding": "250005/00012/2024"})  # fmt: skip
    assert detect_duplicate_contracts(pair) == []


def test_duplicate_annual_recontract_is_not_a_duplicate() -> None:
    assert detect_duplicate_contracts(dup_pair(days=365)) == []


def test_duplicate_upper_case_accentless_text_and_name_variants_still_match() -> None:
    pair = dup_pair(object=VIG.replace("{x}", "Norte").upper().replace("Ç", "C").replace("Â", "A"),
                    supplier="VIGIA LTDA ME", supplier_cnpj=cnpj(777, 2))
    assert len(detect_duplicate_contracts(pair)) == 1


def test_duplicate_one_ug_whatever_the_spelling_of_its_ministry() -> None:
    pair = dup_pair(agency=SAUDE.upper())
    assert len(detect_duplicate_contracts(pair)) == 1


def test_duplicate_other_quantity_or_lot_is_another_purchase() -> None:
    """Two small purchases of paper (809 and 763 resmas) or two lots of one service from one
    supplier are not one thing bought twice (the first may be splitting, not duplication)."""
    paper = "Aquisição de {q} resmas de papel sulfite A4 75 g/m2"
    pair = dup_pair(object=paper.format(q=763), gap=0.05)
    pair[0] = attrs_evolve(pair[0], object=paper.format(q=809))
    assert detect_duplicate_contracts(pair) == []
    lots = dup_pair(object=VIG.replace("{x}", "Norte, lote 2"))
    lots[0] = attrs_evolve(lots[0], object=VIG.replace("{x}", "Norte, lote 1"))
    assert detect_duplicate_contracts(lots) == []
    same = dup_pair(object=paper.format(q=809))
    same[0] = attrs_evolve(same[0], object=paper.format(q=809))
    assert len(detect_duplicate_contracts(same)) == 1


# ------------------------------------------------------------------------ 5. splitting


def small(value: float, day: dt.date, supplier: str = "Papelaria Um", ug: str = "250005",
          basis: str = DISPENSA_II, **kw: Any) -> Contract:
    return contract(value=value, signed_on=day, supplier=supplier, ug=ug, legal_basis=basis,
                    modality="Dispensa de Licitação", category="material de escritório",
                    object="Aquisição de material de expediente {n}", **kw)  # fmt: skip


def test_splitting_sum_per_ug_and_year_passes_the_year_limit() -> None:
    cluster = [small(22_000, dt.date(2025, m, 5)) for m in (2, 4, 7)]  # R$ 66.000 > 62.725,59
    a = only(detect_contract_splitting(cluster))
    assert set(a.contract_ids) == {c.id for c in cluster}
    assert a.details["dispensa_limit"] == 62_725.59
    assert "Decreto 12.343/2024" in a.description


def test_splitting_uses_the_limit_of_the_signing_year() -> None:
    # R$ 58.500 passes the 2023 limit (57.208,33) but not 2024's (59.906,02).
    y2023 = [small(19_500, dt.date(2023, m, 5)) for m in (2, 4, 7)]
    y2024 = [small(19_500, dt.date(2024, m, 5)) for m in (2, 4, 7)]
    assert len(detect_contract_splitting(y2023)) == 1
    assert detect_contract_splitting(y2024) == []


def test_splitting_catches_suppliers_taking_turns() -> None:
    ring = [small(16_000, dt.date(2025, m, 5), supplier=f"Papelaria {m}") for m in (1, 3, 5, 8, 10)]
    a = only(detect_contract_splitting(ring))
    assert len(a.details["suppliers"]) == 5


def test_splitting_not_across_ugs_years_natures_or_emergencies() -> None:
    assert detect_contract_splitting([small(40_000, DAY0, ug="1"), small(40_000, DAY0, ug="2")]) == []
    assert detect_contract_splitting([small(40_000, dt.date(2024, 12, 20)),
                                      small(40_000, dt.date(2025, 1, 5))]) == []  # fmt: skip
    other = contract(value=40_000, signed_on=DAY0, ug="250005", legal_basis=DISPENSA_II,
                     modality="Dispensa", category="combustível", object="Diesel")
    assert detect_contract_splitting([small(40_000, DAY0), other]) == []
    assert detect_contract_splitting([small(40_000, DAY0, basis=EMERGENCIA),
                                      small(40_000, DAY0, basis=EMERGENCIA)]) == []  # fmt: skip
    pregao = small(40_000, DAY0, basis="Lei 14.133/2021, Art. 28, I")
    assert detect_contract_splitting([small(40_000, DAY0), pregao]) == []


# ------------------------------------------------------------------------ 6. divergence


def test_divergence_flags_increase_beyond_art_125() -> None:
    c = contract(value=100_000, global_value=160_000)
    a = only(detect_value_divergence([c]))
    assert a.details["expected_value"] == 125_000.0
    assert "art. 125" in a.description


def test_divergence_allows_25_percent_and_50_for_reforma() -> None:
    assert detect_value_divergence([contract(value=100_000, global_value=125_000)]) == []
    reforma = contract(object="Reforma do edifício sede {n}", value=100_000, global_value=148_000)
    assert detect_value_divergence([reforma]) == []
    assert len(detect_value_divergence([attrs_evolve(reforma, global_value=170_000)])) == 1


def attrs_evolve(c: Contract, **changes: Any) -> Contract:
    import attrs

    return attrs.evolve(c, **changes)


def test_divergence_art_107_extension_is_not_an_increase() -> None:
    service = contract(value=1_200_000, global_value=3_600_000, starts_on=dt.date(2023, 3, 1),
                       ends_on=dt.date(2026, 2, 28))  # three 12-month periods
    assert detect_value_divergence([service]) == []
    inflated = attrs_evolve(service, global_value=5_400_000)  # 50% a year beyond
    assert len(detect_value_divergence([inflated])) == 1


def test_divergence_missing_final_value_is_not_a_cut() -> None:
    assert detect_value_divergence([contract(value=100_000, global_value=100_000, final_known=False)]) == []


def test_divergence_emergency_may_not_last_over_a_year() -> None:
    emergency = contract(value=500_000, legal_basis=EMERGENCIA, modality="Dispensa",
                         starts_on=dt.date(2024, 1, 1), ends_on=dt.date(2025, 6, 30),
                         global_value=750_000)
    assert only(detect_value_divergence([emergency])).severity == "high"
    within = attrs_evolve(emergency, ends_on=dt.date(2024, 12, 31), global_value=500_000)
    assert detect_value_divergence([within]) == []


def test_divergence_severity_grows_with_the_excess() -> None:
    ranks = [SEVERITIES.index(only(detect_value_divergence([contract(value=100, global_value=v)])).severity)
             for v in (135, 180, 300)]  # fmt: skip
    assert ranks == sorted(ranks) and ranks[0] < ranks[-1]


# ------------------------------------------------------------------------ all together


def test_run_all_is_deterministic_whatever_the_input_order() -> None:
    data = [*paper_peers(), contract(object=PAPER, category="material de escritório", unit_price=99.0),
            *dup_pair(), contract(value=100, global_value=300)]  # fmt: skip
    shuffled = list(data)
    random.Random(3).shuffle(shuffled)
    assert run_all(data) == run_all(shuffled)
    assert {a.anomaly_type for a in run_all(data)} >= {"price_deviation", "duplicate_contract",
                                                       "value_divergence"}  # fmt: skip


def test_all_detectors_are_registered_once() -> None:
    assert len(set(ALL_DETECTORS)) == len(ALL_DETECTORS) == len(d.ANOMALY_TYPES)


def test_every_anomaly_is_complete_serializable_and_says_it_is_a_signal() -> None:
    data = [*paper_peers(), contract(object=PAPER, category="material de escritório", unit_price=99.0),
            *dup_pair(), contract(value=100, global_value=300),
            *[small(22_000, dt.date(2025, m, 5)) for m in (2, 4, 7)]]  # fmt: skip
    found = run_all(data)
    assert found
    for a in found:
        assert 0 < a.confidence < 1
        assert {"contract_id", "expected_value", "actual_value", "supplier", "agency"} <= set(a.details)
        assert "não prova" in a.description
        orjson.dumps(a.details)


# ------------------------------------------------------------------------ bodies


def test_agency_key_ignores_case_and_accents_and_prefers_the_siafi_code() -> None:
    a, b = contract(agency="MINISTERIO DA SAUDE"), contract(agency=SAUDE)
    assert d.agency_key(a) == d.agency_key(b)
    assert d.agency_key(attrs_evolve(a, agency_code="36000")) == "36000"
    assert d.agency_label([a, b, contract(agency=SAUDE.upper())]) == SAUDE


def test_buyer_key_is_the_ug_code_not_the_spelling_of_its_ministry() -> None:
    a = contract(agency=SAUDE, ug="250005")
    assert d.buyer_key(a) == d.buyer_key(attrs_evolve(a, agency=SAUDE.upper()))
    assert d.buyer_key(a) != d.buyer_key(attrs_evolve(a, ug="250006"))
