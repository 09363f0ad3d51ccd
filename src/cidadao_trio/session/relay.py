"""Relaying an agent's reply into the session stream, chunk by chunk.

A rule-based reply already comes in readable word groups and is published as it is. A
model's reply (``token_stream``) arrives as tiny deltas: they are merged into pieces of a
few words, or whatever came within ``linger`` seconds, and the upstream is read by its own
task so a slow store commit (or anything behind ``publish``) never slows the read. When
the turn is cancelled or ``publish`` fails, the reply's iterator is closed at once, which
closes the model's HTTP stream.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import trio

from ..agents.base import AgentReply

__all__ = ["LINGER", "MIN_WORDS", "relay"]

LINGER = 0.05  # seconds a piece waits for more deltas
MIN_WORDS = 3  # a piece with this many complete words goes out at once
_WORD_END = re.compile(r"\S\s")

Publish = Callable[[str], Awaitable[None]]


async def relay(reply: AgentReply, publish: Publish, *, linger: float = LINGER, min_words: int = MIN_WORDS) -> None:
    """Publish every chunk of ``reply`` (merged when it is a token stream)."""
    iterator = aiter(reply)
    if not getattr(reply, "token_stream", False):
        async with _closing(iterator):
            async for chunk in iterator:
                await publish(chunk)
        return
    await _Merger(linger, min_words).run(iterator, publish)


def _closing(iterator: AsyncIterator[str]) -> Any:
    """Close a generator when the turn ends, not when it is garbage collected."""
    return aclosing(iterator) if hasattr(iterator, "aclose") else _Nothing()


class _Nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Merger:
    """Deltas in, pieces out; the reading task never waits for the publishing one."""

    def __init__(self, linger: float, min_words: int) -> None:
        self.linger = linger
        self.min_words = min_words
        self.pending: list[str] = []
        self.ended = False
        self.failure: BaseException | None = None
        self._changed = trio.Event()

    def _push(self, delta: str) -> None:
        self.pending.append(delta)
        self._changed.set()

    def _end(self) -> None:
        self.ended = True
        self._changed.set()

    def _ready(self) -> bool:
        return len(_WORD_END.findall("".join(self.pending))) >= self.min_words

    async def _changes(self) -> None:
        await self._changed.wait()
        self._changed = trio.Event()

    async def run(self, iterator: AsyncIterator[str], publish: Publish) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, iterator, nursery.cancel_scope)
            nursery.start_soon(self._write, publish, nursery.cancel_scope)
        if self.failure is not None:
            raise self.failure

    async def _read(self, iterator: AsyncIterator[str], scope: trio.CancelScope) -> None:
        try:
            async with _closing(iterator):
                async for delta in iterator:
                    if delta:
                        self._push(delta)
        except Exception as failure:  # the writer publishes nothing more; the turn fails
            self.failure = failure
            scope.cancel()
        finally:
            self._end()

    async def _write(self, publish: Publish, scope: trio.CancelScope) -> None:
        try:
            while True:
                while not self.pending and not self.ended:
                    await self._changes()
                if not self.pending:
                    return
                with trio.move_on_after(self.linger):
                    while not self._ready() and not self.ended:
                        await self._changes()
                piece, self.pending = "".join(self.pending), []
                await publish(piece)
        except Exception as failure:  # a store refusal: stop reading the model at once
            self.failure = failure
            scope.cancel()
