"""How well Zumbi's detectors find planted anomalies, on two sets, and how fast.

The bundled sample (``sample.py``) and an independent set written in the portal's real
formats (``benchmarks/realistic.py``, full of legitimately unusual cases that must stay
quiet). Per type: precision, recall and anomalies per 1,000 contracts; then one ministry of
50,000 contracts for time and memory (``--big 0`` skips it).

Run from the repository root: ``python -m benchmarks.detectors [--seed 2026] [--size 5000]``.
A detected anomaly is a true positive when its contract ids overlap those of a planted
anomaly of the same type; recall counts the planted cases that some detection matched.
Prints a Markdown table and writes ``benchmarks/results/detectors.{json,md}`` (``report``).
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

from cidadao_trio.investigations.detectors import ALL_DETECTORS, Detector
from cidadao_trio.investigations.model import Anomaly, Contract, PlantedAnomaly
from cidadao_trio.investigations.sample import generate_sample

from .realistic import generate_realistic
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


def _rows(name: str, contracts: Sequence[Contract], planted: Sequence[PlantedAnomaly]) -> list[dict[str, Any]]:
    rows = []
    for detector in ALL_DETECTORS:
        found, ms = _time(detector, contracts)
        row = score(_type_of(detector), found, planted)
        rows.append({"set": name, **row,
                     "per_1000": round(1000 * row["detected"] / max(1, len(contracts)), 2),
                     "runtime_ms": round(ms, 2)})  # fmt: skip
    return rows


def _big(size: int) -> dict[str, Any]:
    """One ministry with ``size`` contracts: wall time and peak traced memory of all six."""
    data = generate_realistic(seed=7, size=size, ministries=1, planted=False).contracts
    tracemalloc.start()
    start = time.perf_counter()
    found = sum(len(detector(data)) for detector in ALL_DETECTORS)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"set": f"one ministry, {len(data)} contracts", "anomaly_type": "all six",
            "planted": 0, "detected": found, "true_positives": "", "matched_planted": "",
            "precision": "", "recall": "", "per_1000": round(1000 * found / len(data), 2),
            "runtime_ms": round(seconds * 1000, 1), "peak_traced_mb": round(peak / 2**20, 1)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--big", type=int, default=50_000, help="contracts of the one-ministry run")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)

    sample = generate_sample(seed=args.seed, size=args.size)
    realistic = generate_realistic(seed=args.seed, size=args.size)
    rows = _rows("sample", sample.contracts, sample.planted)
    rows += _rows("realistic", realistic.contracts, realistic.planted)
    for row in rows:
        row["peak_traced_mb"] = ""
    if args.big:
        rows.append(_big(args.big))
    note = (
        f"Detectors on generate_sample(seed={args.seed}, size={args.size}) "
        f"({len(sample.contracts)} contracts, {len(sample.planted)} planted) and on "
        f"benchmarks.realistic.generate_realistic(seed={args.seed}, size={args.size}) "
        f"({len(realistic.contracts)} contracts in the portal's zip format, "
        f"{len(realistic.planted)} planted, read back with portal.load_dataset). A detection "
        "is a true positive when its contracts overlap a planted case of its type. Runtime "
        f"is the median of {REPEATS} runs; the last row is one run over one ministry, with "
        "the peak memory tracemalloc saw during detection."
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
