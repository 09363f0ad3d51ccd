"""Who a supplier is, as contracts are grouped by it.

The portal spells one company's name many ways, so the CNPJ identifies a supplier and the
name is only a fallback. Two groupings are in use and they differ on purpose for a company
with branches (filiais: one CNPJ root, several establishments): Zumbi's detectors see one
company (``supplier_key``), so a split purchase spread over branches is still one supplier;
Anita's ranking shows each establishment with the CNPJ it signed with
(``establishment_key``).
"""

from __future__ import annotations

import functools

from ..portuguese import normalize_ascii
from .cnpj import is_valid_cnpj
from .model import Contract

__all__ = ["establishment_key", "supplier_key"]


def supplier_key(contract: Contract) -> str:
    """The CNPJ root (8 characters) identifies a company across branches and spellings;
    a CNPJ whose check digits fail is kept whole (its root proves nothing), and a CPF or
    an unknown code falls back to the normalized name."""
    cnpj = contract.supplier_cnpj
    if len(cnpj) == 14 and _valid_cnpj(cnpj):
        return cnpj[:8]
    return cnpj or normalize_ascii(contract.supplier_name)


def establishment_key(contract: Contract) -> str:
    """The CNPJ as signed (each branch apart), else the normalized name."""
    return contract.supplier_cnpj or normalize_ascii(contract.supplier_name)


@functools.lru_cache(maxsize=65536)
def _valid_cnpj(cnpj: str) -> bool:
    return is_valid_cnpj(cnpj)
