"""How well Zumbi's detectors find the anomalies planted in the synthetic sample, and how fast.

Run from the repository root: ``python -m benchmarks.detectors [--seed 2026] [--size 5000]``.
A detected anomaly is a true positive when its contract ids overlap those of a planted
anomaly of the same type; recall counts the planted cases that some detection matched.
Prints a Markdown table and writes ``benchmarks/results/detectors.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cidadao_trio.investigations.detectors import ALL_DETECTORS, Detector
from cidadao_trio.investigations.model import Anomaly, Contract, PlantedAnomaly

RESULTS = Path(__file__).resolve().parent / "results"
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
        "precision": round(true_positives / len(mine), 4) if mine else None,
        "recall": round(matched / len(truth), 4) if truth else None,
    }


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def markdown(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Detectors on `generate_sample(seed={meta['seed']}, size={meta['size']})` "
        f"({meta['contracts']} contracts, {meta['planted']} planted anomalies, "
        f"Python {meta['python']}).",
        "",
        "| anomaly type | planted | detected | TP | precision | recall | runtime (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['anomaly_type']} | {r['planted']} | {r['detected']} | {r['true_positives']} "
            f"| {_fmt(r['precision'])} | {_fmt(r['recall'])} | {r['runtime_ms']:.1f} |"
        )
    total = sum(r["runtime_ms"] for r in rows)
    lines.append(f"| **all** | | | | | | {total:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    try:
        from cidadao_trio.investigations.sample import generate_sample
    except ImportError as exc:
        print(f"sample generator unavailable: {exc}", file=sys.stderr)
        return 1

    sample = generate_sample(seed=args.seed, size=args.size)
    contracts, planted = list(sample.contracts), list(sample.planted)
    rows = []
    for detector in ALL_DETECTORS:
        found, ms = _time(detector, contracts)
        rows.append({**score(_type_of(detector), found, planted), "detector": detector.__name__,
                     "runtime_ms": round(ms, 2)})  # fmt: skip
    meta = {
        "seed": args.seed,
        "size": args.size,
        "contracts": len(contracts),
        "planted": len(planted),
        "python": platform.python_version(),
        "repeats": REPEATS,
    }
    table = markdown(rows, meta)
    print(table, end="")
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "detectors.json").write_text(
            json.dumps({"meta": meta, "results": rows}, indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        (RESULTS / "detectors.md").write_text(table, encoding="utf-8")
    return 0


def _type_of(detector: Detector) -> str:
    """The anomaly type a detector emits: its name without ``detect_`` (one is plural)."""
    name = detector.__name__.removeprefix("detect_")
    return {"duplicate_contracts": "duplicate_contract"}.get(name, name)


if __name__ == "__main__":
    raise SystemExit(main())
