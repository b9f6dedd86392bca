"""stage=teacher: fine-tune the pretrained teacher on a task (hard-label cross-entropy).

The task stage distils from the model this writes to ``<run_dir>/model``.
"""

from __future__ import annotations

from distill import rundir
from distill.data import eval_loader, task_splits_and_plan, tokenize_task, train_loader
from distill.evaluation import evaluate
from distill.hf import load_model, load_tokenizer
from distill.objective import Objective
from distill.student import parameter_counts
from distill.trainer import train


def run(cfg) -> dict:
    run = rundir.start(cfg)
    task, train_cfg = cfg.task, cfg.train
    tokenizer = load_tokenizer(cfg.teacher.name_or_path)
    splits, plan = task_splits_and_plan(task)
    data = tokenize_task(splits, task, tokenizer)
    model = load_model(cfg.teacher.name_or_path, head="sequence_classification", **task.label_config())
    loader = train_loader(data["train"], tokenizer, train_cfg.batch_size, train_cfg.seed, train_cfg.group_by_length)
    loaders = {split: eval_loader(data[split], tokenizer, train_cfg.eval_batch_size) for split in ("select", "report")}
    best = rundir.BestCheckpoint(run, model, tokenizer, task.metrics[0])
    score = lambda split: evaluate(model, loaders[split], task.metrics, run.accelerator.device)  # noqa: E731
    results = train(
        cfg.stage.phases, lambda phase: Objective(model, phase.weights), loader, train_cfg,
        run.context(evaluate=lambda: score("select"), best=best), run.resume,
    )
    evals = rundir.held_out_eval(best, score, results[-1]["steps"], plan, role="teacher")
    return rundir.finish(run, rundir.summary(cfg, results, parameter_counts(model), {"eval": evals, "best_step": best.best_step}))
