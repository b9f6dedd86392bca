"""Memory stays flat over a long run: 1,000 tiny training steps, RSS printed at intervals.

    python scripts/bench_memory.py [--steps 1000] [--every 100]

Runs the real task stage (both phases) on a tiny random teacher and student and
tiny data written to a temporary directory, then prints the resident memory
the trainer logged every ``--every`` steps, and the growth from the first
logged point after warm-up to the last.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from distill.config import compose_config
from distill.stages import run
from distill.testing import write_tiny_teacher, write_tiny_tsv

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps per phase")
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp(prefix="distill-mem-"))
    (root / "data").mkdir()
    write_tiny_tsv(root / "data" / "train.tsv", 512, 0)
    write_tiny_tsv(root / "data" / "dev.tsv", 64, 1)
    write_tiny_teacher(root / "teacher", head="sequence_classification")
    overrides = [
        "stage=task", "task=sst2", f"task.data_dir={root / 'data'}", f"teacher.finetuned={root / 'teacher'}",
        f"runs_root={root / 'runs'}", "student.num_layers=2", "student.hidden_size=32", "student.embedding_size=16",
        "student.num_heads=4", "student.intermediate_size=37", "student.max_position_embeddings=64",
        "train.batch_size=16", f"stage.phases.0.max_steps={args.steps}", f"stage.phases.1.max_steps={args.steps}",
        f"train.log_every={args.every}",
        "train.checkpoint_every=250", "stage.phases.1.eval_every=250", "train.progress=false",
    ]
    run(compose_config(overrides))
    records = [json.loads(line) for line in next((root / "runs").rglob("log.jsonl")).read_text().splitlines()]
    series = [(r["phase"], r["step"], r["rss_mb"]) for r in records if "rss_mb" in r]
    print(f"{'phase':<14}{'step':>6}{'RSS MiB':>10}")
    for phase, step, rss in series:
        print(f"{phase:<14}{step:>6}{rss:>10.1f}")
    warm = series[1][2]  # after the first interval: allocator pools and caches are filled
    print(f"growth from step {series[1][1]} of '{series[1][0]}' to the end: {series[-1][2] - warm:+.1f} MiB "
          f"over {2 * args.steps - series[1][1]} steps")


if __name__ == "__main__":
    main()
