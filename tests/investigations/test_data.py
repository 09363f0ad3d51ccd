"""Investigation data: CNPJ rules, the generated sample and its ground truth, portal loaders."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import math
import os
import random
import re
import statistics
import subprocess
import sys
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import attrs
import orjson
import pytest

from cidadao_trio.investigations import sample as sample_module
from cidadao_trio.investigations.categories import CATALOGUE, categorize, parse_quantity
from cidadao_trio.investigations.cnpj import (
    cnpj_check_digits,
    format_cnpj,
    is_valid_cnpj,
    make_cnpj,
)
from cidadao_trio.investigations.detectors import jaccard
from cidadao_trio.investigations.model import Contract
from cidadao_trio.investigations.portal import (
    RowProblem,
    load_contracts_csv,
    load_contracts_json,
    load_dataset,
    parse_brazilian_number,
    parse_date,
)
from cidadao_trio.investigations.sample import (
    AGENCIES,
    CATEGORIES,
    DISPENSA_THRESHOLD,
    PLANTED_COUNTS,
    Sample,
    generate_sample,
    load_default_sample,
)
from cidadao_trio.portuguese import strip_accents

# --------------------------------------------------------------------------------- CNPJ


@pytest.mark.parametrize(
    ("base", "digits"),
    [
        ("112223330001", "81"),  # the textbook example
        ("000000000001", "91"),  # Banco do Brasil
        ("330001670001", "01"),  # Petrobras
        ("003603050001", "04"),  # Caixa Econômica Federal
        ("12ABC34501DE", "35"),  # alphanumeric CNPJ (IN RFB 2.229/2024), Receita's example
    ],
)
def test_check_digits_of_known_cnpjs(base: str, digits: str) -> None:
    assert cnpj_check_digits(base) == digits
    assert is_valid_cnpj(base + digits)


@pytest.mark.parametrize(
    "value",
    ["11.222.333/0001-81", "11222333000181", " 00.000.000/0001-91 ", "33.000.167/0001-01",
     "12.abc.345/01de-35"],
)  # fmt: skip
def test_valid_cnpjs_with_or_without_punctuation(value: str) -> None:
    assert is_valid_cnpj(value)


@pytest.mark.parametrize(
    "value",
    [
        "11.222.333/0001-82",  # last digit wrong
        "11.222.333/0001-18",  # digits swapped
        "00000000000000",  # repeated digits pass modulo 11 but are not CNPJs
        "11.111.111/1111-11",
        "1122233300018",  # 13 digits
        "112223330001810",  # 15 digits
        "12ABC34501DE3A",  # check digits are always numeric
        "",
        "abc",
    ],
)
def test_invalid_cnpjs(value: str) -> None:
    assert not is_valid_cnpj(value)


def test_check_digits_reject_a_bad_base() -> None:
    with pytest.raises(ValueError):
        cnpj_check_digits("1234")
    with pytest.raises(ValueError):
        cnpj_check_digits("11222333000!")


def test_format_cnpj() -> None:
    assert format_cnpj("11222333000181") == "11.222.333/0001-81"
    assert format_cnpj("11.222.333/0001-81") == "11.222.333/0001-81"
    with pytest.raises(ValueError):
        format_cnpj("123")


def test_make_cnpj_is_valid_numeric_and_reproducible() -> None:
    made = [make_cnpj(random.Random(7)) for _ in range(2)]
    assert made[0] == made[1]
    rng = random.Random(1)
    for _ in range(500):
        value = make_cnpj(rng)
        assert re.fullmatch(r"\d{8}0001\d{2}", value), value
        assert is_valid_cnpj(value)


# ---------------------------------------------------------------------------- categories


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("AQUISIÇÃO DE MEDICAMENTOS PARA A FARMÁCIA BÁSICA", "medicamentos"),
        ("Aquisição de 500 unidades de notebook para o campus", "notebooks"),
        ("CONTRATAÇÃO DE SERVIÇOS DE VIGILÂNCIA ARMADA E DESARMADA", "vigilância"),
        ("Obras de recapeamento asfáltico na BR-101", "pavimentação"),
        ("Aquisição de ambulâncias tipo A", "ambulâncias"),  # not "veículos"
        ("Fornecimento de cadeiras escolares", "mobiliário escolar"),
        ("Recursos para curso de capacitação de servidores", "capacitação"),
        ("Locação de imóvel para a sede regional", ""),
    ],
)
def test_categorize(text: str, category: str) -> None:
    assert categorize(text) == category


@pytest.mark.parametrize(
    ("text", "quantity"),
    [
        ("Aquisição de 500 unidades de notebook", 500.0),
        ("AQUISIÇÃO DE 1.200 RESMAS DE PAPEL A4", 1200.0),
        ("Aquisição de 500 (quinhentas) unidades de cadeira", 500.0),
        ("Serviços de limpeza, com 4.500 m² de área", 4500.0),
        ("Aquisição de 2.500,5 litros de diesel", 2500.5),
        ("Vigilância pelo período de 12 meses", None),  # a period, not a quantity
        ("Contratação nos termos da Lei 14.133", None),
        ("Aquisição de material de consumo", None),
    ],
)
def test_parse_quantity(text: str, quantity: float | None) -> None:
    assert parse_quantity(text) == quantity


# -------------------------------------------------------------------------------- sample


@pytest.fixture(scope="module")
def sample() -> Sample:
    return generate_sample()


@pytest.fixture(scope="module")
def planted_ids(sample: Sample) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = defaultdict(set)
    for p in sample.planted:
        ids[p.anomaly_type].update(p.contract_ids)
    return ids


def _by_id(sample: Sample) -> dict[str, Contract]:
    return {c.id: c for c in sample.contracts}


def _digest(sample: Sample) -> str:
    return hashlib.sha256(repr(sample).encode()).hexdigest()


def test_same_seed_same_sample_other_seed_other_sample() -> None:
    first, second = generate_sample(11, size=2200), generate_sample(11, size=2200)
    assert first == second
    other = generate_sample(12, size=2200)
    assert other.contracts != first.contracts
    assert [c.object for c in other.contracts[:50]] != [c.object for c in first.contracts[:50]]


def test_generation_leaves_the_global_random_alone() -> None:
    random.seed(5)
    state = random.getstate()
    generate_sample(3, size=2200)
    assert random.getstate() == state


def test_sample_does_not_depend_on_hash_randomization() -> None:
    """Set iteration order changes with PYTHONHASHSEED; the sample must not."""
    code = (
        "import hashlib; from cidadao_trio.investigations.sample import generate_sample; "
        "print(hashlib.sha256(repr(generate_sample(4, size=2200)).encode()).hexdigest())"
    )
    other_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"  # not this process's
    elsewhere = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": other_seed},
    ).stdout.strip()  # fmt: skip
    assert elsewhere == _digest(generate_sample(4, size=2200))


def test_size_is_exact_and_too_small_is_refused() -> None:
    assert len(generate_sample(1, size=2500).contracts) == 2500
    with pytest.raises(ValueError):
        generate_sample(1, size=1000)


def test_default_sample_shape(sample: Sample) -> None:
    assert len(sample.contracts) == 5000
    assert len(AGENCIES) == 15 and "Ministério da Saúde" in AGENCIES
    per_agency = Counter(c.agency for c in sample.contracts)
    assert set(per_agency) == set(AGENCIES)
    assert min(per_agency.values()) >= 100
    assert per_agency["Ministério da Saúde"] > per_agency["Ministério da Cultura"]


def test_ids_are_unique_and_numbered_by_year(sample: Sample) -> None:
    ids = [c.id for c in sample.contracts]
    assert len(set(ids)) == len(ids)
    for c in sample.contracts:
        match = re.fullmatch(r"CT-(\d{4})-(\d{6})", c.id)
        assert match and int(match[1]) == c.signed_on.year
    assert "CT-2024-000001" in ids and "CT-2025-000001" in ids


def test_dates_cover_two_years(sample: Sample) -> None:
    dates = [c.signed_on for c in sample.contracts]
    assert min(dates) >= dt.date(2024, 1, 1) and max(dates) <= dt.date(2025, 12, 31)
    assert len({(d.year, d.month) for d in dates}) == 24


def test_suppliers_have_valid_unique_cnpjs_and_company_names(sample: Sample) -> None:
    names_by_cnpj: dict[str, set[str]] = defaultdict(set)
    for c in sample.contracts:
        names_by_cnpj[c.supplier_cnpj].add(c.supplier_name)
    assert all(is_valid_cnpj(cnpj) and len(cnpj) == 14 for cnpj in names_by_cnpj)
    assert all(len(names) == 1 for names in names_by_cnpj.values())
    assert 250 <= len(names_by_cnpj) <= 350
    names = [next(iter(n)) for n in names_by_cnpj.values()]
    assert len(set(names)) == len(names)
    assert all(re.search(r" (Ltda|S\.A\.|Ltda - ME)$", n) for n in names)


def test_values_prices_and_texts_agree(sample: Sample) -> None:
    for c in sample.contracts:
        assert c.category in CATEGORIES
        assert c.quantity is not None and c.unit_price is not None and c.quantity >= 1
        assert c.initial_value == round(c.quantity * c.unit_price, 2) > 0
        assert round(c.global_value, 2) == c.global_value > 0
        # The object text says what the category and quantity say, as a portal file would.
        assert categorize(c.object) == c.category, c.object
        assert parse_quantity(c.object) == c.quantity, c.object
        assert c.object.split()[0] in {"Aquisição", "Contratação", "Execução"}
        assert c.modality in {"Pregão Eletrônico", "Concorrência", "Dispensa de Licitação",
                              "Inexigibilidade"}  # fmt: skip
        assert c.status in {"Ativo", "Encerrado"}


def test_realistic_mix(sample: Sample) -> None:
    contracts = sample.contracts
    modalities = Counter(c.modality for c in contracts)
    assert modalities.most_common(1)[0][0] == "Pregão Eletrônico"
    assert all(modalities[m] >= 40 for m in ("Concorrência", "Dispensa de Licitação",
                                              "Inexigibilidade"))  # fmt: skip
    assert len({c.category for c in contracts}) == len(CATALOGUE)
    by_agency: dict[str, set[str]] = defaultdict(set)
    for c in contracts:
        by_agency[c.agency].add(c.category)
    assert all(len(cats) >= 8 for cats in by_agency.values())
    assert "ambulâncias" in by_agency["Ministério da Saúde"]
    assert "ambulâncias" not in by_agency["Ministério da Cultura"]
    assert 50_000 < statistics.median(c.initial_value for c in contracts) < 5_000_000
    # 2024 contracts are mostly closed, 2025 ones all still running.
    assert all(c.status == "Ativo" for c in contracts if c.signed_on.year == 2025)


def test_default_sample_is_cached_and_equal(sample: Sample) -> None:
    assert load_default_sample() is load_default_sample()
    assert load_default_sample() == sample


def test_the_sample_read_back_from_the_cache_is_the_generated_one_and_a_bad_cache_is_rebuilt(
    sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    generated: list[Sample] = []

    def generate() -> Sample:  # counted, and instant: generating is the other tests' subject
        generated.append(sample)
        return sample

    monkeypatch.setattr(sample_module, "generate_sample", generate)
    load_default_sample.cache_clear()
    try:
        assert load_default_sample() == sample and len(generated) == 1  # generated, then written
        (cached,) = (tmp_path / "cidadao-trio").glob("sample-*.json")
        load_default_sample.cache_clear()
        again = load_default_sample()  # read back, not generated
        assert len(generated) == 1
        assert again == sample and again.contracts[0].signed_on == sample.contracts[0].signed_on
        cached.write_bytes(cached.read_bytes()[:1000])  # cut short
        load_default_sample.cache_clear()
        assert load_default_sample() == sample and len(generated) == 2  # unreadable: generated again
        assert orjson.loads(cached.read_bytes())["contracts"][0]["id"] == sample.contracts[0].id
    finally:
        load_default_sample.cache_clear()


# ------------------------------------------------------------------- planted ground truth


def test_planted_counts_and_references(sample: Sample) -> None:
    assert Counter(p.anomaly_type for p in sample.planted) == PLANTED_COUNTS
    by_id = _by_id(sample)
    seen: set[str] = set()
    for p in sample.planted:
        assert p.contract_ids and all(i in by_id for i in p.contract_ids)
        assert {by_id[i].agency for i in p.contract_ids} == {p.agency}
        assert not seen & set(p.contract_ids), "a contract belongs to one planted case only"
        seen.update(p.contract_ids)


def _median_ratio(sample: Sample) -> dict[str, float]:
    prices: dict[str, list[float]] = defaultdict(list)
    for c in sample.contracts:
        prices[c.category].append(c.unit_price or 0.0)
    medians = {cat: statistics.median(p) for cat, p in prices.items()}
    return {c.id: (c.unit_price or 0.0) / medians[c.category] for c in sample.contracts}


def test_price_deviations_stand_out_and_nothing_else_does(
    sample: Sample, planted_ids: dict[str, set[str]]
) -> None:
    ratio = _median_ratio(sample)
    planted = [p for p in sample.planted if p.anomaly_type == "price_deviation"]
    assert all(len(p.contract_ids) == 1 for p in planted)
    for p in planted:
        assert 2.5 <= ratio[p.contract_ids[0]] <= 6.0
    others = [r for i, r in ratio.items() if i not in planted_ids["price_deviation"]]
    assert min(others) > 0.7 and max(others) < 1.4  # ±25% noise around the typical price


def _shares(sample: Sample) -> dict[tuple[str, str], float]:
    totals: dict[str, float] = defaultdict(float)
    per_supplier: dict[tuple[str, str], float] = defaultdict(float)
    for c in sample.contracts:
        totals[c.agency] += c.global_value
        per_supplier[c.agency, c.supplier_cnpj] += c.global_value
    return {key: value / totals[key[0]] for key, value in per_supplier.items()}


def test_supplier_concentration(sample: Sample) -> None:
    by_id, shares = _by_id(sample), _shares(sample)
    planted = [p for p in sample.planted if p.anomaly_type == "supplier_concentration"]
    assert len({p.agency for p in planted}) == 3
    flagged = set()
    for p in planted:
        (cnpj,) = {by_id[i].supplier_cnpj for i in p.contract_ids}
        every = {c.id for c in sample.contracts if c.agency == p.agency
                 and c.supplier_cnpj == cnpj}  # fmt: skip
        assert set(p.contract_ids) == every
        assert shares[p.agency, cnpj] > 0.70
        flagged.add((p.agency, cnpj))
    assert max(s for key, s in shares.items() if key not in flagged) < 0.3


def _month(day: dt.date) -> str:
    return f"{day.year}-{day.month:02d}"


def _spike_z(totals: dict[str, float], month: str) -> float:
    """How far the month is from the agency's other months, in their standard deviations."""
    others = [v for m, v in totals.items() if m != month]
    return (totals[month] - statistics.fmean(others)) / statistics.stdev(others)


