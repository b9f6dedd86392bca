"""``attention``: TinyBERT's attention-score loss through the layer map G(m)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.terms.base import MAPPED_ATTENTION, LossTerm


class AttentionMSE(LossTerm):
    """L_att = sum over mapped layers of mean over valid (head, query, key) of (A_S - A_T)^2.

    A_S, A_T: [b, n, t, t] pre-softmax scores ``Q K^T / sqrt(d) + mask``.
    A pair (q, k) is valid when both tokens are real; masked entries are
    selected away with ``torch.where`` before any arithmetic, so a mask value
    of ``torch.finfo(dtype).min`` (or -inf) never yields inf or NaN.
    Head counts must match (``problems`` says so before training), unless
    ``head_reduction='mean'``, which compares the head-averaged scores [b, 1, t, t].
    """

    name = "attention"
    reads = teacher_reads = frozenset({MAPPED_ATTENTION})

    def __init__(self, head_reduction: str = "none"):
        super().__init__()
        self.head_reduction = head_reduction

    @classmethod
    def build(cls, setup) -> AttentionMSE:
        term = TinyBertAttentionMSE() if setup.options.tinybert_compat else cls(setup.options.attention_head_reduction)
        term.pairs = setup.layer_map.attention_pairs()
        return term

    def forward(self, a_s: list[torch.Tensor], a_t: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        real = mask.bool()
        valid = (real[:, :, None] & real[:, None, :]).unsqueeze(1)  # [b, 1, q, k]
        total = a_s[0].new_zeros(())
        for s, t in zip(a_s, a_t):
            s = torch.where(valid, s, 0.0)
            t = torch.where(valid, t, 0.0)
            if self.head_reduction == "mean":
                s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
            total = total + (s - t).pow(2).sum() / (valid.sum() * s.size(1)).clamp_min(1)
        return total

    def score(self, s, t, inputs) -> torch.Tensor:
        return self([s.attention_scores[i] for i, _ in self.pairs], [t.attention_scores[j] for _, j in self.pairs],
                    inputs.mask)

    @classmethod
    def problems(cls, cfg, teacher_config) -> list[str]:
        heads = teacher_config.num_attention_heads
        compat = cfg.stage.loss.tinybert_compat  # TinyBERT's attention loss is head by head, whatever the reduction
        if (cfg.stage.loss.attention_head_reduction == "none" or compat) and cfg.student.num_heads != heads:
            fix = "(stage.loss.tinybert_compat=true has no head reduction)" if compat else \
                "or stage.loss.attention_head_reduction=mean"
            return [f"student.num_heads={cfg.student.num_heads} but the teacher has {heads} heads; attention MSE "
                    f"compares head by head: set student.num_heads={heads} {fix}"]
        return []


class TinyBertAttentionMSE(AttentionMSE):
    """TinyBERT's official attention loss, for reproducing its numbers (``stage.loss.tinybert_compat``).

    Entries <= -100 (masked keys) are replaced by 0 in both A_S and A_T
    [b, n, t, t], then a plain MSE over *all* entries, padded query rows
    included; summed over mapped layers.
    """

    def __init__(self):
        super().__init__("none")

    def forward(self, a_s: list[torch.Tensor], a_t: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        total = a_s[0].new_zeros(())
        for s, t in zip(a_s, a_t):
            s = torch.where(s <= -100, 0.0, s)
            t = torch.where(t <= -100, 0.0, t)
            total = total + F.mse_loss(s, t)
        return total
