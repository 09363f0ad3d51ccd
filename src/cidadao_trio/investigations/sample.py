"""A reproducible sample of federal contracts with planted anomalies and their ground truth.

The live demo and the detector tests need data whose anomalies are known. Normal
contracts are generated to stay quiet under the detectors: prices within ±25% of the
category's typical price, smooth seasonal spending per agency-month, no dominant supplier,
varied object texts, no dispensas near the threshold. The planted cases are then added on
top and listed in ``Sample.planted``. Only ``random.Random(seed)`` is used, and nothing
depends on set order, so a seed gives the same sample on every machine.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import functools
import hashlib
import math
import os
import random
import re
from collections import defaultdict
from pathlib import Path

import attrs
import orjson

from .categories import CATALOGUE, CATEGORIES, Category, categorize
from .cnpj import make_cnpj
from .detectors import jaccard
from .model import AnomalyType, Contract, PlantedAnomaly

__all__ = [
    "AGENCIES", "CATEGORIES", "DISPENSA_THRESHOLD", "PLANTED_COUNTS", "Sample", "categorize",
    "generate_sample", "load_default_sample",
]  # fmt: skip

DISPENSA_THRESHOLD = 57_208.33  # dispensa by value for goods/services, Decreto 11.871/2023
START, END, MONTHS = dt.date(2024, 1, 1), dt.date(2025, 12, 31), 24
PLANTED_COUNTS: dict[AnomalyType, int] = {
    "price_deviation": 40, "supplier_concentration": 3, "spending_spike": 4,
    "duplicate_contract": 25, "contract_splitting": 10, "value_divergence": 20,
}  # fmt: skip
PREGAO, CONCORRENCIA = "Pregão Eletrônico", "Concorrência"
DISPENSA, INEXIGIBILIDADE = "Dispensa de Licitação", "Inexigibilidade"

_GENERAL = "notebooks|computadores|material de escritório|software|limpeza e conservação|" \
    "vigilância|telecomunicações"
# agency: (relative size, "|"-separated units receiving the purchases, its own categories)
_AGENCY_TABLE: dict[str, tuple[float, str, str]] = {
    "Ministério da Saúde": (3.0, "o Hospital Federal|a Superintendência Estadual|o Distrito "
        "Sanitário Especial Indígena", "medicamentos|ambulâncias|equipamentos hospitalares|"
        "material de laboratório"),
    "Ministério da Educação": (2.6, "o Instituto Federal|a Universidade Federal|o Campus "
        "Avançado", "merenda escolar|mobiliário escolar|capacitação"),
    "Ministério da Defesa": (2.2, "o Batalhão de Infantaria|a Base Aérea|o Hospital Militar "
        "de Área", "combustível|fardamento|veículos|medicamentos"),
    "Ministério da Justiça e Segurança Pública": (1.4, "a Superintendência da Polícia Federal|"
        "a Superintendência da Polícia Rodoviária Federal|a Penitenciária Federal",
        "veículos|fardamento|combustível"),
    "Ministério da Fazenda": (1.0, "a Delegacia da Receita Federal|a Alfândega|a "
        "Superintendência Regional da Receita Federal", "capacitação"),
    "Ministério da Agricultura e Pecuária": (1.0, "a Superintendência Federal de Agricultura|o "
        "Laboratório Federal de Defesa Agropecuária", "máquinas agrícolas|material de "
        "laboratório|combustível"),
    "Ministério da Ciência, Tecnologia e Inovação": (0.8, "o Instituto de Pesquisa|a Unidade "
        "de Pesquisa|o Laboratório Nacional", "material de laboratório|energia solar"),
    "Ministério das Cidades": (0.9, "a Superintendência Regional|o Escritório de Projetos "
        "Urbanos", "pavimentação"),
    "Ministério dos Transportes": (1.2, "a Superintendência Regional do DNIT|a Unidade Local "
        "do DNIT", "pavimentação|combustível|veículos"),
    "Ministério do Meio Ambiente e Mudança do Clima": (0.8, "a Superintendência do Ibama|a "
        "Unidade de Conservação do ICMBio", "veículos|combustível|energia solar"),
    "Ministério da Cultura": (0.6, "a Superintendência do Iphan|o Centro Cultural|o Museu "
        "Regional", "eventos culturais"),
    "Ministério do Desenvolvimento e Assistência Social": (1.0, "a Superintendência Regional|o "
        "Centro de Referência de Assistência Social", "cestas básicas|capacitação"),
    "Ministério de Minas e Energia": (0.7, "a Superintendência Regional|o Escritório Regional "
        "da ANM", "energia solar|veículos"),
    "Ministério das Comunicações": (0.6, "a Superintendência Regional|o Escritório Regional da "
        "Anatel", "energia solar"),
    "Ministério do Trabalho e Emprego": (0.7, "a Superintendência Regional do Trabalho|a "
        "Gerência Regional do Trabalho", "capacitação"),
}  # fmt: skip
AGENCIES: tuple[str, ...] = tuple(_AGENCY_TABLE)
_CITIES = (
    "Rio Branco/AC|Maceió/AL|Macapá/AP|Manaus/AM|Salvador/BA|Fortaleza/CE|Brasília/DF|"
    "Vitória/ES|Goiânia/GO|São Luís/MA|Cuiabá/MT|Campo Grande/MS|Belo Horizonte/MG|Belém/PA|"
    "João Pessoa/PB|Curitiba/PR|Recife/PE|Teresina/PI|Rio de Janeiro/RJ|Natal/RN|Porto "
    "Alegre/RS|Porto Velho/RO|Boa Vista/RR|Florianópolis/SC|São Paulo/SP|Aracaju/SE|Palmas/TO"
).split("|")
# Why and how it is bought, per kind of purchase: the slots that make object texts differ.
_PURPOSES = {
    "bem": "para atender às necessidades|para reposição do estoque|para modernização das "
    "instalações|para ampliação da capacidade operacional|para uso nas atividades "
    "finalísticas|para substituição de itens inservíveis|conforme plano anual de contratações",
    "servico": "pelo período de 12 meses|em regime de dedicação exclusiva de mão de obra|com "
    "fornecimento de materiais e equipamentos|de natureza continuada|com início imediato da "
    "execução",
    "obra": "com drenagem superficial e sinalização viária|com execução de meio-fio e "
    "sarjeta|em vias urbanas do programa de mobilidade|com recuperação da base e "
    "sub-base|incluindo calçadas acessíveis",
}
_DETAILS = {
    "bem": "com entrega em até 30 dias|com entrega parcelada conforme demanda|com garantia "
    "mínima de 12 meses|em lote único|por sistema de registro de preços|com assistência "
    "técnica no local|incluindo frete e descarga|com entrega imediata",
    "servico": "com cobertura em horário comercial|com cobertura ininterrupta|incluindo finais "
    "de semana e feriados|com supervisão técnica permanente|com relatórios mensais de "
    "desempenho|com acordo de nível de serviço|mediante ordens de serviço|com equipe residente",
    "obra": "em regime de empreitada por preço unitário|em regime de empreitada por preço "
    "global|com prazo de execução de 180 dias|com prazo de execução de 12 meses|com "
    "fornecimento de materiais|incluindo projeto executivo|em três etapas|com acompanhamento "
    "topográfico",
}
_COMPANY_WORDS = (
    "Alfa|Horizonte|Atlântico|Cerrado|Pantanal|Ipê|Jacarandá|Aurora|Progresso|Planalto|Vale "
    "Verde|São Francisco|Guanabara|Itapuã|Araucária|Serra Azul|Litoral|União|Brasil Central|"
    "Estrela|Delta|Ômega|Sigma|Vértice|Prisma|Nova Era|Pioneira|Continental|Vitória Régia|Santa "
    "Cruz|Bandeirantes|Potiguar|Xingu|Tapajós|Iguaçu|Solimões|Mandacaru|Buriti|Aroeira|Sabiá|"
    "Carnaúba|Jequitibá|Paineira|Tucano|Guará|Candango|Capibaribe|Borborema|Chapada|"
    "Mantiqueira|Paranapanema|Oiapoque"
).split("|")
_SIMILAR = 0.8  # texts of one agency stay below this word-Jaccard (duplicate detectors: 0.85)


@attrs.frozen
class Sample:
    """Generated contracts plus the ground truth of what was planted in them."""

    contracts: tuple[Contract, ...]
    planted: tuple[PlantedAnomaly, ...]


@attrs.frozen
class _Supplier:
    name: str
    cnpj: str


def _month_of(day: dt.date) -> int:
    return (day.year - START.year) * 12 + day.month - 1


def _words(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """Word sets as detectors may split them: at non-letters, and at whitespace."""
    lower = text.lower()
    return frozenset(re.findall(r"\w+", lower)), frozenset(lower.split())


class _Builder:
    """The generator's state: one rng, suppliers, texts used, budgets, contracts so far."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.contracts: list[Contract] = []
        self.planted: list[tuple[AnomalyType, list[str], str]] = []
        self.budget: dict[tuple[str, int], float] = {}  # planned spend per agency-month
        self.spent: dict[tuple[str, int], float] = defaultdict(float)
        self.texts: dict[tuple[str, str], list[tuple[frozenset[str], ...]]] = defaultdict(list)
        self.dispensas: dict[tuple[str, str], list[dt.date]] = defaultdict(list)
        self.units = {a: row[1].split("|") for a, row in _AGENCY_TABLE.items()}
        self.categories = {a: f"{_GENERAL}|{row[2]}".split("|")
                           for a, row in _AGENCY_TABLE.items()}
        self.suppliers = self._make_suppliers(300)

    def _make_suppliers(self, count: int) -> dict[str, list[_Supplier]]:
        """Suppliers specialise in one category; categories more agencies buy get more."""
        demand = {c.name: sum(c.name in cats for cats in self.categories.values())
                  for c in CATALOGUE}
        rng, names, cnpjs = self.rng, {""}, {""}
        by_category: dict[str, list[_Supplier]] = {}
        for category in CATALOGUE:
            group = by_category[category.name] = []
            for _ in range(max(4, round(count * demand[category.name] / sum(demand.values())))):
                name = cnpj = ""
                while name in names:
                    pair = [rng.choice(category.trades), rng.choice(_COMPANY_WORDS)]
                    suffix = rng.choice(("Ltda", "Ltda", "Ltda", "S.A.", "Ltda - ME"))
                    name = " ".join((pair if rng.random() < 0.6 else pair[::-1]) + [suffix])
                while cnpj in cnpjs:
                    cnpj = make_cnpj(rng)
                names.add(name)
                cnpjs.add(cnpj)
                group.append(_Supplier(name, cnpj))
        return by_category

    # -- building blocks ------------------------------------------------------------------

    def date_in(self, month: int) -> dt.date:
        year, number = START.year + month // 12, month % 12 + 1
        return dt.date(year, number, self.rng.randint(1, calendar.monthrange(year, number)[1]))

    def size(self, category: Category, value: float, factor: float | None = None,
             clamp: bool = False) -> tuple[int, float]:
        """Quantity and unit price worth about ``value``; normal prices get ±25% noise."""
        if factor is None:  # log-normal noise: peers of a category stay comparable
            factor = min(1.25, max(0.78, self.rng.lognormvariate(0.0, 0.09)))
        price = round(category.unit_price * factor, 2)
        qty = max(category.min_qty, round(value / price))
        return (min(qty, category.max_qty) if clamp else qty), price

    def object_text(self, agency: str, category: Category, qty: int) -> str:
        """A Portuguese object text unlike the agency's other texts of that category or place."""
        quantity = f"{qty:,}".replace(",", ".")
        unit = category.unit[:-1] if qty == 1 and category.unit.endswith("s") else category.unit
        for _ in range(60):
            purpose = self.rng.choice(_PURPOSES[category.kind].split("|"))
            detail = self.rng.choice(_DETAILS[category.kind].split("|"))
            article, where = self.rng.choice(self.units[agency]).split(" ", 1)
            place = f"{where} em {self.rng.choice(_CITIES)}"
            if category.kind == "servico":
                text = (f"Contratação de {category.item}, com {quantity} {unit}, "
                        f"{detail}, {purpose}, para {article} {place}")
            elif category.kind == "obra":
                text = (f"Execução de {quantity} {unit} de {category.item} {purpose}, "
                        f"{detail}, sob gestão d{article} {place}")
            else:
                text = (f"Aquisição de {quantity} {unit} de {category.item}, {detail}, "
                        f"{purpose} d{article} {place}")
            words = _words(text)
            buckets = (self.texts[agency, category.name], self.texts[agency, place])
            if all(jaccard(a, b) < _SIMILAR for bucket in buckets for old in bucket
                   for a, b in zip(words, old, strict=True)):
                break
        for bucket in buckets:
            bucket.append(words)
        return text

    def add(self, agency: str, category: Category, qty: int, price: float, *,
            signed_on: dt.date, supplier: _Supplier | None = None, modality: str | None = None,
            global_factor: float | None = None, text: str | None = None) -> Contract:
        """Create one contract and book its value against its agency-month."""
        rng, initial = self.rng, round(qty * price, 2)
        supplier = supplier or rng.choice(self.suppliers[category.name])
        if modality is None:
            modality = self.natural_modality(agency, category, supplier, initial, signed_on)
        if global_factor is None:  # most keep their value; amendments stay within legal 25%
            draw = rng.random()
            global_factor = (1.0 if draw < 0.65 else rng.uniform(1.01, 1.25) if draw < 0.9
                             else rng.uniform(0.85, 0.99))
        contract = Contract(
            id=f"tmp-{len(self.contracts):06d}", agency=agency, supplier_name=supplier.name,
            supplier_cnpj=supplier.cnpj, object=text or self.object_text(agency, category, qty),
            category=category.name, initial_value=initial,
            global_value=round(initial * global_factor, 2), signed_on=signed_on,
            quantity=float(qty), unit_price=price, modality=modality,
            status="Encerrado" if signed_on.year == START.year and rng.random() < 0.7 else "Ativo")
        self.contracts.append(contract)
        self.spent[agency, _month_of(signed_on)] += initial
        return contract

    def natural_modality(self, agency: str, category: Category, supplier: _Supplier,
                         value: float, when: dt.date) -> str:
        """Small buys are often dispensas, but never two to one supplier within 120 days."""
        if category.kind == "obra":
            return CONCORRENCIA
        earlier = self.dispensas[agency, supplier.cnpj]
        if (value <= 0.45 * DISPENSA_THRESHOLD and self.rng.random() < 0.7
                and all(abs((when - d).days) > 120 for d in earlier)):
            earlier.append(when)
            return DISPENSA
        if category.name in ("software", "eventos culturais") and self.rng.random() < 0.3:
            return INEXIGIBILIDADE
        return CONCORRENCIA if value > 3_000_000 and self.rng.random() < 0.3 else PREGAO

    def pick_category(self, agency: str, value: float, max_price: float = math.inf) -> Category:
        """A category of the agency in which ``value`` buys a plausible quantity."""
        cats = [CATEGORIES[n] for n in self.categories[agency]
                if CATEGORIES[n].unit_price <= max_price]
        fits = [c for c in cats if c.min_qty * c.unit_price <= value <= c.max_qty * c.unit_price]
        return self.rng.choice(fits) if fits else min(cats, key=lambda c: abs(
            math.log(value / c.unit_price) - math.log(c.min_qty * c.max_qty) / 2))

    def modest(self, agency: str, month: int, share: float = 0.03) -> float:
        """A value small next to the month's spending, so a planted case moves no totals."""
        return self.rng.uniform(share / 3, share) * self.budget[agency, month]

    # -- normal contracts -----------------------------------------------------------------

    def plan(self, n_natural: int) -> dict[tuple[str, int], int]:
        """Contract counts and smooth seasonal spending targets per agency-month."""
        weights = [row[0] for row in _AGENCY_TABLE.values()]
        shares = [n_natural * w / sum(weights) for w in weights]
        counts = [math.floor(s) for s in shares]
        by_remainder = sorted(range(len(shares)), key=lambda i: counts[i] - shares[i])
        for i in by_remainder[: n_natural - sum(counts)]:  # largest remainders get the rest
            counts[i] += 1
        per_month: dict[tuple[str, int], int] = {}
        for agency, n in zip(AGENCIES, counts, strict=True):
            extra = set(self.rng.sample(range(MONTHS), n % MONTHS))
            base = self.rng.uniform(450_000, 900_000) * n / MONTHS
            phase = self.rng.uniform(0, 12)
            for m in range(MONTHS):  # a sine wave keeps every month within 2σ of the mean
                per_month[agency, m] = n // MONTHS + (m in extra)
                season = 1 + 0.2 * math.sin(2 * math.pi * (m + phase) / 12)
                self.budget[agency, m] = base * (season + self.rng.uniform(-0.02, 0.02))
        return per_month

    def fill_month(self, agency: str, month: int, count: int) -> None:
        """Spend what is left of the month's target on ``count`` contracts, small ones first."""
        rng, budget = self.rng, self.budget[agency, month]
        left = max(budget - self.spent[agency, month], 0.3 * budget)
        small = [rng.uniform(4_000, 24_000) for _ in range(round(count * 0.2))]
        weights = [rng.lognormvariate(0.0, 0.8) for _ in range(count - len(small))]
        big = sorted(w / sum(weights) * (left - sum(small)) for w in weights)
        for i, value in enumerate(small + big):
            if i == count - 1:  # the largest absorbs rounding: the month lands on its target
                value = max(0.5 * value, budget - self.spent[agency, month])
            category = self.pick_category(agency, value)
            qty, price = self.size(category, value, clamp=True)
            self.add(agency, category, qty, price, signed_on=self.date_in(month),
                     global_factor=1.0 if value > 0.05 * budget else None)  # big ones: no wobble

    # -- planted anomalies ----------------------------------------------------------------

    def plant(self, kind: AnomalyType, contracts: list[Contract]) -> None:
        self.planted.append((kind, [c.id for c in contracts], contracts[0].agency))

    def plant_single(self, kind: AnomalyType, price_factor: float | None = None,
                     global_factor: float = 1.0, months: int = MONTHS) -> Contract:
        """One modest Pregão contract, at an abnormal price or final value if asked."""
        agency, month = self.rng.choice(AGENCIES), self.rng.randrange(months)
        value = max(self.modest(agency, month), DISPENSA_THRESHOLD)
        category = self.pick_category(agency, value / (price_factor or 1.0))
        qty, price = self.size(category, value, price_factor, clamp=price_factor is None)
        contract = self.add(agency, category, qty, price, signed_on=self.date_in(month),
                            modality=PREGAO, global_factor=global_factor)
        self.plant(kind, [contract])
        return contract

    def plant_duplicate(self) -> None:
        """The same purchase signed twice, a few weeks apart, with the same supplier."""
        first = self.plant_single("duplicate_contract", months=MONTHS - 2)
        text = first.object
        if self.rng.random() < 0.5:
            text = text.replace(" de ", " emergencial de ", 1)
        second = self.add(first.agency, CATEGORIES[first.category], int(first.quantity or 0),
                          first.unit_price or 0.0, modality=PREGAO, global_factor=1.0,
                          signed_on=first.signed_on + dt.timedelta(days=self.rng.randint(3, 40)),
                          supplier=_Supplier(first.supplier_name, first.supplier_cnpj), text=text)
        self.planted[-1][1].append(second.id)  # plant_single recorded the first one

    def plant_splitting(self, count: int) -> None:
        """Dispensas just under the threshold, one agency to one supplier, within 90 days."""
        rng = self.rng
        while True:  # a pair with no dispensa yet, so the group is exactly what was planted
            agency = rng.choice(AGENCIES)
            category = self.pick_category(agency, DISPENSA_THRESHOLD, max_price=1_000)
            supplier = rng.choice(self.suppliers[category.name])
            if not self.dispensas[agency, supplier.cnpj]:
                break
        start = START + dt.timedelta(days=rng.randrange((END - START).days - 89))
        dates = [start] + sorted(start + dt.timedelta(days=rng.randint(1, 89))
                                 for _ in range(count - 1))
        group = []
        for when in dates:
            value = rng.uniform(0.86, 0.99) * DISPENSA_THRESHOLD
            price = self.size(category, value)[1]
            group.append(self.add(agency, category, math.floor(value / price), price,
                                  signed_on=when, supplier=supplier, modality=DISPENSA,
                                  global_factor=1.0))
        self.dispensas[agency, supplier.cnpj].extend(dates)
        self.plant("contract_splitting", group)

    def plant_concentration(self, agency: str) -> None:
        """Every month, one supplier gets three times what everybody else got together."""
        big = [n for n in ("software", "notebooks", "vigilância", "telecomunicações",
                           "pavimentação") if n in self.categories[agency]]
        category = CATEGORIES[self.rng.choice(big)]
        planted = {i for _, ids, _ in self.planted for i in ids}
        busy = {c.supplier_cnpj for c in self.contracts if c.agency == agency and c.id in planted}
        supplier = self.rng.choice([s for s in self.suppliers[category.name]
                                    if s.cnpj not in busy])
        for month in range(MONTHS):
            qty, price = self.size(category, 3.0 * self.spent[agency, month])
            self.add(agency, category, qty, price, signed_on=self.date_in(month),
                     supplier=supplier, modality=PREGAO, global_factor=1.0)
        self.plant("supplier_concentration", [c for c in self.contracts if c.agency == agency
                                              and c.supplier_cnpj == supplier.cnpj])

    def plant_spike(self, agency: str, count: int) -> None:
        """Several large contracts signed without competition (inexigibilidade) in one month:
        3.5-4.5x the agency's usual spending. (A month of large concorrências is planned and
        public; the detector sets those aside.) Never in November or December, whose busier
        months real data expects: the sample has no seasonality to plant against."""
        month = self.rng.choice([m for m in range(MONTHS) if m % 12 < 10])
        total = self.rng.uniform(2.5, 3.5) * self.spent[agency, month]
        weights = [self.rng.uniform(0.7, 1.3) for _ in range(count)]
        group: list[Contract] = []
        for w in weights:
            category = self.pick_category(agency, total * w / sum(weights))
            used = [c.supplier_cnpj for c in group]
            fresh = [s for s in self.suppliers[category.name] if s.cnpj not in used]
            qty, price = self.size(category, total * w / sum(weights))
            group.append(self.add(agency, category, qty, price, signed_on=self.date_in(month),
                                  supplier=self.rng.choice(fresh or self.suppliers[category.name]),
                                  modality=INEXIGIBILIDADE, global_factor=1.0))
        self.plant("spending_spike", group)

    def finish(self) -> Sample:
        """Number contracts by signature date ("CT-2025-000123") and map the ground truth."""
        ordered = sorted(self.contracts, key=lambda c: (c.signed_on, c.id))
        per_year: dict[int, int] = defaultdict(int)
        final: dict[str, str] = {}
        for c in ordered:
            per_year[c.signed_on.year] += 1
            final[c.id] = f"CT-{c.signed_on.year}-{per_year[c.signed_on.year]:06d}"
        kinds = list(PLANTED_COUNTS)
        return Sample(
            contracts=tuple(attrs.evolve(c, id=final[c.id]) for c in ordered),
            planted=tuple(PlantedAnomaly(kind, tuple(sorted(final[i] for i in ids)), agency)
                          for kind, ids, agency in sorted(self.planted,
                                                          key=lambda p: kinds.index(p[0]))))