def test_spending_spikes(sample: Sample) -> None:
    by_id = _by_id(sample)
    spikes = set()
    for p in sample.planted:
        if p.anomaly_type == "spending_spike":
            months = {_month(by_id[i].signed_on) for i in p.contract_ids}
            assert len(months) == 1 and 3 <= len(p.contract_ids) <= 5
            spikes.add((p.agency, months.pop()))
    assert len({agency for agency, _ in spikes}) == 4
    for field in ("initial_value", "global_value"):
        totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for c in sample.contracts:
            totals[c.agency][_month(c.signed_on)] += getattr(c, field)
        for agency, months in totals.items():
            usual = statistics.fmean(months.values())
            for month in months:
                z = _spike_z(months, month)
                if (agency, month) in spikes:
                    assert z > 3 and months[month] > 2.5 * usual
                else:
                    assert z < 2.0, (field, agency, month, z)


_STOPWORDS = frozenset("a ao aos as com da das de do dos e em na nas no nos o os ou para pela "
                       "pelas pelo pelos por sem sob sobre um uma umas uns".split())  # fmt: skip
_TOKENIZERS: dict[str, Callable[[str], frozenset[str]]] = {
    "words": lambda t: frozenset(re.findall(r"\w+", t.lower())),
    "whitespace": lambda t: frozenset(t.lower().split()),
    "content": lambda t: frozenset(re.findall(r"[a-z0-9]+", strip_accents(t).lower())) - _STOPWORDS,
}


