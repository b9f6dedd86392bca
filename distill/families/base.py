"""What distill must know about a teacher family, stated once per family (``bert.py``, ``roberta.py``, ``mpnet.py``).

A family is a model layout the student can learn from and be copied from: where its encoder layers are, how
their pre-softmax attention scores are captured, how its parameters map onto the ALBERT student's, how it numbers
positions, what its classification head looks like, how it encodes a pair of texts, and how its tokenizer marks
the pieces of a word (for augmentation). ``distill.families.family_of(config)`` picks one by ``model_type``;
everything that copies, captures or augments asks it instead of assuming BERT.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # the checks import the families, and must not import torch
    from torch import nn

# the ALBERT student's per-layer modules (AlbertLayer), the targets of every family's ``layer_names``
ALBERT_LAYER = ("attention.query", "attention.key", "attention.value", "attention.dense", "attention.LayerNorm",
                "ffn", "ffn_output", "full_layer_layer_norm")
# the ALBERT student's embedding tables and norm (AlbertEmbeddings), the keys of every family's ``embedding_names``
ALBERT_EMBEDDINGS = ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm")


@dataclass(frozen=True)
class Pieces:
    """How a tokenizer's vocabulary marks the pieces of a word.

    WordPiece marks a *continuation* (``##ing``); byte-level BPE (``Ġgood``) and SentencePiece (``▁good``) mark
    a piece that *starts* a word after a space. ``text(token)`` is the piece as letters (marker removed, bytes
    decoded), ``starts_word(token)`` whether it can stand for a whole word's beginning."""

    name: str
    marker: str
    marks_start: bool
    decode: Callable[[str], str] = lambda s: s

    def starts_word(self, token: str) -> bool:
        return token.startswith(self.marker) == self.marks_start

    def text(self, token: str) -> str:
        return self.decode(token.removeprefix(self.marker))


@functools.cache
def _byte_level_decoder():
    from tokenizers.decoders import ByteLevel

    return ByteLevel()


def _byte_level_text(piece: str) -> str:
    """GPT-2's byte-level alphabet back to text (``Ã©`` -> ``é``), by the tokenizers library's own decoder (built
    once: this runs for every piece of a vocabulary); bytes that are not whole UTF-8 decode to U+FFFD, which no word
    of letters contains."""
    return _byte_level_decoder().decode([piece])


WORDPIECE = Pieces("wordpiece", "##", marks_start=False)
BYTE_BPE = Pieces("byte-level BPE", "\u0120", marks_start=True, decode=_byte_level_text)
SENTENCEPIECE = Pieces("sentencepiece", "\u2581", marks_start=True)


@dataclass(frozen=True)
class Family:
    """One teacher family. ``model_types``: the ``config.model_type`` values it covers."""

    name: str
    model_types: tuple[str, ...]
    # encoder layer submodule -> the ALBERT layer's (every entry of ALBERT_LAYER)
    layer_names: dict[str, str]
    # ALBERT embedding name -> the family's embeddings submodule (None: the family has no such table)
    embedding_names: dict[str, str | None]
    # how its tokenizer marks word pieces
    pieces: Pieces
    # how a pair of texts is encoded: 'bert' ([CLS] A [SEP] B [SEP], token types 0 then 1) or
    # 'roberta' (<s> A </s></s> B </s>, no token types)
    pair: str
    # rows of the position table before position 0: RoBERTa and MPNet number positions from padding_idx + 1
    position_offset: Callable[[object], int]
    # (pooler dense, classifier) of a model of this family: BERT pools [CLS] through pooler.dense + tanh and has one
    # Linear; RoBERTa-style heads are classifier.dense + tanh, then classifier.out_proj. None where absent.
    head: Callable[[nn.Module], tuple[nn.Linear | None, nn.Linear | None]]
    # attention module class name -> a forward to bind that returns pre-softmax scores (models outside transformers'
    # AttentionInterface); empty: the interface's ``distill_scores`` implementation captures them
    score_forwards: dict[str, Callable] = field(default_factory=dict)
    # why a student copied from this family cannot compute exactly what it did (None: it can)
    approximate: str | None = None

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return model.base_model.encoder.layer

    def module(self, layer: nn.Module, albert_name: str) -> nn.Module:
        """The submodule of one encoder layer that plays the ALBERT layer's ``albert_name`` (e.g. attention.query)."""
        return layer.get_submodule(next(own for own, albert in self.layer_names.items() if albert == albert_name))

    def ffn(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear]:
        """(FFN input Linear [I, H], FFN output Linear [H, I]) of one encoder layer."""
        return self.module(layer, "ffn"), self.module(layer, "ffn_output")

    def type_vocab_size(self, config) -> int:
        """Token-type rows the student needs to read this family's inputs (1 when it has no token types)."""
        return getattr(config, "type_vocab_size", 1) if self.embedding_names["token_type_embeddings"] else 1

    def pair_ids(self, cls: int, sep: int, a: list[int], b: list[int]) -> tuple[list[int], list[int]]:
        """(input ids, token types) of the pair (a, b) as this family's tokenizer encodes it."""
        if self.pair == "bert":
            return [cls, *a, sep, *b, sep], [0] * (len(a) + 2) + [1] * (len(b) + 1)
        ids = [cls, *a, sep, sep, *b, sep]
        return ids, [0] * len(ids)

    def pair_overhead(self) -> int:
        """Special tokens a pair adds."""
        return len(self.pair_ids(0, 0, [], [])[0])


def pooler_and_linear(model: nn.Module) -> tuple[nn.Linear | None, nn.Linear | None]:
    """BERT's head: the base model's pooler.dense, and a ``classifier`` Linear when fine-tuned."""
    pooler = getattr(model.base_model, "pooler", None)
    classifier = getattr(model, "classifier", None)
    return (pooler.dense if pooler is not None else None), (classifier if type(classifier).__name__ == "Linear" else None)


def dense_and_out_proj(model: nn.Module) -> tuple[nn.Linear | None, nn.Linear | None]:
    """RoBERTa-style head: ``classifier.dense`` (+ tanh) then ``classifier.out_proj``, on the first token. This is
    exactly ALBERT's pooler (dense + tanh on the first token) then its classifier. A base model without that head
    offers its own pooler, when it has one."""
    classifier = getattr(model, "classifier", None)
    if classifier is not None and hasattr(classifier, "out_proj"):
        return classifier.dense, classifier.out_proj
    return pooler_and_linear(model)[0], None