def generate_sample(seed: int = 2026, size: int = 5000) -> Sample:
    """``size`` contracts, planted ones included; the same seed gives the same sample."""
    builder = _Builder(seed)
    rng, counts = builder.rng, PLANTED_COUNTS
    splits = [rng.randint(3, 5) for _ in range(counts["contract_splitting"])]
    spikes = [rng.randint(3, 5) for _ in range(counts["spending_spike"])]
    n_planted = (counts["price_deviation"] + 2 * counts["duplicate_contract"] + sum(splits)
                 + counts["value_divergence"] + sum(spikes)
                 + MONTHS * counts["supplier_concentration"])
    if size < n_planted + 5 * MONTHS * len(AGENCIES):
        raise ValueError(f"size must be at least {n_planted + 5 * MONTHS * len(AGENCIES)}")
    per_month = builder.plan(size - n_planted)
    for _ in range(counts["price_deviation"]):
        builder.plant_single("price_deviation", price_factor=rng.uniform(2.7, 5.8))
    for _ in range(counts["duplicate_contract"]):
        builder.plant_duplicate()
    for count in splits:
        builder.plant_splitting(count)
    for i in range(counts["value_divergence"]):  # 70% inflated, 30% cut
        up = i < round(0.7 * counts["value_divergence"])
        factor = rng.uniform(1.6, 2.5) if up else rng.uniform(0.25, 0.45)
        builder.plant_single("value_divergence", global_factor=factor)
    for (agency, month), count in per_month.items():
        builder.fill_month(agency, month, count)
    special = rng.sample(AGENCIES, counts["supplier_concentration"] + len(spikes))
    for agency in special[: counts["supplier_concentration"]]:
        builder.plant_concentration(agency)
    for agency, count in zip(special[counts["supplier_concentration"]:], spikes, strict=True):
        builder.plant_spike(agency, count)
    return builder.finish()


