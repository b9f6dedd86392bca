"""Pre-softmax attention scores from unmodified `transformers` models.

TinyBERT distils the attention *scores* ``Q K^T / sqrt(d) + mask``, but
transformers 5.x only returns attention *probabilities*. Instead of forking
the model code, we register one more attention implementation,
``"distill_scores"``, through the public ``AttentionInterface``: it computes
exactly what ``eager`` computes and returns the pre-softmax scores where
``eager`` returns the probabilities, so ``output_attentions=True`` records
scores. A newly registered name would get ``attention_mask=None``, so the
eager mask builder is registered for it too (``AttentionMaskInterface``);
masked keys therefore hold ``torch.finfo(dtype).min`` in the scores.

Models whose attention does not go through the interface (MPNet: its relative position bias is added
inside ``MPNetSelfAttention``) get the same behaviour from a forward bound to each attention module
(``SCORE_FORWARDS``, from each family's ``score_forwards``: ``distill/families/mpnet.py``): eager's computation, the scores (bias and mask included) returned as the weights.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import types

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from distill.families import FAMILIES, family_of

SCORES_ATTENTION = "distill_scores"


def scores_attention_forward(
    module: nn.Module,
    query: torch.Tensor,  # [b, heads, q, d]
    key: torch.Tensor,  # [b, heads, k, d]
    value: torch.Tensor,  # [b, heads, k, d]
    attention_mask: torch.Tensor | None,  # [b, 1, q, k], additive
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention that returns the pre-softmax scores as its 'weights'."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # [b, heads, q, k]
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = nn.functional.softmax(scores, dim=-1)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()  # [b, q, heads, d]
    return output, scores


AttentionInterface.register(SCORES_ATTENTION, scores_attention_forward)
AttentionMaskInterface.register(SCORES_ATTENTION, eager_mask)


# attention modules outside the AttentionInterface -> the forward that returns their scores (the families say which)
SCORE_FORWARDS = {name: forward for family in FAMILIES for name, forward in family.score_forwards.items()}


def _bound_score_forwards(model: nn.Module) -> int:
    """Bind the score-returning forward to every attention module of a model that needs one; how many."""
    bound = 0
    for module in model.modules():
        forward = SCORE_FORWARDS.get(type(module).__name__)
        if forward is not None:
            module.forward = types.MethodType(forward, module)
            bound += 1
    return bound


def _has_bound_scores(model: nn.Module) -> bool:
    return getattr(model, "_distill_bound_scores", False)


def returns_scores(model: nn.Module) -> bool:
    return model.config._attn_implementation == SCORES_ATTENTION or _has_bound_scores(model)


def use_score_attention(model: nn.Module) -> nn.Module:
    """Switch a loaded model to the score-returning attention, in place."""
    if _bound_score_forwards(model):
        model._distill_bound_scores = True  # its attention cannot be switched; it now always returns scores
        return model
    model.set_attn_implementation(SCORES_ATTENTION)
    return model


def use_fast_attention(model: nn.Module) -> nn.Module:
    """Switch to torch's fused attention (sdpa), in place: for passes that read only logits. A model with
    bound score forwards keeps them (the scores are computed, and not asked for)."""
    if not _has_bound_scores(model):
        model.set_attn_implementation("sdpa")
    return model


@contextmanager
def fast_attention(model: nn.Module):
    """sdpa inside the block, the model's own attention again after it."""
    if _has_bound_scores(model):
        yield model
        return
    previous = model.config._attn_implementation
    use_fast_attention(model)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


@dataclass
class Intermediates:
    """What distillation reads from one forward pass.

    hidden_states: L+1 tensors [b, t, h]; index 0 is the embedding output
        (for ALBERT: after the E->H projection), index i the output of layer i.
    attention_scores: L tensors [b, heads, t, t], pre-softmax, additive mask
        included; index i-1 belongs to layer i.
    logits: [b, num_labels] or [b, t, vocab] when the model has a head, else None.
    """

    hidden_states: tuple[torch.Tensor, ...]
    attention_scores: tuple[torch.Tensor, ...]
    logits: torch.Tensor | None
    # (Q, K, V) of one chosen layer, [b, t, h] each, the heads concatenated (``intermediates(qkv_layer=...)``)
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def embeddings(self) -> torch.Tensor:
        return self.hidden_states[0]


def masked_lm_head(model: nn.Module) -> nn.Module | None:
    """The prediction head of a ``*ForMaskedLM`` model: its one child besides the base model."""
    if not type(model).__name__.endswith("ForMaskedLM"):
        return None
    heads = [m for m in model.children() if m is not model.base_model]
    return heads[0] if len(heads) == 1 else None


