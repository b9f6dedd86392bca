"""A table of every finished run under a runs root: ``python -m distill.summarize runs``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def speedup(figures: dict | None) -> str:
    if not figures:
        return "-"
    return " / ".join(f"{figures[k]:.2f}x" for k in ("torch_batch1", "torch_batch32") if figures.get(k))


def main(root: str) -> None:
    rows = []
    for path in sorted(Path(root).rglob("metrics.json")):
        m = json.loads(path.read_text())
        evals = m.get("eval", {})
        fmt = lambda e: ", ".join(f"{k} {100 * v:.2f}" for k, v in (e or {}).items()) or "-"  # noqa: E731
        rows.append((
            m["stage"], m["task"] if m["stage"] != "general" else "-",
            m.get("student") or "(teacher)",
            f"{m['params']['total'] / 1e6:.2f}M / {m['params']['unique'] / 1e6:.2f}M",
            str(m["steps"]), f"{m['train_seconds']:.0f}s", f"{m['train_examples_per_second']:.1f}",
            evals.get("reported_on", "dev"), fmt(evals.get("student")), fmt(evals.get("teacher")), speedup(m.get("speedup")),
        ))
    # scores on the split that chose nothing (metrics.json: eval.reported_on; selection used eval.selected_on)
    header = ("stage", "task", "model", "params total/unique", "steps", "time", "ex/s", "held-out split", "student",
              "teacher", "CPU speed-up b1/b32")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs")
