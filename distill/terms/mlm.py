"""``mlm``: the student's own masked-LM loss (DistilBERT)."""

from __future__ import annotations

from distill.terms.hard_ce import HardCrossEntropy


class MaskedLM(HardCrossEntropy):
    """L_mlm = mean over masked positions of -log softmax(z_S)[y]: the student's vocabulary logits z_S [n, vocab] at
    the n positions the token masker chose, against the original tokens y [n]."""

    name = "mlm"
    stages = ("general",)
    stages_why = "the mlm loss needs a masked-LM student: only stage=general trains one"
