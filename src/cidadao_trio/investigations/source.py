"""Where an investigation's contracts come from when they are fetched as it runs.

Without a source the engine investigates the dataset it loaded at start (the bundled
sample or ``--dataset``). With one (the Portal da Transparência's API,
``portal_source.PortalContractSource``) each investigation asks it for its scope's
contracts during ``data_retrieval``, and the source reports progress as they arrive.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from .analysis import Finding
from .model import Contract
from .scope import Filters

__all__ = ["ContractSource", "Progress", "Retrieval", "RetrievalFailed"]


class Progress(Protocol):
    """Told as data arrives: a Portuguese message, how far along (0..1), contracts so far."""

    async def __call__(self, message: str, fraction: float, received: int) -> None: ...


@attrs.frozen
class Retrieval:
    """The contracts of a scope, where they came from, and what the report must say of them."""

    contracts: tuple[Contract, ...]
    origin: str  # "api": fetched from the Portal da Transparência while investigating
    message: str  # Portuguese: what was fetched, for the last data_retrieval event
    findings: tuple[Finding, ...] = ()  # e.g. which pages are missing: goes into the report


class RetrievalFailed(Exception):
    """The scope's contracts cannot be had; ``reason`` (Portuguese) goes to the citizen."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ContractSource(Protocol):
    async def retrieve(self, scope: Filters, progress: Progress) -> Retrieval:
        """The contracts of ``scope``, or :class:`RetrievalFailed`. Cancellable at once."""
