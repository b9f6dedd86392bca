"""stage=teacher: fine-tune the pretrained teacher on a task (hard-label cross-entropy).

The task stage distils from the model this writes to ``<run_dir>/model``.
"""

from __future__ import annotations

from distill import run as runs
from distill.data import eval_loader, load_task, tokenize_task, train_loader
from distill.evaluation import evaluate
from distill.objective import Objective
from distill.student import parameter_counts
from distill.teacher import load_model, load_tokenizer
from distill.trainer import train


def run(cfg) -> dict:
    run = runs.start(cfg, teacher=cfg.teacher.name_or_path)
    task, train_cfg = cfg.task, cfg.train
    tokenizer = load_tokenizer(cfg.teacher.name_or_path)
    data = tokenize_task(load_task(task), task, tokenizer)
    model = load_model(cfg.teacher.name_or_path, head="sequence_classification", **task.label_config())
    loader = train_loader(data["train"], tokenizer, train_cfg.batch_size, train_cfg.seed, train_cfg.group_by_length)
    dev = eval_loader(data["dev"], tokenizer, train_cfg.eval_batch_size)
    best = runs.BestCheckpoint(run, model, tokenizer, task.metrics[0])
    device = run.accelerator.device
    results = train(
        cfg.stage.phases, lambda phase: Objective(model, phase.weights), loader, train_cfg,
        run.context(evaluate=lambda: evaluate(model, dev, task.metrics, device), best=best), run.resume,
    )
    if best.best is None:  # no phase selects: keep the final model
        best(evaluate(model, dev, task.metrics, device), results[-1]["steps"])
    return runs.finish(run, runs.summary(cfg, results, parameter_counts(model), {"eval": {"teacher": best.best}, "best_step": best.best_step}))
