"""What a fine-tuned teacher's soft targets say beyond the labels, on each split a task run reads.

Soft cross-entropy teaches the student something hard labels do not only where the teacher's targets
are not one-hot, or disagree with the labels. This prints, per split (train, the selection holdout,
the reported split), the teacher's accuracy against the labels, its mean top probability, the mean
entropy of its targets (nats; ln 2 = 0.693 is uniform over two classes) and the share of targets
with a top probability of at least 0.99, as JSON.

Usage: python scripts/teacher_targets.py [overrides as for python -m distill, e.g. task=sst2
task.data_dir=../shared/data/sst2 runs_root=runs/sst2_full] > results/.../teacher_targets.json
The teacher read is ``teacher.finetuned`` (``runs_root/teacher/<task>/model``); the training split's
logits come from the cache task runs write (``distill.teacher.with_teacher_logits``), or are computed
and cached.
"""

from __future__ import annotations

import json
import sys

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import distill.__main__ as entry
from distill.data import load_task_splits, path_identity, tokenize_task
from distill.evaluation import soft_target_stats
from distill.hf import load_model, load_tokenizer
from distill.teacher import FrozenTeacher, with_teacher_logits


def main(overrides: list[str]) -> dict:
    with initialize_config_dir(entry.CONF, version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", ["stage=task", *overrides]))
    teacher_dir = cfg.teacher.finetuned
    tokenizer = load_tokenizer(teacher_dir, field="teacher.finetuned")
    data = tokenize_task(load_task_splits(cfg.task), cfg.task, tokenizer)
    teacher = FrozenTeacher(load_model(teacher_dir, head="sequence_classification", trained_head=True,
                                       field="teacher.finetuned"))
    names = {"train": "train (the teacher trained on it)", "select": "selection holdout (never trained on)",
             "report": "reported split (never trained on)"}
    out = {"teacher": teacher_dir}
    for split, name in names.items():
        ds = with_teacher_logits(data[split], teacher, tokenizer, path_identity(teacher_dir), cfg.train.eval_batch_size)
        out[name] = soft_target_stats(torch.tensor(ds["teacher_logits"]), torch.tensor(ds["labels"]))
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
