"""CNPJ check digits (Receita Federal's modulo-11 rule), validation and formatting.

Suppliers are identified by CNPJ, so the sample must only produce valid ones and the
portal loader must normalise whatever punctuation the source used. The rule also covers
the alphanumeric CNPJ issued from July 2026 (IN RFB 2.229/2024): each base character
counts as ``ord(char) - 48``, so digits keep their value and the check digits stay numeric.
"""

from __future__ import annotations

import random
import re

__all__ = ["cnpj_check_digits", "format_cnpj", "is_valid_cnpj", "make_cnpj", "normalize_cnpj"]

_WEIGHTS_1 = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_WEIGHTS_2 = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_BASE_RE = re.compile(r"[0-9A-Z]{12}")
_CNPJ_RE = re.compile(r"[0-9A-Z]{12}[0-9]{2}")
_PUNCTUATION_RE = re.compile(r"[\s./-]")


def _check_digit(chars: str, weights: tuple[int, ...]) -> str:
    total = sum((ord(c) - 48) * w for c, w in zip(chars, weights, strict=True))
    rest = total % 11
    return "0" if rest < 2 else str(11 - rest)


def cnpj_check_digits(base12: str) -> str:
    """The two check digits for a 12-character base (8 root + 4 branch)."""
    base = base12.upper()
    if not _BASE_RE.fullmatch(base):
        raise ValueError(f"base de CNPJ inválida: {base12!r}")
    first = _check_digit(base, _WEIGHTS_1)
    return first + _check_digit(base + first, _WEIGHTS_2)


def normalize_cnpj(value: str) -> str:
    """Strip the usual punctuation and upper-case, without validating."""
    return _PUNCTUATION_RE.sub("", value).upper()


def is_valid_cnpj(value: str) -> bool:
    """True for "12.345.678/0001-95" or "12345678000195" style input with correct digits.

    A repeated character ("00000000000000") passes the modulo-11 test but is not a real
    CNPJ, so it is rejected explicitly.
    """
    chars = normalize_cnpj(value)
    if not _CNPJ_RE.fullmatch(chars) or len(set(chars)) == 1:
        return False
    return cnpj_check_digits(chars[:12]) == chars[12:]


def format_cnpj(digits: str) -> str:
    """"12345678000195" -> "12.345.678/0001-95" (the way the portal displays it)."""
    c = normalize_cnpj(digits)
    if not _CNPJ_RE.fullmatch(c):
        raise ValueError(f"CNPJ deve ter 14 caracteres: {digits!r}")
    return f"{c[:2]}.{c[2:5]}.{c[5:8]}/{c[8:12]}-{c[12:]}"


def make_cnpj(rng: random.Random) -> str:
    """A valid, numeric, 14-digit CNPJ of a head office (branch 0001)."""
    while True:
        root = f"{rng.randrange(1, 100_000_000):08d}"
        base = root + "0001"
        cnpj = base + cnpj_check_digits(base)
        if is_valid_cnpj(cnpj):  # excludes the degenerate repeated-digit roots
            return cnpj
