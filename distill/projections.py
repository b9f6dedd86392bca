"""The projections (W_E, W_h, cosine's W) from phase to phase and from the general stage to the task stage.

A student narrower than its teacher is compared through learned projections [h_s, h_t], which live in
the ``Objective`` of one phase. Rebuilt at random in every phase and stage, they make each new phase
start by re-fitting a random W, with the student pulled toward whatever that W maps it to. TinyBERT
keeps its ``fit_dense`` in the student and reloads it; here a ``ProjectionCarry`` hands each phase's
final projections to the next phase (by name, where the shapes agree) and saves them beside the
general stage's student (``projections.safetensors``, which ``from_pretrained`` ignores), so the task
stage that starts from that student starts from them too. A student at the teacher's width has
identity projections and nothing to carry.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger("distill")

FILE = "projections.safetensors"


def projection_state(objective) -> dict[str, torch.Tensor]:
    """The objective's parameters outside the student, by state-dict name (e.g. ``hidden.projs.0.weight``)."""
    ids = {id(p) for p in objective.projection_parameters()}
    return {k: p.detach() for k, p in objective.named_parameters() if id(p) in ids}


class ProjectionCarry:
    """``adopt(objective)`` starts the objective's projections from the latest ones of the same name and shape
    (from an earlier phase, else from the file it was loaded with) and follows that objective from then on."""

    def __init__(self, state: dict[str, torch.Tensor] | None = None, source: str | None = None):
        self.state = dict(state or {})
        self.source = source  # where the loaded state came from, for metrics.json
        self.last = None

    @classmethod
    def load(cls, model_dir: Path | None) -> ProjectionCarry:
        """The projections saved beside a general student, or none (a student at the teacher's width has none)."""
        path = Path(model_dir) / FILE if model_dir is not None else None
        if path is None or not path.is_file():
            return cls()
        return cls(load_file(str(path)), str(path))

    def _update(self) -> None:
        if self.last is not None:  # the previous phase's projections, as it left them
            self.state |= {k: v.detach().clone() for k, v in projection_state(self.last).items()}

    def adopt(self, objective):
        self._update()
        own = projection_state(objective)
        matched = {k: v for k, v in self.state.items() if k in own and own[k].shape == v.shape}
        if matched:
            objective.load_state_dict(matched, strict=False)
            log.info("projections carried over: %s", ", ".join(sorted(matched)))
        self.last = objective
        return objective

    def save(self, model_dir: Path) -> None:
        """Write the latest projections beside the saved student (nothing when there are none)."""
        self._update()
        if self.state:
            save_file({k: v.contiguous().cpu() for k, v in self.state.items()}, str(Path(model_dir) / FILE))
