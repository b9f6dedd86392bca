"""The run directory and what every stage does around training: claim it, seed, save models, write metrics."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import OmegaConf
from torch import nn

from distill.checkpoint import Checkpoints
from distill.checks import Checked, check
from distill.config import Config
from distill.errors import ConfigError
from distill.files import building_dir, write_json, write_text
from distill.trainer import MetricsLog, TrainContext

log = logging.getLogger("distill")


RUN_FILES = ("config.yaml", "metrics.json", "log.jsonl", "model", "checkpoints", "tensorboard", "bench.json")
# keys a resumed run may change: how it runs, not what it computes
RESUME_FREE = ("resume", "overwrite", "resume_accept", "train.progress")
# overwrite=true moves the finished run here, and deletes it only once the new run has finished
PREVIOUS = ".previous"


@dataclass
class Run:
    cfg: Config
    dir: Path
    # what the training loop needs of the run (accelerator, log, checkpoints)
    train: TrainContext
    # what the config checks built (the teacher's config, the layer map)
    checked: Checked
    # the checkpoint to continue from, or None for a fresh start
    resume: dict | None = None
    # the step a resumed run continued from (None: a fresh start); the checkpoint's progress moves on as it trains
    resumed_at_step: int | None = None
    # the wall time the earlier processes had spent up to that checkpoint (0.0: a checkpoint too old to say)
    carried_seconds: float = 0.0

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    @property
    def accelerator(self) -> Accelerator:
        return self.train.accelerator

    def context(self, **kwargs) -> TrainContext:
        """The training context with this stage's evaluation and best-checkpoint keeper."""
        return dataclasses.replace(self.train, **kwargs)


def flat_settings(d: dict | list, prefix: str = "") -> dict:
    """{'a.b': 1, 'phases.0.lr': 3e-4, 'phases (entries)': 1, 'freeze': ['word_embeddings']}: lists of settings by
    index, so a phase compares setting by setting, with their length as a setting of its own (a phase added is a
    change even where only keys both sides have compare); a list of plain values is one value, so that
    ``freeze: []`` against ``[word_embeddings]`` is a change, not a key one side lacks."""
    out = {}
    for k, v in d.items() if isinstance(d, dict) else enumerate(d):
        key = f"{prefix}{k}"
        if isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
            out[f"{key} (entries)"] = len(v)
            out.update(flat_settings(v, key + "."))
        elif isinstance(v, dict) and v:
            out.update(flat_settings(v, key + "."))
        else:
            out[key] = v
    return out


