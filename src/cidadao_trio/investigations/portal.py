"""Loading real contracts from the Portal da Transparência: CSV downloads and API JSON.

Real files are messy: Latin-1 text, ``1.234,56`` numbers, ``DD/MM/YYYY`` dates, header
names that change between exports, rows with holes. One bad row must not cost the
citizen the whole file, so every row is checked on its own: bad rows are skipped and
reported with their line number, good rows load.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import attrs
import orjson

from ..portuguese import strip_accents
from .categories import categorize, parse_quantity
from .cnpj import is_valid_cnpj, normalize_cnpj
from .model import Contract

__all__ = [
    "Item", "LoadResult", "RowProblem", "load_contracts_csv", "load_contracts_json",
    "load_dataset", "load_items_csv", "parse_brazilian_number", "parse_date", "with_items",
]  # fmt: skip


@attrs.frozen
class RowProblem:
    """A skipped row: its line (CSV: 1 is the header; JSON: list index + 1) and why."""

    line: int
    message: str  # Portuguese, shown to whoever supplied the file


@attrs.frozen
class LoadResult:
    """What loaded and what did not: a file is useful even when some rows are broken."""

    contracts: tuple[Contract, ...]
    problems: tuple[RowProblem, ...]


class _RowError(ValueError):
    """A row cannot become a Contract; the message is for the user, in Portuguese."""


# Canonical field -> accepted header names, folded to letters and digits, best first. The
# portal's own "Compras" CSV uses the first name of each list.
_CSV_HEADERS: dict[str, tuple[str, ...]] = {
    "id": ("numerodocontrato", "numerocontrato", "numero", "contrato", "id"),
    "object": ("objeto", "objetodocontrato", "descricaodoobjeto", "descricao"),
    "signed_on": ("dataassinaturacontrato", "dataassinatura", "datadeassinatura",
                  "datadeassinaturadocontrato"),
    "initial_value": ("valorinicialcompra", "valorinicial", "valorinicialdocontrato"),
    "global_value": ("valorfinalcompra", "valorfinal", "valorglobal", "valorglobaldocontrato"),
    "supplier_name": ("nomecontratado", "nomefornecedor", "razaosocial", "nomedofornecedor",
                      "razaosocialfornecedor", "fornecedor", "contratado"),
    "supplier_cnpj": ("codigocontratado", "cnpjfornecedor", "cpfcnpjfornecedor",
                      "cnpjcpffornecedor", "cnpjdofornecedor", "cnpjcontratado", "cnpj"),
    "agency": ("nomeorgaosuperior", "orgaosuperior", "nomeorgaomaximo", "orgaomaximo",
               "nomeorgao", "orgao"),
    "modality": ("modalidadecompra", "modalidadedecompra", "modalidade",
                 "modalidadedelicitacao", "modalidadecompralicitacao"),
    "status": ("situacaocontrato", "situacaodocontrato", "situacao"),
    "ug": ("codigoug", "codigounidadegestora", "ug"),
    "ug_name": ("nomeug", "nomeunidadegestora", "unidadegestora"),
    "body": ("nomeorgao",),
    "body_code": ("codigoorgao",),
    "agency_code": ("codigoorgaosuperior", "codigoorgaomaximo"),
    "legal_basis": ("fundamentolegal", "amparolegal", "fundamentacaolegal"),
    "published_on": ("datapublicacaodou", "datapublicacao", "datadepublicacao"),
    "starts_on": ("datainiciovigencia", "iniciovigencia", "datadeiniciodavigencia"),
    "ends_on": ("datafimvigencia", "fimvigencia", "datadefimdavigencia"),
    "bidding": ("numerolicitacao", "numerodalicitacao", "licitacao"),
    "bidding_ug": ("codigouglicitacao",),
    "process": ("numeroprocesso", "processo", "numerodoprocesso"),
}
_LABELS = {"id": "Número do Contrato", "agency": "Órgão", "signed_on": "Data de Assinatura",
           "initial_value": "Valor Inicial", "global_value": "Valor Final",
           "published_on": "Data Publicação DOU", "starts_on": "Data Início Vigência",
           "ends_on": "Data Fim Vigência"}
_REQUIRED = ("id", "agency", "signed_on", "initial_value")
_CNPJ_SHAPE = re.compile(r"[0-9A-Z]{12}[0-9]{2}")
_NON_ALNUM = re.compile(r"[^a-z0-9]")
_THOUSANDS_ONLY = re.compile(r"-?\d{1,3}(?:\.\d{3})+")


# -- values -------------------------------------------------------------------------------


def parse_brazilian_number(value: object) -> float | None:
    """"1.234,56" / "R$ 1.234,56" / "1234.56" / 1234.56 -> 1234.56; blank -> None.

    With a comma the dots are thousand separators; without one, "1.234" still reads as
    one thousand two hundred and thirty-four, as a Brazilian would read it.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise _RowError(f"número inválido: {value!r}")
    if isinstance(value, int | float):
        number = Decimal(str(value))
    else:
        text = str(value).replace("R$", "").replace("\xa0", "").replace(" ", "").strip()
        if not text:
            return None
        if "," in text:
            text = text.replace(".", "").replace(",", ".")
        elif _THOUSANDS_ONLY.fullmatch(text):
            text = text.replace(".", "")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise _RowError(f"número inválido: {value!r}") from None
    result = float(number)  # "1e999" is a finite Decimal but an infinite float
    if not math.isfinite(result):
        raise _RowError(f"número inválido: {value!r}")
    return round(result, 2)