def _similar_pairs(sets: list[frozenset[str]], threshold: float) -> set[tuple[int, int]]:
    """All pairs with Jaccard > threshold, via prefix filtering (exact, not sampled)."""
    freq = Counter(w for s in sets for w in s)
    index: dict[str, list[int]] = defaultdict(list)
    pairs = set()
    for i, words in enumerate(sets):
        ordered = sorted(words, key=lambda w: (freq[w], w))
        candidates: set[int] = set()
        for w in ordered[: len(ordered) - math.ceil(threshold * len(ordered)) + 1]:
            candidates.update(index[w])
            index[w].append(i)
        pairs.update((j, i) for j in candidates if jaccard(sets[j], words) > threshold)
    return pairs


def test_similar_pairs_helper_finds_what_brute_force_finds() -> None:
    rng = random.Random(3)
    sets = [frozenset(rng.sample(range(14), rng.randint(6, 10))) for _ in range(150)]
    strings = [frozenset(map(str, s)) for s in sets]
    brute = {(i, j) for i in range(150) for j in range(i + 1, 150)
             if jaccard(strings[i], strings[j]) > 0.7}  # fmt: skip
    assert brute and _similar_pairs(strings, 0.7) == brute


@pytest.mark.parametrize("tokenizer", sorted(_TOKENIZERS))
def test_only_planted_duplicates_have_near_identical_objects(
    sample: Sample, tokenizer: str
) -> None:
    tokens = _TOKENIZERS[tokenizer]
    by_id = _by_id(sample)
    planted = {frozenset(p.contract_ids) for p in sample.planted
               if p.anomaly_type == "duplicate_contract"}  # fmt: skip
    for pair in planted:
        first, second = (by_id[i] for i in pair)
        assert first.agency == second.agency and first.supplier_cnpj == second.supplier_cnpj
        assert jaccard(tokens(first.object), tokens(second.object)) > 0.85
    found = set()
    for agency in AGENCIES:
        group = [c for c in sample.contracts if c.agency == agency]
        pairs = _similar_pairs([tokens(c.object) for c in group], 0.85)
        found |= {frozenset((group[i].id, group[j].id)) for i, j in pairs}
    assert found == planted


