"""``relation``: MiniLMv2's self-attention relation distillation (Wang et al., 2021)."""

from __future__ import annotations

import math

import torch

from distill.terms.base import QKV, LossTerm


class RelationKL(LossTerm):
    """L_rel = sum over X in {Q, K, V} of mean over (example, relation head a, real query i) of
    KL(R_T[a, i, :] || R_S[a, i, :]),  R[a] = softmax(X_a X_a^T / sqrt(d_a) + mask),

    where X [b, t, h] is one layer's query, key or value projection with its heads concatenated, re-split into
    A relation heads X_a [b, A, t, h/A] (d_a = h/A): the teacher's and the student's A need not be their
    attention head counts, and their widths need not match (each relation is [b, A, t, t]). The KL runs over
    the real keys of each real query; padded keys get probability 0 on both sides and are left out. From teacher
    layer ``qkv_layers[1]`` to student layer ``qkv_layers[0]`` (MiniLMv2: the teacher's last or an upper-middle
    layer, the student's last).
    """

    name = "relation"
    reads = teacher_reads = frozenset({QKV})

    def __init__(self, heads: int, layers: tuple[int, int]):
        super().__init__()
        self.heads = heads
        self.qkv_layers = layers

    @classmethod
    def teacher_qkv_layer(cls, options, teacher_config) -> int:
        return options.relation_teacher_layer or teacher_config.num_hidden_layers

    @classmethod
    def build(cls, setup) -> RelationKL:
        o = setup.options
        return cls(o.relation_heads, (o.relation_student_layer or setup.student_config.num_hidden_layers,
                                      cls.teacher_qkv_layer(o, setup.teacher_config)))

    def relations(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log R [b, A, t, t] of one projection x [b, t, h]; masked keys hold -inf before the softmax."""
        b, t, h = x.shape
        xa = x.view(b, t, self.heads, h // self.heads).transpose(1, 2)  # [b, A, t, d_a]
        scores = xa @ xa.transpose(-1, -2) / math.sqrt(h // self.heads)
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
        return torch.log_softmax(scores.float(), dim=-1)

    def forward(self, qkv_s, qkv_t, mask: torch.Tensor) -> torch.Tensor:
        real = mask.bool()
        keys = real[:, None, None, :]  # [b, 1, 1, t]
        queries = real[:, None, :].expand(-1, self.heads, -1)  # [b, A, t]
        total = qkv_s[0].new_zeros((), dtype=torch.float32)
        for s, t in zip(qkv_s, qkv_t):
            log_s, log_t = self.relations(s, mask), self.relations(t, mask)
            kl = torch.where(keys, log_t.exp() * (log_t - log_s), 0.0).sum(-1)  # [b, A, t]
            total = total + kl[queries].mean()
        return total

    def score(self, s, t, inputs) -> torch.Tensor:
        return self(s.qkv, t.qkv, inputs.mask)

    @classmethod
    def problems(cls, cfg, teacher_config) -> list[str]:
        o, out = cfg.stage.loss, []
        for who, width in (("student", cfg.student.hidden_size), ("teacher", teacher_config.hidden_size)):
            if o.relation_heads < 1 or width % o.relation_heads:
                out.append(f"stage.loss.relation_heads={o.relation_heads} does not divide the {who}'s width {width}; "
                           "choose a common divisor of both widths")
        for who, layer, depth in (("student", o.relation_student_layer, cfg.student.num_layers),
                                  ("teacher", o.relation_teacher_layer, teacher_config.num_hidden_layers)):
            if layer is not None and not 1 <= layer <= depth:
                out.append(f"stage.loss.relation_{who}_layer={layer} is out of range; the {who} has layers 1..{depth}")
        return out