def parse_date(value: object) -> dt.date | None:
    """"15/03/2024", "2024-03-15" or "2024-03-15T00:00:00" -> a date; blank -> None."""
    text = _text(value)
    if not text:
        return None
    day_part = text[:10] if len(text) > 10 and text[10] in "T " else text
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(day_part, fmt).date()
        except ValueError:
            continue
    raise _RowError(f"data inválida: {value!r}")


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "id": lambda v: _text(v), "agency": lambda v: _text(v), "signed_on": parse_date,
    "initial_value": parse_brazilian_number, "global_value": parse_brazilian_number,
    "published_on": parse_date, "starts_on": parse_date, "ends_on": parse_date,
}
_TEXT_FIELDS = ("ug", "ug_name", "body", "body_code", "agency_code", "legal_basis", "process")


def _supplier_cnpj(value: object) -> str:
    """14 characters without punctuation; CPFs, masked or foreign codes become "".

    Spreadsheets drop leading zeros ("191" for 00.000.000/0001-91): a short number that
    is a valid CNPJ once padded is padded. Eleven digits stay a CPF.
    """
    chars = normalize_cnpj(_text(value))
    if chars.isdigit() and len(chars) < 14 and len(chars) != 11:
        padded = chars.zfill(14)
        chars = padded if is_valid_cnpj(padded) else chars
    return chars if _CNPJ_SHAPE.fullmatch(chars) else ""


def _text(value: object) -> str:
    return str(value if value is not None else "").strip()


def _parsed(fields: Mapping[str, Any], field: str, parse: Callable[[Any], Any]) -> Any:
    """The parsed value (None when blank), errors naming the column like the portal does."""
    try:
        value = parse(fields.get(field))
    except _RowError as exc:
        raise _RowError(f"{_LABELS[field]}: {exc}") from None
    return None if value == "" else value


def _build(fields: Mapping[str, Any]) -> Contract:
    """A Contract from raw field values, or _RowError saying what is wrong."""
    values = {f: _parsed(fields, f, parse) for f, parse in _PARSERS.items()}
    for field in _REQUIRED:
        if values[field] is None:
            raise _RowError(f"{_LABELS[field]} ausente")
    initial, final = values["initial_value"], values["global_value"]
    if initial < 0 or (final is not None and final < 0):
        raise _RowError("valor negativo")
    text = _text(fields.get("object"))
    quantity = parse_quantity(text)
    # A final value of 0,00 is how the portal writes "not informed": not a 100% cut.
    final_known = final is not None and (final > 0 or initial == 0)
    extra = {f: _text(fields.get(f)) for f in _TEXT_FIELDS}
    bidding = _text(fields.get("bidding"))
    if bidding and _text(fields.get("bidding_ug")):
        bidding = f"{_text(fields.get('bidding_ug'))}/{bidding}"  # numbers restart per UG
    return Contract(
        id=values["id"], agency=values["agency"], supplier_name=_text(fields.get("supplier_name")),
        supplier_cnpj=_supplier_cnpj(fields.get("supplier_cnpj")), object=text,
        category=categorize(text), initial_value=initial,
        global_value=final if final_known else initial, signed_on=values["signed_on"],
        quantity=quantity,
        unit_price=round(initial / quantity, 2) if quantity and initial > 0 else None,
        modality=_text(fields.get("modality")), status=_text(fields.get("status")),
        number=values["id"], bidding=bidding, published_on=values["published_on"],
        starts_on=values["starts_on"], ends_on=values["ends_on"], final_known=final_known,
        **extra,
    )