def test_contract_splitting(sample: Sample, planted_ids: dict[str, set[str]]) -> None:
    by_id = _by_id(sample)
    for p in sample.planted:
        if p.anomaly_type != "contract_splitting":
            continue
        group = [by_id[i] for i in p.contract_ids]
        assert 3 <= len(group) <= 5
        assert len({c.supplier_cnpj for c in group}) == 1
        assert all(c.modality == "Dispensa de Licitação" for c in group)
        assert all(0.8 * DISPENSA_THRESHOLD <= c.initial_value < DISPENSA_THRESHOLD
                   for c in group)  # fmt: skip
        dates = sorted(c.signed_on for c in group)
        assert (dates[-1] - dates[0]).days < 90
        assert sum(c.initial_value for c in group) > DISPENSA_THRESHOLD
    # Every other dispensa is small, and one agency-supplier pair has at most one per 90 days.
    others = [c for c in sample.contracts if c.modality == "Dispensa de Licitação"
              and c.id not in planted_ids["contract_splitting"]]  # fmt: skip
    assert len(others) > 100
    assert max(c.initial_value for c in others) < 0.5 * DISPENSA_THRESHOLD
    dates: dict[tuple[str, str], list[dt.date]] = defaultdict(list)
    for c in sample.contracts:
        if c.modality == "Dispensa de Licitação":
            dates[c.agency, c.supplier_cnpj].append(c.signed_on)
    split_pairs = {(by_id[i].agency, by_id[i].supplier_cnpj)
                   for i in planted_ids["contract_splitting"]}  # fmt: skip
    for key, days in dates.items():
        if key not in split_pairs:
            days.sort()
            assert all((b - a).days >= 90 for a, b in itertools.pairwise(days))


