"""What every stage does around training: run directory, seeds, saving, metrics."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import OmegaConf
from torch import nn

from distill.checkpoint import Checkpoints
from distill.config import Config, ConfigError, check
from distill.teacher import load_config
from distill.trainer import MetricsLog, TrainContext

log = logging.getLogger("distill")


RUN_FILES = ("config.yaml", "metrics.json", "log.jsonl", "model", "checkpoints", "tensorboard")
# keys a resumed run may change: how it runs, not what it computes
RESUME_FREE = ("resume", "overwrite", "train.progress", "train.threads")


@dataclass
class Run:
    cfg: Config
    dir: Path
    accelerator: Accelerator
    log: MetricsLog
    checkpoints: Checkpoints
    # the checkpoint to continue from, or None for a fresh start
    resume: dict | None = None

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    def context(self, **kwargs) -> TrainContext:
        return TrainContext(self.accelerator, self.log, self.checkpoints, **kwargs)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _check_same_config(run_dir: Path, cfg: Config) -> None:
    saved = _flat(OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml")))
    now = _flat(OmegaConf.to_container(OmegaConf.create(cfg)))
    differ = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k) and not k.startswith(RESUME_FREE)]
    if differ:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ[:3])
        raise ConfigError(
            f"resume: the config differs from the run being resumed ({shown}); resume with the same settings "
            "or start a new run_dir"
        )


def start(cfg: Config, teacher: str | None = None) -> Run:
    """Validate the whole config (against ``teacher``'s config.json when given), claim (or reopen)
    the run directory, seed everything. Nothing heavy is loaded before every check has passed."""
    check(cfg, (lambda: load_config(teacher)) if teacher is not None else None)
    run_dir = Path(cfg.run_dir)
    checkpoints = Checkpoints(run_dir / "checkpoints", cfg.train.keep_checkpoints)
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    resume_from = Path(str(cfg.resume)) if not isinstance(cfg.resume, bool) else checkpoints.latest() if cfg.resume else None
    if (run_dir / "metrics.json").exists() and not cfg.overwrite:
        raise ConfigError(
            f"run_dir {run_dir} holds a finished run; pass overwrite=true to replace it or run_dir=<another path> to keep it"
        )
    if existing and not cfg.overwrite and cfg.resume is False:
        last = checkpoints.latest()
        raise ConfigError(
            f"run_dir {run_dir} holds an unfinished run (last checkpoint: {last.name if last else 'none'}); "
            "pass resume=true to continue it or overwrite=true to start over"
        )
    if cfg.overwrite or (existing and resume_from is None):
        for name in RUN_FILES:
            target = run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    resume = None
    if resume_from is not None:
        _check_same_config(run_dir, cfg)
        resume = Checkpoints.load(resume_from)
        log.info("resuming from %s (phase %d, step %d)", resume_from, resume["progress"].phase, resume["progress"].step)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    set_seed(cfg.train.seed)
    accelerator = Accelerator(
        mixed_precision=cfg.train.mixed_precision,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
    )
    metrics_log = MetricsLog(run_dir)
    if resume is not None:
        metrics_log.truncate(resume["progress"].log_bytes)
    elif accelerator.is_main_process:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return Run(cfg, run_dir, accelerator, metrics_log, checkpoints, resume)


def save_model(model: nn.Module, tokenizer, target: Path) -> None:
    """``save_pretrained`` model + tokenizer into ``target`` atomically (temp dir, then rename)."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def finish(run: Run, metrics: dict) -> dict:
    """Write ``metrics.json`` atomically; print the run directory as the last line."""
    if run.accelerator.is_main_process:
        tmp = run.dir / "metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
        os.replace(tmp, run.dir / "metrics.json")
        print(f"run_dir: {run.dir}", flush=True)
    return metrics


class BestCheckpoint:
    """Keeps the model whose score on the selection split (the task's first metric) is the best so far.

    ``best`` and ``best_step`` travel in checkpoints, so a resumed run keeps comparing
    against the same best."""

    def __init__(self, run: Run, model: nn.Module, tokenizer, metric: str):
        self.run, self.model, self.tokenizer, self.metric = run, model, tokenizer, metric
        self.best: dict | None = None
        self.best_step: int | None = None

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        if self.best is None or metrics[self.metric] > self.best[self.metric]:
            self.best, self.best_step = dict(metrics), step
            if self.run.accelerator.is_main_process:
                save_model(self.run.accelerator.unwrap_model(self.model), self.tokenizer, self.run.model_dir)

    def restore(self) -> None:
        """Load the kept model (from disk: what is reported is what was saved) into ``model``."""
        self.run.accelerator.wait_for_everyone()  # the main process wrote it
        model = self.run.accelerator.unwrap_model(self.model)
        model.load_state_dict(type(model).from_pretrained(self.run.model_dir).state_dict())


def held_out_eval(best: BestCheckpoint, evaluate: Callable[[str], dict], last_step: int, plan: dict, role: str) -> dict:
    """Pick the kept model on the 'select' split, then score it on the 'report' split, which chose nothing.

    ``evaluate(split)``: metrics of the current model on 'select' or 'report'; ``plan``:
    ``distill.data.evaluation_plan``; ``role``: 'student' or 'teacher'. Returns the ``metrics.json``
    ``eval`` entries: which split selected and which is reported, ``<role>`` (reported) and ``<role>_select``."""
    if best.best is None:  # no phase selects: keep the final model
        best(evaluate("select"), last_step)
    best.restore()
    return {"selected_on": plan["select"], "reported_on": plan["report"], role: evaluate("report"), f"{role}_select": best.best}


def summary(cfg: Config, phases: list[dict], params: dict[str, int], extra: dict) -> dict:
    """The ``metrics.json`` body shared by every stage."""
    seconds = sum(p["train_seconds"] for p in phases)
    examples = sum(p["examples_seen"] for p in phases)
    losses: dict[str, float] = {}
    for p in phases:
        losses.update(p["losses"])
    return {
        "stage": cfg.stage.name,
        "task": cfg.task.name,
        # the teacher stage trains no student
        "student": cfg.student.tag() if cfg.stage.name != "teacher" else None,
        "steps": sum(p["steps"] for p in phases),
        "examples_seen": examples,
        "train_seconds": seconds,
        "train_examples_per_second": examples / seconds if seconds else 0.0,
        "losses": losses,
        # batches skipped for a non-finite loss (train.on_nonfinite=skip)
        "nonfinite_skips": phases[-1].get("nonfinite_skips", 0) if phases else 0,
        "phases": {c.name: p for c, p in zip(cfg.stage.phases, phases)},
        "params": params,
        **extra,
    }
