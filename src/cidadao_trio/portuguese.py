"""Portuguese text as the agents compare and phrase it: accent folding, plurals, month names.

Citizens and the portal spell one word many ways ("SAÚDE", "saude", "Saúde"), so text is
compared folded. The folds differ on purpose, each fitted to its reader, so each has a name:

=================  ========================================================================
``fold``           case and accents dropped, punctuation kept ("R$ 1.500,00" stays
                   readable), runs of whitespace made one space: parsing a message
``normalize``      case, accents and punctuation dropped, other letters kept: matching a
                   message or a body's name against phrases
``normalize_ascii``  case, accents and punctuation dropped, and anything without an ASCII
                   form ("–", "€"): comparing contract texts (C speed, for the detectors)
``strip_accents``  only the combining marks dropped, case kept
``to_ascii``       the accents dropped through the ASCII codec ("m²" -> "m2"), case kept
=================  ========================================================================
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "MONTHS",
    "fold",
    "month_label",
    "normalize",
    "normalize_ascii",
    "plural",
    "strip_accents",
    "to_ascii",
]

MONTHS = (
    "janeiro", "fevereiro", "março", "abril", "maio", "junho",
    "julho", "agosto", "setembro", "outubro", "novembro", "dezembro",
)  # fmt: skip

_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[\W_]+")
_NON_ASCII_WORD = re.compile(r"[^a-z0-9]+")


def strip_accents(text: str) -> str:
    """The text without its combining marks: "Aquisição" -> "Aquisicao"; case and every
    other character kept."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def to_ascii(text: str) -> str:
    """The text through the ASCII codec after decomposition: accents dropped, "m²" -> "m2",
    anything without an ASCII form dropped; case kept. C speed, for hot loops."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def fold(text: str) -> str:
    """Lower case and accent-free but punctuation kept, since amounts need "." and ","."""
    return _SPACES.sub(" ", strip_accents(text.casefold()))


def normalize(text: str) -> str:
    """Lower-case, accent-free, punctuation-free text, so "SOBREPREÇO?" matches "sobrepreco"."""
    return _NON_WORD.sub(" ", strip_accents(text.casefold())).strip()


def normalize_ascii(text: str) -> str:
    """Lower case, no accents, no punctuation, so spelling variants compare equal.

    "Aquisição  de PAPEL-A4" -> "aquisicao de papel a4"; "AQUISICAO DE PAPEL A4" too.
    """
    return _NON_ASCII_WORD.sub(" ", to_ascii(text.casefold())).strip()


def plural(n: int, one: str, many: str) -> str:
    """``n`` with the word that agrees with it: "1 contrato", "2 contratos"."""
    return f"{n} {one if n == 1 else many}"


def month_label(year: int, month: int) -> str:
    """``(2025, 12) -> "dezembro/2025"``."""
    return f"{MONTHS[month - 1]}/{year}"
