"""The loaders keep everything a real portal row carries (issue 12: read everything)."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

from cidadao_trio.investigations.portal import (
    load_contracts_csv,
    load_contracts_json,
    load_dataset,
    load_items_csv,
)

# The full "Compras" header of the portal's monthly download, in its order and spelling.
FULL_HEADER = (
    "Número do Contrato;Objeto;Fundamento Legal;Modalidade Compra;Situação Contrato;"
    "Código Órgão Superior;Nome Órgão Superior;Código Órgão;Nome Órgão;Código UG;Nome UG;"
    "Data Assinatura Contrato;Data Publicação DOU;Data Início Vigência;Data Fim Vigência;"
    "Código Contratado;Nome Contratado;Número Licitação;Código UG Licitação;Nome UG Licitação;"
    "Código Modalidade Compra Licitação;Modalidade Compra Licitação;Valor Inicial Compra;"
    "Valor Final Compra"
)
ROW = (
    "00031/2024;SERVICOS DE VIGILANCIA – POSTOS 12X36;Lei 14.133/2021, Art. 75, VIII;"
    "Dispensa de Licitação;Ativo;36000;MINISTÉRIO DA SAÚDE;36201;Fundação Oswaldo Cruz;254420;"
    "FIOCRUZ - RJ;05/02/2024;07/02/2024;05/02/2024;04/02/2025;11222333000181;"
    "VIGIA SEGURANCA LTDA;00007/2024;254420;FIOCRUZ - RJ;6;Dispensa;480.000,00;0,00"
)


def _cp1252(*rows: str) -> bytes:
    return ("\r\n".join([FULL_HEADER, *rows]) + "\r\n").encode("cp1252")


def test_csv_keeps_legal_basis_vigencia_bodies_bidding_and_dou() -> None:
    (c,) = load_contracts_csv(_cp1252(ROW)).contracts
    assert c.legal_basis == "Lei 14.133/2021, Art. 75, VIII"
    assert (c.starts_on, c.ends_on) == (dt.date(2024, 2, 5), dt.date(2025, 2, 4))
    assert c.published_on == dt.date(2024, 2, 7)
    assert (c.agency, c.agency_code) == ("MINISTÉRIO DA SAÚDE", "36000")
    assert (c.body, c.body_code) == ("Fundação Oswaldo Cruz", "36201")
    assert (c.ug, c.ug_name) == ("254420", "FIOCRUZ - RJ")
    assert c.bidding == "254420/00007/2024"  # licitação numbers restart per UG too
    assert (c.number, c.id) == ("00031/2024", "00031/2024 (UG 254420)")


def test_cp1252_en_dash_is_an_en_dash_not_a_control_character() -> None:
    (c,) = load_contracts_csv(_cp1252(ROW)).contracts
    assert "–" in c.object and "\x96" not in c.object


def test_final_value_zero_is_missing_not_a_cut() -> None:
    (c,) = load_contracts_csv(_cp1252(ROW)).contracts
    assert not c.final_known
    assert c.global_value == c.initial_value == 480_000.0


def test_json_keeps_legal_basis_vigencia_dou_and_process() -> None:
    item = {
        "id": 1, "numero": "00005/2025", "objeto": "Aquisição de 20 unidades de notebook",
        "dataAssinatura": "2025-02-10", "dataPublicacaoDOU": "2025-02-12",
        "dataInicioVigencia": "2025-02-10", "dataFimVigencia": "2026-02-09",
        "fundamentoLegal": "Lei 14.133/2021, Art. 28, I", "numeroProcesso": "23000.001/2025-11",
        "compra": {"numero": "00090/2024"}, "valorInicialCompra": 110000,
        "valorFinalCompra": 110000, "fornecedor": {"nome": "X", "cnpj": "11222333000181"},
        "unidadeGestora": {"codigo": "150002", "nome": "UFX", "orgaoVinculado":
                           {"codigoSIAFI": "26230", "nome": "Universidade X"},
                           "orgaoMaximo": {"codigo": "26000", "nome": "Ministério da Educação"}},
    }  # fmt: skip
    (c,) = load_contracts_json([item]).contracts
    assert c.legal_basis == "Lei 14.133/2021, Art. 28, I"
    assert (c.starts_on, c.ends_on, c.published_on) == (
        dt.date(2025, 2, 10), dt.date(2026, 2, 9), dt.date(2025, 2, 12))  # fmt: skip
    assert c.process == "23000.001/2025-11"
    assert c.bidding == "150002/00090/2024"
    assert (c.ug, c.body, c.agency_code) == ("150002", "Universidade X", "26000")
    assert c.id == "00005/2025 (UG 150002)"


ITEM_HEADER = (
    "Número Contrato;Código Órgão;Nome Órgão;Código UG;Nome UG;Código Item Compra;"
    "Descrição Item Compra;Descrição Complementar Item Compra;Quantidade Item;Valor Item"
)


def test_zip_item_file_gives_quantities_unit_prices_and_item_codes(tmp_path: Path) -> None:
    paper = ROW.replace("SERVICOS DE VIGILANCIA – POSTOS 12X36", "MATERIAL DE EXPEDIENTE")
    paper = paper.replace("480.000,00;0,00", "2.750,00;2.750,00").replace("00031", "00032")
    items = "\r\n".join([
        ITEM_HEADER,
        # Valor Item as the line total: 100 resmas for R$ 2.500 plus a small extra.
        "00032/2024;36201;Fiocruz;254420;FIOCRUZ - RJ;461734;PAPEL A4;75 G/M2;100;2.500,00",
        "00032/2024;36201;Fiocruz;254420;FIOCRUZ - RJ;150012;CANETA;AZUL;50;250,00",
    ]).encode("cp1252")
    archive_path = tmp_path / "202402_Compras.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("202402_Compras.csv", _cp1252(ROW, paper))
        archive.writestr("202402_ItemCompra.csv", items)
    by_number = {c.number: c for c in load_dataset(archive_path).contracts}
    assert (by_number["00032/2024"].quantity, by_number["00032/2024"].unit_price) == (100.0, 25.0)
    assert by_number["00032/2024"].item_code == "461734"
    assert by_number["00031/2024"].item_code == ""  # no items: unchanged


def test_item_value_read_as_unit_price_when_that_adds_up() -> None:
    items = load_items_csv(
        (ITEM_HEADER + "\n00032/2024;1;O;254420;U;461734;PAPEL A4;;100;27,50\n").encode("cp1252")
    )
    assert items[0].value == 27.5 and items[0].quantity == 100
    from cidadao_trio.investigations.portal import LoadResult, with_items

    paper = ROW.replace("480.000,00;0,00", "2.750,00;2.750,00").replace("00031", "00032")
    loaded = load_contracts_csv(_cp1252(paper))
    (c,) = with_items(LoadResult(loaded.contracts, ()), items).contracts
    assert (c.quantity, c.unit_price) == (100.0, 27.5)
