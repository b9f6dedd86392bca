"""The one training loop every stage and phase runs.

It trains an ``Objective`` (student + projections; the teacher sits outside)
on ``accelerate``: device placement, mixed precision, gradient accumulation
and multi-process data parallel come from ``accelerate launch`` with no code
change here.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from distill.config import PhaseConfig, TrainConfig
from distill.objective import Objective


class NonFiniteLoss(RuntimeError):
    pass


class MetricsLog:
    """Appends one JSON object per line to ``log.jsonl``; mirrors to TensorBoard when it is installed."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "log.jsonl"
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        except ImportError:
            pass

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            tag = record.get("phase", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tensorboard.add_scalar(f"{tag}/{key}", value, record.get("global_step", 0))
            self.tensorboard.flush()


def _optimizer(objective: Objective, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # no decay on biases and LayerNorm weights, as BERT/ALBERT training does
    decay, no_decay = [], []
    for name, p in objective.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def train_phase(
    objective: Objective,
    loader: DataLoader,
    phase: PhaseConfig,
    train_cfg: TrainConfig,
    accelerator: Accelerator,
    log: MetricsLog,
    evaluate: Callable[[], dict[str, float]] | None = None,
    on_eval: Callable[[dict[str, float], int], None] | None = None,
) -> dict:
    """Run one phase; return its step count, examples, time and final loss terms."""
    updates_per_epoch = math.ceil(len(loader) / train_cfg.gradient_accumulation_steps)
    total_steps = phase.max_steps if phase.max_steps > 0 else math.ceil(phase.epochs * updates_per_epoch)
    if train_cfg.max_steps > 0:
        total_steps = min(total_steps, train_cfg.max_steps)
    optimizer = _optimizer(objective, phase.lr, train_cfg.weight_decay)
    scheduler = get_scheduler(
        phase.scheduler, optimizer, num_warmup_steps=int(phase.warmup_ratio * total_steps), num_training_steps=total_steps
    )
    model, optimizer, loader, scheduler = accelerator.prepare(objective, optimizer, loader, scheduler)
    model.train()

    step, examples, epoch = 0, 0, 0
    running: dict[str, float] = {}
    last_terms: dict[str, float] = {}
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=phase.name, disable=not (train_cfg.progress and accelerator.is_main_process))
    while step < total_steps:
        for batch in loader:
            with accelerator.accumulate(model):
                loss, terms = model(batch)
                if not torch.isfinite(loss):
                    bad = [k for k, v in terms.items() if not torch.isfinite(v)] or ["total"]
                    raise NonFiniteLoss(
                        f"phase '{phase.name}' step {step}: loss term {bad[0]} is {loss.item()}; "
                        "lower the learning rate or check the data"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and train_cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), train_cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            examples += batch["input_ids"].size(0) * accelerator.num_processes
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + v.item()
            running["loss"] = running.get("loss", 0.0) + loss.item()
            running["_n"] = running.get("_n", 0) + 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if step % train_cfg.log_every == 0 or step == total_steps:
                n = running.pop("_n")
                last_terms = {k: v / n for k, v in running.items()}
                running = {}
                elapsed = time.perf_counter() - start
                record = {"phase": phase.name, "step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0],
                          "examples_per_second": examples / elapsed, **last_terms}
                bar.set_postfix({k: f"{v:.4g}" for k, v in last_terms.items()})
                if accelerator.is_main_process:
                    log.write(record)
            if evaluate is not None and phase.eval_every > 0 and step % phase.eval_every == 0 and step < total_steps:
                _run_eval(evaluate, on_eval, log, phase, step, accelerator)
            if step >= total_steps:
                break
        epoch += 1
    bar.close()
    seconds = time.perf_counter() - start
    if evaluate is not None:
        _run_eval(evaluate, on_eval, log, phase, step, accelerator)
    return {"steps": step, "examples_seen": examples, "train_seconds": seconds, "losses": last_terms}


def _run_eval(evaluate, on_eval, log, phase, step, accelerator) -> None:
    metrics = evaluate()
    if accelerator.is_main_process:
        log.write({"phase": phase.name, "step": step, "eval": metrics})
    if on_eval is not None:
        on_eval(metrics, step)
