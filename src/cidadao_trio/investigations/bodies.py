"""The federal bodies (órgãos superiores) a citizen may name, as the data names them.

The portal prints one ministry several ways ("MINISTÉRIO DA SAÚDE", "Ministério da Saúde"),
ministries change their official names, and the SIAFI code outlives every rename. A scope
therefore matches a contract by code when both carry one, else by any known name, compared
without case, accents or punctuation. When nothing matches, ``closest_names`` says what the
citizen may have meant, so a typo is answered, never silently widened to every contract.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..portuguese import normalize
from .model import Contract


@attrs.frozen
class Body:
    """One órgão superior: the name we show, its SIAFI code and every name it goes by."""

    name: str  # the name answers use (the bundled sample's spelling)
    code: str  # código do órgão superior (SIAFI)
    names: tuple[str, ...] = ()  # current official and former names, as the data spells them


BODIES: tuple[Body, ...] = (
    Body("Ministério da Saúde", "36000"),
    Body("Ministério da Educação", "26000"),
    Body("Ministério da Defesa", "52000"),
    Body("Ministério da Justiça e Segurança Pública", "30000"),
    Body("Ministério da Fazenda", "25000", ("Ministério da Economia",)),
    Body("Ministério da Agricultura e Pecuária", "22000",
         ("Ministério da Agricultura, Pecuária e Abastecimento",)),
    Body("Ministério da Ciência, Tecnologia e Inovação", "24000",
         ("Ministério da Ciência, Tecnologia, Inovações e Comunicações",)),
    Body("Ministério das Cidades", "56000"),
    Body("Ministério dos Transportes", "39000", ("Ministério da Infraestrutura",)),
    Body("Ministério do Meio Ambiente e Mudança do Clima", "44000", ("Ministério do Meio Ambiente",)),
    Body("Ministério da Cultura", "42000"),
    Body("Ministério do Desenvolvimento e Assistência Social", "55000", (
        "Ministério do Desenvolvimento e Assistência Social, Família e Combate à Fome",
        "Ministério do Desenvolvimento Social", "Ministério da Cidadania",
    )),
    Body("Ministério de Minas e Energia", "32000"),
    Body("Ministério das Comunicações", "41000"),
    Body("Ministério do Trabalho e Emprego", "40000", ("Ministério do Trabalho e Previdência",)),
    Body("Ministério dos Direitos Humanos e da Cidadania", "81000",
         ("Ministério da Mulher, da Família e dos Direitos Humanos",)),
)  # fmt: skip

_BY_NAME = {b.name: b for b in BODIES}
_BY_CODE = {b.code: b for b in BODIES}


def body_named(name: str) -> Body | None:
    """The body whose shown name, official or former name is ``name`` (any spelling)."""
    folded = normalize(name)
    for body in BODIES:
        if folded in (normalize(n) for n in (body.name, *body.names)):
            return body
    return None


def body_of_code(code: str) -> Body | None:
    return _BY_CODE.get(code.strip())


def matches_body(name: str, contract: Contract) -> bool:
    """Whether ``contract`` belongs to the body called ``name``: by SIAFI code when both
    are known, else by any of the body's names, ignoring case and accents."""
    body = _BY_NAME.get(name) or body_named(name)
    if body is None:
        return normalize(contract.agency) == normalize(name)
    if contract.agency_code:
        return contract.agency_code == body.code
    return normalize(contract.agency) in {normalize(n) for n in (body.name, *body.names)}


def closest_names(typed: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """The known names nearest to what was typed (accent- and case-blind), best first;
    a word in common counts when the spelling is too far off for a fuzzy match."""
    names = sorted(set(known))
    folded = {normalize(n): n for n in names}
    target = normalize(typed).removeprefix("ministerio ").strip()
    stripped = {k.removeprefix("ministerio ").strip(): v for k, v in folded.items()}
    best = difflib.get_close_matches(target, list(stripped), n=limit, cutoff=0.5)
    out = [stripped[k] for k in best]
    words = {w for w in target.split() if len(w) > 3}
    for key, name in stripped.items():
        if len(out) >= limit:
            break
        if name not in out and words & set(key.split()):
            out.append(name)
    return out


def code_in_listing(name: str, listing: Iterable[Mapping[str, Any]]) -> str | None:
    """The SIAFI code the API's body listing (``/orgaos-siafi``: ``codigo``, ``descricao``)
    gives ``name`` or any of its known names, spelled any way; None when it has none."""
    body = body_named(name)
    wanted = {normalize(n) for n in ((body.name, *body.names) if body else (name,))}
    for entry in listing:
        code = str(entry.get("codigo") or "").strip()
        if code and normalize(str(entry.get("descricao") or "")) in wanted:
            return code
    return None