def test_value_divergence(sample: Sample, planted_ids: dict[str, set[str]]) -> None:
    change = {c.id: c.global_value / c.initial_value for c in sample.contracts}
    planted = planted_ids["value_divergence"]
    assert len(planted) == 20
    assert all(change[i] > 1.5 or change[i] < 0.5 for i in planted)
    assert any(change[i] < 0.5 for i in planted) and any(change[i] > 1.5 for i in planted)
    others = [r for i, r in change.items() if i not in planted]
    assert min(others) >= 0.7 and max(others) <= 1.3
    assert sum(r != 1.0 for r in others) > 500  # amendments happen, within the legal 25%


# -------------------------------------------------------------------------------- portal


def test_parse_brazilian_numbers() -> None:
    assert parse_brazilian_number("1.234,56") == 1234.56
    assert parse_brazilian_number("R$ 1.234.567,8") == 1234567.8
    assert parse_brazilian_number("-10,5") == -10.5
    assert parse_brazilian_number("1.234") == 1234.0  # a Brazilian thousands separator
    assert parse_brazilian_number("1234.56") == 1234.56
    assert parse_brazilian_number(1234.561) == 1234.56
    assert parse_brazilian_number(7) == 7.0
    assert parse_brazilian_number("  ") is None and parse_brazilian_number(None) is None
    for bad in ("abc", "1,2,3", "1e999", float("nan"), True):
        with pytest.raises(ValueError):
            parse_brazilian_number(bad)


