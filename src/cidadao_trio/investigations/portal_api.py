"""A client of the Portal da Transparência's data API that is a good citizen of it.

The API (``/api-de-dados``, key in the ``chave-api-dados`` header) pages its listings
(``pagina`` from 1, a page of up to 15 items; an empty page ends the listing) and allows
90 requests a minute from 06:00 to 23:59 and 300 from 00:00 to 05:59, Brasília time,
answering 429 with ``Retry-After`` past that. So every request of the process waits for
one :class:`PortalLimiter` (the limits, and a pause for everyone when the API says
"wait"), timeouts and 5xx are retried with jittered exponential backoff, a listing is
fetched by a few workers at once, and a deadline bounds the whole listing: what arrived
is kept and what did not is said page by page (:class:`Listing`).

httpx runs under trio: httpcore picks its trio backend when trio is the running library.
The key is never logged, never part of a cache key and never in a message.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import attrs
import orjson
import trio

from .portal_cache import MemoryResponseCache, ResponseCache

if TYPE_CHECKING:  # httpx (~30 ms of imports) loads where a request is made: most servers make none
    import httpx

log = logging.getLogger(__name__)

__all__ = [
    "BRASILIA", "CONTRACTS", "BODIES_LISTING", "EndpointRefused", "KeyRejected", "Listing", "PortalClient",
    "PortalError", "PortalLimiter", "PortalUnavailable", "RequestPacer", "RequestRejected", "RetryPolicy",
    "requests_per_minute", "retry_after_seconds",
]  # fmt: skip

BRASILIA = dt.timezone(dt.timedelta(hours=-3), "BRT")  # no daylight saving time since 2019
DAY_LIMIT, NIGHT_LIMIT = 90, 300  # requests a minute (06:00–23:59, 00:00–05:59)
WINDOW = 60.0
CONTRACTS = "/api-de-dados/contratos"
BODIES_LISTING = "/api-de-dados/orgaos-siafi"
KEY_HEADER = "chave-api-dados"


def requests_per_minute(moment: dt.datetime) -> int:
    """The API's limit at ``moment`` (an aware datetime): the night allows more."""
    return NIGHT_LIMIT if moment.astimezone(BRASILIA).hour < 6 else DAY_LIMIT


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- errors -------------------------------------------------------------------------------


class PortalError(Exception):
    """A failure a citizen is told about: ``reason`` is Portuguese and never holds the key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyRejected(PortalError):
    """401, or 403 on every endpoint: the key is wrong, expired or not yet active."""


class EndpointRefused(PortalError):
    """403 on one endpoint while the key works elsewhere: the API refuses it to this key."""


class RequestRejected(PortalError):
    """400/404/422: the API will not answer these parameters (retrying will not help)."""


class PortalUnavailable(PortalError):
    """Timeouts, 5xx or 429 past every retry."""


KEY_REJECTED = (
    "O Portal da Transparência recusou a chave da API (HTTP {status}): confira "
    "CIDADAO_PORTAL_API_KEY; uma chave nova pode levar alguns minutos para valer."
)
ENDPOINT_REFUSED = (
    "O Portal da Transparência recusou a consulta {endpoint} para esta chave (HTTP 403): "
    "a chave vale para outras consultas, mas não para esta."
)


# -- pacing -------------------------------------------------------------------------------


@attrs.define
class RequestPacer:
    """When the next request may start. Pure: the clock is passed in.

    At most ``limit`` starts in any 60 s (a sliding window, so the day limit holds from
    06:00 even after a night burst), spaced by at least 60/``limit`` s so a listing does
    not arrive as a burst, and none before a pause the API asked for ends.
    """

    _starts: deque[float] = attrs.field(factory=lambda: deque(maxlen=NIGHT_LIMIT))
    _paused_until: float = -math.inf

    def delay(self, now: float, limit: int) -> float:
        """Seconds to wait before starting a request (0: start now)."""
        while self._starts and self._starts[0] <= now - WINDOW:
            self._starts.popleft()
        wait = self._paused_until - now
        if len(self._starts) >= limit:
            wait = max(wait, self._starts[-limit] + WINDOW - now)
        if self._starts:
            wait = max(wait, self._starts[-1] + WINDOW / limit - now)
        return max(0.0, wait)

    def started(self, now: float) -> None:
        self._starts.append(now)

    def pause(self, until: float) -> None:
        self._paused_until = max(self._paused_until, until)


class PortalLimiter:
    """The process's one gate to the API: every investigation's requests wait here."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = trio.current_time,
        wall: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._pacer = RequestPacer()
        self._lock = trio.Lock()  # FIFO: waiters start in the order they came
        self._clock = clock
        self._wall = wall
        self.granted = 0

    async def acquire(self) -> None:
        async with self._lock:
            while (delay := self._pacer.delay(self._clock(), requests_per_minute(self._wall()))) > 0:
                await trio.sleep(delay)
            self._pacer.started(self._clock())
            self.granted += 1

    def pause(self, seconds: float) -> None:
        """The API said "wait ``seconds``": no request of the process starts before."""
        self._pacer.pause(self._clock() + seconds)


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; else None."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


