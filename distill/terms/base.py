"""What every loss term is: an ``nn.Module`` that declares what it reads, and scores one batch.

The declarations are what the rest of distill asks of a term, so that no other module names terms:
``distill.objective`` runs the models as far as the active terms read them, ``distill.checks`` asks
for a layer map only when a term pairs layers and runs each term's own checks, and
``distill.teacher_cache`` answers a phase's teacher from the stores only when every term's teacher
inputs are kept there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from distill.attention import Intermediates

# What a term may read of a forward pass (the student's, or the teacher's):
EMBEDDINGS = "embeddings"  # the embedding output [b, t, h] (hidden_states[0])
MAPPED_HIDDEN = "mapped_hidden"  # the hidden states of the layers the layer map G(m) pairs, [b, t, h] each
MAPPED_ATTENTION = "mapped_attention"  # the pre-softmax attention scores of those layers, [b, n, t, t] each
LAST_HIDDEN = "last_hidden"  # the last layer's hidden states [b, t, h]
LOGITS = "logits"  # the head's output: [b, c], or [n, vocab] at the masked positions
LABELS = "labels"  # the batch's labels (the student's reads only)
QKV = "qkv"  # the query, key and value projections of one chosen layer, [b, t, h] each (the term's ``qkv_layers``)
# what needs the layers, not just the output (the student then runs with score-keeping attention)
LAYER_READS = frozenset({EMBEDDINGS, MAPPED_HIDDEN, MAPPED_ATTENTION, LAST_HIDDEN, QKV})
# what pairs student and teacher layers through G(m)
MAPPED_READS = frozenset({MAPPED_HIDDEN, MAPPED_ATTENTION})
# what the teacher stores keep per example (distill.teacher_cache): logits, the mapped layers and one layer's Q, K, V
# at real tokens
STORED = frozenset({EMBEDDINGS, MAPPED_HIDDEN, MAPPED_ATTENTION, LOGITS, QKV})

# term name -> class, filled as each term's module is imported (distill/terms/__init__.py imports them all)
TERMS: dict[str, type[LossTerm]] = {}


@dataclass
class TermSetup:
    """What a term may need to build itself: the two models' configs, the layer map, ``stage.loss``'s options,
    and modules shared between terms (TinyBERT's one projection for embeddings and hidden states)."""

    student_config: object
    teacher_config: object | None
    layer_map: object | None
    options: object
    shared: dict[str, nn.Module] = field(default_factory=dict)

    def share(self, key: str, build) -> nn.Module:
        """The module ``build()`` made for the first term that asked for ``key``; the same one for later terms."""
        if key not in self.shared:
            self.shared[key] = build()
        return self.shared[key]


@dataclass
class TermInputs:
    """The batch as the terms see it. mask: the attention mask [b, t] (1 = real token); token_mask: the mask the
    per-token terms average over (None under stage.loss.tinybert_compat: every position counts); labels: the
    labels of the logits' rows ([b], or [n] at the masked positions; -100 = none)."""

    mask: torch.Tensor
    token_mask: torch.Tensor | None
    labels: torch.Tensor | None


class LossTerm(nn.Module):
    """A loss term. A subclass sets ``name`` (its weight in ``stage.phases[i].weights``, a field of
    ``distill.config.LossWeights``), declares what it reads, and implements ``score``."""

    name: ClassVar[str] = ""
    # what it reads of the student's forward, and of the teacher's (empty: the teacher is not run for it)
    reads: ClassVar[frozenset[str]] = frozenset()
    teacher_reads: ClassVar[frozenset[str]] = frozenset()
    # the stages it can run in; None: wherever its inputs exist
    stages: ClassVar[tuple[str, ...] | None] = None
    # why, for the one-line error when it is switched on elsewhere
    stages_why: ClassVar[str] = ""
    # a term that reads QKV: (student layer, teacher layer), 1-based, set by ``build``
    qkv_layers: tuple[int, int] | None = None

    @classmethod
    def teacher_qkv_layer(cls, options, teacher_config) -> int | None:
        """The teacher layer (1-based) whose Q, K and V the term reads, from ``stage.loss``; None: it reads none."""
        return None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in TERMS and TERMS[cls.name].__qualname__ != cls.__qualname__:
                raise TypeError(f"two loss terms are named '{cls.name}': {TERMS[cls.name].__module__} and {cls.__module__}")
            TERMS[cls.name] = cls

    @classmethod
    def build(cls, setup: TermSetup) -> LossTerm:
        """The term for this run's models and options."""
        return cls()

    def score(self, s: Intermediates, t: Intermediates | None, inputs: TermInputs) -> torch.Tensor:
        """The term's value (a scalar) on one batch, from the student's and the teacher's forwards."""
        raise NotImplementedError

    @classmethod
    def problems(cls, cfg, teacher_config) -> list[str]:
        """What this term needs of the config and the teacher (config.json) that a type cannot say; one line each."""
        return []


def projection(student_dim: int, teacher_dim: int) -> nn.Module:
    """W [h_s, h_t] from the student's width to the teacher's: learned, or the identity at equal widths."""
    return nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (S - T)^2 over real tokens and features; over everything when ``mask`` is None.

    student, teacher: [b, t, h]; mask: [b, t].
    """
    if mask is None:
        return nn.functional.mse_loss(student, teacher)
    keep = mask.bool().unsqueeze(-1)  # [b, t, 1]
    sq = torch.where(keep, student - teacher, 0.0).pow(2)
    return sq.sum() / (keep.sum() * student.size(-1)).clamp_min(1)
