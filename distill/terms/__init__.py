"""The loss terms, one per file in this package: each an ``nn.Module`` with its formula and tensor shapes in its
docstring, declaring what it reads (``distill.terms.base``). Importing this package imports every module in it,
so a new file is a new term; its weight is a field of ``distill.config.LossWeights`` (checked here, at import).
docs/extending.md walks through adding one."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import fields

from distill.config import LossWeights
from distill.terms.base import (
    EMBEDDINGS,
    LABELS,
    LAST_HIDDEN,
    LAYER_READS,
    LOGITS,
    MAPPED_ATTENTION,
    MAPPED_HIDDEN,
    MAPPED_READS,
    QKV,
    STORED,
    TERMS,
    LossTerm,
    TermInputs,
    TermSetup,
)

__all__ = ["EMBEDDINGS", "LABELS", "LAST_HIDDEN", "LAYER_READS", "LOGITS", "MAPPED_ATTENTION", "MAPPED_HIDDEN",
           "MAPPED_READS", "QKV", "STORED", "TERMS", "LossTerm", "TermInputs", "TermSetup", "reads_of", "term_classes"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

_weights = [f.name for f in fields(LossWeights)]
if missing := [n for n in TERMS if n not in _weights]:
    raise TypeError(f"loss term(s) {', '.join(missing)} have no weight: add `<name>: float = 0.0` to "
                    "distill.config.LossWeights for each")
if unused := [n for n in _weights if n not in TERMS]:
    raise TypeError(f"LossWeights.{', '.join(unused)}: no loss term has this name (a LossTerm subclass in distill/terms)")


def term_classes(weights: LossWeights) -> dict[str, type[LossTerm]]:
    """The classes of the terms a phase's weights switch on, in LossWeights' order."""
    return {name: TERMS[name] for name in weights.active()}


def reads_of(weights: LossWeights) -> tuple[frozenset[str], frozenset[str]]:
    """What the active terms read of the student's forward, and of the teacher's."""
    terms = term_classes(weights).values()
    return frozenset().union(*(t.reads for t in terms)), frozenset().union(*(t.teacher_reads for t in terms))
