"""What a fine-tuned teacher's soft targets say beyond the labels, on each split a task run reads.

Soft cross-entropy teaches the student something hard labels do not only where the teacher's targets
are not one-hot, or disagree with the labels. This prints, per split (train, the selection holdout,
the reported split), the teacher's accuracy against the labels, its mean top probability, the mean
entropy of its targets (nats; ln 2 = 0.693 is uniform over two classes) and the share of targets
with a top probability of at least 0.99, as JSON.

Usage: python scripts/teacher_targets.py [overrides as for python -m distill, e.g. task=sst2
task.data_dir=$SST2 runs_root=runs/sst2_full] > results/.../teacher_targets.json
The teacher read is ``teacher.finetuned`` (``runs_root/teacher/<task>/model``); it runs once over each split.
"""

from __future__ import annotations

import json
import sys

from distill.config import compose_config
from distill.data import eval_loader, load_task_splits, tokenize_task
from distill.evaluation import predict, soft_target_stats
from distill.hf import load_model, load_tokenizer


def main(overrides: list[str]) -> dict:
    cfg = compose_config(["stage=task", *overrides])
    teacher_dir = cfg.teacher.finetuned
    tokenizer = load_tokenizer(teacher_dir, field="teacher.finetuned")
    data = tokenize_task(load_task_splits(cfg.task), cfg.task, tokenizer)
    teacher = load_model(teacher_dir, head="sequence_classification", trained_head=True, field="teacher.finetuned")
    names = {"train": "train (the teacher trained on it)", "select": "selection holdout (never trained on)",
             "report": "reported split (never trained on)"}
    out = {"teacher": teacher_dir}
    for split, name in names.items():
        logits, labels = predict(teacher, eval_loader(data[split], tokenizer, cfg.train.eval_batch_size))
        out[name] = soft_target_stats(logits, labels)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
