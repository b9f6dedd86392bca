"""stage=eval: score a saved classifier on the task's splits and on extra labelled files.

``python -m distill stage=eval model=<model dir> task=<task> [eval.splits=[dev,test]] [eval.files=[a.tsv,b.jsonl]]``

Reads the model directory alone (no run directory, no projection heads; a mean-pooled student loads
its own small model file). Each split or file is tokenized with the model's tokenizer, batched with
dynamic padding and scored with the task's metrics; ``<run_dir>/eval.json`` holds, per split and
file, the metrics, the example count and examples/s.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from datasets import DatasetDict

from distill.checks import check
from distill.data import eval_loader, evaluation_plan, load_labelled_file, load_task, tokenize_task
from distill.errors import ConfigError
from distill.evaluation import evaluate
from distill.hf import load_classifier
from distill.files import write_json


def run(cfg) -> dict:
    check(cfg)
    task, run_dir = cfg.task, Path(cfg.run_dir)
    out = run_dir / "eval.json"
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"{out} exists; pass overwrite=true to replace it or run_dir=<another path> to keep it")
    # data first: a malformed file fails before the model is loaded
    splits = cfg.eval.splits or [evaluation_plan(task)["report"]]
    task_data = load_task(task)
    data = {split: task_data[split] for split in splits}
    data |= {f"file:{name}": load_labelled_file(name, task) for name in cfg.eval.files}
    model, tokenizer = load_classifier(cfg.model, attn_implementation=None)
    if model.config.num_labels != task.num_labels:
        raise ConfigError(f"model={cfg.model} has {model.config.num_labels} labels but task '{task.name}' has "
                          f"{task.num_labels}; evaluate it on the task it was trained for")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    tokenized = tokenize_task(DatasetDict(data), task, tokenizer)
    results = {}
    for name, ds in tokenized.items():
        started = time.perf_counter()
        metrics = evaluate(model, eval_loader(ds, tokenizer, cfg.train.eval_batch_size), task.metrics)
        seconds = time.perf_counter() - started
        results[name] = {**metrics, "examples": len(ds), "examples_per_second": len(ds) / seconds}
        shown = ", ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items())
        print(f"{name}: {shown} ({len(ds)} examples, {len(ds) / seconds:.0f}/s)")
    report = {"model": str(cfg.model), "task": task.name, "threads": torch.get_num_threads(), "results": results}
    write_json(out, report)
    print(f"run_dir: {run_dir}", flush=True)
    return report