def test_parse_dates() -> None:
    assert parse_date("15/03/2024") == dt.date(2024, 3, 15)
    assert parse_date("2024-03-15") == dt.date(2024, 3, 15)
    assert parse_date("2024-03-15T10:00:00") == dt.date(2024, 3, 15)
    assert parse_date("15/03/2024 10:00:00") == dt.date(2024, 3, 15)
    assert parse_date("") is None
    for bad in ("31/02/2024", "2024/03/15", "15-03-2024", "ontem"):
        with pytest.raises(ValueError):
            parse_date(bad)


# The portal's own "Compras" CSV columns (a subset), in its order and spelling.
PORTAL_HEADER = (
    "Número do Contrato;Objeto;Modalidade Compra;Situação Contrato;Código Órgão Superior;"
    "Nome Órgão Superior;Código UG;Nome UG;Data Assinatura Contrato;Código Contratado;"
    "Nome Contratado;Valor Inicial Compra;Valor Final Compra"
)
PORTAL_ROWS = [
    # line 2: good
    '00012/2024;"Aquisição de 500 unidades de notebook para o campus";Pregão;Ativo;26000;'
    "MINISTÉRIO DA EDUCAÇÃO;150002;UNIVERSIDADE FEDERAL;15/03/2024;11.222.333/0001-81;"
    "TECNOLOGIA AÇAÍ LTDA;2.750.000,00;3.025.000,50",
    # line 3: bad number
    "00013/2024;Aquisição de medicamentos;Pregão;Ativo;36000;MINISTÉRIO DA SAÚDE;250005;"
    "HOSPITAL;02/04/2024;00000000000191;BANCO;12,34,56;",
    # line 4: bad date
    "00014/2024;Serviços de vigilância;Pregão;Ativo;36000;MINISTÉRIO DA SAÚDE;250005;"
    "HOSPITAL;31/02/2024;00000000000191;BANCO;1.000,00;1.000,00",
    # line 5: missing value (no agency)
    "00015/2024;Papel;Dispensa de Licitação;Ativo;;;250005;HOSPITAL;05/05/2024;"
    "00000000000191;BANCO;500,00;500,00",
    # line 6: good, no final value, CNPJ that lost its leading zeros, quoted ";"
    '00016/2024;"Aquisição de 1.200 resmas de papel A4; entrega imediata";Dispensa de '
    "Licitação;Encerrado;36000;MINISTÉRIO DA SAÚDE;250005;HOSPITAL;06/06/2024;191;"
    "BANCO DO BRASIL SA;33.000,00;",
]


def _portal_csv(rows: list[str]) -> bytes:
    return ("\r\n".join([PORTAL_HEADER, *rows]) + "\r\n").encode("latin-1")


def test_csv_loads_good_rows_and_reports_bad_ones_by_line() -> None:
    result = load_contracts_csv(_portal_csv(PORTAL_ROWS))
    # Contract numbers restart in every UG, so every id names its UG.
    assert [c.id for c in result.contracts] == ["00012/2024 (UG 150002)", "00016/2024 (UG 250005)"]
    assert [p.line for p in result.problems] == [3, 4, 5]
    messages = [p.message for p in result.problems]
    assert "Valor Inicial" in messages[0] and "12,34,56" in messages[0]
    assert "Data de Assinatura" in messages[1] and "31/02/2024" in messages[1]
    assert "Órgão" in messages[2]

    notebook, paper = result.contracts
    assert notebook == Contract(
        id="00012/2024 (UG 150002)", agency="MINISTÉRIO DA EDUCAÇÃO",
        supplier_name="TECNOLOGIA AÇAÍ LTDA", supplier_cnpj="11222333000181",
        object="Aquisição de 500 unidades de notebook para o campus", category="notebooks",
        initial_value=2_750_000.0, global_value=3_025_000.5, signed_on=dt.date(2024, 3, 15),
        quantity=500.0, unit_price=5_500.0, modality="Pregão", status="Ativo",
        number="00012/2024", ug="150002", ug_name="UNIVERSIDADE FEDERAL", agency_code="26000",
    )  # fmt: skip
    assert paper.object == "Aquisição de 1.200 resmas de papel A4; entrega imediata"
    assert paper.global_value == paper.initial_value == 33_000.0  # no final value: unchanged
    assert not paper.final_known
    assert paper.supplier_cnpj == "00000000000191"
    assert (paper.category, paper.quantity, paper.unit_price) == ("material de escritório",
                                                                  1200.0, 27.5)  # fmt: skip


