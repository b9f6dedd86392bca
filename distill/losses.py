"""Distillation losses. Each returns a scalar tensor.

Shapes: b batch, t tokens, h_s / h_t student / teacher width, n heads,
c classes (or vocabulary, for masked-LM logits). ``mask`` is the tokenizer's
attention mask [b, t] (1 = real token, 0 = padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _projection(student_dim: int, teacher_dim: int) -> nn.Module:
    return nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (S - T)^2 over real tokens and features; over everything when ``mask`` is None.

    student, teacher: [b, t, h]; mask: [b, t].
    """
    if mask is None:
        return F.mse_loss(student, teacher)
    keep = mask.bool().unsqueeze(-1)  # [b, t, 1]
    sq = torch.where(keep, student - teacher, 0.0).pow(2)
    return sq.sum() / (keep.sum() * student.size(-1)).clamp_min(1)


class EmbeddingMSE(nn.Module):
    """L_emb = MSE(E_S W_E, E_T) over real tokens.

    E_S: [b, t, h_s] student embedding output (hidden_states[0]),
    E_T: [b, t, h_t] teacher embedding output, W_E: [h_s, h_t] learned
    (identity when h_s == h_t). Padding positions do not count unless
    ``mask`` is None.
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = _projection(student_dim, teacher_dim)

    def forward(self, e_s: torch.Tensor, e_t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_mse(self.proj(e_s), e_t, mask)


class HiddenMSE(nn.Module):
    """L_hid = sum over mapped layers j of MSE(H_S[j] W_h[j], H_T[j]) over real tokens.

    H_S[j]: [b, t, h_s], H_T[j]: [b, t, h_t]. With ``shared_projection`` one
    W_h [h_s, h_t] serves every layer (TinyBERT's official code); otherwise
    one per mapped layer (the paper). Layer terms are summed, as TinyBERT does.
    """

    def __init__(self, student_dim: int, teacher_dim: int, num_layers: int, shared_projection: bool = False):
        super().__init__()
        self.num_layers = num_layers
        count = 1 if shared_projection else num_layers
        self.projs = nn.ModuleList(_projection(student_dim, teacher_dim) for _ in range(count))

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


class AttentionMSE(nn.Module):
    """L_att = sum over mapped layers of mean over valid (head, query, key) of (A_S - A_T)^2.

    A_S, A_T: [b, n, t, t] pre-softmax scores ``Q K^T / sqrt(d) + mask``.
    A pair (q, k) is valid when both tokens are real; masked entries are
    selected away with ``torch.where`` before any arithmetic, so a mask value
    of ``torch.finfo(dtype).min`` (or -inf) never yields inf or NaN.
    Head counts must match (``distill.checks`` says so before training), unless
    ``head_reduction='mean'``, which compares the head-averaged scores [b, 1, t, t].
    """

    def __init__(self, head_reduction: str = "none"):
        super().__init__()
        self.head_reduction = head_reduction

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


class TinyBertAttentionMSE(nn.Module):
    """TinyBERT's official attention loss, for reproducing its numbers.

    Entries <= -100 (masked keys) are replaced by 0 in both A_S and A_T
    [b, n, t, t], then a plain MSE over *all* entries, padded query rows
    included; summed over mapped layers.
    """

    def forward(self, a_s: list[torch.Tensor], a_t: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        total = a_s[0].new_zeros(())
        for s, t in zip(a_s, a_t):
            s = torch.where(s <= -100, 0.0, s)
            t = torch.where(t <= -100, 0.0, t)
            total = total + F.mse_loss(s, t)
        return total


class SoftCrossEntropy(nn.Module):
    """L_pred = mean over examples of -softmax(z_T / T) . log_softmax(z_S / T), times T^2 if ``scale_by_t2``.

    z_S, z_T: [b, c] (or [n, c] for selected token positions). T^2 keeps the
    gradient scale independent of T (Hinton et al.); TinyBERT leaves it out. T > 0 (``distill.checks``).
    """

    def __init__(self, temperature: float = 1.0, scale_by_t2: bool = False):
        super().__init__()
        self.temperature = temperature
        self.scale = temperature**2 if scale_by_t2 else 1.0

    def forward(self, z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        p_t = F.softmax(z_t / self.temperature, dim=-1)
        log_p_s = F.log_softmax(z_s / self.temperature, dim=-1)
        return -(p_t * log_p_s).sum(-1).mean() * self.scale


class CosineEmbedding(nn.Module):
    """L_cos = mean over real tokens of 1 - cos(h_S, h_T) (DistilBERT).

    h_S: [b, t, h_s], h_T: [b, t, h_t]; projected through W [h_s, h_t] when
    widths differ.
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = _projection(student_dim, teacher_dim)

    def forward(self, h_s: torch.Tensor, h_t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cos = F.cosine_similarity(self.proj(h_s), h_t, dim=-1)  # [b, t]
        real = mask.bool()
        return (1.0 - cos)[real].mean()


class HardCrossEntropy(nn.Module):
    """L_ce = mean over labelled examples of -log softmax(z_S)[y]. z_S: [b, c], y: [b].

    y = -100 marks an example without a label (an augmented variant, which the teacher labels
    through soft CE): it is left out of the mean, and a batch with no labels at all gives 0."""

    def forward(self, z_s: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labelled = (labels != -100).sum()
        return F.cross_entropy(z_s, labels, ignore_index=-100, reduction="sum") / labelled.clamp(min=1)
