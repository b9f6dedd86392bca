"""``soft_ce``: prediction distillation, cross-entropy against the teacher's softened outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.hf import has_mlm_head
from distill.terms.base import LOGITS, LossTerm


class SoftCrossEntropy(LossTerm):
    """L_pred = mean over examples of -softmax(z_T / T) . log_softmax(z_S / T), times T^2 if ``scale_by_t2``.

    z_S, z_T: [b, c] (or [n, c] for selected token positions). T^2 keeps the
    gradient scale independent of T (Hinton et al.); TinyBERT leaves it out. T > 0 (``distill.checks``).
    """

    name = "soft_ce"
    reads = teacher_reads = frozenset({LOGITS})

    def __init__(self, temperature: float = 1.0, scale_by_t2: bool = False):
        super().__init__()
        self.temperature = temperature
        self.scale = temperature**2 if scale_by_t2 else 1.0

    @classmethod
    def build(cls, setup) -> SoftCrossEntropy:
        options = setup.options
        return cls(options.temperature, options.scale_by_t2 and not options.tinybert_compat)

    def forward(self, z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        p_t = F.softmax(z_t / self.temperature, dim=-1)
        log_p_s = F.log_softmax(z_s / self.temperature, dim=-1)
        return -(p_t * log_p_s).sum(-1).mean() * self.scale

    def score(self, s, t, inputs) -> torch.Tensor:
        return self(s.logits, t.logits)

    @classmethod
    def problems(cls, cfg, teacher_config) -> list[str]:
        if cfg.stage.loss.teacher_mlm == "required" and not has_mlm_head(teacher_config):
            return [f"stage.loss.teacher_mlm=required but the teacher ({teacher_config.architectures}) has no masked-LM "
                    "head; use a teacher with one, or teacher_mlm=auto to drop soft_ce"]
        return []
