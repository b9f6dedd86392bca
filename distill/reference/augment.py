"""TinyBERT's augmentation candidates computed its own way: one forward per word, one scan per neighbour.

The reference that ``distill.augment`` must agree with (tests) and beat (``scripts/bench_augment.py``).
It follows TinyBERT's ``data_augmentation.py``: words are runs of word pieces (a piece starting with
``##`` continues a word); a single-piece word gets one unbatched masked-LM forward of ``[CLS] text
with the word masked [SEP] text [SEP]`` (vocabulary logits at every position, as its code
computes them) and a full-vocabulary argsort; any other word a dot product
with every candidate vector and an argsort. Its rules are restated here from TinyBERT's code, not
imported from ``distill.augment``, so a wrong rule there shows up as a disagreement:

- a word is replaced only when ``_is_valid`` (letters only: TinyBERT's ``[a-z]`` after lowercasing,
  widened to any alphabet as distill documents) and it is not in TinyBERT's ``StopWordsList``;
- masked-LM candidates drop pieces starting with ``##`` (TinyBERT's ``x.find("##")`` filter) and,
  where distill deliberately goes further, special tokens ([UNK], [unused7]...), which TinyBERT keeps;
- a word is not its own neighbour (TinyBERT sets its own distance to -inf).

Unlike TinyBERT it runs under ``no_grad``, which would otherwise flatter the batched version further.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# TinyBERT's StopWordsList (data_augmentation.py), restated
TINYBERT_STOP_WORDS = {
    'i', 'me', 'my', 'myself', 'we', 'our', 'ours', 'ourselves', 'you', "you're", "you've", "you'll", "you'd", 'your',
    'yours', 'yourself', 'yourselves', 'he', 'him', 'his', 'himself', 'she', "she's", 'her', 'hers', 'herself', 'it',
    "it's", 'its', 'itself', 'they', 'them', 'their', 'theirs', 'themselves', 'this', 'that', "that'll", 'these',
    'those', 'am', 'is', 'are', 'was', 'were', 'be', 'been', 'being', 'have', 'has', 'had', 'having', 'do', 'does',
    'did', 'doing', 'a', 'an', 'the', 'and', 'but', 'if', 'or', 'because', 'as', 'until', 'while', 'of', 'at', 'by',
    'for', 'with', 'about', 'against', 'between', 'into', 'through', 'during', 'before', 'after', 'above', 'below',
    'to', 'from', 'up', 'down', 'in', 'out', 'on', 'off', 'over', 'under', 'again', 'further', 'then', 'once', 'here',
    'there', 'all', 'any', 'both', 'each', 'few', 'more', 'most', 'other', 'some', 'such', 'no', 'nor', 'not', 'only',
    'own', 'same', 'so', 'than', 'too', 'very', 's', 't', 'can', 'will', 'just', 'don', "don't", 'should', "should've",
    'now', 'd', 'll', 'm', 'o', 're', 've', 'y', 'ain', 'aren', "aren't", 'couldn', "couldn't", 'didn', "didn't",
    'doesn', "doesn't", 'hadn', "hadn't", 'hasn', "hasn't", 'haven', "haven't", 'isn', "isn't", 'ma', 'mightn',
    "mightn't", 'mustn', "mustn't", 'needn', "needn't", 'shan', "shan't", 'shouldn', "shouldn't", 'wasn', "wasn't",
    'weren', "weren't", 'won', "won't", 'wouldn', "wouldn't", "'s", "'re",
}


def _is_valid(word: str) -> bool:
    """TinyBERT: ``not re.search('[^a-z]', word.lower())``; here any alphabet's letters."""
    return word != "" and all(c.isalpha() for c in word)


def _is_special(token: str, special: set[str]) -> bool:
    return token in special or (token.startswith("[") and token.endswith("]"))


class ReferenceCandidates:
    def __init__(self, model, tokenizer, m: int, use_mlm: bool, skip_stop_words: bool = True):
        self.model, self.tokenizer, self.m, self.use_mlm = model.eval(), tokenizer, m, use_mlm
        self.skip_stop_words = skip_stop_words
        vocab = tokenizer.convert_ids_to_tokens(list(range(model.config.vocab_size)))
        self.vocab = vocab
        special = set(tokenizer.all_special_tokens)
        # neighbour candidates: whole words of letters (TinyBERT's GloVe vocabulary holds words, not pieces)
        self.words = [i for i, t in enumerate(vocab) if t is not None and _is_valid(t) and not _is_special(t, special)]
        # masked-LM candidates: no sub-word piece (TinyBERT) and no special token (distill's addition)
        self.predictable = [t is not None and not t.startswith("##") and not _is_special(t, special) for t in vocab]
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
            if not _is_valid(text) or (self.skip_stop_words and text.lower() in TINYBERT_STOP_WORDS):
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
