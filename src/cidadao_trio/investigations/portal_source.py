"""Contracts fetched from the Portal da Transparência's API while an investigation runs.

"Investigar contratos do Ministério da Saúde": the body's SIAFI code comes from the API's
body listing (``/orgaos-siafi``) when it answers, else from the bundled table
(``bodies.BODIES``); its contracts for the period asked (the year named, else the last
12 months) come page by page from ``/contratos``, each item mapped by the JSON loader
(``portal.load_contracts_json``) exactly as a downloaded file would be. What did not
arrive is said in the report, page by page; what cannot be had fails the investigation
with the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping

import attrs

from ..config import Settings
from .analysis import Finding
from .bodies import BODIES, body_named, closest_names, code_in_listing
from .portal import load_contracts_json
from .portal_api import (
    BODIES_LISTING,
    CONTRACTS,
    KeyRejected,
    Listing,
    PortalClient,
    PortalError,
    PortalLimiter,
)
from .portal_cache import ResponseCache
from .scope import Filters
from .source import Progress, Retrieval, RetrievalFailed

log = logging.getLogger(__name__)

__all__ = ["API_KEY_ENV", "NO_KEY", "PortalContractSource", "portal_source"]

API_KEY_ENV = "CIDADAO_PORTAL_API_KEY"
ZUMBI = ("zumbi", "Zumbi dos Palmares")
NO_KEY = (
    "O servidor está configurado para consultar o Portal da Transparência, mas não tem a chave "
    f"da API ({API_KEY_ENV} está vazia). Peça a quem administra o servidor para cadastrar uma."
)
NO_BODY = (
    "Para buscar contratos no Portal da Transparência, diga de qual órgão: por exemplo, "
    "“Investigar contratos do Ministério da Saúde”."
)


def _count(n: int) -> str:
    return f"{n:,}".replace(",", ".")


def _day(d: dt.date) -> str:
    return d.strftime("%d/%m/%Y")


class PortalContractSource:
    """A :class:`~cidadao_trio.investigations.source.ContractSource` over the live API."""

    def __init__(
        self,
        client: PortalClient | None,
        *,
        deadline: float = 300.0,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self.client = client  # None: configured without a key
        self.deadline = deadline
        self._today = today

    async def retrieve(self, scope: Filters, progress: Progress) -> Retrieval:
        if self.client is None:
            raise RetrievalFailed(NO_KEY)
        name = scope.agency or scope.unknown
        if not name:
            raise RetrievalFailed(NO_BODY)
        code = await self._code(self.client, name)
        start, end = self.period(scope)
        params = {"codigoOrgao": code, "dataInicial": _day(start), "dataFinal": _day(end)}
        arrived = 0

        async def on_page(page: int, items: int, total: int) -> None:
            nonlocal arrived
            arrived += 1
            await progress(f"Página {page}: {_count(total)} contratos recebidos", arrived / (arrived + 4), total)

        try:
            listing = await self.client.listing(CONTRACTS, params, deadline=self.deadline, on_page=on_page)
        except PortalError as exc:
            raise RetrievalFailed(exc.reason) from None
        period = f"de {_day(start)} a {_day(end)}"
        if not listing.items and not listing.complete:
            raise RetrievalFailed(
                f"Não consegui obter os contratos de {name} no Portal da Transparência ({period}): "
                f"{'; '.join(listing.problems) or 'sem resposta'}. Faltam {listing.describe_missing()}."
            )
        loaded = load_contracts_json(list(listing.items))
        if loaded.problems:
            log.warning("portal: %d of %d contracts of body %s skipped (first: item %d: %s)", len(loaded.problems),
                        len(listing.items), code, loaded.problems[0].line, loaded.problems[0].message)  # fmt: skip
        rest = attrs.evolve(scope, agency=None, unknown=None)  # the API already chose the body
        contracts = tuple(c for c in loaded.contracts if rest.matches(c))
        log.info("portal: body %s %s: %d pages, %d contracts (%d requests, %d from cache)%s", code, period,
                 len(listing.received), len(contracts), self.client.requests, self.client.cache_hits,
                 "" if listing.complete else f"; missing {listing.describe_missing()}")  # fmt: skip
        message = f"{_count(len(contracts))} contratos de {name} recebidos do Portal da Transparência ({period})."
        if not listing.complete:
            message += f" Atenção: faltam {listing.describe_missing()} da consulta."
        return Retrieval(contracts, "api", message, (_coverage(name, code, period, listing, len(contracts)),))

    def period(self, scope: Filters) -> tuple[dt.date, dt.date]:
        """The year asked (up to today), else the last 12 months."""
        today = self._today()
        if scope.year is not None:
            return dt.date(scope.year, 1, 1), min(dt.date(scope.year, 12, 31), max(today, dt.date(scope.year, 1, 1)))
        return today - dt.timedelta(days=365), today

    async def _code(self, client: PortalClient, name: str) -> str:
        """The body's SIAFI code: the API's listing first (codes outlive renames, but a new
        body is only there), the bundled table when the listing cannot answer."""
        listed: str | None = None
        reachable = False
        try:
            listed = code_in_listing(name, await client.page(BODIES_LISTING, {"descricao": name, "pagina": 1}))
            reachable = True
        except KeyRejected as exc:
            raise RetrievalFailed(exc.reason) from None
        except PortalError as exc:
            log.info("portal: the body listing did not answer (%s); using the bundled table", exc.reason)
        body = body_named(name)
        if listed:
            if body is not None and body.code != listed:
                log.info("portal: the listing gives %s the code %s (bundled: %s)", body.name, listed, body.code)
            return listed
        if body is not None:
            return body.code
        names = closest_names(name, [b.name for b in BODIES])
        hint = f" Você quis dizer {' ou '.join(names)}?" if names else ""
        where = "não lista" if reachable else "não respondeu à consulta de órgãos e não conheço"
        raise RetrievalFailed(f"O Portal da Transparência {where} o órgão “{name}”.{hint}")


def _coverage(name: str, code: str, period: str, listing: Listing, kept: int) -> Finding:
    """What the report says of the data: where it came from and exactly what is missing."""
    pages = len(listing.received)
    summary = (f"Consultei o Portal da Transparência: {_count(kept)} contratos de {name} "
               f"(código SIAFI {code}) {period}, em {pages} {'página' if pages == 1 else 'páginas'}.")  # fmt: skip
    if not listing.complete:
        summary += (f" Dados incompletos: faltam {listing.describe_missing()} "
                    f"({'; '.join(listing.problems) or 'sem resposta'}); a análise cobre só o que chegou.")  # fmt: skip
    details: Mapping[str, object] = {
        "source": "api.portaldatransparencia.gov.br/api-de-dados/contratos",
        "siafi_code": code,
        "period": period,
        "pages_received": list(listing.received),
        "pages_missing": list(listing.missing),
        "missing_from_page": listing.onward,
        "complete": listing.complete,
    }
    return Finding(ZUMBI[0], ZUMBI[1], "data_coverage", summary, dict(details))


def portal_source(
    settings: Settings,
    cache: ResponseCache,
    *,
    environ: Mapping[str, str] | None = None,
    limiter: PortalLimiter | None = None,
) -> PortalContractSource | None:
    """The live source when ``CIDADAO_PORTAL_API_KEY`` is set (blank: every investigation
    fails saying so); None without it: the engine investigates the loaded dataset."""
    environ = os.environ if environ is None else environ
    if API_KEY_ENV not in environ:
        return None
    key = environ[API_KEY_ENV].strip()
    if not key:
        log.warning("%s is empty: investigations will fail until a key is set", API_KEY_ENV)
        return PortalContractSource(None, deadline=settings.portal_deadline)
    client = PortalClient(
        settings.portal_api_url, key, limiter=limiter or PortalLimiter(), cache=cache,
        cache_ttl=settings.portal_cache_ttl,
    )
    log.info("investigations fetch contracts from %s (key from %s)", settings.portal_api_url, API_KEY_ENV)
    return PortalContractSource(client, deadline=settings.portal_deadline)
