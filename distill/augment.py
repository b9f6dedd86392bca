"""TinyBERT's data augmentation of a task's training split: batched, cached, reproducible, resumable.

For every training example, up to ``copies`` (N) variants: each eligible word
(letters only, not one of TinyBERT's stop words) is replaced with probability ``p`` by one of
its ``num_candidates`` (M) candidates. Candidates for a single-piece word come
from the masked-LM head reading ``[CLS] text with the word masked [SEP] text
[SEP]`` (TinyBERT's input): its top M predictions less sub-word pieces and
special tokens. Other words, and every word when the model has no head, take
their M nearest neighbours by cosine similarity of static vectors: the model's
input word-piece embeddings (a multi-piece word is the mean of its pieces), or
a word-vector file (GloVe's text format), as TinyBERT does with GloVe.

Speed: TinyBERT runs one unbatched forward per word and a full-vocabulary
argsort per neighbour query (``distill.reference.augment`` keeps that
algorithm for parity tests and ``scripts/bench_augment.py``). Here the masked
positions of many examples go through the model together in length-sorted
batches, with the vocabulary head applied at the masked positions only, and
the neighbours of the whole vocabulary come from one chunked matrix multiply
and top-k, once per vocabulary (multi-piece words: one per new set of words).

Cache: ``<augment.cache_dir>/<task>-<key>/shard-<i>-of-<n>.arrow``, one
``datasets.map`` per shard of the training split. The key hashes the task's
data, the model's files, the vectors file and every setting that changes the
output. ``datasets`` writes a shard to a temporary file and renames it when it
is complete, so a killed run keeps its finished shards and the next run goes
on from them. Each example draws from its own generator, seeded by (seed,
example index), so the output depends neither on shard boundaries nor on
where a run was resumed.

Variants carry the label ``UNLABELED`` (-100, which hard-label cross-entropy
ignores): the teacher labels them during distillation. The dev split is never
augmented.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, Features, Value, concatenate_datasets
from datasets.fingerprint import Hasher
from filelock import FileLock
from tqdm.auto import tqdm

from distill.attention import masked_lm_head, use_fast_attention
from distill.checks import augment_uses_mlm
from distill.config import AugmentConfig, TaskConfig
from distill.data import path_identity
from distill.errors import ConfigError
from distill.families import Family, Pieces, family_of
from distill.files import write_json
from distill.hf import load_model, load_tokenizer, resolve_path

log = logging.getLogger("distill")

AUGMENT_VERSION = "2"  # bump when the output for the same settings changes, to invalidate caches
UNLABELED = -100  # a variant's label: hard-label cross-entropy ignores it, the teacher labels the text
EXAMPLES_PER_MAP_BATCH = 256  # examples whose masked positions share the length-sorted forwards
# the stop words TinyBERT's data_augmentation.py never replaces (NLTK's English list, as it ships it)
STOP_WORDS = frozenset([
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "you're", "you've", "you'll", "you'd", "your",
    "yours", "yourself", "yourselves", "he", "him", "his", "himself", "she", "she's", "her", "hers", "herself", "it",
    "it's", "its", "itself", "they", "them", "their", "theirs", "themselves", "this", "that", "that'll", "these",
    "those", "am", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "having", "do", "does",
    "did", "doing", "a", "an", "the", "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by",
    "for", "with", "about", "against", "between", "into", "through", "during", "before", "after", "above", "below",
    "to", "from", "up", "down", "in", "out", "on", "off", "over", "under", "again", "further", "then", "once", "here",
    "there", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not", "only",
    "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don", "don't", "should", "should've",
    "now", "d", "ll", "m", "o", "re", "ve", "y", "ain", "aren", "aren't", "couldn", "couldn't", "didn", "didn't",
    "doesn", "doesn't", "hadn", "hadn't", "hasn", "hasn't", "haven", "haven't", "isn", "isn't", "ma", "mightn",
    "mightn't", "mustn", "mustn't", "needn", "needn't", "shan", "shan't", "shouldn", "shouldn't", "wasn", "wasn't",
    "weren", "weren't", "won", "won't", "wouldn", "wouldn't", "'s", "'re",
])


def eligible(text: str, skip_stop_words: bool) -> bool:
    """Whether a word may be replaced: letters only (TinyBERT's [a-z], for any alphabet), and not one of
    TinyBERT's stop words (when skipping those)."""
    return text.isalpha() and not (skip_stop_words and text.lower() in STOP_WORDS)


def word_starts(tokenizer, vocab_size: int, pieces: Pieces) -> list[str | None]:
    """Per vocabulary id, the word a piece can stand for (its letters, marker removed), or None for a piece that
    continues a word (WordPiece ``##s``; a BPE or SentencePiece piece without its word-start marker), a special
    token, or a bracketed one ([unused7]). TinyBERT drops sub-word pieces from the candidates too."""
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    words = [pieces.text(t) if t and i not in special and pieces.starts_word(t) and not (t.startswith("[") and t.endswith("]"))
             else None for i, t in enumerate(tokens)]
    return [word or None for word in words]  # a bare marker (BPE's 'Ġ') is no word


def whole_word_pieces(words: list[str | None]) -> list[int]:
    """Ids of the vocabulary pieces that are whole words of letters (the neighbour candidates), from
    ``word_starts``' list."""
    return [i for i, word in enumerate(words) if word and word.isalpha()]


@dataclass(frozen=True)
class Word:
    """A word as the tokenizer's pre-tokenizer splits it (whitespace and punctuation)."""

    start: int  # character span in the original text
    end: int
    first_piece: int  # index of its first word piece in the text's pieces
    piece_ids: tuple[int, ...]
    text: str  # as the model reads it: its pieces joined (lower-cased, accents stripped for uncased models)


def split_words(texts: list[str], tokenizer, pieces: Pieces) -> tuple[list[list[int]], list[list[Word]]]:
    """Each text's word-piece ids and its words (needs a fast tokenizer: offsets and word ids)."""
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    all_ids, all_words = [], []
    for i, ids in enumerate(enc["input_ids"]):
        tokens, offsets, words, current = enc.tokens(i), enc["offset_mapping"][i], [], None
        for k, word_id in enumerate(enc.word_ids(i)):
            if word_id != current:
                words.append([k])
                current = word_id
            else:
                words[-1].append(k)
        all_ids.append(ids)
        all_words.append([
            Word(offsets[ks[0]][0], offsets[ks[-1]][1], ks[0], tuple(ids[k] for k in ks),
                 "".join(pieces.text(tokens[k]) for k in ks))
            for ks in words
        ])
    return all_ids, all_words


class Neighbours:
    """The M nearest words by cosine similarity, memoized by word: each batch of new words costs one
    matrix multiply [n, d] x [d, C] and a top-k, never a per-word scan."""

    def __init__(self, matrix: torch.Tensor, words: list[str], m: int, chunk: int = 2048):
        self.unit = F.normalize(matrix.float(), dim=1)  # [C, d]
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        self.m = min(m, len(words) - 1)
        self.chunk = chunk
        self.memo: dict[str, list[str]] = {}

    def add(self, keys: list[str], vectors: torch.Tensor) -> None:
        """Compute the neighbours of ``keys`` (their vectors: [n, d]); a word never neighbours itself."""
        for a in range(0, len(keys), self.chunk):
            part = keys[a : a + self.chunk]
            sims = F.normalize(vectors[a : a + self.chunk].float(), dim=1) @ self.unit.T  # [n, C]
            own = [(r, self.index[k]) for r, k in enumerate(part) if k in self.index]
            if own:
                rows, cols = zip(*own)
                sims[list(rows), list(cols)] = -math.inf
            for key, row in zip(part, sims.topk(self.m, dim=1).indices.tolist()):
                self.memo[key] = [self.words[j] for j in row]


class EmbeddingNeighbours:
    """Neighbours in the model's input word-piece embedding space, among whole-word, letters-only pieces.

    The whole vocabulary's neighbours are computed once, at construction; a multi-piece word (the mean of
    its pieces' vectors) is computed the first time it is seen, together with the rest of its batch."""

    def __init__(self, embeddings: torch.Tensor, tokenizer, m: int, pieces: Pieces):
        words = word_starts(tokenizer, embeddings.shape[0], pieces)
        keep = whole_word_pieces(words)
        tokens = [words[i] for i in keep]
        if len(keep) < 2:
            raise ConfigError("augment: the model's vocabulary has fewer than 2 whole-word pieces to use as neighbours")
        self.embeddings = embeddings.detach().float()
        self.neighbours = Neighbours(self.embeddings[keep], tokens, m)
        self.neighbours.add(self.neighbours.words, self.embeddings[keep])

    def __call__(self, words: list[Word]) -> list[list[str]]:
        memo = self.neighbours.memo
        new = {w.text: w.piece_ids for w in words if w.text not in memo}
        if new:
            vectors = torch.stack([self.embeddings[list(ids)].mean(0) for ids in new.values()])
            self.neighbours.add(list(new), vectors)
        return [memo[w.text] for w in words]


class VectorFileNeighbours:
    """Neighbours among the words of a word-vector text file (GloVe: ``word v1 ... vd`` per line; a
    word2vec ``count dim`` header line is skipped). Words not in the file get no candidates."""

    def __init__(self, path: str, m: int):
        words, rows = [], []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                parts = line.rstrip().split(" ")
                if number == 1 and len(parts) == 2:
                    continue
                try:
                    rows.append(np.asarray(parts[1:], dtype=np.float32))
                except ValueError:
                    raise ConfigError(f"augment.vectors: {path} line {number}: not 'word v1 v2 ...' with numbers") from None
                if rows[-1].shape != rows[0].shape:
                    raise ConfigError(f"augment.vectors: {path} line {number}: {len(parts) - 1} numbers, expected {rows[0].size}")
                words.append(parts[0])
        if len(words) < 2:
            raise ConfigError(f"augment.vectors: {path} holds fewer than 2 word vectors")
        self.matrix = torch.from_numpy(np.stack(rows))
        self.neighbours = Neighbours(self.matrix, words, m)

    def __call__(self, words: list[Word]) -> list[list[str]]:
        memo, index = self.neighbours.memo, self.neighbours.index
        found = [next((k for k in (w.text, w.text.lower()) if k in index), None) for w in words]
        new = list(dict.fromkeys(k for k in found if k is not None and k not in memo))
        if new:
            self.neighbours.add(new, self.matrix[[index[k] for k in new]])
        return [memo[k] if k is not None else [] for k in found]


class MaskedLMCandidates:
    """Top-M masked-LM predictions for many (text, position) queries, in length-sorted batches."""

    def __init__(self, model, tokenizer, m: int, batch_size: int, family: Family):
        self.model = model.eval()
        self.head = masked_lm_head(model)
        if self.head is None:
            raise ConfigError(f"augment.model: {type(model).__name__} has no masked-LM head; use augment.candidates=neighbours")
        self.words = word_starts(tokenizer, model.config.vocab_size, family.pieces)
        self.m, self.batch_size, self.family = m, batch_size, family
        self.cls, self.sep, self.mask = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
        # the family's pair (TinyBERT's [CLS] masked [SEP] text [SEP]; <s> masked </s></s> text </s> for RoBERTa)
        # must fit the position embeddings, less the rows a family keeps before position 0
        usable = model.config.max_position_embeddings - family.position_offset(model.config)
        self.max_pieces = (usable - family.pair_overhead()) // 2
        self.pair_types = getattr(model.config, "type_vocab_size", 1) >= 2

    @torch.no_grad()
    def __call__(self, queries: list[tuple[list[int], int]]) -> list[list[str]]:
        """queries: (a text's piece ids, the index of the piece to mask). One candidate list per query."""
        out: list[list[str]] = [[] for _ in queries]
        order = sorted(range(len(queries)), key=lambda q: len(queries[q][0]))  # little padding per batch
        device = next(self.model.parameters()).device
        for a in range(0, len(order), self.batch_size):
            chunk = order[a : a + self.batch_size]
            width = 2 * max(len(queries[q][0]) for q in chunk) + self.family.pair_overhead()
            ids = torch.full((len(chunk), width), self.model.config.pad_token_id or 0, dtype=torch.long)
            types, attention = torch.zeros_like(ids), torch.zeros_like(ids)
            for row, q in enumerate(chunk):
                pieces, at = queries[q]
                masked = list(pieces)
                masked[at] = self.mask
                seq, seq_types = self.family.pair_ids(self.cls, self.sep, masked, pieces)
                ids[row, : len(seq)] = torch.tensor(seq)
                attention[row, : len(seq)] = 1
                if self.pair_types:
                    types[row, : len(seq)] = torch.tensor(seq_types)
            hidden = self.model.base_model(
                input_ids=ids.to(device), attention_mask=attention.to(device),
                **({"token_type_ids": types.to(device)} if self.pair_types else {}),
            ).last_hidden_state  # [b, t, h]
            positions = torch.tensor([queries[q][1] + 1 for q in chunk], device=device)
            logits = self.head(hidden[torch.arange(len(chunk), device=device), positions])  # [b, vocab]
            for q, row in zip(chunk, logits.topk(self.m, dim=1).indices.tolist()):
                out[q] = [self.words[i] for i in row if self.words[i] is not None]
        return out


class Augmenter:
    """The ``datasets.map`` function: examples in, each example followed by its variants out."""

    def __init__(self, aug: AugmentConfig, tokenizer, text_fields: list[str], mlm: MaskedLMCandidates | None, neighbours,
                 pieces: Pieces):
        self.aug, self.tokenizer, self.text_fields, self.pieces = aug, tokenizer, text_fields, pieces
        self.mlm, self.neighbours = mlm, neighbours
        self.on_batch = lambda n: None  # progress callback

    def candidates(self, texts: list[str]) -> list[list[tuple[Word, list[str]]]]:
        """Each text's replaceable words with their candidates (words without any are left out)."""
        all_ids, all_words = split_words(texts, self.tokenizer, self.pieces)
        found: list[list[tuple[Word, list[str]]]] = [[] for _ in texts]
        queries, query_slots, others, other_slots = [], [], [], []
        for i, (ids, words) in enumerate(zip(all_ids, all_words)):
            for word in (w for w in words if eligible(w.text, self.aug.skip_stop_words)):
                slot = (i, len(found[i]))
                found[i].append((word, []))
                if self.mlm is not None and len(word.piece_ids) == 1 and word.first_piece < self.mlm.max_pieces:
                    queries.append((ids[: self.mlm.max_pieces], word.first_piece))
                    query_slots.append(slot)
                else:
                    others.append(word)
                    other_slots.append(slot)
        answers = (self.mlm(queries) if queries else []), (self.neighbours(others) if others else [])
        for slots, lists in zip((query_slots, other_slots), answers):
            for (i, k), words in zip(slots, lists):
                found[i][k] = (found[i][k][0], words)
        return [[(w, c) for w, c in text if c] for text in found]

    def variants(self, texts: tuple[str, ...], candidates: list[list[tuple[Word, list[str]]]], rng) -> list[tuple[str, ...]]:
        """Up to N distinct variants of ``texts`` (one per text field), none equal to the original."""
        slots = [(f, word, words) for f, per_text in enumerate(candidates) for word, words in per_text]
        if not slots:
            return []
        sizes = np.array([len(words) for _, _, words in slots])
        seen, out = {texts}, []
        for _ in range(self.aug.copies):
            picks = rng.integers(0, sizes)
            replace = rng.random(len(slots)) < self.aug.p
            edits: list[list[tuple[Word, str]]] = [[] for _ in texts]
            for (f, word, words), pick, hit in zip(slots, picks, replace):
                if hit:
                    edits[f].append((word, words[pick]))
            variant = tuple(_splice(text, e) for text, e in zip(texts, edits))
            if variant not in seen:
                seen.add(variant)
                out.append(variant)
        return out

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        per_field = [self.candidates(batch[f]) for f in self.text_fields]
        out = {f: [] for f in self.text_fields} | {"label": [], "source": []}
        for row, index in enumerate(indices):
            texts = tuple(batch[f][row] for f in self.text_fields)
            rng = np.random.default_rng([self.aug.seed, index])
            rows = [(texts, batch["label"][row])]
            rows += [(v, UNLABELED) for v in self.variants(texts, [c[row] for c in per_field], rng)]
            for variant, label in rows:
                for f, text in zip(self.text_fields, variant):
                    out[f].append(text)
                out["label"].append(label)
                out["source"].append(index)
        self.on_batch(len(indices))
        return out


def _splice(text: str, edits: list[tuple[Word, str]]) -> str:
    """``text`` with each edited word's character span replaced (the rest of the text, spacing included, kept).

    An uncased model proposes lower-case words: a capitalised word's replacement is capitalised too."""
    for word, new in sorted(edits, key=lambda e: e[0].start, reverse=True):
        if text[word.start].isupper() and new[:1].islower():
            new = new[0].upper() + new[1:]
        text = text[: word.start] + new + text[word.end :]
    return text


def cache_key(train: Dataset, task: TaskConfig, aug: AugmentConfig) -> str:
    return Hasher.hash({
        "data": train._fingerprint, "task": task.name, "fields": [task.text_field, task.text_pair_field],
        "model": path_identity(resolve_path(aug.model)), "vectors": path_identity(aug.vectors),
        "p": aug.p, "m": aug.num_candidates, "n": aug.copies, "seed": aug.seed, "candidates": aug.candidates,
        "stop_words": aug.skip_stop_words, "shard_size": aug.shard_size, "version": AUGMENT_VERSION,
    })


def build_augmenter(aug: AugmentConfig, text_fields: list[str]) -> Augmenter:
    tokenizer = load_tokenizer(aug.model, field="augment.model")
    if not tokenizer.is_fast:
        raise ConfigError(f"augment.model={aug.model}: augmentation needs a fast tokenizer (word offsets)")
    mlm_wanted = augment_uses_mlm(aug)
    # sdpa is fastest here: no attention scores are needed
    model = use_fast_attention(load_model(aug.model, head="masked_lm" if mlm_wanted else "base", field="augment.model"))
    family = family_of(model.config, field="augment.model")  # its pair format and how its pieces mark words
    mlm = MaskedLMCandidates(model, tokenizer, aug.num_candidates, aug.batch_size, family) if mlm_wanted else None
    if aug.vectors is not None:
        neighbours = VectorFileNeighbours(aug.vectors, aug.num_candidates)
    else:
        neighbours = EmbeddingNeighbours(model.get_input_embeddings().weight, tokenizer, aug.num_candidates, family.pieces)
    return Augmenter(aug, tokenizer, text_fields, mlm, neighbours, family.pieces)


@dataclass
class Augmented:
    dataset: Dataset  # originals (with their labels) and variants (label UNLABELED), 'source' = original's index
    directory: Path
    stats: dict


def augment_train(train: Dataset, task: TaskConfig, aug: AugmentConfig, progress: bool = True) -> Augmented:
    """The augmented training split, from the cache where complete, computing the missing shards."""
    fields = [f for f in (task.text_field, task.text_pair_field) if f]
    key = cache_key(train, task, aug)
    directory = Path(aug.cache_dir) / f"{task.name}-{key[:16]}"
    directory.mkdir(parents=True, exist_ok=True)
    # one writer at a time: a second process (a parallel sweep member) waits, then reads the cache
    with FileLock(str(directory / ".lock")):
        parts, remaining, seconds = _augment_shards(train, aug, fields, key, directory, progress, task.name)
    n = len(train)
    # the rows are a function of the key: give them one fingerprint whether the shards were computed or read, and
    # wherever the cache lives (a read shard's own fingerprint is its file's path), so the teacher logits cached for
    # them (keyed by the fingerprint) are found by the next run instead of recomputed (13 min for SST-2 x4)
    joined = concatenate_datasets(parts)
    dataset = joined.select(range(len(joined)), new_fingerprint=Hasher.hash((key, "rows")))
    stats = {
        "examples": n, "rows": len(dataset), "variants_per_example": (len(dataset) - n) / max(n, 1),
        "computed_examples": remaining, "seconds": round(seconds, 2),
        "examples_per_second": round(remaining / seconds, 1) if remaining and seconds > 0 else None,
        "directory": str(directory),
    }
    if remaining:
        log.info("augmented %d examples into %d rows in %.1fs: %s", n, len(dataset), seconds, directory)
    return Augmented(dataset, directory, stats)


def _augment_shards(train: Dataset, aug: AugmentConfig, fields: list[str], key: str, directory: Path,
                    progress: bool, name: str) -> tuple[list[Dataset], int, float]:
    """Every shard as a Dataset: read where complete, computed where not. Call with the directory locked."""
    for stale in directory.glob("tmp*"):  # a shard half-written by a killed run (we hold the lock: nobody else writes)
        stale.unlink()
    settings = {"task": name, "model": aug.model, "vectors": aug.vectors, "p": aug.p, "num_candidates": aug.num_candidates,
                "copies": aug.copies, "seed": aug.seed, "candidates": aug.candidates, "examples": len(train)}
    write_json(directory / "settings.json", settings)
    n, size = len(train), aug.shard_size
    shards = max(1, math.ceil(n / size))
    paths = [directory / f"shard-{i:05d}-of-{shards:05d}.arrow" for i in range(shards)]
    todo = [i for i, path in enumerate(paths) if not path.is_file()]
    features = Features({f: Value("string") for f in fields} | {"label": Value("int64"), "source": Value("int64")})
    started = time.perf_counter()  # the rate counts loading the model and the vocabulary's neighbours too
    augmenter = build_augmenter(aug, fields) if todo else None
    remaining = sum(min(n, (i + 1) * size) - i * size for i in todo)
    bar = tqdm(total=n, initial=n - remaining, unit="ex", desc=f"augment {name}", disable=not progress, dynamic_ncols=True)
    parts = []
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one bar for the whole split, not one per shard
    try:
        if augmenter is not None:
            augmenter.on_batch = bar.update
        for i, path in enumerate(paths):
            if i not in todo:
                parts.append(Dataset.from_file(str(path)))
                continue
            lo = i * size
            shard = train.select(range(lo, min(n, lo + size)))
            parts.append(shard.map(
                lambda batch, idx, lo=lo: augmenter(batch, [lo + j for j in idx]), batched=True, with_indices=True,
                batch_size=EXAMPLES_PER_MAP_BATCH, remove_columns=shard.column_names, features=features,
                cache_file_name=str(path), load_from_cache_file=False, new_fingerprint=Hasher.hash((key, i)),
            ))
    finally:
        bar.close()
        if was_enabled:
            datasets.enable_progress_bars()
    return parts, remaining, time.perf_counter() - started
