"""The folds of Portuguese text, each pinned where it differs from the others."""

from __future__ import annotations

import pytest

from cidadao_trio.portuguese import (
    fold,
    month_label,
    normalize,
    normalize_ascii,
    plural,
    strip_accents,
    to_ascii,
)


def test_normalize_strips_accents_case_and_punctuation() -> None:
    assert normalize("  O QUE É SOBREPREÇO?! ") == "o que e sobrepreco"
    assert normalize("Cidadão.AI — Saúde") == "cidadao ai saude"


def test_fold_keeps_punctuation_for_amounts_and_joins_whitespace() -> None:
    assert fold("Acima de  R$ 1.500,00\tno MEC") == "acima de r$ 1.500,00 no mec"


def test_normalize_ascii_drops_accents_case_and_punctuation() -> None:
    assert normalize_ascii("Aquisição  de PAPEL-A4!") == "aquisicao de papel a4"
    assert normalize_ascii("AQUISICAO DE PAPEL A4") == "aquisicao de papel a4"


@pytest.mark.parametrize(
    ("text", "words", "ascii_words"),
    [("papel–a4", "papel a4", "papela4"), ("ø", "ø", ""), ("m²", "m2", "m2")],
)
def test_normalize_keeps_letters_outside_ascii_and_normalize_ascii_drops_them(
    text: str, words: str, ascii_words: str
) -> None:
    assert normalize(text) == words
    assert normalize_ascii(text) == ascii_words


def test_strip_accents_and_to_ascii_keep_case() -> None:
    assert strip_accents("Aquisição ÁGUA") == "Aquisicao AGUA"
    assert to_ascii("Aquisição m²") == "Aquisicao m2"
    assert strip_accents("papel–a4") == "papel–a4"
    assert to_ascii("papel–a4") == "papela4"


def test_plural_agrees_with_the_count() -> None:
    assert plural(1, "contrato", "contratos") == "1 contrato"
    assert plural(0, "contrato", "contratos") == "0 contratos"
    assert plural(3, "anomalia", "anomalias") == "3 anomalias"


def test_month_label() -> None:
    assert month_label(2025, 3) == "março/2025"
    assert month_label(2024, 12) == "dezembro/2024"
