"""Which contracts a citizen's request is about: the scope an answer or investigation covers.

A scope is read from a message by ``agents.intent`` and used here, by Anita's answers, the
investigation engine and the reports, so it lives with the contracts it selects.
"""

from __future__ import annotations

import attrs

from .bodies import matches_body
from .model import Contract
from .money import contract_value, format_brl

__all__ = ["Filters"]


@attrs.frozen
class Filters:
    """Which contracts a request is about; ``None`` means "any"."""

    agency: str | None = None  # canonical name, one of bodies.BODIES
    year: int | None = None  # year the contract was signed
    min_value: float | None = None  # BRL, compared with the current (global) value
    ug: str | None = None  # código da unidade gestora (SIAFI), e.g. "250005"
    unknown: str | None = None  # a body the citizen named that we do not know, as typed

    def describe(self) -> str:
        """The scope in Portuguese, for answers and report headers."""
        parts: list[str] = []
        if self.agency:
            parts.append(self.agency)
        if self.ug:
            parts.append(f"UG {self.ug}")
        if self.year is not None:
            parts.append(str(self.year))
        if self.min_value is not None:
            parts.append(f"acima de {format_brl(self.min_value)}")
        return ", ".join(parts) if parts else "todos os contratos"

    def matches(self, contract: Contract) -> bool:
        """Inclusive minimum: a citizen typing "1 milhão" means a R$ 1.000.000,00 contract too.
        The agency matches by SIAFI code or any of its names, whatever the case or accents."""
        if self.agency is not None and not matches_body(self.agency, contract):
            return False
        if self.ug is not None and contract.ug != self.ug:
            return False
        if self.year is not None and contract.signed_on.year != self.year:
            return False
        return self.min_value is None or contract_value(contract) >= self.min_value
