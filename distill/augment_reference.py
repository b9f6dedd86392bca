"""TinyBERT's augmentation candidates computed its own way: one forward per word, one scan per neighbour.

The reference that ``distill.augment`` must agree with (tests) and beat (``scripts/bench_augment.py``).
It follows TinyBERT's ``data_augmentation.py``: words are runs of word pieces (a piece starting with
``##`` continues a word); a single-piece word gets one unbatched masked-LM forward of ``[CLS] text
with the word masked [SEP] text [SEP]`` (vocabulary logits at every position, as its code
computes them) and a full-vocabulary argsort; any other word a dot product
with every candidate vector and an argsort. The eligibility and filtering rules are distill's (letters
only, stop words skipped, no sub-word or special tokens as candidates), so the two can be compared;
unlike TinyBERT it runs under ``no_grad``, which would otherwise flatter the batched version further.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.augment import eligible, predictable_pieces, whole_word_pieces


class ReferenceCandidates:
    def __init__(self, model, tokenizer, m: int, use_mlm: bool, skip_stop_words: bool = True):
        self.model, self.tokenizer, self.m, self.use_mlm = model.eval(), tokenizer, m, use_mlm
        self.skip_stop_words = skip_stop_words
        vocab = tokenizer.convert_ids_to_tokens(list(range(model.config.vocab_size)))
        self.vocab = vocab
        self.words = whole_word_pieces(tokenizer, model.config.vocab_size)
        self.predictable = predictable_pieces(tokenizer, model.config.vocab_size)
        self.embeddings = model.get_input_embeddings().weight.detach().float()
        self.unit = F.normalize(self.embeddings[self.words], dim=1)  # TinyBERT's emb_norm
        self.row = {vocab[i]: j for j, i in enumerate(self.words)}

    def __call__(self, sentence: str) -> list[tuple[str, list[str]]]:
        """(word, candidates) for each eligible word of ``sentence`` that has candidates, in order."""
        pieces = self.tokenizer.tokenize(sentence)
        words: list[list[int]] = []
        for k, piece in enumerate(pieces):
            if piece.startswith("##") and words:
                words[-1].append(k)
            else:
                words.append([k])
        max_pieces = (self.model.config.max_position_embeddings - 3) // 2
        out = []
        for ks in words:
            text = "".join(pieces[k].removeprefix("##") for k in ks)
            if not eligible(text, self.skip_stop_words):
                continue
            if self.use_mlm and len(ks) == 1 and ks[0] < max_pieces:
                candidates = self.masked_lm(pieces[:max_pieces], ks[0])
            else:
                candidates = self.neighbours(text, [self.tokenizer.convert_tokens_to_ids(pieces[k]) for k in ks])
            if candidates:
                out.append((text, candidates))
        return out

    @torch.no_grad()
    def masked_lm(self, pieces: list[str], position: int) -> list[str]:
        masked = list(pieces)
        masked[position] = self.tokenizer.mask_token
        tokens = [self.tokenizer.cls_token, *masked, self.tokenizer.sep_token, *pieces, self.tokenizer.sep_token]
        ids = torch.tensor([self.tokenizer.convert_tokens_to_ids(tokens)])
        types = torch.tensor([[0] * (len(pieces) + 2) + [1] * (len(pieces) + 1)])
        if getattr(self.model.config, "type_vocab_size", 1) < 2:
            types.zero_()
        # as TinyBERT does: the whole model, vocabulary logits at every position, then the masked one's row
        logits = self.model(input_ids=ids, token_type_ids=types).logits[0, position + 1]
        ranked = torch.argsort(logits, descending=True)[: self.m].tolist()
        return [self.vocab[i] for i in ranked if self.predictable[i]]

    def neighbours(self, word: str, piece_ids: list[int]) -> list[str]:
        vector = F.normalize(self.embeddings[piece_ids].mean(0), dim=0)
        distance = self.unit @ vector  # one scan of the vocabulary per word
        if word in self.row:  # a word is not its own neighbour
            distance[self.row[word]] = -float("inf")
        top = torch.argsort(distance, descending=True)[: min(self.m, len(self.words) - 1)]
        return [self.vocab[self.words[j]] for j in top.tolist()]