@attrs.frozen
class RetryPolicy:
    """How hard to try one page before calling it missing."""

    attempts: int = 4  # tries on timeouts, transport errors and 5xx
    base: float = 1.0  # the first backoff, seconds; doubles each time
    cap: float = 30.0  # the longest backoff
    rate_limited: int = 6  # 429s tolerated for one page
    timeout: float = 30.0  # one request

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Equal jitter: half the exponential step, plus up to the other half at random,
        so workers that failed together do not come back together."""
        step = min(self.cap, self.base * 2**attempt)
        return step / 2 + rng.uniform(0, step / 2)


# -- listings -----------------------------------------------------------------------------


@attrs.frozen
class Listing:
    """A paged listing as it arrived: the items, and exactly what is missing from it."""

    items: tuple[Mapping[str, Any], ...]  # in page order
    received: tuple[int, ...]  # pages that arrived with items, ascending
    missing: tuple[int, ...]  # pages asked that never arrived (errors, the deadline)
    onward: int | None  # None: the empty page that ends the listing arrived; else pages
    # from this one on were never asked (the deadline, or the API kept failing)
    timed_out: bool = False
    problems: tuple[str, ...] = ()  # why pages are missing, Portuguese

    @property
    def complete(self) -> bool:
        return self.onward is None and not self.missing

    def describe_missing(self) -> str:
        """Which pages are missing, in Portuguese ("" when none)."""
        parts = []
        if self.missing:
            pages = [str(p) for p in self.missing]
            listed = pages[0] if len(pages) == 1 else ", ".join(pages[:-1]) + " e " + pages[-1]
            parts.append(("página " if len(pages) == 1 else "páginas ") + listed)
        if self.onward is not None:
            parts.append(f"da página {self.onward} em diante")
        return ", e ".join(parts)


PageCallback = Callable[[int, int, int], Awaitable[None]]  # page, its items, items so far


async def _ignore_page(page: int, items: int, total: int) -> None:
    return None


class PortalClient:
    """Requests to one API base URL with one key, paced by a shared limiter, cached."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        limiter: PortalLimiter,
        cache: ResponseCache | None = None,
        cache_ttl: float = 24 * 3600.0,
        concurrency: int = 2,
        retry: RetryPolicy = RetryPolicy(),
        rng: random.Random | None = None,
        wall: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._key = key
        self._limiter = limiter
        self._cache: ResponseCache = cache if cache is not None else MemoryResponseCache()
        self._ttl = cache_ttl
        self._concurrency = max(1, concurrency)
        self._retry = retry
        self._rng = rng or random.Random()
        self._wall = wall
        self.requests = 0  # sent to the API (retries included)
        self.cache_hits = 0

    def __repr__(self) -> str:  # the key stays out of every log line and traceback
        return f"PortalClient({self._base_url!r})"

    def _http(self) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            base_url=self._base_url,
            headers={KEY_HEADER: self._key, "accept": "application/json"},
            timeout=self._retry.timeout,
        )

    # -- one page ---------------------------------------------------------------------

    async def page(
        self, endpoint: str, params: Mapping[str, str | int], *, http: httpx.AsyncClient | None = None
    ) -> list[Any]:
        """One page of a listing (a JSON list), from the cache when it is fresh there."""
        cache_key = f"{endpoint}?{urlencode(sorted(params.items()))}"
        text = await self._cache.get(cache_key)
        fresh = text is None
        if text is None:
            if http is None:
                async with self._http() as own:
                    text = await self._fetch(own, endpoint, params)
            else:
                text = await self._fetch(http, endpoint, params)
        else:
            self.cache_hits += 1
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise PortalUnavailable(f"O Portal da Transparência respondeu algo que não é JSON em {endpoint}.") from None
        if not isinstance(data, list):
            raise PortalUnavailable(f"O Portal da Transparência respondeu um objeto, não uma lista, em {endpoint}.")
        if fresh:
            await self._cache.put(cache_key, text, self._ttl)
        return data

    async def _fetch(self, http: httpx.AsyncClient, endpoint: str, params: Mapping[str, str | int]) -> str:
        import httpx

        failures = limited = 0
        while True:
            await self._limiter.acquire()
            self.requests += 1
            try:
                response = await http.get(endpoint, params=dict(params))
            except httpx.TransportError as exc:  # timeouts included
                failures += 1
                what = "não respondeu a tempo" if isinstance(exc, httpx.TimeoutException) else "não pôde ser alcançado"
                if failures >= self._retry.attempts:
                    raise PortalUnavailable(f"o Portal {what} ({failures} tentativas)") from None
                log.info("portal %s %s: %s; retrying", endpoint, _page_of(params), type(exc).__name__)
                await trio.sleep(self._retry.backoff(failures - 1, self._rng))
                continue
            status = response.status_code
            if status == 200:
                return response.text
            if status == 429:
                limited += 1
                wait = retry_after_seconds(response.headers.get("retry-after"), self._wall())
                wait = self._retry.backoff(limited - 1, self._rng) if wait is None else wait
                if limited > self._retry.rate_limited:
                    raise PortalUnavailable(f"o Portal pediu para esperar {limited} vezes seguidas (HTTP 429)")
                log.info("portal %s %s: 429, pausing every request for %.1f s", endpoint, _page_of(params), wait)
                self._limiter.pause(wait)
                continue
            if status >= 500:
                failures += 1
                if failures >= self._retry.attempts:
                    raise PortalUnavailable(f"o Portal respondeu HTTP {status} ({failures} tentativas)")
                log.info("portal %s %s: HTTP %d; retrying", endpoint, _page_of(params), status)
                await trio.sleep(self._retry.backoff(failures - 1, self._rng))
                continue
            if status == 401:
                raise KeyRejected(KEY_REJECTED.format(status=status))
            if status == 403:
                raise await self._classify_403(http, endpoint)
            raise RequestRejected(
                f"O Portal da Transparência recusou a consulta {endpoint} (HTTP {status})" + _api_message(response)
            )

    async def _classify_403(self, http: httpx.AsyncClient, endpoint: str) -> PortalError:
        """403 means a bad key or an endpoint this key may not use: ask the body listing to
        tell which (both refused: the key). The listing's own 403 says neither for sure:
        callers do without it, and the next endpoint's 403 decides."""
        import httpx

        if endpoint == BODIES_LISTING:
            return EndpointRefused(ENDPOINT_REFUSED.format(endpoint=endpoint))
        await self._limiter.acquire()
        self.requests += 1
        try:
            probe = await http.get(BODIES_LISTING, params={"codigo": "36000", "pagina": 1})
        except httpx.TransportError:
            return EndpointRefused(ENDPOINT_REFUSED.format(endpoint=endpoint))
        if probe.status_code in (401, 403):
            return KeyRejected(KEY_REJECTED.format(status=403))
        return EndpointRefused(ENDPOINT_REFUSED.format(endpoint=endpoint))

    # -- a whole listing --------------------------------------------------------------

    async def listing(
        self,
        endpoint: str,
        params: Mapping[str, str | int],
        *,
        deadline: float,
        on_page: PageCallback = _ignore_page,
        max_pages: int = 10_000,
    ) -> Listing:
        """Every page until an empty one, by ``concurrency`` workers, within ``deadline``
        seconds. Pages that fail past their retries are missing; after one, no new page is
        asked (the API is struggling). A key or parameter the API refuses raises."""
        pages: dict[int, list[Any]] = {}
        failed: dict[int, str] = {}
        state = {"next": 1, "end": max_pages + 1, "total": 0}  # end: the first empty page
        fatal: list[PortalError] = []

        async def worker(http: httpx.AsyncClient, nursery: trio.Nursery) -> None:
            while state["next"] < state["end"] and not failed:
                number = state["next"]
                state["next"] += 1
                try:
                    items = await self.page(endpoint, {**params, "pagina": number}, http=http)
                except PortalUnavailable as exc:
                    failed[number] = exc.reason
                    log.warning("portal %s page %d missing: %s", endpoint, number, exc.reason)
                    return
                except PortalError as exc:
                    fatal.append(exc)
                    nursery.cancel_scope.cancel()
                    return
                if not items:
                    state["end"] = min(state["end"], number)
                    return
                pages[number] = items
                state["total"] += len(items)
                await on_page(number, len(items), state["total"])

        with trio.move_on_after(deadline) as timer:
            async with self._http() as http, trio.open_nursery() as nursery:
                for _ in range(self._concurrency):
                    nursery.start_soon(worker, http, nursery)
        if fatal:
            raise fatal[0]
        end_seen = state["end"] <= max_pages  # the empty page that ends the listing came
        limit = state["end"] if end_seen else state["next"]  # pages below it were asked
        received = tuple(sorted(p for p in pages if p < limit))
        missing = tuple(p for p in range(1, limit) if p not in pages)
        onward = None if end_seen else state["next"]
        items = tuple(item for p in received for item in pages[p])
        problems = tuple(dict.fromkeys(failed.values()))
        if timer.cancelled_caught:
            problems = (*problems, f"o prazo de {deadline:g} s da consulta acabou")
        return Listing(items, received, missing, onward, timer.cancelled_caught, problems)


def _page_of(params: Mapping[str, str | int]) -> str:
    return f"page {params['pagina']}" if "pagina" in params else ""


def _api_message(response: httpx.Response) -> str:
    """The API's own explanation, when short and plain (it says which parameter is wrong)."""
    text = response.text.strip()
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        body = text
    if isinstance(body, dict):
        body = body.get("Error") or body.get("error") or body.get("message") or body.get("mensagem") or ""
    message = " ".join(str(body).split())
    return f": {message}" if message and len(message) <= 300 and "<" not in message else "."
