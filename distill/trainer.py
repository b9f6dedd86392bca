"""The one training loop every stage and phase runs.

It trains an ``Objective`` (student + projections; the teacher sits outside)
on ``accelerate``: device placement, mixed precision, gradient accumulation
and multi-process data parallel come from ``accelerate launch`` with no code
change here.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from distill.checkpoint import Checkpoints, Progress, set_rng_state
from distill.config import PhaseConfig, TrainConfig
from distill.errors import ConfigError, Interrupted, NonFiniteLoss
from distill.objective import Objective


def rss_mb() -> float | None:
    """Resident memory of this process in MiB (Linux), logged so that leaks show in log.jsonl."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


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

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, size: int) -> None:
        """Drop what was logged after a checkpoint, before a resume replays it."""
        if self.path.exists():
            with self.path.open("r+b") as f:
                f.truncate(size)

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            tag = record.get("phase", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tensorboard.add_scalar(f"{tag}/{key}", value, record.get("global_step", 0))
            self.tensorboard.flush()


def _optimizer(objective: Objective, phase: PhaseConfig, weight_decay: float) -> torch.optim.Optimizer:
    # each phase decides what is frozen (a frozen parameter of an earlier phase trains again here)
    names = [name for name, _ in objective.named_parameters()]
    unmatched = [part for part in phase.freeze if not any(part in name for name in names)]
    if unmatched:
        raise ConfigError(f"phase '{phase.name}'.freeze: {unmatched} match no parameter of the student; "
                          f"use parts of its parameter names, e.g. word_embeddings")
    for name, p in objective.named_parameters():
        p.requires_grad_(not any(part in name for part in phase.freeze))
    # no decay on biases and LayerNorm weights, as BERT/ALBERT training does
    decay, no_decay = [], []
    for p in objective.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=phase.lr)


class _StopSignals:
    """Turns SIGINT/SIGTERM into a flag the loop checks at each optimizer step."""

    def __init__(self):
        self.received: str | None = None

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@dataclass
class TrainContext:
    """What the loop needs from the run around it."""

    accelerator: Accelerator
    log: MetricsLog
    checkpoints: Checkpoints
    # dev evaluation, run in phases that select the kept model, or None
    evaluate: Callable[[], dict[str, float]] | None = None
    # called with (metrics, step) after each evaluation; keeps the best model. Its ``best`` and
    # ``best_step`` attributes travel in checkpoints (see distill.run.BestCheckpoint)
    best: Callable[[dict[str, float], int], None] | None = None
    # time.perf_counter() when the run began (after the checks), as if all of it ran in this process (a resumed run's
    # is moved back by the wall time its checkpoint carried): checkpoints record the run's wall time so far from it,
    # and metrics.json's wall_seconds counts from it
    run_started: float = 0.0
    # the teacher's stored outputs (distill.teacher_cache.TeacherStores): flushed with every checkpoint, and what
    # the run knew to be stored travels in it
    teacher_stores: object | None = None


def train(
    phases: list[PhaseConfig],
    build_objective: Callable[[PhaseConfig], Objective],
    loader: DataLoader,
    cfg: TrainConfig,
    ctx: TrainContext,
    resume: dict | None = None,
) -> list[dict]:
    """Run every phase in order (from a checkpoint's position when ``resume`` is given); return each phase's results."""
    progress: Progress = resume["progress"] if resume else Progress()
    if ctx.best is not None:
        ctx.best.best, ctx.best.best_step = progress.best, progress.best_step
    if resume and ctx.teacher_stores is not None and resume.get("teacher_stores"):
        ctx.teacher_stores.load_state_dict(resume["teacher_stores"])
    # the sampler draws each epoch's order from this generator; its state at epoch start is checkpointed
    generator = loader.sampler.generator
    with _StopSignals() as stop:
        for index, phase in enumerate(phases):
            if index < progress.phase:
                continue
            objective = build_objective(phase)
            optimizer = _optimizer(objective, phase, cfg.weight_decay)
            total = _total_steps(phase, cfg, len(loader))
            scheduler = get_scheduler(
                phase.scheduler, optimizer, num_warmup_steps=int(phase.warmup_ratio * total), num_training_steps=total
            )
            phase_resume = resume if resume and index == resume["progress"].phase else None
            if phase_resume:
                objective.load_state_dict(phase_resume["objective"])
                optimizer.load_state_dict(phase_resume["optimizer"])
                scheduler.load_state_dict(phase_resume["scheduler"])
                set_rng_state(phase_resume["rng"])  # building the objective drew from the RNG
            prepared = ctx.accelerator.prepare(objective, optimizer, loader, scheduler)
            result = _train_phase(phase, total, prepared, generator, cfg, ctx, progress, phase_resume, stop)
            progress.finished.append(result)
            progress = Progress(phase=index + 1, finished=progress.finished, best=progress.best,
                                best_step=progress.best_step, nonfinite_skips=progress.nonfinite_skips)
    return progress.finished


