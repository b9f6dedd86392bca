"""RoBERTa-style teachers (RoBERTa, XLM-R, CamemBERT): BERT's layers under BERT's names, but positions numbered
from padding_idx + 1 (row 2 is position 0: copying rows one for one is off by two), a classifier of dense + tanh +
out_proj on <s>, pairs as <s> A </s></s> B </s> without token types, and byte-level BPE (RoBERTa) or SentencePiece
(XLM-R, CamemBERT) pieces that mark a word's start."""

import dataclasses

from distill.families.base import BYTE_BPE, SENTENCEPIECE, Family, dense_and_out_proj
from distill.families.bert import FAMILY as BERT

FAMILY = Family(
    name="roberta",
    model_types=("roberta",),
    layer_names=BERT.layer_names,
    embedding_names=BERT.embedding_names,
    pieces=BYTE_BPE,
    pair="roberta",
    position_offset=lambda config: config.pad_token_id + 1,
    head=dense_and_out_proj,
)

# XLM-R and CamemBERT: RoBERTa's layout over a SentencePiece vocabulary (``▁`` starts a word)
XLM_ROBERTA = dataclasses.replace(FAMILY, name="xlm-roberta", model_types=("xlm-roberta", "camembert"), pieces=SENTENCEPIECE)
