"""How well Zumbi's detectors find the anomalies planted in the synthetic sample, and how fast.

Run from the repository root: ``python -m benchmarks.detectors [--seed 2026] [--size 5000]``.
A detected anomaly is a true positive when its contract ids overlap those of a planted
anomaly of the same type; recall counts the planted cases that some detection matched.
Prints a Markdown table and writes ``benchmarks/results/detectors.{json,md}`` (``report``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

from cidadao_trio.investigations.detectors import ALL_DETECTORS, Detector
from cidadao_trio.investigations.model import Anomaly, Contract, PlantedAnomaly
from cidadao_trio.investigations.sample import generate_sample

from .report import markdown_table, publish

REPEATS = 5  # runtime is the median of this many runs


def _time(detector: Detector, contracts: Sequence[Contract]) -> tuple[list[Anomaly], float]:
    """Run ``detector`` a few times; its (deterministic) output and median wall time in ms."""
    runs = []
    found: list[Anomaly] = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        found = detector(contracts)
        runs.append((time.perf_counter() - start) * 1000)
    return found, statistics.median(runs)


def score(
    anomaly_type: str, found: Sequence[Anomaly], planted: Sequence[PlantedAnomaly]
) -> dict[str, Any]:
    """Precision and recall of ``found`` against the planted cases of ``anomaly_type``."""
    truth = [set(p.contract_ids) for p in planted if p.anomaly_type == anomaly_type]
    mine = [set(a.contract_ids) for a in found if a.anomaly_type == anomaly_type]
    true_positives = sum(1 for ids in mine if any(ids & t for t in truth))
    matched = sum(1 for t in truth if any(ids & t for ids in mine))
    return {
        "anomaly_type": anomaly_type,
        "planted": len(truth),
        "detected": len(mine),
        "true_positives": true_positives,
        "matched_planted": matched,
        "precision": round(true_positives / len(mine), 3) if mine else "n/a",
        "recall": round(matched / len(truth), 3) if truth else "n/a",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)

    sample = generate_sample(seed=args.seed, size=args.size)
    contracts, planted = list(sample.contracts), list(sample.planted)
    rows = []
    for detector in ALL_DETECTORS:
        found, ms = _time(detector, contracts)
        rows.append({**score(_type_of(detector), found, planted), "runtime_ms": round(ms, 2)})
    total_ms = sum(r["runtime_ms"] for r in rows)
    note = (
        f"Detectors on generate_sample(seed={args.seed}, size={args.size}): {len(contracts)} "
        f"contracts, {len(planted)} planted anomalies; runtime is the median of {REPEATS} "
        f"runs, {total_ms:.1f} ms for all six."
    )
    if args.no_write:
        print(note, markdown_table(rows), sep="\n\n")
    else:
        publish("detectors", rows, note)
    return 0


def _type_of(detector: Detector) -> str:
    """The anomaly type a detector emits: its name without ``detect_`` (one is plural)."""
    name = detector.__name__.removeprefix("detect_")
    return {"duplicate_contracts": "duplicate_contract"}.get(name, name)


if __name__ == "__main__":
    raise SystemExit(main())