def test_csv_line_numbers_count_physical_lines() -> None:
    """A quoted newline inside Objeto moves every later row down one line in an editor."""
    multiline = PORTAL_ROWS[0].replace("para o campus", "para o\ncampus")
    result = load_contracts_csv(_portal_csv([multiline, "", PORTAL_ROWS[1]]))
    assert [c.id for c in result.contracts] == ["00012/2024 (UG 150002)"]
    assert result.contracts[0].object == "Aquisição de 500 unidades de notebook para o\ncampus"
    assert result.problems == (RowProblem(5, result.problems[0].message),)


def test_csv_tolerates_other_header_spellings_and_text_input() -> None:
    text = (
        "NUMERO DO CONTRATO;objeto;Data de Assinatura;Valor Inicial;Valor Global;"
        "Razão Social;CPF/CNPJ Fornecedor;Orgao Superior;Modalidade Compra;Situacao Contrato\n"
        "CT-1;Aquisição de 10 unidades de ambulância;2024-01-31;100,00;250,00;Fulano;"
        "11222333000181;Ministério da Saúde;Pregão;Ativo\n"
        "CT-2;Locação de imóvel;01/02/2024;1.000;;Maria;123.456.789-09;Ministério da Saúde;"
        "Inexigibilidade;Ativo\n"
        "CT-3;x;01/02/2024;1,00;;;;Ministério da Saúde;;;extra\n"
    )
    result = load_contracts_csv(text)
    assert [c.id for c in result.contracts] == ["CT-1", "CT-2"]
    first, second = result.contracts
    assert (first.signed_on, first.initial_value, first.global_value) == (
        dt.date(2024, 1, 31), 100.0, 250.0)  # fmt: skip
    assert (first.category, first.supplier_cnpj) == ("ambulâncias", "11222333000181")
    assert (second.category, second.quantity, second.unit_price) == ("", None, None)
    assert second.supplier_cnpj == ""  # a CPF is not a CNPJ
    assert second.initial_value == 1000.0
    assert result.problems[0].line == 4 and "colunas" in result.problems[0].message


def test_csv_without_a_required_column_reports_line_one() -> None:
    result = load_contracts_csv("Número do Contrato;Objeto\n1;papel\n")
    assert result.contracts == ()
    assert result.problems[0].line == 1
    assert "Data de Assinatura" in result.problems[0].message
    assert "Valor Inicial" in result.problems[0].message


def test_csv_reads_utf8_copies_despite_the_latin1_default() -> None:
    for data in (_portal_csv(PORTAL_ROWS[:1]).decode("latin-1").encode("utf-8"),
                 b"\xef\xbb\xbf" + _portal_csv(PORTAL_ROWS[:1]).decode("latin-1").encode()):
        result = load_contracts_csv(data)
        assert result.problems == ()
        assert result.contracts[0].agency == "MINISTÉRIO DA EDUCAÇÃO"


def test_csv_repeated_numbers_are_told_apart_by_management_unit() -> None:
    other_unit = PORTAL_ROWS[0].replace(";150002;", ";153000;")
    result = load_contracts_csv(_portal_csv([PORTAL_ROWS[0], other_unit, PORTAL_ROWS[0]]))
    assert [c.id for c in result.contracts] == ["00012/2024 (UG 150002)", "00012/2024 (UG 153000)"]
    assert result.problems == (
        RowProblem(4, "contrato 00012/2024 (UG 150002) repetido (primeiro na linha 2)"),
    )


API_ITEMS: list[object] = [
    {  # 1: the API's own shape, numbers as numbers
        "id": 671464460, "numero": "00005/2025", "objeto": "Aquisição de 20 unidades de "
        "notebook", "dataAssinatura": "2025-02-10", "valorInicial": 110000, "valorGlobal":
        121000.5, "fornecedor": {"nome": "Tecnologia Horizonte S.A.", "cnpjFormatado":
        "11.222.333/0001-81"}, "unidadeGestora": {"nome": "UG", "orgaoMaximo": {"codigo":
        "26000", "nome": "Ministério da Educação"}}, "modalidadeCompra": "Pregão",
        "situacaoContrato": "Ativo",
    },
    {  # 2: the flatter shape, Brazilian strings
        "id": 2, "numero": "00006/2025", "objeto": "Serviços de limpeza predial",
        "dataAssinatura": "15/03/2024", "valorInicial": "1.234,56", "valorGlobal": "1234.56",
        "fornecedor": {"nome": "Limpa Tudo Ltda", "cnpj": "00000000000191"},
        "orgao": {"nome": "Ministério da Saúde"},
    },
    "not an object",  # 3
    {"id": 4, "numero": "X", "dataAssinatura": "2024-13-01", "valorInicial": 1,
     "orgao": {"nome": "Ministério da Saúde"}},  # 4: bad date
    {"id": 5, "numero": "Y", "dataAssinatura": "2024-01-01", "valorInicial": None,
     "orgao": {"nome": "Ministério da Saúde"}},  # 5: no value
    {"id": 6, "numero": "Z", "dataAssinatura": "2024-01-01", "valorInicial": "abc",
     "orgao": {"nome": "Ministério da Saúde"}},  # 6: bad number
    {"id": 7, "numero": "00005/2025", "dataAssinatura": "2025-02-11", "valorInicial": 1,
     "orgao": {"nome": "Ministério da Saúde"}},  # 7: same number, other API id
]  # fmt: skip


