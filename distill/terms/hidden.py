"""``hidden``: TinyBERT's hidden-state loss through the layer map G(m)."""

from __future__ import annotations

import torch
from torch import nn

from distill.terms.base import MAPPED_HIDDEN, LossTerm, masked_mse, projection


class HiddenMSE(LossTerm):
    """L_hid = sum over mapped layers j of MSE(H_S[j] W_h[j], H_T[j]) over real tokens.

    H_S[j]: [b, t, h_s], H_T[j]: [b, t, h_t]. With ``shared_projection`` one
    W_h [h_s, h_t] serves every layer (TinyBERT's official code); otherwise
    one per mapped layer (the paper). Layer terms are summed, as TinyBERT does.
    """

    name = "hidden"
    reads = teacher_reads = frozenset({MAPPED_HIDDEN})

    def __init__(self, student_dim: int, teacher_dim: int, num_layers: int, shared_projection: bool = False,
                 proj: nn.Module | None = None):
        super().__init__()
        self.num_layers = num_layers
        if proj is not None:  # one given W for every layer
            self.projs = nn.ModuleList([proj])
        else:
            count = 1 if shared_projection else num_layers
            self.projs = nn.ModuleList(projection(student_dim, teacher_dim) for _ in range(count))

    @classmethod
    def build(cls, setup) -> HiddenMSE:
        s, t, options = setup.student_config.hidden_size, setup.teacher_config.hidden_size, setup.options
        # tinybert_compat: one W for embeddings and hidden states
        shared = setup.share("projection", lambda: projection(s, t)) if options.tinybert_compat else None
        term = cls(s, t, setup.layer_map.student_layers, options.shared_hidden_projection, shared)
        term.pairs = setup.layer_map.hidden_pairs()
        return term

    def forward(
        self, h_s: list[torch.Tensor], h_t: list[torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if len(h_s) != self.num_layers or len(h_t) != self.num_layers:
            raise ValueError(f"HiddenMSE built for {self.num_layers} layers, got {len(h_s)} student / {len(h_t)} teacher")
        total = h_s[0].new_zeros(())
        for j, (s, t) in enumerate(zip(h_s, h_t)):
            proj = self.projs[j if len(self.projs) > 1 else 0]
            total = total + masked_mse(proj(s), t, mask)
        return total

    def score(self, s, t, inputs) -> torch.Tensor:
        return self([s.hidden_states[i] for i, _ in self.pairs], [t.hidden_states[j] for _, j in self.pairs],
                    inputs.token_mask)