def _collect(rows: Iterable[tuple[int, Mapping[str, Any] | str, str]]) -> LoadResult:
    """Build every (line, fields or error message, qualifier) row into a LoadResult.

    One contract number can exist in two management units, so a repeated number with a
    different qualifier (UG code, API id) is kept under a qualified id; a true repeat is
    reported.
    """
    contracts: list[Contract] = []
    problems: list[RowProblem] = []
    ids: dict[str, int] = {}  # final id -> line
    keys: dict[tuple[str, str], int] = {}  # (number, qualifier) -> line
    for line, fields, qualifier in rows:
        try:
            if isinstance(fields, str):
                raise _RowError(fields)
            contract = _build(fields)
            if qualifier.startswith("UG "):  # numbers restart in every UG: always qualify
                contract = attrs.evolve(contract, id=f"{contract.id} ({qualifier})")
            key = (contract.id, qualifier)
            if key in keys or (contract.id in ids and not qualifier):
                first = keys.get(key, ids.get(contract.id))
                raise _RowError(f"contrato {contract.id} repetido (primeiro na linha {first})")
            if contract.id in ids:
                contract = attrs.evolve(contract, id=f"{contract.id} ({qualifier})")
                if contract.id in ids:
                    raise _RowError(f"contrato {contract.id} repetido")
        except _RowError as exc:
            problems.append(RowProblem(line, str(exc)))
            continue
        keys[key] = ids[contract.id] = line
        contracts.append(contract)
    return LoadResult(tuple(contracts), tuple(problems))


# -- CSV ----------------------------------------------------------------------------------