def test_json_loads_both_agency_shapes_and_reports_bad_items() -> None:
    result = load_contracts_json(API_ITEMS)
    assert [c.id for c in result.contracts] == ["00005/2025", "00006/2025", "00005/2025 (id 7)"]
    assert [p.line for p in result.problems] == [3, 4, 5, 6]
    assert "Valor Inicial ausente" in result.problems[2].message
    api, flat, _ = result.contracts
    assert (api.agency, api.supplier_cnpj, api.supplier_name) == (
        "Ministério da Educação", "11222333000181", "Tecnologia Horizonte S.A.")  # fmt: skip
    assert (api.initial_value, api.global_value, api.signed_on) == (
        110_000.0, 121_000.5, dt.date(2025, 2, 10))  # fmt: skip
    assert (api.category, api.quantity, api.unit_price, api.modality, api.status) == (
        "notebooks", 20.0, 5_500.0, "Pregão", "Ativo")  # fmt: skip
    assert (flat.agency, flat.supplier_cnpj, flat.signed_on) == (
        "Ministério da Saúde", "00000000000191", dt.date(2024, 3, 15))  # fmt: skip
    assert flat.initial_value == flat.global_value == 1234.56
    assert flat.category == "limpeza e conservação" and flat.modality == ""


def test_json_from_text_bytes_and_wrong_shapes() -> None:
    text = orjson.dumps(API_ITEMS[:2]).decode()
    assert load_contracts_json(text) == load_contracts_json(text.encode())
    assert len(load_contracts_json(text).contracts) == 2
    assert load_contracts_json("{}").problems[0].line == 0
    assert load_contracts_json(b"[1, 2").problems[0].message.startswith("JSON inválido")


def test_load_dataset_picks_the_loader_by_extension(tmp_path: Path) -> None:
    csv_file = tmp_path / "202403_Compras.CSV"
    csv_file.write_bytes(_portal_csv(PORTAL_ROWS))
    json_file = tmp_path / "contratos.json"
    json_file.write_bytes(orjson.dumps(API_ITEMS))
    zip_file = tmp_path / "202403_Compras.zip"
    with zipfile.ZipFile(zip_file, "w") as archive:
        archive.writestr("202403_TermoAditivo.csv", "nada;aqui\n")
        archive.writestr("202403_Compras.csv", _portal_csv(PORTAL_ROWS))

    from_csv = load_dataset(csv_file)
    assert len(from_csv.contracts) == 2 and len(from_csv.problems) == 3
    assert load_dataset(str(csv_file)) == from_csv == load_contracts_csv(csv_file)
    assert load_dataset(zip_file) == from_csv
    assert load_dataset(json_file) == load_contracts_json(API_ITEMS)
    with pytest.raises(ValueError):
        load_dataset(tmp_path / "contratos.xlsx")


def test_sample_round_trips_through_the_csv_loader(sample: Sample) -> None:
    """Write sample contracts the way the portal does and read them back unchanged."""
    out = io.StringIO()
    out.write(PORTAL_HEADER + "\n")
    chosen = sample.contracts[:300]
    for c in chosen:
        money = [f"{v:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
                 for v in (c.initial_value, c.global_value)]  # fmt: skip
        out.write(";".join([c.id, c.object, c.modality, c.status, "", c.agency, "", "",
                            c.signed_on.strftime("%d/%m/%Y"), format_cnpj(c.supplier_cnpj),
                            c.supplier_name, *money]) + "\n")  # fmt: skip
    result = load_contracts_csv(out.getvalue().encode("latin-1"))
    assert result.problems == ()
    assert result.contracts == tuple(attrs.evolve(c, number=c.id) for c in chosen)
