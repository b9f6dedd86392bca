"""``cosine``: DistilBERT's cosine loss between the last hidden states."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.terms.base import LAST_HIDDEN, LossTerm, projection


class CosineEmbedding(LossTerm):
    """L_cos = mean over real tokens of 1 - cos(h_S, h_T) (DistilBERT).

    h_S: [b, t, h_s], h_T: [b, t, h_t]; projected through W [h_s, h_t] when
    widths differ.
    """

    name = "cosine"
    reads = teacher_reads = frozenset({LAST_HIDDEN})

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = projection(student_dim, teacher_dim)

    @classmethod
    def build(cls, setup) -> CosineEmbedding:
        return cls(setup.student_config.hidden_size, setup.teacher_config.hidden_size)

    def forward(self, h_s: torch.Tensor, h_t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cos = F.cosine_similarity(self.proj(h_s), h_t, dim=-1)  # [b, t]
        real = mask.bool()
        return (1.0 - cos)[real].mean()

    def score(self, s, t, inputs) -> torch.Tensor:
        return self(s.hidden_states[-1], t.hidden_states[-1], inputs.mask)
