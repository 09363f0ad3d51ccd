"""The Portal da Transparência client against a fake Portal on loopback, in virtual time:
the header and parameters, paging, pacing, Retry-After, retries, deadlines, the cache,
cancellation, and every failure a citizen is told of."""

from __future__ import annotations

import datetime as dt
import logging
import random
from functools import partial

import pytest
import trio
import trio.testing

from cidadao_trio.investigations.portal_api import (
    CONTRACTS,
    DAY_LIMIT,
    NIGHT_LIMIT,
    KeyRejected,
    PortalClient,
    PortalLimiter,
    RequestPacer,
    RetryPolicy,
    requests_per_minute,
    retry_after_seconds,
)
from cidadao_trio.investigations.portal_cache import MemoryResponseCache

from .fake_portal import KEY, FakePortal, Seen, running_portal

NOON = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)  # 12:00 in Brasília: 90 a minute
NIGHT = dt.datetime(2025, 6, 2, 6, 0, tzinfo=dt.UTC)  # 03:00 in Brasília: 300 a minute
PARAMS = {"codigoOrgao": "36000", "dataInicial": "01/01/2025", "dataFinal": "31/12/2025"}


def client(portal: FakePortal, *, key: str = KEY, wall: dt.datetime = NOON, **kwargs: object) -> PortalClient:
    limiter = kwargs.pop("limiter", None) or PortalLimiter(wall=lambda: wall)
    return PortalClient(portal.url, key, limiter=limiter, rng=random.Random(7), wall=lambda: wall, **kwargs)  # type: ignore[arg-type]


def most_in_a_minute(times: list[float]) -> int:
    """The most request starts that fell within any 60 s (the API's window)."""
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + 60 - 1e-9) for t in times), default=0)


def page_numbers(seen: list[Seen]) -> list[int]:
    return [int(s.params["pagina"]) for s in seen]


# -- limits and pacing (pure) ---------------------------------------------------------------


def test_limits_follow_brasilia_time() -> None:
    assert requests_per_minute(NOON) == DAY_LIMIT == 90
    assert requests_per_minute(NIGHT) == NIGHT_LIMIT == 300
    assert requests_per_minute(dt.datetime(2025, 6, 2, 8, 59, tzinfo=dt.UTC)) == 300  # 05:59 BRT
    assert requests_per_minute(dt.datetime(2025, 6, 2, 9, 0, tzinfo=dt.UTC)) == 90  # 06:00 BRT
    assert requests_per_minute(dt.datetime(2025, 6, 2, 2, 59, tzinfo=dt.UTC)) == 90  # 23:59 BRT


def test_pacer_spaces_requests_and_holds_the_day_limit_after_a_night_burst() -> None:
    pacer = RequestPacer()
    now = 0.0
    for _ in range(300):  # the night's full minute, every 0.2 s
        now += pacer.delay(now, NIGHT_LIMIT)
        pacer.started(now)
    assert now == pytest.approx(299 * 0.2)
    # 06:00: the day limit counts the last 60 s, so the next start waits for the window to thin
    wait = pacer.delay(now, DAY_LIMIT)
    assert wait > 0
    starts = [0.2 * i for i in range(300)]
    for _ in range(100):
        now += pacer.delay(now, DAY_LIMIT)
        pacer.started(now)
        starts.append(now)
    assert most_in_a_minute([t for t in starts if t >= now - 60]) <= DAY_LIMIT


def test_pacer_pause_applies_to_everyone() -> None:
    pacer = RequestPacer()
    pacer.started(0.0)
    pacer.pause(12.5)
    assert pacer.delay(1.0, DAY_LIMIT) == pytest.approx(11.5)
    assert pacer.delay(13.0, DAY_LIMIT) == 0.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Mon, 02 Jun 2025 15:00:30 GMT", now) == 30.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_backoff_grows_and_is_jittered() -> None:
    policy, rng = RetryPolicy(base=1.0, cap=8.0), random.Random(1)
    waits = [policy.backoff(n, rng) for n in range(6)]
    assert all(0.5 * min(8, 2**n) <= w <= min(8, 2**n) for n, w in enumerate(waits))
    assert len({round(policy.backoff(2, rng), 6) for _ in range(5)}) > 1


