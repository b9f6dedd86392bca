"""The student: a stock `transformers` ALBERT built from a small shape config.

Cross-layer sharing maps onto ALBERT's own knobs, with ``inner_group_num = 1``
always (one layer per group), so layer i (0-based) runs group
``i // (L / num_hidden_groups)``:
- ``all``: one group, every layer shares one set of weights (ALBERT's default);
- ``every_k``: ``L / k`` groups, consecutive blocks of k layers share weights,
  e.g. k = 2 gives (1,2), (3,4), ... (pattern AABB);
- ``none``: L groups, a plain BERT-like stack.
The vocabulary always comes from the teacher's tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    AlbertConfig,
    AlbertForMaskedLM,
    AlbertForSequenceClassification,
    AlbertModel,
    PreTrainedTokenizerBase,
)

from distill.modeling_albert_pooled import AlbertMeanPoolForSequenceClassification

SHARING_MODES = ("all", "every_k", "none")
POOLING = ("cls", "mean")


@dataclass
class StudentShape:
    num_layers: int = 4
    hidden_size: int = 312
    embedding_size: int = 128
    num_heads: int = 12
    intermediate_size: int = 1200
    sharing: str = "every_k"
    k: int = 2
    # numerically the same as ALBERT's default gelu_new, about 17% faster on CPU
    hidden_act: str = "gelu_pytorch_tanh"
    dropout: float = 0.1
    max_position_embeddings: int = 512
    # sequence-classifier pooling: 'cls' (first token through tanh, as BERT/ALBERT) or
    # 'mean' over real tokens (saved with its own small model file; load with trust_remote_code=True)
    pooling: str = "cls"

    def problems(self) -> list[str]:
        """Every problem with this shape, one line each (empty when valid)."""
        out = []
        for name in ("num_layers", "hidden_size", "embedding_size", "num_heads", "intermediate_size"):
            if getattr(self, name) < 1:
                out.append(f"student.{name}={getattr(self, name)} must be >= 1")
        if self.num_heads >= 1 and self.hidden_size % self.num_heads:
            out.append(
                f"student.hidden_size={self.hidden_size} is not divisible by student.num_heads={self.num_heads}; "
                "pick a head count that divides it (with a teacher of another head count, also set "
                "stage.loss.attention_head_reduction=mean)"
            )
        if self.sharing not in SHARING_MODES:
            out.append(f"student.sharing='{self.sharing}' is unknown; use one of {', '.join(SHARING_MODES)}")
        if self.sharing == "every_k" and (self.k < 1 or self.num_layers % self.k):
            out.append(
                f"student.k={self.k} does not divide student.num_layers={self.num_layers}; "
                "sharing=every_k needs consecutive blocks of k layers"
            )
        if self.pooling not in POOLING:
            out.append(f"student.pooling='{self.pooling}' is unknown; use cls or mean")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"student.dropout={self.dropout} must be in [0, 1)")
        return out

    @property
    def num_groups(self) -> int:
        return {"all": 1, "every_k": self.num_layers // max(self.k, 1), "none": self.num_layers}[self.sharing]

    def tag(self) -> str:
        """Short name for run directories, e.g. L4_H312_E128_A12_I1200_every2."""
        share = {"all": "shareall", "none": "noshare", "every_k": f"every{self.k}"}.get(self.sharing, self.sharing)
        return (
            f"L{self.num_layers}_H{self.hidden_size}_E{self.embedding_size}"
            f"_A{self.num_heads}_I{self.intermediate_size}_{share}"
        ) + ("_mean" if self.pooling == "mean" else "")


def albert_config(shape: StudentShape, tokenizer: PreTrainedTokenizerBase, type_vocab_size: int = 2, **extra) -> AlbertConfig:
    problems = shape.problems()
    if problems:
        raise ValueError(problems[0] if len(problems) == 1 else "; ".join(problems))
    return AlbertConfig(
        vocab_size=len(tokenizer),
        embedding_size=shape.embedding_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_hidden_groups=shape.num_groups,
        inner_group_num=1,
        num_attention_heads=shape.num_heads,
        intermediate_size=shape.intermediate_size,
        hidden_act=shape.hidden_act,
        hidden_dropout_prob=shape.dropout,
        attention_probs_dropout_prob=shape.dropout,
        classifier_dropout_prob=shape.dropout,
        max_position_embeddings=shape.max_position_embeddings,
        type_vocab_size=type_vocab_size,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **extra,
    )


def build_student(
    shape: StudentShape, tokenizer: PreTrainedTokenizerBase, num_labels: int | None = None, masked_lm: bool = False,
    **extra,
) -> nn.Module:
    """A randomly initialised ALBERT: with ``num_labels`` a sequence classifier pooled by
    ``shape.pooling``; with ``masked_lm`` one with ALBERT's MLM head; else the bare encoder."""
    config = albert_config(shape, tokenizer, **extra)
    if masked_lm:
        return AlbertForMaskedLM(config)
    if num_labels is None:
        return AlbertModel(config)
    config.num_labels = num_labels
    if shape.pooling == "mean":
        return AlbertMeanPoolForSequenceClassification(config)
    return AlbertForSequenceClassification(config)


def _albert_core(model: nn.Module) -> AlbertModel:
    return model if isinstance(model, AlbertModel) else model.albert


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameter counts of an ALBERT student (base model or with a head), or of a BERT teacher.

    embedding: the factorized embedding, V*E + P*E + T*E + LayerNorm(E), plus
        the E->H projection (E*H + H).
    non_embedding: everything else *as executed*: a layer shared by n
        positions counts n times (what a BERT of this shape would have), plus
        pooler and head.
    total: embedding + non_embedding.
    unique: distinct tensors, shared weights counted once (what is stored).
    """
    n = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    unique = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    if not isinstance(model.base_model, AlbertModel):
        # a BERT-like teacher: nothing is shared
        embedding = n(model.base_model.embeddings)
        return {"total": unique, "embedding": embedding, "non_embedding": unique - embedding, "unique": unique}
    core = _albert_core(model)
    embedding = n(core.embeddings) + n(core.encoder.embedding_hidden_mapping_in)
    cfg = core.config
    per_group = n(core.encoder.albert_layer_groups[0])
    layers_as_run = per_group * cfg.num_hidden_layers
    layers_stored = sum(n(g) for g in core.encoder.albert_layer_groups)
    non_embedding = unique - embedding - layers_stored + layers_as_run
    return {
        "total": embedding + non_embedding,
        "embedding": embedding,
        "non_embedding": non_embedding,
        "unique": unique,
    }


def layer_group_of(model: nn.Module, layer: int) -> nn.Module:
    """The module that runs as (0-based) layer ``layer``, the same object for shared layers."""
    core = _albert_core(model)
    cfg = core.config
    per_group = cfg.num_hidden_layers // cfg.num_hidden_groups
    return core.encoder.albert_layer_groups[layer // per_group]


@torch.no_grad()
def init_from_albert(student: nn.Module, source: AlbertModel) -> None:
    """Load a (general) student's ALBERT body into ``student``; its head stays as built."""
    missing, unexpected = _albert_core(student).load_state_dict(source.state_dict(), strict=False)
    # the general student's pooler is unused by a mean-pooled head, and absent before the task stage
    bad = [k for k in list(missing) + list(unexpected) if not k.startswith("pooler")]
    if bad:
        raise ValueError(f"student init: the ALBERT body does not match this student's shape ({bad[:3]} ...)")