def _decode(raw: bytes, encoding: str) -> str:
    """Portal files are Latin-1, but re-saved copies are often UTF-8: honour a BOM, and
    prefer UTF-8 when the bytes are valid UTF-8 with accents (Latin-1 text almost never is),
    so "Número" does not turn into "NÃºmero" and lose its column."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw.decode("utf-8-sig")
    if strip_accents(encoding).lower().replace("_", "-") in {"latin-1", "latin1", "iso-8859-1"}:
        encoding = "cp1252"  # what the portal really writes: "–" is 0x96, not U+0096
    if strip_accents(encoding).lower().replace("_", "-") in {"latin-1", "latin1", "iso-8859-1", "cp1252"}:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if not text.isascii():
                return text
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
        return raw.decode("latin-1")


def _read_text(source: str | bytes | os.PathLike[str], encoding: str) -> str:
    """Text from a path, bytes, or the CSV text itself (a str with a newline or ";")."""
    if isinstance(source, bytes | bytearray):
        return _decode(bytes(source), encoding)
    if isinstance(source, str) and ("\n" in source or ";" in source):
        return source.removeprefix("\ufeff")
    return _decode(Path(source).read_bytes(), encoding)


def _header_key(name: str) -> str:
    return _NON_ALNUM.sub("", strip_accents(name).lower())


def _match_columns(header: list[str]) -> dict[str, int]:
    keys = [_header_key(h) for h in header]
    found: dict[str, int] = {}
    for field, aliases in _CSV_HEADERS.items():
        for alias in aliases:
            if alias in keys:
                found[field] = keys.index(alias)
                break
    return found


def load_contracts_csv(source: str | bytes | os.PathLike[str], *,
                       encoding: str = "cp1252") -> LoadResult:
    """Contracts from a portal CSV export (";"-separated); bad rows become problems."""
    text = _read_text(source, encoding)
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first_line or "," not in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        return LoadResult((), (RowProblem(1, "arquivo vazio: falta o cabeçalho"),))
    columns = _match_columns(header)
    missing = [_LABELS[field] for field in _REQUIRED if field not in columns]
    if missing:
        return LoadResult((), (RowProblem(1, "coluna obrigatória ausente: "
                                          + ", ".join(missing)),))

    def rows() -> Iterable[tuple[int, Mapping[str, Any] | str, str]]:
        end = reader.line_num
        for cells in reader:
            start, end = end + 1, reader.line_num  # a quoted field may span lines
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
                yield start, f"linha com {len(cells)} colunas; o cabeçalho tem {len(header)}", ""
                continue
            cells += [""] * (len(header) - len(cells))
            fields = {field: cells[i] for field, i in columns.items()}
            ug = str(fields.get("ug") or "").strip()
            yield start, fields, f"UG {ug}" if ug else ""

    return _collect(rows())


# -- JSON ---------------------------------------------------------------------------------


def _get(item: Mapping[str, Any], *paths: str) -> Any:
    """The first non-blank value among dotted paths ("unidadeGestora.orgaoMaximo.nome")."""
    for path in paths:
        value: Any = item
        for key in path.split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, Mapping):  # e.g. {"descricao": "Pregão"}
            value = value.get("descricao") or value.get("nome")
        if value not in (None, ""):
            return value
    return None


_JSON_FIELDS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "id": lambda i: _get(i, "numero", "id"),
    "object": lambda i: _get(i, "objeto", "compra.objeto"),
    "signed_on": lambda i: _get(i, "dataAssinatura"),
    "initial_value": lambda i: _get(i, "valorInicial", "valorInicialCompra"),
    "global_value": lambda i: _get(i, "valorGlobal", "valorFinalCompra", "valorFinal"),
    "supplier_name": lambda i: _get(i, "fornecedor.nome", "fornecedor.razaoSocialReceita"),
    "supplier_cnpj": lambda i: _get(i, "fornecedor.cnpjFormatado", "fornecedor.cnpj"),
    "agency": lambda i: _get(i, "unidadeGestora.orgaoMaximo.nome", "orgao",
                             "unidadeGestora.orgaoVinculado.nome"),
    "modality": lambda i: _get(i, "modalidadeCompra"),
    "status": lambda i: _get(i, "situacaoContrato"),
    "legal_basis": lambda i: _get(i, "fundamentoLegal", "compra.fundamentoLegal"),
    "published_on": lambda i: _get(i, "dataPublicacaoDOU"),
    "starts_on": lambda i: _get(i, "dataInicioVigencia"),
    "ends_on": lambda i: _get(i, "dataFimVigencia"),
    "process": lambda i: _get(i, "numeroProcesso", "compra.numeroProcesso"),
    "bidding": lambda i: _get(i, "compra.numero", "numeroLicitacao"),
    "ug": lambda i: _get(i, "unidadeGestora.codigo"),
    "ug_name": lambda i: _get(i, "unidadeGestora.nome"),
    "body": lambda i: _get(i, "unidadeGestora.orgaoVinculado.nome"),
    "body_code": lambda i: _get(i, "unidadeGestora.orgaoVinculado.codigoSIAFI"),
    "agency_code": lambda i: _get(i, "unidadeGestora.orgaoMaximo.codigo"),
}


def load_contracts_json(source: str | bytes | os.PathLike[str] | list[Any]) -> LoadResult:
    """Contracts from the API's JSON (a list of objects); bad items become problems.

    ``source`` is the parsed list, JSON text or bytes, or a path to a file.
    """
    data: Any = source
    if not isinstance(source, list):
        if isinstance(source, bytes | bytearray):
            raw = bytes(source)
        elif isinstance(source, str) and source.lstrip()[:1] in ("[", "{"):
            raw = source.encode()
        else:
            raw = Path(source).read_bytes()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return LoadResult((), (RowProblem(0, f"JSON inválido: {exc}"),))
    if not isinstance(data, list):
        return LoadResult((), (RowProblem(0, "esperava uma lista de contratos"),))

    def rows() -> Iterable[tuple[int, Mapping[str, Any] | str, str]]:
        for index, item in enumerate(data):
            if not isinstance(item, Mapping):
                yield index + 1, "item não é um objeto JSON", ""
                continue
            api_id = item.get("id")
            fields = {f: get(item) for f, get in _JSON_FIELDS.items()}
            ug = _text(fields.get("ug"))
            if ug and fields.get("bidding"):
                fields["bidding"] = f"{ug}/{_text(fields['bidding'])}"
            qualifier = f"UG {ug}" if ug else f"id {api_id}" if api_id not in (None, "") else ""
            yield index + 1, fields, qualifier

    return _collect(rows())


# -- any file -----------------------------------------------------------------------------


def load_dataset(path: str | os.PathLike[str]) -> LoadResult:
    """Load by extension: .csv, .json, or the portal's monthly .zip (its "Compras" CSV)."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return load_contracts_csv(file)
    if suffix == ".json":
        return load_contracts_json(file)
    if suffix == ".zip":
        with zipfile.ZipFile(file) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            best = [n for n in names if n.lower().endswith("compras.csv")] or names
            if not best:
                return LoadResult((), (RowProblem(0, "o .zip não contém CSV"),))
            result = load_contracts_csv(archive.read(best[0]))
            items = [n for n in names if n.lower().endswith("itemcompra.csv")]
            if items:
                result = with_items(result, load_items_csv(archive.read(items[0])))
            return result
    raise ValueError(f"formato não suportado: {file.name} (use .csv, .json ou .zip)")



