"""A second evaluation set, written from the real Portal da Transparência formats, not from
``sample.py``: the monthly "Compras" CSV (cp1252, ";" separated, the portal's 24 columns)
and its ``*_ItemCompra.csv``, zipped the way the portal ships them, read back through
``portal.load_dataset``. It holds what real data holds and the detectors must not call
anomalies (the ``quiet`` cases), and planted anomalies with their ground truth:

quiet: Decembers at ~2.4× a normal month; atas de registro de preços whose siblings share
the text, supplier and value; continuing services re-contracted a year later with the same
text; oncology drugs, CT scanners and armoured vehicles (legitimately expensive, few peers);
art. 107 extensions (three-year vigência, three years' value); emergency dispensas (art.
75 VIII) of high value; months with one large competitive contract; upper-case accent-less
text; name variants and branches of one CNPJ root; final values of 0,00 (missing); small
dispensas that stay under the year's limit; amendments within 25%.

planted: overpriced unit prices (2-5× the item's median), one supplier holding most of a
small ministry, months of direct contracting at 4-7× normal, duplicate pairs (same UG,
supplier, object, 5-40 days, value within 5%, no common licitação), splitting (small-value
dispensas of one UG, year and nature over the limit, half of them by suppliers taking turns),
amendments beyond art. 125, emergency contracts lasting 18 months.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import random
import zipfile
from collections.abc import Sequence

import attrs

from cidadao_trio.investigations.cnpj import cnpj_check_digits
from cidadao_trio.investigations.legal import dispensa_limit
from cidadao_trio.investigations.model import AnomalyType, Contract, PlantedAnomaly
from cidadao_trio.investigations.portal import load_dataset

HEADER = (
    "Número do Contrato;Objeto;Fundamento Legal;Modalidade Compra;Situação Contrato;"
    "Código Órgão Superior;Nome Órgão Superior;Código Órgão;Nome Órgão;Código UG;Nome UG;"
    "Data Assinatura Contrato;Data Publicação DOU;Data Início Vigência;Data Fim Vigência;"
    "Código Contratado;Nome Contratado;Número Licitação;Código UG Licitação;Nome UG Licitação;"
    "Código Modalidade Compra Licitação;Modalidade Compra Licitação;Valor Inicial Compra;"
    "Valor Final Compra"
)
ITEM_HEADER = (
    "Número Contrato;Código Órgão;Nome Órgão;Código UG;Nome UG;Código Item Compra;"
    "Descrição Item Compra;Descrição Complementar Item Compra;Quantidade Item;Valor Item"
)
PREGAO = ("Lei 14.133/2021, Art. 28, I", "Pregão", "05")
DISPENSA = ("Lei 14.133/2021, Art. 75, II", "Dispensa de Licitação", "06")
EMERGENCIA = ("Lei 14.133/2021, Art. 75, VIII", "Dispensa de Licitação", "06")
INEXIGIBILIDADE = ("Lei 14.133/2021, Art. 74, I", "Inexigibilidade de Licitação", "07")
CONCORRENCIA = ("Lei 14.133/2021, Art. 28, II", "Concorrência", "03")

# (SIAFI code, official name, relative size)
MINISTRIES = (
    ("36000", "Ministério da Saúde", 3.0), ("26000", "Ministério da Educação", 2.5),
    ("52000", "Ministério da Defesa", 2.0), ("30000", "Ministério da Justiça e Segurança Pública", 1.3),
    ("25000", "Ministério da Fazenda", 0.9), ("22000", "Ministério da Agricultura e Pecuária", 0.9),
    ("39000", "Ministério dos Transportes", 1.0), ("44000", "Ministério do Meio Ambiente e Mudança do Clima", 0.6),
    ("55000", "Ministério do Desenvolvimento e Assistência Social, Família e Combate à Fome", 0.8),
    ("42000", "Ministério da Cultura", 0.35), ("81000", "Ministério dos Direitos Humanos e da Cidadania", 0.3),
)  # fmt: skip

# (CATMAT-like code, unit, item text, typical unit price, nature)
ITEMS = (
    ("461734", "resmas", "papel sulfite A4 75 g/m2", 27.5, "material de expediente"),
    ("150012", "caixas", "caneta esferográfica azul", 38.0, "material de expediente"),
    ("271110", "frascos", "insulina humana NPH 100 UI/mL", 24.9, "medicamentos"),
    ("268421", "ampolas", "dipirona sódica 500 mg/mL", 3.1, "medicamentos"),
    ("445522", "frascos", "vacina influenza trivalente", 95.0, "medicamentos"),
    ("399887", "kits", "reagente para hemograma completo", 640.0, "material de laboratório"),
    ("451205", "unidades", "notebook 14 polegadas 16 GB", 5200.0, "equipamentos de informática"),
    ("451206", "unidades", "microcomputador desktop 8 GB", 4100.0, "equipamentos de informática"),
    ("307044", "litros", "óleo diesel S10", 6.05, "combustíveis"),
    ("307045", "litros", "gasolina comum", 5.9, "combustíveis"),
    ("233311", "unidades", "monitor multiparamétrico para UTI", 18500.0, "equipamentos hospitalares"),
    ("380011", "conjuntos", "mesa e cadeira escolar", 420.0, "mobiliário"),
    ("360022", "kits", "uniforme operacional", 380.0, "fardamento"),
    ("470100", "unidades", "cesta básica de alimentos", 165.0, "gêneros alimentícios"),
    ("248801", "licenças", "software de produtividade em nuvem", 1150.0, "software"),
)  # fmt: skip
# Legitimately expensive, few contracts each: never enough peers to be "overpriced".
RARE = (
    ("601001", "frascos", "trastuzumabe 440 mg", 9800.0, "medicamentos"),
    ("601002", "frascos", "pembrolizumabe 100 mg", 17800.0, "medicamentos"),
    ("602001", "unidades", "tomógrafo computadorizado 128 canais", 4_500_000.0, "equipamentos hospitalares"),
    ("602002", "unidades", "aparelho de ressonância magnética 1,5 T", 7_800_000.0, "equipamentos hospitalares"),
    ("603001", "unidades", "viatura blindada 4x4 nível III-A", 1_900_000.0, "veículos"),
)  # fmt: skip
SERVICES = (
    ("vigilância patrimonial armada", "postos", 190_000.0), ("limpeza e conservação predial", "m2", 84.0),
    ("manutenção predial preventiva e corretiva", "meses", 45_000.0),
    ("apoio administrativo terceirizado", "postos", 62_000.0),
)  # fmt: skip
WORDS = ("Alfa Horizonte Atlântico Cerrado Pantanal Aurora Progresso Planalto União Estrela Delta "
         "Ômega Sigma Vértice Prisma Pioneira Continental Bandeirantes Xingu Tapajós Iguaçu Buriti "
         "Aroeira Sabiá Jequitibá Tucano Guará Borborema Chapada Mantiqueira").split()  # fmt: skip
TRADES = "Comércio|Distribuidora|Serviços|Tecnologia|Indústria|Soluções|Suprimentos|Engenharia".split("|")
START_YEAR, YEARS = 2023, 3


@attrs.frozen
class Realistic:
    contracts: tuple[Contract, ...]
    planted: tuple[PlantedAnomaly, ...]
    archive: bytes  # the zip, as the portal ships it


def _money(v: float) -> str:
    return f"{v:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")


def _plain(text: str) -> str:
    """UPPER CASE WITHOUT ACCENTS, as many UGs type their objects."""
    import unicodedata

    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper()


class _Gen:
    def __init__(self, seed: int, size: int, ministries: int) -> None:
        self.rng = random.Random(seed)
        self.size = size
        rng = self.rng
        chosen = MINISTRIES[:ministries]
        self.ugs: list[tuple[str, str, str, str, float]] = []  # code, name, ministry code, ministry, weight
        for code, name, weight in chosen:
            for k in range(3 + (weight > 1.5)):
                ug = f"{code[:2]}{rng.randrange(1000, 9999)}"
                self.ugs.append((ug, _plain(f"Superintendência Regional {k + 1} - {name.split(' ', 2)[-1]}")[:60],
                                 code, name, weight))  # fmt: skip
        self.suppliers = []
        for _ in range(max(60, min(1000, size // 5))):
            root = f"{rng.randrange(10_000_000, 99_999_999)}"
            name = f"{rng.choice(WORDS)} {rng.choice(TRADES)} {rng.choice(WORDS)} Ltda"
            self.suppliers.append((root, name))
        self.rows: list[list[str]] = []
        self.items: list[list[str]] = []
        self.planted: list[PlantedAnomaly] = []
        self.numbers: dict[str, int] = {}
        self.small_spent: dict[tuple[str, int, str], float] = {}

    # -- one row -----------------------------------------------------------------------

    def supplier(self, k: int | None = None) -> tuple[str, str]:
        """A CNPJ (head office or a branch) and a spelling of its name."""
        root, name = self.suppliers[self.rng.randrange(len(self.suppliers)) if k is None else k]
        branch = "0001" if self.rng.random() < 0.85 else f"{self.rng.randrange(2, 40):04d}"
        if self.rng.random() < 0.2:
            name = _plain(name).replace(" LTDA", " LTDA - ME")
        return root + branch + cnpj_check_digits(root + branch), name

    def add(self, ug: tuple[str, str, str, str, float], day: dt.date, obj: str, value: float,
            kind: tuple[str, str, str], *, final: float | None = None, months: int = 12,
            supplier: tuple[str, str] | None = None, bidding: str = "",
            item: tuple[str, str, float] | None = None) -> str:
        rng = self.rng
        code, ug_name, min_code, ministry, _ = ug
        n = self.numbers[code] = self.numbers.get(code, 0) + 1
        number = f"{n:05d}/{day.year}"
        cnpj, name = supplier or self.supplier()
        if rng.random() < 0.3:
            obj = _plain(obj)
        start = day + dt.timedelta(days=rng.randrange(0, 10))
        end = start + dt.timedelta(days=round(months * 30.44) - 1)
        if final is None:
            draw = rng.random()
            final = (0.0 if draw < 0.08 else value if draw < 0.65 else
                     value * rng.uniform(1.0, 1.24) if draw < 0.92 else value * rng.uniform(0.8, 1.0))  # fmt: skip
        self.rows.append([
            number, obj, kind[0], kind[1], "Ativo", min_code, ministry.upper() if rng.random() < 0.3 else ministry,
            min_code[:2] + "101", ministry, code, ug_name, day.strftime("%d/%m/%Y"),
            (day + dt.timedelta(days=rng.randrange(1, 20))).strftime("%d/%m/%Y"),
            start.strftime("%d/%m/%Y"), end.strftime("%d/%m/%Y"), cnpj, name,
            bidding, code if bidding else "", ug_name if bidding else "", kind[2], kind[1],
            _money(value), _money(final),
        ])  # fmt: skip
        if item is not None:
            item_code, description, quantity = item
            self.items.append([number, min_code[:2] + "101", ministry, code, ug_name, item_code,
                               description.upper(), "", f"{quantity:.0f}", _money(value)])  # fmt: skip
        return f"{number} (UG {code})"

    def plant(self, kind: AnomalyType, ids: Sequence[str]) -> None:
        self.planted.append(PlantedAnomaly(kind, tuple(ids)))

    def day(self, year: int | None = None, month: int | None = None) -> dt.date:
        rng = self.rng
        year = year or START_YEAR + rng.randrange(YEARS)
        if month is None:  # December weighs 2.4 normal months, November 1.2
            month = rng.choices(range(1, 13), weights=[1] * 10 + [1.2, 2.4])[0]
        return dt.date(year, month, rng.randrange(1, 28))

    def goods(self, ug: tuple[str, str, str, str, float], day: dt.date, factor: float = 1.0,
              spec: tuple[str, str, str, float, str] | None = None, value: float | None = None) -> str:
        rng = self.rng
        code, unit, text, price, _ = spec or rng.choice(ITEMS)
        target = value or math.exp(rng.gauss(math.log(275_000), 1.1))
        unit_price = price * math.exp(rng.gauss(0, 0.12)) * factor
        quantity = max(1, round(target / unit_price))
        value = round(quantity * unit_price, 2)
        q = f"{quantity:,}".replace(",", ".")
        obj = f"Aquisição de {q} {unit} de {text}, para atender às necessidades da unidade"
        return self.add(ug, day, obj, value, PREGAO, item=(code, text, quantity))

    # -- the population ----------------------------------------------------------------

    def normal(self, count: int) -> None:
        rng = self.rng
        weights = [u[4] for u in self.ugs]
        for _ in range(count):
            ug = rng.choices(self.ugs, weights)[0]
            draw = rng.random()
            if draw < 0.70:
                self.goods(ug, self.day())
            elif draw < 0.80:
                self.service(ug)
            elif draw < 0.86:
                self.ata(ug)
            elif draw < 0.90:
                self.small_dispensa(ug)
            elif draw < 0.93:
                self.emergency(ug)
            elif draw < 0.95:
                self.rare(ug)
            elif draw < 0.97:
                self.big_competitive(ug)
            else:
                self.goods(ug, self.day())

    def service(self, ug: tuple[str, str, str, str, float]) -> None:
        """A continuing service, re-contracted the next year with the same text, or extended
        under art. 107 (three years' vigência, three years' value)."""
        rng = self.rng
        text, unit, price = rng.choice(SERVICES)
        qty = rng.randrange(2, 40)
        value = round(qty * price * math.exp(rng.gauss(0, 0.1)), 2)
        obj = f"Contratação de serviços continuados de {text}, com {qty} {unit}, na sede da unidade"
        sup = self.supplier()
        day = self.day(year=START_YEAR + rng.randrange(YEARS - 1))
        if rng.random() < 0.5:
            self.add(ug, day, obj, value, PREGAO, supplier=sup, final=value, months=12)
            later = day + dt.timedelta(days=rng.randrange(355, 375))
            self.add(ug, later, obj, round(value * rng.uniform(1.0, 1.06), 2), PREGAO,
                     supplier=sup, months=12, final=0.0)  # fmt: skip
        else:
            self.add(ug, day, obj, value, PREGAO, supplier=sup, months=36,
                     final=round(value * 3 * rng.uniform(1.0, 1.2), 2))  # fmt: skip

    def ata(self, ug: tuple[str, str, str, str, float]) -> None:
        """Siblings of one ata de registro de preços: same text, supplier and unit price."""
        rng = self.rng
        code, unit, text, price, _ = rng.choice(ITEMS)
        bidding = f"{rng.randrange(1, 300):05d}/{START_YEAR + rng.randrange(YEARS)}"
        sup = self.supplier()
        day = self.day()
        quantity = max(1, round(rng.uniform(50_000, 400_000) / price))
        q = f"{quantity:,}".replace(",", ".")
        obj = f"Aquisição de {q} {unit} de {text}, conforme ata de registro de preços"
        for _ in range(rng.randrange(2, 6)):
            value = round(quantity * price, 2)
            self.add(ug, day, obj, value, PREGAO, supplier=sup, bidding=bidding, final=value,
                     item=(code, text, quantity))  # fmt: skip
            day += dt.timedelta(days=rng.randrange(3, 30))

    def small_dispensa(self, ug: tuple[str, str, str, str, float]) -> None:
        """A small-value dispensa; the UG's yearly sum per nature stays under the limit."""
        rng = self.rng
        code, unit, text, price, nature = rng.choice(ITEMS)
        day = self.day()
        limit = dispensa_limit(day.year).value
        key = (ug[0], day.year, nature)
        value = round(rng.uniform(0.05, 0.35) * limit, 2)
        if self.small_spent.get(key, 0.0) + value >= 0.9 * limit:
            return
        self.small_spent[key] = self.small_spent.get(key, 0.0) + value
        quantity = max(1, round(value / price))
        q = f"{quantity:,}".replace(",", ".")
        self.add(ug, day, f"Aquisição de {q} {unit} de {text}", value, DISPENSA, final=value,
                 item=(code, text, quantity))  # fmt: skip

    def emergency(self, ug: tuple[str, str, str, str, float]) -> None:
        rng = self.rng
        value = round(rng.uniform(200_000, 2_000_000), 2)
        obj = rng.choice(("Contratação emergencial de serviços de limpeza hospitalar",
                          "Aquisição emergencial de medicamentos para atendimento a desastre",
                          "Contratação emergencial de recuperação de rodovia após enchente"))  # fmt: skip
        self.add(ug, self.day(), obj, value, EMERGENCIA, months=rng.randrange(3, 12), final=value)

    def rare(self, ug: tuple[str, str, str, str, float]) -> None:
        spec = self.rng.choice(RARE)
        self.goods(ug, self.day(), spec=spec, value=spec[3] * self.rng.randrange(1, 6))

    def big_competitive(self, ug: tuple[str, str, str, str, float]) -> None:
        """One large concorrência in an ordinary month: not a spike."""
        rng = self.rng
        value = round(rng.uniform(8, 20) * 275_000 * ug[4] * 3, 2)
        text = f"Execução de obra de reforma e ampliação do edifício sede, lote {rng.randrange(1, 9)}"
        self.add(ug, self.day(), text, value, CONCORRENCIA, months=18, final=value)

    # -- planted -----------------------------------------------------------------------

    def plant_all(self, scale: float) -> None:
        rng = self.rng
        for _ in range(round(40 * scale)):
            ug = rng.choice(self.ugs)
            self.plant("price_deviation", [self.goods(ug, self.day(), factor=rng.uniform(2.0, 5.0))])
        for _ in range(round(25 * scale)):
            ug = rng.choice(self.ugs)
            sup = self.supplier()
            text, unit, price = rng.choice(SERVICES)
            qty = rng.randrange(2, 20)
            value = round(qty * price, 2)
            obj = f"Contratação de serviços de {text}, com {qty} {unit}, para o anexo {rng.randrange(1, 99)}"
            day = self.day()
            first = self.add(ug, day, obj, value, DISPENSA if value < 50_000 else PREGAO, supplier=sup, final=value)
            second = self.add(ug, day + dt.timedelta(days=rng.randrange(5, 40)),
                              obj if rng.random() < 0.5 else _plain(obj),
                              round(value * rng.uniform(0.96, 1.04), 2), PREGAO, supplier=sup, final=value)
            self.plant("duplicate_contract", [first, second])
        for i in range(round(10 * scale)):
            ug = rng.choice(self.ugs)
            year = START_YEAR + rng.randrange(YEARS)
            limit = dispensa_limit(year).value
            code, unit, text, price, nature = rng.choice(ITEMS)
            n = rng.randrange(3, 6)
            share = rng.uniform(1.3, 2.5) * limit / n
            ids = []
            ring = i % 2 == 0
            sup = self.supplier()
            for _ in range(n):
                day = dt.date(year, rng.randrange(1, 12), rng.randrange(1, 28))
                value = round(share * rng.uniform(0.85, 1.0), 2)
                quantity = max(1, round(value / price))
                q = f"{quantity:,}".replace(",", ".")
                ids.append(self.add(ug, day, f"Aquisição de {q} {unit} de {text}", value, DISPENSA,
                                    supplier=self.supplier() if ring else sup, final=value,
                                    item=(code, text, quantity)))  # fmt: skip
            self.plant("contract_splitting", ids)
        for _ in range(round(20 * scale)):
            ug = rng.choice(self.ugs)
            value = round(math.exp(rng.gauss(math.log(275_000), 0.8)), 2)
            self.plant("value_divergence", [self.add(
                ug, self.day(), f"Execução de serviços de engenharia para adequação da unidade {rng.randrange(1, 500)}",
                value, PREGAO, months=12, final=round(value * rng.uniform(1.5, 2.5), 2))])  # fmt: skip
        for _ in range(max(1, round(3 * scale))):
            ug = rng.choice(self.ugs)
            value = round(rng.uniform(300_000, 900_000), 2)
            self.plant("value_divergence", [self.add(
                ug, self.day(), "Contratação emergencial de serviços de vigilância", value, EMERGENCIA,
                months=18, final=round(value * 1.5, 2))])  # fmt: skip

    def plant_spikes(self, count: int) -> None:
        rng = self.rng
        ministries = sorted({u[2] for u in self.ugs})
        for code in rng.sample(ministries, min(count, len(ministries))):
            ugs = [u for u in self.ugs if u[2] == code]
            year, month = START_YEAR + rng.randrange(YEARS), rng.randrange(2, 10)
            monthly = self.monthly_value(code)
            ids = []
            for _ in range(rng.randrange(4, 8)):
                value = round(rng.uniform(4, 7) * monthly / 5.5, 2)
                ids.append(self.add(rng.choice(ugs), dt.date(year, month, rng.randrange(1, 28)),
                                    f"Contratação de consultoria especializada em gestão, etapa {rng.randrange(1, 50)}",
                                    value, INEXIGIBILIDADE, final=value))  # fmt: skip
            self.plant("spending_spike", ids)

    def plant_concentration(self, count: int) -> None:
        """Small ministries (the last ones) where one supplier takes most of the money, through
    contracts of one pregão (without a common licitação, twelve contracts with the same
    text, supplier and UG days apart would rightly read as duplicates)."""
        rng = self.rng
        ministries = sorted({(u[4], u[2]) for u in self.ugs})[:count]
        for _, code in ministries:
            ugs = [u for u in self.ugs if u[2] == code]
            total = self.monthly_value(code) * 12 * YEARS
            sup = self.supplier(rng.randrange(len(self.suppliers)))
            bidding = f"{rng.randrange(300, 400):05d}/{START_YEAR}"  # the pregão it won
            ids = []
            for _ in range(12):
                value = round(total * 2.0 / 12 * rng.uniform(0.8, 1.2), 2)
                ids.append(self.add(rng.choice(ugs), self.day(),
                                    "Contratação de serviços de tecnologia da informação e sustentação de sistemas",
                                    value, PREGAO, supplier=sup, final=value, months=12,
                                    bidding=bidding))  # fmt: skip
            self.plant("supplier_concentration", ids)

    def monthly_value(self, ministry_code: str) -> float:
        total = sum(float(r[22].replace(".", "").replace(",", ".")) for r in self.rows if r[5] == ministry_code)
        return total / (12 * YEARS)

    def archive(self) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            compras = "\r\n".join([HEADER, *(";".join(f'"{c}"' if ";" in c else c for c in r) for r in self.rows)])
            items = "\r\n".join([ITEM_HEADER, *(";".join(r) for r in self.items)])
            z.writestr("202512_Compras.csv", (compras + "\r\n").encode("cp1252"))
            z.writestr("202512_ItemCompra.csv", (items + "\r\n").encode("cp1252"))
        return out.getvalue()


def generate_realistic(seed: int = 12, size: int = 5000, ministries: int = len(MINISTRIES),
                       planted: bool = True) -> Realistic:
    """``size`` ordinary contracts (plus the planted ones) across ``ministries`` ministries,
    written as the portal's zip and loaded back with the production loader."""
    gen = _Gen(seed, size, ministries)
    gen.normal(size)
    if planted:
        scale = size / 5000
        gen.plant_all(scale)
        gen.plant_spikes(4 if ministries > 4 else 1)
        if ministries > 4:
            gen.plant_concentration(2)
    data = gen.archive()
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "202512_Compras.zip"
        path.write_bytes(data)
        result = load_dataset(path)
    return Realistic(result.contracts, tuple(gen.planted), data)
