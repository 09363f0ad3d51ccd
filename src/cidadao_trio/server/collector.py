"""Garbage collection paced by the server, not by allocation counts (issue 14).

With CPython's own policy a full collection walks every object of every open connection
(~250 each): at 10,000 connections that is a pause of a second or more, and it came in the
middle of the connection ramp. Here:

- Automatic collections stay young only (gen 0 and 1, small and frequent: a few ms).
- After young collections promoted something, the collector's task *sweeps*: it freezes
  every tracked object (``gc.freeze``, no walk), so no later young collection walks what
  survived, and an open connection's objects are not walked again until the next thaw.
- Garbage among frozen objects (a long-lived connection that closed, its cycles) is
  reclaimed by a *thaw*: ``gc.unfreeze``, a full collection, a freeze. It costs a pause
  proportional to everything alive, so it runs when the server is quiet (for
  ``quiet_seconds`` nothing accepted, under a hundred frames sent, few promotions: a
  burst that starts after a quiet spell is not paused by it) and the frozen set grew by
  ``thaw_growth`` since the last thaw (CPython's own 25 % rule, which keeps the work
  amortised), or, under load that never pauses, once it grew by ``forced_growth`` of it
  and by at least ``forced_floor`` objects: memory stays bounded either way.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

log = logging.getLogger(__name__)

NEVER = 2**31 - 1  # a generation-2 threshold that is never reached


@attrs.define(eq=False)
class QuietCollector:
    young: int = 700  # allocations (net) before a generation-0 collection (CPython's default)
    middle: int = 10  # generation-0 collections before a generation-1 one
    check_interval: float = 0.25  # seconds between looks at what the collector promoted
    activity: Callable[[], int] | None = None  # grows with the server's work (``Server.activity``)
    quiet_seconds: float = 5.0  # a window with no activity and few promotions is quiet ...
    quiet_promotions: float = 3.0  # ... at most this many gen-1 collections a second (idle
    # heartbeats at 10,000 connections cause ~2 a second; a connection ramp 5-8)
    thaw_growth: float = 0.25  # a quiet thaw once the frozen set grew this much
    forced_growth: float = 1.0  # a thaw even under load once it grew this much ...
    forced_floor: int = 4_000_000  # ... and by at least this many objects
    sweeps: int = attrs.field(default=0, init=False)
    thaws: int = attrs.field(default=0, init=False)
    thawing: bool = attrs.field(default=False, init=False)  # for gc.callbacks that time pauses
    _collecting: bool = attrs.field(default=False, init=False)  # a sweep or thaw of ours
    longest_thaw: float = attrs.field(default=0.0, init=False)  # seconds
    _promotions: int = attrs.field(default=0, init=False)  # gen-1 collections not yet swept
    _frozen: int = attrs.field(default=0, init=False)  # objects frozen at the last thaw
    _grown: int = attrs.field(default=0, init=False)  # objects frozen by sweeps since then

    def install(self) -> None:
        """Take over from CPython's thresholds (call once start-up objects are frozen)."""
        gc.set_threshold(self.young, self.middle, NEVER)
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)
        self._frozen = gc.get_freeze_count()

    def uninstall(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep and thaw for as long as the server runs (start it in a nursery)."""
        self.install()
        task_status.started()
        try:
            window_start, promoted, seen = trio.current_time(), 0, self._activity()
            while True:
                await trio.sleep(self.check_interval)
                now = trio.current_time()
                if self._promotions:
                    promoted += self._promotions
                    self.sweep()
                if (current := self._activity()) != seen:
                    window_start, promoted, seen = now, 0, current
                elif now - window_start >= self.quiet_seconds:
                    quiet = promoted <= self.quiet_promotions * (now - window_start)
                    window_start, promoted = now, 0
                    if self._thaw_due(quiet=quiet):
                        self.thaw()
                        continue
                if self._thaw_due(quiet=False):
                    self.thaw()
        finally:
            self.uninstall()

    def _activity(self) -> int:
        return self.activity() if self.activity is not None else 0

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info.get("generation", 0) >= 1 and not self._collecting:
            self._promotions += 1

    def _thaw_due(self, *, quiet: bool) -> bool:
        grown, base = self._grown, self._frozen
        if grown <= 0:
            return False
        if quiet and grown >= self.thaw_growth * base:
            return True
        return grown >= max(self.forced_growth * base, self.forced_floor)

    def sweep(self) -> None:
        """Freeze what young collections promoted, so that no later collection walks it."""
        self._promotions = 0
        self._grown += sum(len(gc.get_objects(generation)) for generation in (0, 1, 2))
        gc.freeze()  # no walk at all: whatever garbage this froze waits for the next thaw
        self.sweeps += 1

    def thaw(self) -> None:
        """A full collection of everything, frozen included; then everything alive is frozen."""
        began = time.perf_counter()
        self.thawing = self._collecting = True
        try:
            gc.unfreeze()
            freed = gc.collect()
            gc.freeze()
        finally:
            self.thawing = self._collecting = False
        self._promotions = 0
        self._frozen, self._grown = gc.get_freeze_count(), 0
        self.thaws += 1
        took = time.perf_counter() - began
        self.longest_thaw = max(self.longest_thaw, took)
        log.debug("gc thaw: %d objects freed, %d kept, %.0f ms", freed, self._frozen, took * 1000)


def tune_garbage_collector(nursery: trio.Nursery, activity: Callable[[], int] | None = None) -> QuietCollector:
    """Freeze what start-up built (modules, the dataset: never garbage) and hand the
    collections to a :class:`QuietCollector` running in ``nursery``; ``activity`` is a
    counter of the server's work (``Server.activity``: accepts, frames by the hundred)."""
    gc.collect()
    gc.freeze()
    collector = QuietCollector(activity=activity)
    collector.install()
    nursery.start_soon(collector.run)
    return collector
