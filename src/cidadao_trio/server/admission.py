"""Who may hold a connection: per-principal caps and the per-address pre-auth cap (§6, §7).

Plain counters with no I/O, shared by every connection of one server. A connection asks
before it waits for a first ``auth`` message (so silent sockets from one address cannot
fill the server) and whenever its principal is settled or changes (so a late ``auth``
cannot bypass the per-principal cap).
"""

from __future__ import annotations

from collections import Counter

import attrs


@attrs.define(eq=False)
class Admission:
    max_per_principal: int
    max_pending_per_address: int
    _principals: Counter[str] = attrs.field(factory=Counter, init=False)
    _pending: Counter[str] = attrs.field(factory=Counter, init=False)

    def begin_pending(self, address: str) -> bool:
        """Count a connection still settling its principal; False past the address cap."""
        if self._pending[address] >= self.max_pending_per_address:
            return False
        self._pending[address] += 1
        return True

    def end_pending(self, address: str) -> None:
        _decrement(self._pending, address)

    def take(self, key: str) -> bool:
        """Count one more connection of ``key``; False (and nothing counted) past the cap."""
        if self._principals[key] >= self.max_per_principal:
            return False
        self._principals[key] += 1
        return True

    def move(self, old: str | None, new: str) -> bool:
        """A connection changes principal: count it under ``new`` or keep it under ``old``."""
        if old == new:
            return True
        if not self.take(new):
            return False
        if old is not None:
            self.release(old)
        return True

    def release(self, key: str) -> None:
        _decrement(self._principals, key)

    def connections_of(self, key: str) -> int:
        return self._principals[key]


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