# -- the listing over HTTP ----------------------------------------------------------------


async def test_header_parameters_and_pages_until_an_empty_one(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal()
    portal.pages("36000", 3)
    portal.contracts["36000"] = portal.contracts["36000"][:40]  # 15 + 15 + 10
    async with running_portal(portal):
        api = client(portal, concurrency=1)
        listing = await api.listing(CONTRACTS, PARAMS, deadline=600)
    assert listing.complete and listing.received == (1, 2, 3) and len(listing.items) == 40
    seen = portal.requests_to("/api-de-dados/contratos")
    assert page_numbers(seen) == [1, 2, 3, 4]  # page 4 came back empty: the end
    assert all(s.key == KEY for s in seen)
    assert all({k: v for k, v in s.params.items() if k != "pagina"} == PARAMS for s in seen)


async def test_day_pacing_never_exceeds_the_limit(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal()
    portal.pages("36000", 100)
    async with running_portal(portal):
        api = client(portal, concurrency=4)
        listing = await api.listing(CONTRACTS, PARAMS, deadline=3600)
    assert listing.complete and len(listing.received) == 100
    times = [s.at for s in portal.seen]
    assert most_in_a_minute(times) <= DAY_LIMIT
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 60 / DAY_LIMIT - 1e-6
    assert times[-1] - times[0] >= (len(times) - 1) * 60 / DAY_LIMIT - 1e-6


async def test_night_pacing_is_faster(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal()
    portal.pages("36000", 30)
    async with running_portal(portal):
        await client(portal, wall=NIGHT, concurrency=4).listing(CONTRACTS, PARAMS, deadline=3600)
    times = [s.at for s in portal.seen]
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 60 / NIGHT_LIMIT - 1e-6
    assert times[-1] - times[0] < (len(times) - 1) * 60 / DAY_LIMIT  # faster than by day


async def test_one_limiter_paces_two_investigations_together(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal()
    portal.pages("36000", 10)
    portal.pages("26000", 10)
    shared = PortalLimiter(wall=lambda: NOON)
    async with running_portal(portal), trio.open_nursery() as nursery:
        for code in ("36000", "26000"):
            api = client(portal, limiter=shared)
            nursery.start_soon(partial(api.listing, CONTRACTS, {**PARAMS, "codigoOrgao": code}, deadline=3600))
    times = [s.at for s in portal.seen]
    assert len(times) >= 22 and shared.granted == len(times)
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 60 / DAY_LIMIT - 1e-6


async def test_429_retry_after_pauses_every_request(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal(script={("contratos", 2): ["429:7"]})
    portal.pages("36000", 4)
    async with running_portal(portal):
        api = client(portal, concurrency=2)
        listing = await api.listing(CONTRACTS, PARAMS, deadline=600)
    assert listing.complete and listing.received == (1, 2, 3, 4)
    seen = portal.requests_to("contratos")
    refused = next(i for i, s in enumerate(seen) if s.params["pagina"] == "2")
    later = seen[refused + 1 :]
    assert later and all(s.at >= seen[refused].at + 7 - 1e-6 for s in later)
    assert page_numbers(seen).count(2) == 2


async def test_5xx_retried_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal(script={("contratos", 2): ["503", "502"]})
    portal.pages("36000", 3)
    async with running_portal(portal):
        api = client(portal, concurrency=1, retry=RetryPolicy(base=2.0))
        listing = await api.listing(CONTRACTS, PARAMS, deadline=600)
    assert listing.complete and len(listing.items) == 45
    tries = [s.at for s in portal.requests_to("contratos") if s.params["pagina"] == "2"]
    assert len(tries) == 3
    assert tries[1] - tries[0] >= 1.0 and tries[2] - tries[1] >= 2.0  # half of 2 s, then of 4 s, at least


async def test_slow_page_times_out_and_is_asked_again(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal(script={("contratos", 2): ["slow:45"]})
    portal.pages("36000", 3)
    async with running_portal(portal):
        api = client(portal, concurrency=1, retry=RetryPolicy(timeout=10))
        listing = await api.listing(CONTRACTS, PARAMS, deadline=600)
    assert listing.complete and len(listing.items) == 45
    assert page_numbers(portal.requests_to("contratos")).count(2) == 2


async def test_deadline_keeps_what_arrived_and_names_the_missing_pages(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal(always_slow={("contratos", 3): 1000.0})
    portal.pages("36000", 6)
    async with running_portal(portal):
        api = client(portal, concurrency=2, retry=RetryPolicy(timeout=30))
        listing = await api.listing(CONTRACTS, PARAMS, deadline=100)
    assert listing.timed_out and not listing.complete
    assert listing.missing == (3,) and listing.onward is None  # the empty page 7 was seen
    assert listing.received == (1, 2, 4, 5, 6)
    assert listing.describe_missing() == "página 3"
    assert any("prazo" in p for p in listing.problems)


async def test_pages_past_every_retry_are_missing_and_stop_the_listing(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal(script={("contratos", 2): ["500"] * 10})
    portal.pages("36000", 5)
    async with running_portal(portal):
        api = client(portal, concurrency=1, retry=RetryPolicy(attempts=3))
        listing = await api.listing(CONTRACTS, PARAMS, deadline=600)
    assert listing.received == (1,) and listing.missing == (2,) and listing.onward == 3
    assert listing.describe_missing() == "página 2, e da página 3 em diante"
    assert "HTTP 500" in listing.problems[0]


async def test_cache_serves_the_second_listing_and_expires(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal()
    portal.pages("36000", 3)
    cache = MemoryResponseCache()
    async with running_portal(portal):
        first = await client(portal, cache=cache, cache_ttl=3600).listing(CONTRACTS, PARAMS, deadline=600)
        asked = len(portal.seen)
        again = client(portal, cache=cache, cache_ttl=3600)
        second = await again.listing(CONTRACTS, PARAMS, deadline=600)
        assert len(portal.seen) == asked and again.requests == 0 and again.cache_hits >= 4
        assert second.items == first.items
        await trio.sleep(3601)
        await client(portal, cache=cache, cache_ttl=3600).listing(CONTRACTS, PARAMS, deadline=600)
        assert len(portal.seen) > asked  # expired: fetched again


async def test_cancelling_stops_fetching_at_once(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal(always_slow={("contratos", 2): 1000.0})
    portal.pages("36000", 5)
    arrived = trio.Event()

    async def on_page(page: int, items: int, total: int) -> None:
        arrived.set()

    async with running_portal(portal):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                api = client(portal, concurrency=1)
                nursery.start_soon(partial(api.listing, CONTRACTS, PARAMS, deadline=600, on_page=on_page))
                await arrived.wait()
                await trio.sleep(5)  # page 2 is on its way
                cancelled_at = trio.current_time()
                scope.cancel()
        assert trio.current_time() == cancelled_at  # no waiting for the page or a timeout
        asked = len(portal.seen)
        await trio.sleep(120)
        assert len(portal.seen) == asked == 2


async def test_wrong_key_401(autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    portal = FakePortal()
    portal.pages("36000", 2)
    caplog.set_level(logging.DEBUG)
    async with running_portal(portal):
        with pytest.raises(KeyRejected) as raised:
            await client(portal, key="chave-errada-secreta").listing(CONTRACTS, PARAMS, deadline=600)
    assert "recusou a chave da API (HTTP 401)" in raised.value.reason
    assert "chave-errada-secreta" not in raised.value.reason + caplog.text + repr(raised.value)