@contextmanager
def first_layers(model: nn.Module, depth: int | None):
    """Inside the block the encoder runs its lowest ``depth`` layers only (None: all of them).

    The layers above the last one a loss reads cost a teacher forward and change nothing it
    returns below them; the model's own layer list is back in place after the block. An encoder
    without a ``layer`` list (ALBERT's shared groups) runs whole."""
    encoder = getattr(model.base_model, "encoder", None)
    full = getattr(encoder, "layer", None)
    if depth is None or not isinstance(full, nn.ModuleList):
        yield model
        return
    if not getattr(model, "_distill_full_forward_done", False):
        # transformers records hidden states and scores through hooks it installs on the layers present at
        # the first such forward: run one with every layer, or the layers above a cut would never be recorded
        with torch.no_grad():
            model.base_model(input_ids=torch.zeros(1, 2, dtype=torch.long, device=next(model.parameters()).device),
                             output_hidden_states=True, output_attentions=True)
        model._distill_full_forward_done = True
    encoder.layer = full[:depth]  # a new ModuleList holding the same layers
    try:
        yield model
    finally:
        encoder.layer = full


QKV_TARGETS = ("attention.query", "attention.key", "attention.value")  # ALBERT's names, which families map onto


def qkv_projections(model: nn.Module, layer: int) -> tuple[list[nn.Module], int]:
    """The query, key and value Linears that layer ``layer`` (1-based) runs, and which of their calls in one forward
    is that layer's: an ALBERT group's modules run once per layer that shares them, in order; a teacher family's
    layer runs its own once."""
    groups = getattr(getattr(model.base_model, "encoder", None), "albert_layer_groups", None)
    if groups is not None:
        per_group = model.config.num_hidden_layers // model.config.num_hidden_groups
        block = groups[(layer - 1) // per_group].albert_layers[0]
        return [block.get_submodule(name) for name in QKV_TARGETS], (layer - 1) % per_group
    family = family_of(model.config)
    block = family.layers(model)[layer - 1]
    return [family.module(block, name) for name in QKV_TARGETS], 0


@contextmanager
def recording_qkv(model: nn.Module, layer: int | None):
    """Inside the block, ``record["qkv"]`` holds layer ``layer``'s (Q, K, V) outputs of the last forward (forward
    hooks on its projections: the model's code is not touched). ``layer`` None: nothing is recorded."""
    record: dict = {}
    if layer is None:
        yield record
        return
    modules, call = qkv_projections(model, layer)
    calls: list[list[torch.Tensor]] = [[] for _ in modules]
    hooks = [m.register_forward_hook(lambda _m, _i, out, k=k: calls[k].append(out)) for k, m in enumerate(modules)]
    try:
        yield record
    finally:
        for hook in hooks:
            hook.remove()
    if all(len(c) > call for c in calls):
        record["qkv"] = tuple(c[call] for c in calls)


def intermediates(
    model: nn.Module, batch: dict[str, torch.Tensor], logits_at: torch.Tensor | None = None, depth: int | None = None,
    qkv_layer: int | None = None,
) -> Intermediates:
    """Run ``model`` on a tokenized batch and collect hidden states and scores.

    logits_at: a [b, t] bool mask. For a masked-LM model the head then runs at those
    positions only and ``logits`` is [n, vocab]: the vocabulary-sized matmul is the
    largest cost of a small student, and DistilBERT's terms read masked positions only.
    depth: run the lowest ``depth`` layers only (``first_layers``): hidden_states then has
    depth + 1 entries, the scores depth, and ``logits`` is None (no head above a cut encoder).
    qkv_layer: also record that layer's (1-based) query, key and value projections (``Intermediates.qkv``).
    """
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    head = masked_lm_head(model) if logits_at is not None else None
    runner = model.base_model if head is not None or depth is not None else model
    with first_layers(model, depth), recording_qkv(model, qkv_layer) as record:
        out = runner(**inputs, output_hidden_states=True, output_attentions=True, return_dict=True)
    if not returns_scores(model):
        raise RuntimeError(
            f"model uses attention '{model.config._attn_implementation}', which returns probabilities or nothing; "
            "call distill.attention.use_score_attention(model) first"
        )
    if not out.attentions or not out.hidden_states:
        raise RuntimeError("model returned no attentions/hidden_states; it cannot be distilled layer by layer")
    logits = head(out.hidden_states[-1][logits_at]) if head is not None else getattr(out, "logits", None)
    return Intermediates(hidden_states=tuple(out.hidden_states), attention_scores=tuple(out.attentions), logits=logits,
                         qkv=record.get("qkv"))
