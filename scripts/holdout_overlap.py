"""How held out is a task's selection holdout: held-out texts that occur inside a training text, or contain one.

Checked by brute force (every held-out text against every training text, as lower-cased whitespace-separated
words), independently of how distill.data drew the holdout, for both ``task.select_holdout_by`` settings.

    python scripts/holdout_overlap.py task=sst2 task.data_dir=$SST2 --json results/sst2_holdout/overlap.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from distill.config import compose_config
from distill.data import task_splits_and_plan


def overlap(held: list[str], train: list[str]) -> dict:
    pad = lambda t: f" {' '.join(t.lower().split())} "  # noqa: E731
    held_p, train_p = [pad(t) for t in held], [pad(t) for t in train]
    inside = sum(any(h in t for t in train_p) for h in held_p)
    containing = sum(any(t in h for t in train_p) for h in held_p)
    either = sum(any(h in t or t in h for t in train_p) for h in held_p)
    return {"held_out": len(held), "inside_a_training_text": inside, "containing_a_training_text": containing,
            "overlapping_either_way": either}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--json")
    args = parser.parse_args()
    cfg = compose_config(args.overrides)
    out = {}
    for by in ("row", "containment"):
        task = dataclasses.replace(cfg.task, select_holdout_by=by)
        started = time.perf_counter()
        splits, plan = task_splits_and_plan(task)
        seconds = time.perf_counter() - started
        field = task.text_field
        out[by] = {**plan["holdout"], "train_rows": len(splits["train"]), "split_seconds": round(seconds, 1),
                   **overlap(splits["select"][field], splits["train"][field])}
        print(by, json.dumps(out[by]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"overrides": args.overrides, **out}, f, indent=2)


if __name__ == "__main__":
    main()
