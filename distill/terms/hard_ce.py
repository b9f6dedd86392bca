"""``hard_ce``: cross-entropy against the labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.terms.base import LABELS, LOGITS, LossTerm


class HardCrossEntropy(LossTerm):
    """L_ce = mean over labelled examples of -log softmax(z_S)[y]. z_S: [b, c], y: [b].

    y = -100 marks an example without a label (an augmented variant, which the teacher labels
    through soft CE): it is left out of the mean, and a batch with no labels at all gives 0."""

    name = "hard_ce"
    reads = frozenset({LOGITS, LABELS})

    def forward(self, z_s: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labelled = (labels != -100).sum()
        return F.cross_entropy(z_s, labels, ignore_index=-100, reduction="sum") / labelled.clamp(min=1)

    def score(self, s, t, inputs) -> torch.Tensor:
        return self(s.logits, inputs.labels)
