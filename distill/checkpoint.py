"""Training checkpoints: the full state a killed run needs to continue exactly.

A checkpoint is a directory ``checkpoints/step-<phase>-<step>`` holding one
``state.pt``: objective (student + projections), optimizer, scheduler, every
RNG (python, numpy, torch), the sampler's generator state at the start of
the current epoch and the number of batches taken since, the running loss
sums, the best dev score so far, the results of finished phases and which
teacher outputs the run knew to be stored. It is
written into a temporary directory and renamed into place, so a kill while
writing leaves only a ``.tmp`` directory that ``latest()`` ignores and the
next save removes.

Written by hand rather than with ``accelerator.save_state``: that writes in
place (a kill mid-write leaves a checkpoint that looks complete) and keeps no
mid-epoch data position for our length-grouped sampler.
"""

from __future__ import annotations

import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from distill.errors import ConfigError
from distill.files import building_dir

NAME = re.compile(r"^step-(\d+)-(\d+)$")


@dataclass
class Progress:
    """Where training is; everything but tensors a resume needs."""

    phase: int = 0
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    examples: int = 0
    # wall time of the phase so far, and the parts of it spent evaluating and writing checkpoints
    seconds: float = 0.0
    eval_seconds: float = 0.0
    checkpoint_seconds: float = 0.0
    # loss terms summed since the last log step, and how many batches they sum
    running: dict = field(default_factory=dict)
    batches_since_log: int = 0
    last_terms: dict = field(default_factory=dict)
    nonfinite_skips: int = 0
    # results of the phases already finished
    finished: list = field(default_factory=list)
    best: dict | None = None
    best_step: int | None = None
    # bytes of log.jsonl written up to this point: a resume cuts what came after
    log_bytes: int = 0
    # finished epochs of the phase (examples, training seconds), and where the current one started
    epochs: list = field(default_factory=list)
    epoch_start_examples: int = 0
    epoch_start_seconds: float = 0.0
    # wall time of the whole run at this checkpoint, every process of it together: a resumed run carries it on, so
    # its metrics.json's wall_seconds covers the run, not only the part after the resume (0.0: an older checkpoint)
    run_seconds: float = 0.0


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class Checkpoints:
    def __init__(self, directory: Path, keep: int):
        self.dir = Path(directory)
        self.keep = keep

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.dir.is_dir():
            return []
        found = [(tuple(map(int, m.groups())), p) for p in self.dir.iterdir() if (m := NAME.match(p.name))]
        return [p for _, p in sorted(found) if (p / "state.pt").is_file()]

    def latest(self) -> Path | None:
        done = self.complete()
        return done[-1] if done else None

    def save(self, progress: Progress, sampler_state: torch.Tensor, objective, optimizer, scheduler,
             teacher_stores: dict | None = None) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.dir.glob(".step-*"):  # from a kill mid-write
            shutil.rmtree(leftover, ignore_errors=True)
        payload = {
            "progress": asdict(progress),
            "sampler_state": sampler_state,
            "rng": rng_state(),
            "objective": objective.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            # which teacher outputs the run knew to be stored (distill.teacher_cache.TeacherStores)
            "teacher_stores": teacher_stores,
        }
        target = self.dir / f"step-{progress.phase}-{progress.step}"
        with building_dir(target) as tmp:
            torch.save(payload, tmp / "state.pt")
        for old in self.complete()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    @staticmethod
    def load(path: Path) -> dict:
        try:
            # our own file: RNG states hold numpy arrays and tuples, which weights_only rejects
            state = torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=False)
            state["progress"] = Progress(**state["progress"])
            return state
        except Exception as err:
            raise ConfigError(
                f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err)[:120]}); "
                "delete it to resume from the one before, or start again with overwrite=true"
            ) from None

