"""Write benchmark results as JSON and a Markdown table, and print the table."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def publish(name: str, rows: Sequence[Mapping[str, Any]], note: str = "") -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "note": note}
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=2))
    table = markdown_table(rows)
    (RESULTS / f"{name}.md").write_text(f"# {name}\n\n{note}\n\n{table}\n")
    print(table)
    return table
