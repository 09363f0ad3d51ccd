"""Typing-indicator debounce: at most one relayed indicator per connection per interval."""

from __future__ import annotations

import attrs


@attrs.define
class TypingDebounce:
    interval: float = 1.0
    _last: float | None = None

    def allow(self, now: float) -> bool:
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True
