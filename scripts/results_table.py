"""Markdown table of every task run under a runs root, from the runs' own metrics.json files.

    python scripts/results_table.py runs/sst2_compare        # prints it and writes runs/sst2_compare/results.md

Rows: the student's score on the selection split (compare recipes on this one), held-out accuracy of
student and teacher (the split that chose nothing, as metrics.json says), the
student's share of the teacher, its measured CPU speed-up, steps and training time. Runs whose directory
names differ only by a `_seed<N>` suffix are also averaged.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path


def rows(root: Path) -> list[dict]:
    out = []
    for path in sorted(root.rglob("metrics.json")):
        m = json.loads(path.read_text())
        if m.get("stage") != "task":
            continue
        e, metric = m["eval"], next(iter(m["eval"]["student"]))
        phases = "; ".join(f"{name}: " + "+".join(k for k, v in p["losses"].items() if k != "loss")
                           for name, p in m["phases"].items())
        out.append({
            "run": str(path.parent.relative_to(root)), "student": m["student"], "phases": phases,
            "init": m.get("student_init"), "steps": m["steps"], "seconds": m["train_seconds"],
            "split": f"{e['reported_on']} (picked on {e['selected_on']})", "metric": metric,
            "student_score": e["student"][metric], "teacher_score": e["teacher"][metric],
            "student_select": e["student_select"][metric],
            "speedup": m.get("speedup") or {},
        })
    return out


def main(root: str) -> str:
    found = rows(Path(root))
    # 'student (select)' is the score on the selection split: compare recipes on it, not on the held-out one
    lines = ["| run | student | losses | steps | train time | held-out split | student (select) | student | teacher | "
             "% of teacher | speed-up b1 / b32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in found:
        speed = " / ".join(f"{r['speedup'][k]:.2f}x" for k in ("torch_batch1", "torch_batch32") if k in r["speedup"]) or "-"
        lines.append(f"| {r['run']} | {r['student']} | {r['phases']} | {r['steps']} | {r['seconds']:.0f} s | {r['split']} | "
                     f"{100 * r['student_select']:.2f} | "
                     f"{100 * r['student_score']:.2f} | {100 * r['teacher_score']:.2f} | "
                     f"{100 * r['student_score'] / r['teacher_score']:.1f}% | {speed} |")
    groups = defaultdict(list)
    for r in found:
        groups[re.sub(r"_seed\d+$", "", r["run"])].append(r)
    seeded = {k: v for k, v in groups.items() if len(v) > 1}
    if seeded:
        lines += ["", "| runs (mean over seeds) | n | student | teacher | % of teacher |", "|---|---|---|---|---|"]
        for name, group in seeded.items():
            s = sum(r["student_score"] for r in group) / len(group)
            t = sum(r["teacher_score"] for r in group) / len(group)
            each = ", ".join(f"{100 * r['student_score']:.2f}" for r in group)
            lines.append(f"| {name} | {len(group)} | {100 * s:.2f} ({each}) | {100 * t:.2f} | {100 * s / t:.1f}% |")
    text = "\n".join(lines) + "\n"
    (Path(root) / "results.md").write_text(text)
    return text


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "runs"), end="")
