"""stage=augment: build (or finish) the augmented training split ahead of the task stage.

``python -m distill stage=task augment.enabled=true`` with the same task and ``augment.*``
settings then reads it from the cache. Prints where it lives and what it holds.
"""

from __future__ import annotations

import torch

from distill.augment import augment_train
from distill.checks import check
from distill.data import load_task_splits
from distill.files import write_json


def run(cfg) -> dict:
    check(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    train = load_task_splits(cfg.task)["train"]  # the split the task stage trains on (selection holdout removed)
    result = augment_train(train, cfg.task, cfg.augment, progress=cfg.train.progress)
    write_json(result.directory / "stats.json", result.stats)
    s = result.stats
    speed = f", {s['examples_per_second']} examples/s" if s["examples_per_second"] else " (all from the cache)"
    print(f"augmented {s['examples']:,} examples into {s['rows']:,} rows "
          f"({s['variants_per_example']:.1f} variants each){speed}: {result.directory}")
    return s
