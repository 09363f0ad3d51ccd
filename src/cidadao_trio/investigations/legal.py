"""The figures of Lei 14.133/2021 the detectors apply, each with the act that sets it.

One table, so a change of decree is one line and every detector and report cites the same
number. Art. 182 of the law has the values updated every January by decree (IPCA-E).

=====  ==================  ==========================================================
year   art. 75 II limit    source
=====  ==================  ==========================================================
2021   R$ 50.000,00        Lei 14.133/2021, art. 75, II (original text)
2022   R$ 54.020,41        Decreto 10.922/2021
2023   R$ 57.208,33        Decreto 11.317/2022
2024   R$ 59.906,02        Decreto 11.871/2023
2025   R$ 62.725,59        Decreto 12.343/2024
2026   R$ 65.492,11        Decreto 12.807/2025
=====  ==================  ==========================================================

Art. 75 §1º: the limit is checked against the sum spent in the fiscal year by the same
management unit (UG) on objects of the same nature, whoever the supplier is. Art. 125:
unilateral amendments add at most 25% of the updated initial value (50% for the reform of
a building or equipment). Art. 107: continuing services may be extended up to 10 years;
an extension adds a new period's value, which is not an amendment of the original one.
Art. 75 VIII: an emergency dispensa lasts at most one year and may not be extended.
"""

from __future__ import annotations

import functools
import re

import attrs

from ..portuguese import normalize_ascii

__all__ = [
    "AMENDMENT_LIMIT",
    "DISPENSA_LIMITS",
    "EMERGENCY_MAX_DAYS",
    "REFORM_AMENDMENT_LIMIT",
    "DispensaLimit",
    "dispensa_limit",
    "is_emergency",
    "is_small_purchase_dispensa",
    "legal_kind",
]


@attrs.frozen
class DispensaLimit:
    year: int
    value: float  # BRL
    source: str  # the act that sets it, cited in reports


DISPENSA_LIMITS: dict[int, DispensaLimit] = {
    limit.year: limit
    for limit in (
        DispensaLimit(2021, 50_000.00, "Lei 14.133/2021, art. 75, II"),
        DispensaLimit(2022, 54_020.41, "Decreto 10.922/2021"),
        DispensaLimit(2023, 57_208.33, "Decreto 11.317/2022"),
        DispensaLimit(2024, 59_906.02, "Decreto 11.871/2023"),
        DispensaLimit(2025, 62_725.59, "Decreto 12.343/2024"),
        DispensaLimit(2026, 65_492.11, "Decreto 12.807/2025"),
    )
}
AMENDMENT_LIMIT = 0.25  # art. 125
REFORM_AMENDMENT_LIMIT = 0.50  # art. 125, reforma de edifício ou de equipamento
EMERGENCY_MAX_DAYS = 366  # art. 75 VIII: "prazo máximo de 1 (um) ano"


def dispensa_limit(year: int) -> DispensaLimit:
    """The limit in force in ``year``; outside the table, the nearest year's (and its source)."""
    if year in DISPENSA_LIMITS:
        return DISPENSA_LIMITS[year]
    nearest = min(DISPENSA_LIMITS, key=lambda y: (abs(y - year), -y))
    return DISPENSA_LIMITS[nearest]


# "Art. 75, II", "art 75 inciso II", "ART. 75, INC. II" -- but not "VIII" or "XII".
_ART75 = re.compile(r"\bart(?:igo)?\s*75\b(?:\s*(?:caput|inciso|inc))*\s*([ivx]+)\b")
_ART24 = re.compile(r"\bart(?:igo)?\s*24\b(?:\s*(?:caput|inciso|inc))*\s*([ivx]+)\b")


def legal_kind(legal_basis: str, modality: str = "", object_text: str = "") -> str:
    """See ``_legal_kind``; the object only matters for a dispensa without a basis."""
    if legal_basis or "dispensa" not in modality.lower():
        object_text = ""
    return _legal_kind(legal_basis, modality, object_text)


@functools.lru_cache(maxsize=4096)
def _legal_kind(legal_basis: str, modality: str, object_text: str) -> str:
    """"small_purchase" (art. 75 I/II), "emergency" (art. 75 VIII), "other_dispensa",
    "inexigibilidade", "competitive" or "unknown", from the fundamento legal first."""
    basis, mod = normalize_ascii(legal_basis), normalize_ascii(modality)
    m = _ART75.search(basis) or _ART24.search(basis)
    if m:
        inciso = m.group(1)
        if inciso in ("i", "ii"):
            return "small_purchase"
        if (m.re is _ART75 and inciso == "viii") or (m.re is _ART24 and inciso == "iv"):
            return "emergency"
        return "other_dispensa"
    if re.search(r"\bart(?:igo)?\s*(74|25)\b", basis) or "inexig" in mod:
        return "inexigibilidade"
    if re.search(r"\bart(?:igo)?\s*28\b", basis):  # the licitação modalities
        return "competitive"
    if "emergen" in basis or ("dispensa" in mod and "emergen" in normalize_ascii(object_text)):
        return "emergency"
    if "dispensa" in mod:
        return "small_purchase"  # a dispensa with no basis given: assume the common case
    if mod:
        return "competitive"
    return "unknown"


def is_small_purchase_dispensa(legal_basis: str, modality: str, object_text: str = "") -> bool:
    return legal_kind(legal_basis, modality, object_text) == "small_purchase"


def is_emergency(legal_basis: str, modality: str, object_text: str = "") -> bool:
    return legal_kind(legal_basis, modality, object_text) == "emergency"
