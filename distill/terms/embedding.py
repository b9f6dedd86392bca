"""``embedding``: TinyBERT's embedding-layer loss."""

from __future__ import annotations

import torch
from torch import nn

from distill.terms.base import EMBEDDINGS, LossTerm, masked_mse, projection


class EmbeddingMSE(LossTerm):
    """L_emb = MSE(E_S W_E, E_T) over real tokens.

    E_S: [b, t, h_s] student embedding output (hidden_states[0]),
    E_T: [b, t, h_t] teacher embedding output, W_E: [h_s, h_t] learned
    (identity when h_s == h_t). Padding positions do not count unless
    ``mask`` is None. Under ``stage.loss.tinybert_compat`` W_E is the one W TinyBERT's code
    also uses for the hidden states.
    """

    name = "embedding"
    reads = teacher_reads = frozenset({EMBEDDINGS})

    def __init__(self, student_dim: int, teacher_dim: int, proj: nn.Module | None = None):
        super().__init__()
        self.proj = projection(student_dim, teacher_dim) if proj is None else proj

    @classmethod
    def build(cls, setup) -> EmbeddingMSE:
        s, t = setup.student_config.hidden_size, setup.teacher_config.hidden_size
        # tinybert_compat: the one W TinyBERT's code uses for embeddings and hidden states
        return cls(s, t, setup.share("projection", lambda: projection(s, t)) if setup.options.tinybert_compat else None)

    def forward(self, e_s: torch.Tensor, e_t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_mse(self.proj(e_s), e_t, mask)

    def score(self, s, t, inputs) -> torch.Tensor:
        return self(s.embeddings, t.embeddings, inputs.token_mask)
