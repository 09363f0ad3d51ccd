"""Which contracts the server investigates: a Portal da Transparência file, or the sample."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .model import Contract
from .portal import load_dataset
from .sample import load_default_sample

log = logging.getLogger(__name__)


def load_contracts(path: str = "") -> Sequence[Contract]:
    """Blocking (run it in a thread). Bad rows are logged with their line and skipped."""
    if not path:
        return load_default_sample().contracts
    result = load_dataset(path)
    for problem in result.problems:
        log.warning("%s:%d: skipped: %s", path, problem.line, problem.message)
    log.info("loaded %d contracts from %s", len(result.contracts), path)
    return result.contracts
