"""What every stage does around training: run directory, seeds, saving, metrics."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import OmegaConf
from torch import nn

from distill.config import Config, ConfigError, check
from distill.trainer import MetricsLog

log = logging.getLogger("distill")


@dataclass
class Run:
    cfg: Config
    dir: Path
    accelerator: Accelerator
    log: MetricsLog

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"


def start(cfg: Config) -> Run:
    """Validate the whole config, claim the run directory, seed everything."""
    check(cfg)
    run_dir = Path(cfg.run_dir)
    if (run_dir / "metrics.json").exists():
        if not cfg.overwrite:
            raise ConfigError(
                f"run_dir {run_dir} holds a finished run; pass overwrite=true to replace it "
                "or run_dir=<another path> to keep it"
            )
        for name in ("metrics.json", "log.jsonl", "model", "tensorboard"):
            target = run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "log.jsonl").unlink(missing_ok=True)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    set_seed(cfg.train.seed)
    accelerator = Accelerator(
        mixed_precision=cfg.train.mixed_precision,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
    )
    if accelerator.is_main_process:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return Run(cfg, run_dir, accelerator, MetricsLog(run_dir))


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
    """Keeps the model whose dev score (the task's first metric) is the best so far."""

    def __init__(self, run: Run, model: nn.Module, tokenizer, metric: str):
        self.run, self.model, self.tokenizer, self.metric = run, model, tokenizer, metric
        self.best: dict | None = None
        self.best_step: int | None = None

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        if self.best is None or metrics[self.metric] > self.best[self.metric]:
            self.best, self.best_step = dict(metrics), step
            if self.run.accelerator.is_main_process:
                save_model(self.run.accelerator.unwrap_model(self.model), self.tokenizer, self.run.model_dir)


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
        "phases": {c.name: p for c, p in zip(cfg.stage.phases, phases)},
        "params": params,
        **extra,
    }
