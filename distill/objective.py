"""The training objective: a weighted sum of loss terms, as one ``nn.Module``.

Its submodules are the student and the projections (W_E, W_h), i.e. exactly
what the optimizer trains; the frozen teacher is held outside the module tree.
Which terms are on is config (``LossWeights``): the teacher fine-tune stage is
``hard_ce`` alone with no teacher, intermediate distillation is
``embedding + hidden + attention``, prediction distillation ``soft_ce``. The terms
are ``distill.terms``; what they declare they read decides how far each model runs.
"""

from __future__ import annotations

import torch
from torch import nn

from distill.attention import Intermediates, intermediates, use_fast_attention, use_score_attention
from distill.config import LossOptions, LossWeights
from distill.layer_map import LayerMap
from distill.teacher import FrozenTeacher
from distill.terms import LAST_HIDDEN, LAYER_READS, LOGITS, MAPPED_READS, LossTerm, TermInputs, TermSetup, reads_of, term_classes


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
        classes = term_classes(weights)
        self.terms = list(classes)
        student_reads, teacher_reads = reads_of(weights)
        # an objective of logits alone runs the student with fused attention (sdpa): no scores to keep
        self.reads_layers = bool(student_reads & LAYER_READS) or masker is not None
        self.reads_teacher = bool(teacher_reads)
        (use_score_attention if self.reads_layers else use_fast_attention)(student)
        t_cfg = teacher.config if teacher is not None else None
        setup = TermSetup(student.config, t_cfg, layer_map, options)
        for name, cls in classes.items():
            # a submodule under its own name: its projections (W_E, W_h, cosine's) are trained with the student,
            # and their state-dict names (hidden.projs.0.weight) carry them from phase to phase (distill.projections)
            self.add_module(name, cls.build(setup))
        # the (student, teacher) layer whose Q, K and V a term reads (relation); (None, None) when none does
        self.qkv_layers = next((self.term(n).qkv_layers for n in self.terms if self.term(n).qkv_layers), (None, None))
        self.teacher_depth = self._teacher_depth(teacher_reads, layer_map, t_cfg, masker, self.qkv_layers[1])
        # stage.loss.balance=initial divides the terms that compare layers (not logits) by their first value
        self.balanced = [name for name, cls in classes.items() if cls.reads & LAYER_READS]
        if options.balance == "initial":
            # 1 / each balanced term's value on the first batch (0: not measured yet). A buffer, so it travels in
            # checkpoints and a resumed run divides by the same numbers; set on the device, no host sync
            self.register_buffer("balance", torch.zeros(len(self.balanced)))

    @staticmethod
    def _teacher_depth(reads: frozenset[str], layer_map: LayerMap | None, t_cfg, masker, qkv_layer: int | None) -> int | None:
        """How many teacher layers a forward must run: up to the deepest mapped layer (or the layer whose Q, K, V
        are read) when no term reads the teacher's output (its logits, or its last layer); None: all of them."""
        if t_cfg is None or reads & {LOGITS, LAST_HIDDEN} or masker is not None:
            return None
        deepest = max(layer_map.targets) if layer_map is not None and reads & MAPPED_READS else 0
        deepest = max(deepest, qkv_layer or 0)
        return deepest if deepest < t_cfg.num_hidden_layers else None

    @property
    def teacher(self) -> FrozenTeacher | None:
        return self.__dict__["teacher"]

    def term(self, name: str) -> LossTerm:
        return self.get_submodule(name)

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
            s = intermediates(self.student, batch, logits_at=masked, qkv_layer=self.qkv_layers[0])
        else:
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            s = Intermediates(hidden_states=(), attention_scores=(), logits=self.student(**inputs).logits)
        # a teacher that no active term reads is not run (hard labels alone)
        t = self.teacher(batch, logits_at=masked, depth=self.teacher_depth, layers=self.reads_layers,
                         qkv_layer=self.qkv_layers[1]) \
            if self.teacher is not None and self.reads_teacher else None
        mask = batch["attention_mask"]
        # masked-LM: logits [n, vocab] at the masked positions, and their labels; classification: [b, classes]
        labels = batch["labels"][masked] if masked is not None else batch.get("labels")
        inputs = TermInputs(mask=mask, token_mask=None if self.options.tinybert_compat else mask, labels=labels)
        # nothing masked in this batch (tiny batches): the terms on the logits contribute 0, keeping the graph
        nothing_masked = masked is not None and not masked.any()
        zero = (s.hidden_states[-1] if s.hidden_states else s.logits).sum() * 0.0
        terms = {name: zero if nothing_masked and LOGITS in self.term(name).reads else self.term(name).score(s, t, inputs)
                 for name in self.terms}
        total = sum(getattr(self.weights, name) * value * self._balance(name, value) for name, value in terms.items())
        return total, terms

    def _balance(self, name: str, value: torch.Tensor) -> torch.Tensor | float:
        """``stage.loss.balance=initial``: a layer term's factor, 1 / its value on the first batch; else 1."""
        if self.options.balance != "initial" or name not in self.balanced:
            return 1.0
        i = self.balanced.index(name)
        first = 1.0 / value.detach().clamp_min(1e-12)
        self.balance[i] = torch.where(self.balance[i] == 0, first, self.balance[i])
        return self.balance[i].clone()  # the next term writes the buffer again before backward
