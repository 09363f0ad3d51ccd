"""Money as the answers and reports speak of it: what a contract is worth, in reais.

Every Anita figure, scope and report uses the same value of a contract and prints it the
way a Brazilian reads it, so one answer never shows two spellings of one amount.
"""

from __future__ import annotations

import math

from .model import Contract

__all__ = ["contract_value", "format_brl", "format_percent"]


def contract_value(contract: Contract) -> float:
    """The global value (after amendments), or the initial one when the global is missing."""
    return contract.global_value if contract.global_value > 0 else contract.initial_value


def format_brl(value: float) -> str:
    """Money as a Brazilian reads it: ``R$ 1.234.567,89`` (minus sign before the symbol)."""
    sign = "-" if value < 0 and round(abs(value), 2) > 0 else ""
    us = f"{abs(value):,.2f}"  # 1,234,567.89
    return f"{sign}R$ " + us.replace(",", "_").replace(".", ",").replace("_", ".")


def format_percent(fraction: float) -> str:
    """A share with the precision that keeps it true, Brazilian comma.

    ``0.823 -> "82%"``, ``0.0731 -> "7,3%"``, ``0.0028 -> "0,28%"``, ``0.9996 -> "99,96%"``:
    whole numbers where they are honest, more digits where rounding would say 0% or 100%.
    """
    pct = fraction * 100
    if pct == 0:
        return "0%"
    magnitude = abs(pct)
    if magnitude >= 10:
        digits = 0
        while digits < 3 and round(magnitude, digits) in (100.0,) and magnitude != 100:
            digits += 1
    elif magnitude >= 1:
        digits = 1
    else:
        digits = max(1, 1 - math.floor(math.log10(magnitude)))  # two significant digits
    text = f"{pct:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", ",") + "%"
