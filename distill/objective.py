"""The training objective: a weighted sum of loss terms, as one ``nn.Module``.

Its submodules are the student and the projections (W_E, W_h), i.e. exactly
what the optimizer trains; the frozen teacher is held outside the module tree.
Which terms are on is config (``LossWeights``): the teacher fine-tune stage is
``hard_ce`` alone with no teacher, intermediate distillation is
``embedding + hidden + attention``, prediction distillation ``soft_ce``.
"""

from __future__ import annotations

import torch
from torch import nn

from distill.attention import Intermediates, intermediates, use_fast_attention, use_score_attention
from distill.config import LAYER_TERMS, LossOptions, LossWeights, TEACHER_TERMS
from distill.layer_map import LayerMap
from distill.losses import (
    AttentionMSE,
    CosineEmbedding,
    EmbeddingMSE,
    HardCrossEntropy,
    HiddenMSE,
    SoftCrossEntropy,
    TinyBertAttentionMSE,
)
from distill.teacher import FrozenTeacher


class TokenMasker:
    """BERT's dynamic masking (15% of real tokens; 80% [MASK], 10% random, 10% kept), per batch.

    Runs inside the objective's forward on the global torch RNG, so the masks of a
    resumed run are the masks of the uninterrupted one.
    """

    def __init__(self, tokenizer, probability: float):
        from transformers import DataCollatorForLanguageModeling

        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        special = torch.isin(batch["input_ids"], self.special_ids.to(batch["input_ids"].device))
        special |= batch["attention_mask"] == 0
        input_ids, labels = self.collator.torch_mask_tokens(batch["input_ids"].clone(), special_tokens_mask=special)
        return {**batch, "input_ids": input_ids, "labels": labels}


