"""Amounts and shares as a Brazilian reads them, and the value every answer uses."""

from __future__ import annotations

import datetime as dt

import pytest

from cidadao_trio.investigations.model import Contract
from cidadao_trio.investigations.money import contract_value, format_brl, format_percent


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "R$ 0,00"), (1234.5, "R$ 1.234,50"), (1_234_567.891, "R$ 1.234.567,89"), (-5, "-R$ 5,00")],
)
def test_format_brl(value: float, text: str) -> None:
    assert format_brl(value) == text


@pytest.mark.parametrize(
    ("fraction", "text"),
    [(0.823, "82%"), (0.0028, "0,28%"), (0.0731, "7,3%"), (0.9996, "99,96%"), (1.0, "100%"),
     (0.0, "0%"), (2.5, "250%")],
)
def test_format_percent_keeps_the_precision_that_keeps_it_true(fraction: float, text: str) -> None:
    assert format_percent(fraction) == text


def _contract(initial: float, global_: float) -> Contract:
    return Contract(
        id="CT-1", agency="Ministério da Saúde", supplier_name="Alfa Ltda", supplier_cnpj="",
        object="Aquisição de papel", category="", modality="Pregão", initial_value=initial,
        global_value=global_, signed_on=dt.date(2025, 3, 1),
    )  # fmt: skip


def test_contract_value_is_the_amended_value_else_the_initial_one() -> None:
    assert contract_value(_contract(150_000.0, 200_000.0)) == 200_000.0
    assert contract_value(_contract(9.0, 0.0)) == 9.0