def planned_examples(phases: list[PhaseConfig], cfg: TrainConfig, n_examples: int) -> int:
    """How many examples the phases will draw in all (steps x batch), for sizing what a run may store."""
    batches = math.ceil(n_examples / cfg.batch_size)
    return sum(_total_steps(p, cfg, batches) * cfg.batch_size * cfg.gradient_accumulation_steps for p in phases)


def _total_steps(phase: PhaseConfig, cfg: TrainConfig, batches_per_epoch: int) -> int:
    updates_per_epoch = math.ceil(batches_per_epoch / cfg.gradient_accumulation_steps)
    total = phase.max_steps if phase.max_steps > 0 else math.ceil(phase.epochs * updates_per_epoch)
    return min(total, cfg.max_steps) if cfg.max_steps > 0 else total


def train_step(model, batch, optimizer, scheduler, accelerator: Accelerator, max_grad_norm: float,
               skip_nonfinite: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
    """One forward/backward (and, at the end of an accumulation window, one update); the loss and its terms
    stay on the device. With ``skip_nonfinite`` a non-finite loss returns None and nothing is updated
    (that check reads the loss on the host: the one per-step sync, paid only in that mode)."""
    with accelerator.accumulate(model):
        loss, terms = model(batch)
        if skip_nonfinite and not torch.isfinite(loss):
            optimizer.zero_grad()  # no update from this batch (nor from its accumulation window)
            return None
        accelerator.backward(loss)
        if accelerator.sync_gradients and max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return loss, terms


class _FiniteWatch:
    """The first step whose loss was not finite, remembered on the device and read (one host sync) only
    before anything is logged, evaluated or saved: a per-step check would stall a GPU at every step."""

    def __init__(self):
        self.step: torch.Tensor | None = None  # -1 while every loss was finite
        self.values: torch.Tensor | None = None  # [terms + 1] at that step

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], step: int) -> None:
        self.names = [*terms, "total"]
        values = torch.stack([*(v.detach().float() for v in terms.values()), loss.detach().float()])
        if self.step is None:
            self.step, self.values = torch.full((), -1, device=loss.device), values
        first = (self.step < 0) & ~torch.isfinite(loss.detach())
        self.step = torch.where(first, step, self.step)
        self.values = torch.where(first, values, self.values)

    def check(self, phase: str, last_good: Path | None) -> None:
        if self.step is None or int(self.step) < 0:
            return
        name, value = next((n, v) for n, v in zip(self.names, self.values.tolist()) if not math.isfinite(v))
        raise NonFiniteLoss(
            f"phase '{phase}' step {int(self.step)}: loss term {name} is {value}; last good checkpoint: "
            f"{last_good or 'none'}; lower the learning rate, check the data, or set train.on_nonfinite=skip"
        )