def config_changes(run_dir: Path, cfg: Config, only_shared: bool = False) -> list[tuple[str, object, object]]:
    """(key, saved, now) for every setting in which ``cfg`` differs from the run saved in ``run_dir``, leaving out
    how a run runs (``RESUME_FREE``) and what ``cfg.resume_accept`` accepts. ``only_shared``: compare only keys both
    configs have (a run made before a setting existed is compared on the settings it knew)."""
    saved = flat_settings(OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml")))
    now = flat_settings(OmegaConf.to_container(OmegaConf.create(cfg)))
    keys = set(saved) & set(now) if only_shared else set(saved) | set(now)
    return [(k, saved.get(k), now.get(k)) for k in sorted(keys)
            if saved.get(k) != now.get(k) and not k.startswith(RESUME_FREE) and k not in cfg.resume_accept]


def _check_same_config(run_dir: Path, cfg: Config) -> None:
    if changes := config_changes(run_dir, cfg):
        shown = ", ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changes[:3])
        raise ConfigError(
            f"resume: the config differs from the run being resumed ({shown}); resume with the same settings, "
            f"start a new run_dir, or accept the change (it can change the numbers: train.threads changes CPU float "
            f"results) with 'resume_accept=[{changes[0][0]}]'"
        )


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _set_aside(run_dir: Path) -> None:
    """overwrite=true: move the run in ``run_dir`` into ``run_dir/.previous`` (renames, nothing copied) instead of
    deleting it. An unfinished run's files are deleted instead when a finished one is already set aside."""
    previous = run_dir / PREVIOUS
    keep = not previous.exists()
    previous.mkdir(exist_ok=True)
    for name in RUN_FILES:
        target = run_dir / name
        if not target.exists():
            continue
        if keep:
            os.replace(target, previous / name)
        else:
            _remove(target)
    if keep:
        log.info("overwrite=true: the previous run is kept in %s until this one finishes", previous)


def restore_previous(run_dir: str | Path) -> bool:
    """Put a run set aside by overwrite=true back when the run that replaced it died before its first checkpoint
    (an error, Ctrl-C, or a kill: then the next command in this run_dir restores it). Returns whether it did."""
    run_dir = Path(run_dir)
    previous = run_dir / PREVIOUS
    if not previous.is_dir() or (run_dir / "metrics.json").exists() or Checkpoints(run_dir / "checkpoints", 1).latest():
        return False
    for name in RUN_FILES:
        target = run_dir / name
        _remove(target)
        if (previous / name).exists():
            os.replace(previous / name, target)
    shutil.rmtree(previous)
    log.warning("restored the run in %s: the run that was to replace it (overwrite=true) stopped before its first "
                "checkpoint", run_dir)
    return True


def start(cfg: Config) -> Run:
    """Check the whole config (``distill.checks``: against the stage teacher's config.json), claim (or reopen)
    the run directory, seed everything. Nothing heavy is loaded, and the directory is not touched, before
    every check has passed."""
    checked = check(cfg)
    run_dir = Path(cfg.run_dir)
    restore_previous(run_dir)
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
    if cfg.overwrite and existing:
        _set_aside(run_dir)
    elif existing and resume_from is None:
        for name in RUN_FILES:
            _remove(run_dir / name)
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
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    # the work after the resumed checkpoint is done again here, so the killed process's time past it is not counted
    carried = resume["progress"].run_seconds if resume is not None else 0.0
    train = TrainContext(accelerator, metrics_log, checkpoints, run_started=time.perf_counter() - carried)
    return Run(cfg, run_dir, train, checked, resume, resume["progress"].step if resume is not None else None, carried)


def save_model(model: nn.Module, tokenizer, target: Path, projections=None) -> None:
    """``save_pretrained`` model + tokenizer (+ the ``ProjectionCarry``'s projections) into ``target``, whole or
    not at all."""
    with building_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if projections is not None:
            projections.save(tmp)


def finish(run: Run, metrics: dict) -> dict:
    """Write ``metrics.json`` (whole or not at all); print the run directory as the last line."""
    # the whole run: loading, caches, training, evaluation, benchmark (a resumed run: its earlier processes' time up
    # to the checkpoint it resumed from, then this one's)
    metrics["wall_seconds"] = time.perf_counter() - run.train.run_started
    if run.resumed_at_step is not None:
        metrics["resumed_at_step"] = run.resumed_at_step
        if run.carried_seconds:  # absent: an older checkpoint, so wall_seconds covers only the part after the resume
            metrics["wall_seconds_before_resume"] = run.carried_seconds
    if run.accelerator.is_main_process:
        write_json(run.dir / "metrics.json", metrics)
        shutil.rmtree(run.dir / PREVIOUS, ignore_errors=True)  # the new run is whole: the old one can go
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
    ``distill.data.task_splits_and_plan``'s; ``role``: 'student' or 'teacher'. Returns the ``metrics.json``
    ``eval`` entries: which split selected and which is reported, ``<role>`` (reported) and ``<role>_select``."""
    if best.best is None:  # no phase selects: keep the final model
        best(evaluate("select"), last_step)
    best.restore()
    held = {"holdout": plan["holdout"]} if "holdout" in plan else {}
    return {"selected_on": plan["select"], "reported_on": plan["report"], **held, role: evaluate("report"),
            f"{role}_select": best.best}


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
