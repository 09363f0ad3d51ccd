"""Which contracts the server investigates: a Portal da Transparência file, or the sample.

What was loaded travels with the contracts (``Dataset.origin``), so every answer and report
can say plainly when the data is the bundled synthetic sample and not real spending.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from .model import Contract, DataOrigin
from .portal import load_dataset
from .sample import load_default_sample

log = logging.getLogger(__name__)

__all__ = ["Dataset", "data_origin", "load_contracts"]


class Dataset(tuple[Contract, ...]):
    """The contracts, plus where they came from ("sample", "file" or "memory")."""

    origin: DataOrigin

    def __new__(cls, contracts: Iterable[Contract], origin: DataOrigin) -> Dataset:
        self = super().__new__(cls, contracts)
        self.origin = origin
        return self


def data_origin(contracts: Sequence[Contract]) -> DataOrigin:
    """Where a dataset came from; a plain sequence was handed in memory by the caller."""
    return contracts.origin if isinstance(contracts, Dataset) else "memory"


def load_contracts(path: str = "") -> Dataset:
    """Blocking (run it in a thread). Bad rows are logged with their line and skipped."""
    if not path:
        log.info("no --dataset given: investigating the bundled SYNTHETIC sample, not real data")
        return Dataset(load_default_sample().contracts, "sample")
    result = load_dataset(path)
    for problem in result.problems:
        log.warning("%s:%d: skipped: %s", path, problem.line, problem.message)
    log.info("loaded %d contracts from %s", len(result.contracts), path)
    return Dataset(result.contracts, "file")
