"""PNG plot of the fan-out sweep: p99 latency and throughput against subscriber count."""

from __future__ import annotations

import json
from pathlib import Path

from .scenarios import RESULTS, fanout_medians

STYLE = {
    ("ours", 0): ("ours", "tab:blue", "-"),
    ("ours", 1): ("ours batch=1", "tab:blue", "--"),
    ("reference", 0): ("reference (FastAPI+uvicorn)", "tab:orange", "-"),
    ("floor", 0): ("floor (bare trio-websocket)", "tab:gray", "-"),
    ("floor", 1): ("floor batch=1", "tab:gray", "--"),
}


def plot_fanout(raw_path: Path = RESULTS / "fanout-raw.json", out: Path = RESULTS / "fanout.png") -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (use benchmarks/.venv-bench): no plot")
        return None
    raw = json.loads(raw_path.read_text())["rows"]
    medians = fanout_medians(raw)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (kind, batch), (label, color, dash) in STYLE.items():
        points = sorted((n, m) for (k, n, b), m in medians.items() if k == kind and b == batch)
        if not points:
            continue
        xs = [n for n, _ in points]
        left.plot(xs, [m["paced_p99_ms"] for _, m in points], dash, color=color, marker="o", label=label)
        right.plot(xs, [m["burst_msgs_per_s"] for _, m in points], dash, color=color, marker="o", label=label)
    rate = raw[0]["paced_rate"] if raw else 0
    left.set(title=f"p99 latency, paced {rate:g} events/s", xlabel="subscribers", ylabel="ms (log)", yscale="log")
    right.set(title="burst throughput", xlabel="subscribers", ylabel="messages delivered / s")
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    plot_fanout()