@functools.lru_cache(maxsize=1)
def load_default_sample() -> Sample:
    """The server's demo dataset: generated once (about a second of CPU), then read back from
    the user's cache directory by every later start, as long as the code that made it is the
    same. The cache is plain JSON (never code) and is rebuilt when unreadable."""
    path = _cache_path()
    try:
        return _read_cache(path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    sample = generate_sample()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(orjson.dumps({"contracts": [attrs.asdict(c) for c in sample.contracts],
                                          "planted": [attrs.asdict(p) for p in sample.planted]}))
        os.replace(partial, path)  # whole or not at all, even with several processes at once
    return sample


_DATES = ("signed_on", "published_on", "starts_on", "ends_on")


def _cache_path() -> Path:
    """Keyed by the sources the sample is made from: a change to any of them makes a new one."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for source in sorted([*package.glob("*.py"), package.parent / "portuguese.py"]):
        digest.update(source.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cidadao-trio" / f"sample-{digest.hexdigest()[:16]}.json"


def _read_cache(path: Path) -> Sample:
    raw = orjson.loads(path.read_bytes())
    contracts = []
    for row in raw["contracts"]:
        for name in _DATES:
            if row[name] is not None:
                row[name] = dt.date.fromisoformat(row[name])
        contracts.append(Contract(**row))
    planted = tuple(PlantedAnomaly(p["anomaly_type"], tuple(p["contract_ids"]), p["agency"]) for p in raw["planted"])
    return Sample(contracts=tuple(contracts), planted=planted)