# -- the monthly zip's item file ----------------------------------------------------------

_ITEM_HEADERS: dict[str, tuple[str, ...]] = {
    "number": ("numerocontrato", "numerodocontrato"),
    "ug": ("codigoug",),
    "code": ("codigoitemcompra", "codigoitem"),
    "description": ("descricaoitemcompra", "descricaoitem"),
    "complement": ("descricaocomplementaritemcompra", "descricaocomplementaritem"),
    "quantity": ("quantidadeitem", "quantidade"),
    "value": ("valoritem", "valor"),
}


@attrs.frozen
class Item:
    """One line of ``*_ItemCompra.csv``: what a contract bought, in what quantity."""

    number: str
    ug: str
    code: str
    description: str
    quantity: float
    value: float  # "Valor Item": the item's total or its unit price (``with_items`` decides)


def load_items_csv(source: str | bytes | os.PathLike[str], *,
                   encoding: str = "cp1252") -> tuple[Item, ...]:
    """Items of a monthly zip; rows without a number, a quantity or a value are skipped."""
    text = _read_text(source, encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";")
    header = next(reader, None) or []
    keys = [_header_key(h) for h in header]
    cols = {f: next((keys.index(a) for a in aliases if a in keys), -1)
            for f, aliases in _ITEM_HEADERS.items()}  # fmt: skip
    if min(cols["number"], cols["quantity"], cols["value"]) < 0:
        return ()
    items = []
    for cells in reader:
        cells += [""] * (len(header) - len(cells))
        row = {field: cells[col].strip() if col >= 0 else "" for field, col in cols.items()}
        try:
            quantity = parse_brazilian_number(row["quantity"])
            value = parse_brazilian_number(row["value"])
        except _RowError:
            continue
        if not row["number"] or not quantity or not value or quantity <= 0 or value <= 0:
            continue
        description = " ".join(p for p in (row["description"], row["complement"]) if p)
        items.append(Item(row["number"], row["ug"], row["code"], description, quantity, value))
    return tuple(items)


def with_items(result: LoadResult, items: Iterable[Item]) -> LoadResult:
    """Quantities, unit prices and item codes from the item file, for contracts whose money
    is mostly (≥ 80%) one item. Whether "Valor Item" is the line total or the unit price is
    decided per contract: whichever reading adds up to the contract's initial value."""
    by_contract: dict[tuple[str, str], list[Item]] = {}
    for item in items:
        by_contract.setdefault((item.ug, item.number), []).append(item)
    contracts = []
    for c in result.contracts:
        lines = by_contract.get((c.ug, c.number)) or by_contract.get(("", c.number))
        if not lines or c.initial_value <= 0:
            contracts.append(c)
            continue
        as_total = sum(i.value for i in lines)
        as_unit = sum(i.value * i.quantity for i in lines)
        unit_prices = abs(as_unit - c.initial_value) < abs(as_total - c.initial_value)
        totals = [(i.value * i.quantity if unit_prices else i.value, i) for i in lines]
        grand = sum(t for t, _ in totals)
        line_total, main = max(totals, key=lambda t: (t[0], t[1].code))
        if grand <= 0 or line_total < 0.8 * grand:
            contracts.append(c)
            continue
        contracts.append(attrs.evolve(
            c, quantity=main.quantity, unit_price=round(line_total / main.quantity, 2),
            item_code=main.code, category=c.category or categorize(main.description),
        ))  # fmt: skip
    return LoadResult(tuple(contracts), result.problems)