class _Phase:
    """One phase's state, and the named things the loop does besides stepping: where each epoch's batches
    come from (replaying an interrupted epoch on resume), logging, evaluation, checkpoints, the result."""

    def __init__(self, phase: PhaseConfig, total_steps: int, prepared, generator, cfg: TrainConfig, ctx: TrainContext,
                 progress: Progress):
        self.phase, self.total, self.cfg, self.ctx, self.progress = phase, total_steps, cfg, ctx, progress
        self.model, self.optimizer, self.loader, self.scheduler = prepared
        self.generator = generator  # the sampler draws each epoch's order from it; its state is checkpointed
        self.sampler_state: torch.Tensor | None = None
        self.watch = _FiniteWatch()
        # only a phase whose score on the selection split picks the kept model is evaluated
        self.evaluating = ctx.evaluate is not None and phase.select_best
        self.bar = tqdm(total=total_steps, initial=progress.step, desc=phase.name,
                        disable=not (cfg.progress and ctx.accelerator.is_main_process))
        # wall time of the phase; evaluation and checkpoint writes are timed apart and left out of training time
        self.clock = time.perf_counter() - progress.seconds

    def epochs(self, resume: dict | None):
        """Each epoch's batch iterator until the phase's steps are done. On resume, the interrupted epoch's order
        is replayed and what was done skipped, even when the phase had ended: the sampler's generator must be
        where the uninterrupted run left it."""
        batches = None
        if resume is not None:
            self.sampler_state = resume["sampler_state"]
            self.generator.set_state(self.sampler_state)
            batches = iter(self.loader)
            for _ in range(self.progress.batch_in_epoch):
                next(batches)
            set_rng_state(resume["rng"])
        while self.progress.step < self.total:
            if batches is None:
                self.sampler_state = self.generator.get_state()
                batches = iter(self.loader)
            yield batches
            batches = None
            self.end_epoch()
            self.progress.epoch += 1
            self.progress.batch_in_epoch = 0

    def end_epoch(self) -> None:
        """Record the epoch's examples and training seconds: the first epoch of a write-through phase runs the
        teacher, later ones read its stored outputs, and their speeds differ."""
        p, seconds = self.progress, self.train_seconds()
        if p.examples > p.epoch_start_examples:
            p.epochs.append({"epoch": p.epoch, "examples": p.examples - p.epoch_start_examples,
                             "seconds": seconds - p.epoch_start_seconds})
        p.epoch_start_examples, p.epoch_start_seconds = p.examples, seconds

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], batch) -> None:
        """Account for one batch's loss, summed on the device (read at log steps)."""
        progress = self.progress
        self.watch.add(loss, terms, progress.step)
        progress.examples += batch["input_ids"].size(0) * self.ctx.accelerator.num_processes
        for k, v in {**terms, "loss": loss}.items():
            progress.running[k] = progress.running.get(k, 0.0) + v.detach()
        progress.batches_since_log += 1

    def train_seconds(self) -> float:
        return time.perf_counter() - self.clock - self.progress.eval_seconds - self.progress.checkpoint_seconds

    def log(self) -> None:
        progress = self.progress
        if not progress.batches_since_log:
            return
        self.watch.check(self.phase.name, self.ctx.checkpoints.latest())
        n, progress.batches_since_log = progress.batches_since_log, 0
        progress.last_terms = {k: float(v) / n for k, v in progress.running.items()}
        progress.running = {}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in progress.last_terms.items()})
        if self.ctx.accelerator.is_main_process:
            self.ctx.log.write({"phase": self.phase.name, "step": progress.step, "epoch": progress.epoch,
                                "lr": self.scheduler.get_last_lr()[0],
                                "examples_per_second": progress.examples / self.train_seconds(), "rss_mb": rss_mb(),
                                **progress.last_terms})

    def evaluate(self) -> None:
        self.watch.check(self.phase.name, self.ctx.checkpoints.latest())
        started = time.perf_counter()
        metrics = self.ctx.evaluate()
        if self.ctx.accelerator.is_main_process:
            self.ctx.log.write({"phase": self.phase.name, "step": self.progress.step, "eval": metrics})
        if self.ctx.best is not None:
            self.ctx.best(metrics, self.progress.step)
        self.progress.eval_seconds += time.perf_counter() - started

    def checkpoint(self) -> Path | None:
        ctx, progress = self.ctx, self.progress
        self.watch.check(self.phase.name, ctx.checkpoints.latest())
        started = time.perf_counter()
        progress.seconds = started - self.clock
        progress.run_seconds = started - ctx.run_started
        progress.log_bytes = ctx.log.size()
        progress.running = {k: float(v) for k, v in progress.running.items()}  # tensors summed on the device
        if ctx.best is not None:
            progress.best, progress.best_step = ctx.best.best, ctx.best.best_step
        stores = ctx.teacher_stores
        if stores is not None:
            stores.flush()
        saved = ctx.checkpoints.save(progress, self.sampler_state, ctx.accelerator.unwrap_model(self.model),
                                     self.optimizer, self.scheduler, stores.state_dict() if stores is not None else None,
                                     ) if ctx.accelerator.is_main_process else None
        progress.checkpoint_seconds += time.perf_counter() - started
        return saved

    def result(self) -> dict:
        self.bar.close()
        self.watch.check(self.phase.name, self.ctx.checkpoints.latest())
        self.end_epoch()  # the epoch the phase's last step ended in
        p, seconds = self.progress, self.train_seconds()
        rate = lambda epochs: sum(e["examples"] for e in epochs) / sum(e["seconds"] for e in epochs) \
            if epochs and sum(e["seconds"] for e in epochs) > 0 else None  # noqa: E731
        return {"steps": p.step, "examples_seen": p.examples, "train_seconds": seconds,
                "train_examples_per_second": p.examples / seconds if seconds > 0 else 0.0,
                "epochs": p.epochs, "first_epoch_examples_per_second": rate(p.epochs[:1]),
                "later_epochs_examples_per_second": rate(p.epochs[1:]),
                "eval_seconds": p.eval_seconds, "checkpoint_seconds": p.checkpoint_seconds,
                "losses": p.last_terms, "nonfinite_skips": p.nonfinite_skips}


def _train_phase(phase: PhaseConfig, total: int, prepared, generator, cfg: TrainConfig, ctx: TrainContext,
                 progress: Progress, resume: dict | None, stop: _StopSignals) -> dict:
    this = _Phase(phase, total, prepared, generator, cfg, ctx, progress)
    model, optimizer, _, scheduler = prepared
    model.train()
    for batches in this.epochs(resume):
        for batch in batches:
            progress.batch_in_epoch += 1
            out = train_step(model, batch, optimizer, scheduler, ctx.accelerator, cfg.max_grad_norm,
                             skip_nonfinite=cfg.on_nonfinite == "skip")
            if out is None:
                progress.nonfinite_skips += 1
                continue
            this.add(*out, batch)
            if not ctx.accelerator.sync_gradients:
                continue  # inside a gradient-accumulation window
            progress.step += 1
            this.bar.update(1)
            step, last = progress.step, progress.step == total
            if last or step % cfg.log_every == 0:
                this.log()
            if this.evaluating and (last or (phase.eval_every > 0 and step % phase.eval_every == 0)):
                this.evaluate()
            if last or (cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0) or stop.received:
                saved = this.checkpoint()
            if stop.received:
                raise Interrupted(f"{stop.received} at phase '{phase.name}' step {step}: checkpoint saved to {saved}; "
                                  "run the same command with resume=true to continue")
            if last:
                return this.result()
    return this.result()