class Objective(nn.Module):
    def __init__(
        self,
        student: nn.Module,
        weights: LossWeights,
        teacher: FrozenTeacher | None = None,
        layer_map: LayerMap | None = None,
        options: LossOptions | None = None,
        masker: TokenMasker | None = None,
    ):
        super().__init__()
        self.student = student
        self.weights = weights
        self.options = options = options or LossOptions()
        self.layer_map = layer_map
        self.masker = masker
        # not a submodule: see FrozenTeacher
        self.__dict__["teacher"] = teacher
        # which terms may be combined, and with what, was checked with the config (distill.checks)
        self.terms = active = weights.active()
        # an objective of logits alone runs the student with fused attention (sdpa): no scores to keep
        self.reads_layers = bool(set(LAYER_TERMS) & set(active)) or masker is not None
        self.reads_teacher = bool(set(TEACHER_TERMS) & set(active))
        (use_score_attention if self.reads_layers else use_fast_attention)(student)
        t_cfg = teacher.config if teacher is not None else None
        self.teacher_depth = self._teacher_depth(active, layer_map, t_cfg, masker)
        self._build_terms(student.config, t_cfg)
        if options.balance == "initial":
            # 1 / each layer term's value on the first batch (0: not measured yet). A buffer, so it travels in
            # checkpoints and a resumed run divides by the same numbers; set on the device, no host sync
            self.register_buffer("balance", torch.zeros(len(LAYER_TERMS)))

    def _build_terms(self, s_cfg, t_cfg) -> None:
        """One loss module per active term; the projections (W_E, W_h, cosine's) are its parameters."""
        active, options = self.terms, self.options
        if "hidden" in active or (options.tinybert_compat and "embedding" in active):
            n = self.layer_map.student_layers if self.layer_map else 0
            self.hidden = HiddenMSE(s_cfg.hidden_size, t_cfg.hidden_size, n, options.shared_hidden_projection or options.tinybert_compat)
        if "embedding" in active:
            self.embedding = EmbeddingMSE(s_cfg.hidden_size, t_cfg.hidden_size)
            if options.tinybert_compat:
                self.embedding.proj = self.hidden.projs[0]  # one W for embeddings and hidden states
        if "attention" in active:
            self.attention = TinyBertAttentionMSE() if options.tinybert_compat else AttentionMSE(options.attention_head_reduction)
        if "soft_ce" in active:
            self.soft_ce = SoftCrossEntropy(options.temperature, options.scale_by_t2 and not options.tinybert_compat)
        if "hard_ce" in active or "mlm" in active:
            self.hard_ce = HardCrossEntropy()
        if "cosine" in active:
            self.cosine = CosineEmbedding(s_cfg.hidden_size, t_cfg.hidden_size)

    @staticmethod
    def _teacher_depth(active: list[str], layer_map: LayerMap | None, t_cfg, masker) -> int | None:
        """How many teacher layers a forward must run: up to the deepest mapped layer when no term reads
        the teacher's output (its logits, or its last layer for cosine); None: all of them."""
        if t_cfg is None or {"soft_ce", "cosine"} & set(active) or masker is not None:
            return None
        deepest = max(layer_map.targets) if layer_map is not None and {"hidden", "attention"} & set(active) else 0
        return deepest if deepest < t_cfg.num_hidden_layers else None

    @property
    def teacher(self) -> FrozenTeacher | None:
        return self.__dict__["teacher"]

    def projection_parameters(self) -> list[nn.Parameter]:
        student_ids = {id(p) for p in self.student.parameters()}
        return [p for p in self.parameters() if id(p) not in student_ids]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total weighted loss and each (unweighted) term, for logging."""
        masked = None
        if self.masker is not None:
            batch = self.masker(batch)  # teacher and student read the same masked text
            masked = batch["labels"] != -100  # [b, t]: masked-LM predictions count here only
        if self.reads_layers:
            s = intermediates(self.student, batch, logits_at=masked)
        else:
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            s = Intermediates(hidden_states=(), attention_scores=(), logits=self.student(**inputs).logits)
        # a teacher that no active term reads is not run (hard labels alone)
        t = self.teacher(batch, logits_at=masked, depth=self.teacher_depth, layers=self.reads_layers) \
            if self.teacher is not None and self.reads_teacher else None
        mask = batch["attention_mask"]
        token_mask = None if self.options.tinybert_compat else mask
        terms: dict[str, torch.Tensor] = {}
        if "embedding" in self.terms:
            terms["embedding"] = self.embedding(s.embeddings, t.embeddings, token_mask)
        if "hidden" in self.terms:
            pairs = self.layer_map.hidden_pairs()
            terms["hidden"] = self.hidden(
                [s.hidden_states[i] for i, _ in pairs], [t.hidden_states[j] for _, j in pairs], token_mask
            )
        if "attention" in self.terms:
            pairs = self.layer_map.attention_pairs()
            terms["attention"] = self.attention(
                [s.attention_scores[i] for i, _ in pairs], [t.attention_scores[j] for _, j in pairs], mask
            )
        # masked-LM: logits [n, vocab] at the masked positions; classification: [b, classes]
        s_logits, t_logits = s.logits, (t.logits if t is not None else None)
        labels = batch["labels"][masked] if masked is not None else batch.get("labels")
        if masked is not None and not masked.any():
            # nothing masked in this batch (tiny batches): the prediction terms contribute 0
            s_logits = t_logits = labels = None
        # keeps the graph when a term has nothing to score
        zero = (s.hidden_states[-1] if s.hidden_states else s.logits).sum() * 0.0
        if "soft_ce" in self.terms:
            terms["soft_ce"] = self.soft_ce(s_logits, t_logits) if s_logits is not None else zero
        if "hard_ce" in self.terms:
            terms["hard_ce"] = self.hard_ce(s_logits, labels) if s_logits is not None else zero
        if "mlm" in self.terms:
            terms["mlm"] = self.hard_ce(s_logits, labels) if s_logits is not None else zero
        if "cosine" in self.terms:
            terms["cosine"] = self.cosine(s.hidden_states[-1], t.hidden_states[-1], mask)
        total = sum(getattr(self.weights, name) * value * self._balance(name, value) for name, value in terms.items())
        return total, terms

    def _balance(self, name: str, value: torch.Tensor) -> torch.Tensor | float:
        """``stage.loss.balance=initial``: a layer term's factor, 1 / its value on the first batch; else 1."""
        if self.options.balance != "initial" or name not in LAYER_TERMS:
            return 1.0
        i = LAYER_TERMS.index(name)
        first = 1.0 / value.detach().clamp_min(1e-12)
        self.balance[i] = torch.where(self.balance[i] == 0, first, self.balance[i])
        return self.balance[i].clone()  # the next term writes the buffer again before backward
