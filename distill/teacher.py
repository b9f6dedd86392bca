"""The frozen teacher and the once-per-example cache of its logits (loading is ``distill.hf``)."""

from __future__ import annotations

import torch
from torch import nn

from distill.attention import Intermediates, fast_attention, intermediates, use_score_attention

class FrozenTeacher:
    """A teacher that cannot train: eval mode for good, no gradients, no_grad forward.

    Deliberately *not* an ``nn.Module``: kept out of the objective's module
    tree, ``.train()``, ``.parameters()``, ``state_dict()`` and DDP never reach
    it, so it can be neither unfrozen by a parent's ``train()`` nor handed to
    an optimizer nor saved into a checkpoint.
    """

    def __init__(self, model: nn.Module):
        model.eval()
        model.requires_grad_(False)
        # a later model.train() (by anyone) must not switch dropout back on
        model.train = lambda mode=True: model  # type: ignore[method-assign]
        self.model = use_score_attention(model)

    @property
    def config(self):
        return self.model.config

    def to(self, device) -> FrozenTeacher:
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor], logits_at: torch.Tensor | None = None,
                 depth: int | None = None, layers: bool = True, qkv_layer: int | None = None) -> Intermediates:
        """Hidden states, scores and logits; with ``depth`` only the lowest layers run and there are no logits;
        with ``layers=False`` the logits alone, through the fused attention (no scores or hidden states kept);
        ``qkv_layer``: also that layer's Q, K and V."""
        if not layers and logits_at is None:
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            with fast_attention(self.model):
                return Intermediates(hidden_states=(), attention_scores=(), logits=self.model(**inputs).logits)
        return intermediates(self.model, batch, logits_at, depth, qkv_layer)
