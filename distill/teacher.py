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
                 depth: int | None = None, layers: bool = True) -> Intermediates:
        """Hidden states, scores and logits; with ``depth`` only the lowest layers run and there are no logits;
        with ``layers=False`` the logits alone, through the fused attention (no scores or hidden states kept)."""
        if not layers and logits_at is None:
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            with fast_attention(self.model):
                return Intermediates(hidden_states=(), attention_scores=(), logits=self.model(**inputs).logits)
        return intermediates(self.model, batch, logits_at, depth)


LOGITS_VERSION = "2"  # bump when with_teacher_logits changes, to invalidate caches


def with_teacher_logits(ds, teacher: FrozenTeacher, tokenizer, identity, batch_size: int = 128):
    """``ds`` (tokenized) plus a ``teacher_logits`` column: one teacher forward per example, ever.

    A ``datasets.map`` whose fingerprint is the data's and the teacher's files (``identity``), so the
    logits are reused across epochs, phases, runs and the members of a sweep, and recomputed when
    the data or the teacher change. Phases that read only the teacher's logits then run at student
    speed (``distill.teacher_cache.CachedTeacher``). Logits: [num_labels] float32 per example."""
    from datasets.fingerprint import Hasher
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in ds.column_names]
    device = next(teacher.model.parameters()).device

    @torch.no_grad()
    def label(batch):
        rows = [{k: batch[k][i] for k in inputs} for i in range(len(batch["input_ids"]))]
        # length-sorted forwards: little padding; logits go back in the rows' order
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
        logits = [None] * len(rows)
        with fast_attention(teacher.model):
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                enc = {k: v.to(device) for k, v in collate([rows[i] for i in chunk]).items()}
                for i, row in zip(chunk, teacher.model(**enc).logits.float().cpu().tolist()):
                    logits[i] = row
        return {"teacher_logits": logits}

    return ds.map(label, batched=True, batch_size=4096, desc="teacher logits (cached)",
                  new_fingerprint=Hasher.hash((ds._fingerprint, identity, LOGITS_VERSION)))
