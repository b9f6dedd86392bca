"""Task data and unlabeled corpora, by config alone.

Tasks come from local files (tsv / csv / json / jsonl / parquet), a fetched
offline asset or the hub; every local file is checked (encoding, columns,
empty text, labels) before training starts, and a problem is reported with
its file and line. Tokenization runs through ``datasets.map`` with an explicit
fingerprint (data, tokenizer vocabulary, max length, fields), so a second run
with the same tokenizer and length reuses the cached result.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset, DatasetDict, Value, concatenate_datasets, load_dataset
from datasets.fingerprint import Hasher
from torch.utils.data import DataLoader, RandomSampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler

from distill.assets import fetch, sha256_of
from distill.config import CorpusConfig, TaskConfig
from distill.errors import ConfigError
from distill.files import write_json

READERS = {
    # GLUE TSVs hold raw quotes: read them as plain tab-separated fields
    ".tsv": ("csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE}),
    ".csv": ("csv", {}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
TABULAR = ("csv",)
TOKENIZE_VERSION = "1"  # bump when the tokenization below changes, to invalidate caches


def _check_encoding(path: Path, encoding: str) -> None:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as err:
                raise ConfigError(
                    f"{path} line {number}: not valid {encoding} (byte {raw[err.start]:#x} at column {err.start + 1}); "
                    "re-save the file as UTF-8 or set task.encoding"
                ) from None


def _read_file(path: Path, task: TaskConfig) -> tuple[Dataset, int]:
    """One split file as a Dataset, and the line number of its first row."""
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ConfigError(f"{path}: unknown file type '{suffix}'; use one of {', '.join(READERS)}")
    reader, kwargs = READERS[suffix]
    kwargs = dict(kwargs)
    if reader in TABULAR:
        _check_encoding(path, task.encoding)
        text_columns = [c for c in (task.text_field, task.text_pair_field) if c]
        # keep 'NA', 'null', '' as text, and text as text even when it looks numeric
        # blank lines stay rows, so row i is always line first_line + i
        kwargs.update(encoding=task.encoding, keep_default_na=False, skip_blank_lines=False,
                      converters={c: str for c in text_columns})
        if task.column_names:
            kwargs.update(column_names=list(task.column_names), header=None)
    elif reader == "json":
        _check_encoding(path, "utf-8")
    try:
        ds = load_dataset(reader, data_files=str(path), split="train", **kwargs)
    except Exception as err:  # pandas/pyarrow parse errors: name the file
        message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path}: cannot be read as {suffix[1:]} ({message})") from None
    # line of row 0 (1-based): after the header row, if the file has one
    return by_content(ds, [path], (reader, kwargs)), 2 if reader in TABULAR and not task.column_names else 1


def by_content(ds: Dataset, paths: list, how) -> Dataset:
    """``ds``, read from the local files ``paths`` as ``how`` says, fingerprinted by their content and ``how``.

    The teacher's stored outputs and the augmentation are keyed by the fingerprint, and datasets' own fingerprint
    of a local file holds its path and modification time: the same data copied, unpacked again or re-mounted would
    recompute them, and a run resumed after that would not find the teacher outputs its checkpoint knew (it ran
    MPNet live over SST-2 for a second epoch). A file rewritten in place gets a new content hash, so a changed file
    never reads an old cache. (The tokenized rows are still written beside datasets' read of the file, so a copy
    tokenizes again: seconds.)"""
    key = (file_hashes([Path(p) for p in paths]), how)
    return ds.select(range(len(ds)), new_fingerprint=Hasher.hash(key))


def _validate(ds: Dataset, task: TaskConfig, where: str, first_line: int | None) -> Dataset:
    """Check columns, empty texts and labels; return ds with integer label ids in column 'label' (no labels
    when ``task.label_field`` is None)."""
    at = lambda i: f"{where} line {first_line + i}" if first_line is not None else f"{where} row {i}"  # noqa: E731
    for column, key in ((task.text_field, "text_field"), (task.text_pair_field, "text_pair_field"), (task.label_field, "label_field")):
        if column is not None and column not in ds.column_names:
            raise ConfigError(
                f"{where}: no column '{column}' (columns: {', '.join(ds.column_names)}); set task.{key}"
            )
    for column in (task.text_field, task.text_pair_field):
        if column is None:
            continue
        for i, text in enumerate(ds[column]):
            if text is None or not str(text).strip():
                raise ConfigError(f"{at(i)}: empty text in column '{column}'; fill it in or remove the row")
    keep = [c for c in (task.text_field, task.text_pair_field) if c]
    if task.label_field is None:
        return ds.select_columns(keep)
    names = list(task.label_names)
    index = {name: i for i, name in enumerate(names)}
    ids = []
    for i, label in enumerate(ds[task.label_field]):
        if isinstance(label, str) and label.strip() in index:
            ids.append(index[label.strip()])
        elif isinstance(label, str) and label.strip().lstrip("-").isdigit() and 0 <= int(label) < len(names):
            ids.append(int(label))
        elif isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(names):
            ids.append(label)
        else:
            raise ConfigError(
                f"{at(i)}: label {label!r} is not in task.label_names {names} (nor an id 0..{len(names) - 1}); "
                "add it to task.label_names or fix the row"
            )
    return ds.select_columns(keep).add_column("label", ids)


def load_labelled_file(path: str | Path, task: TaskConfig) -> Dataset:
    """A labelled file in the task's format (its columns, label names, encoding), checked like the task's own."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; give the path of a file in task '{task.name}''s format")
    ds, first_line = _read_file(path, task)
    return _validate(ds, task, str(path), first_line)


def read_labelled(path: str | Path, label_names: list[str], text_field: str = "sentence",
                  label_field: str = "label") -> tuple[list[str], list[int]]:
    """Texts and label ids of a labelled file in any format the tasks read (GLUE's sentence/label TSV by default;
    string labels by ``label_names``), checked the same way: for the tools that score saved models."""
    task = TaskConfig(name=Path(path).name, text_field=text_field, label_field=label_field, label_names=list(label_names))
    ds = load_labelled_file(path, task)
    return list(ds[text_field]), list(ds["label"])


def read_texts(path: str | Path, text_field: str = "sentence") -> list[str]:
    """The texts of a file in any format the tasks read, labels or not: sentences for benchmarks."""
    return list(load_labelled_file(path, TaskConfig(name=Path(path).name, text_field=text_field, label_field=None))[text_field])


# files written beside a model that do not change its outputs: an ONNX export, a model card
NOT_MODEL_FILES = ("*.onnx", "*.onnx.data", "README.md")


def cache_root() -> Path:
    """distill's caches (teacher layers, file hashes), beside the datasets cache where the tokenized data and the
    cached logits live; ``python -m distill cache list|clear`` shows and removes them."""
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "distill"


def file_hashes(paths: list[Path]) -> list[str]:
    """The SHA-256 of each file's content, kept in ``<cache_root>/file_hashes.json`` by (path, size, mtime, ctime,
    inode): computed once per file version. Any write changes ctime, so a file rewritten with the same size and
    mtime is hashed again. The memo is read once and written once per call."""
    memo_file = cache_root() / "file_hashes.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    out, added = [], False
    for path in paths:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
        if key not in memo:
            memo[key], added = sha256_of(path), True
        out.append(memo[key])
    if added:
        try:
            write_json(memo_file, memo)
        except OSError:  # a read-only cache still identifies; it only hashes again next time
            pass
    return out


def path_identity(path: str | None):
    """What identifies a model directory or file for a cache: its files' names and content hashes.

    Not the path itself: a teacher reached through a symlink, moved or copied keeps its cached logits and
    layers; a retrained teacher gets new ones (even with the same sizes and modification times), an ONNX
    export beside it (``NOT_MODEL_FILES``) does not. A hub name is identified by the revision it resolves to in
    the local hub cache (its snapshot's files), or by the name alone when it is not there."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        p = _hub_snapshot(str(path))
        if p is None:
            return [str(path)]
    files = sorted(f for f in p.rglob("*") if f.is_file() and not any(fnmatch(f.name, g) for g in NOT_MODEL_FILES)) \
        if p.is_dir() else [p]
    return [(str(f.relative_to(p) if p.is_dir() else f.name), digest) for f, digest in zip(files, file_hashes(files))]


def _hub_snapshot(name: str) -> Path | None:
    """The local snapshot directory of a hub model (the revision ``from_pretrained`` loads), or None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not a hub id, or not downloaded: the name stands for itself
        return None


def task_source(task: TaskConfig) -> Path | None:
    """The directory holding the task's split files, or None for the hub."""
    if task.data_dir is not None:
        return Path(task.data_dir)
    if task.fetch is not None:
        return fetch(task.fetch)
    return None


def evaluation_plan(task: TaskConfig) -> dict[str, str]:
    """Which data picks the kept checkpoint ('select') and which data the headline is measured on ('report').

    The two never overlap: with a labelled test split, select on dev and report test; otherwise
    (GLUE: no test labels) select on ``task.select_holdout`` examples held out of train and report dev
    untouched. Stated once here; metrics.json records the result."""
    if task.test_file is not None or task.hub.test_split is not None:
        return {"select": "dev", "report": "test"}
    return {"select": "train holdout", "report": "dev"}


def holdout_size(task: TaskConfig, n_train: int) -> int:
    # at most a tenth of train, so a tiny task still trains on most of its data
    return max(1, min(task.select_holdout, n_train // 10))


def containment_holdout(texts: list[str], order, n: int) -> tuple[list[int], set[int]]:
    """Held-out rows that no training row overlaps, for tasks whose rows are phrases cut from the same sentences
    (SST-2's train split: 885 of 1,000 randomly held-out phrases occur inside a phrase left in training).

    Walks ``order`` and holds out a row only when no longer row contains it (a whole sentence, not one of its
    phrases), until ``n`` are held out; every row contained in a held-out one (its phrases, and copies of it)
    is dropped from training. So no held-out text contains or is contained in a training text. Texts are
    compared as lower-cased, whitespace-separated words. Returns (held-out rows, dropped rows)."""
    words = [text.lower().split() for text in texts]
    padded = [f" {' '.join(w)} " for w in words]
    by_text: dict[str, list[int]] = {}
    rows_with: dict[str, list[int]] = {}
    for i, w in enumerate(words):
        by_text.setdefault(" ".join(w), []).append(i)
        for word in set(w):
            rows_with.setdefault(word, []).append(i)

    def inside_a_longer_row(i: int) -> bool:
        rarest = min(set(words[i]), key=lambda word: len(rows_with[word]))
        return any(len(words[j]) > len(words[i]) and padded[i] in padded[j] for j in rows_with[rarest])

    held: list[int] = []
    dropped: set[int] = set()
    for i in map(int, order):
        if len(held) == n:
            break
        if not words[i] or i in dropped or inside_a_longer_row(i):
            continue
        held.append(i)
        w = words[i]
        for a in range(len(w)):
            for b in range(a + 1, len(w) + 1):
                dropped.update(by_text.get(" ".join(w[a:b]), ()))
    return held, dropped - set(held)


def _hold_out(train: Dataset, task: TaskConfig) -> tuple[Dataset, Dataset, dict]:
    """(train without the holdout, holdout, what was held out): from a fixed permutation (seed 0), the same for
    every run and seed; ``task.select_holdout_by=containment`` holds out whole sentences and drops their
    phrases from training (``containment_holdout``)."""
    n = holdout_size(task, len(train))
    order = np.random.default_rng(0).permutation(len(train))
    if task.select_holdout_by == "row":
        held, dropped = order[:n], set()
    else:
        held, dropped = containment_holdout(train[task.text_field], order, n)
    out = set(map(int, held)) | dropped
    kept = [i for i in range(len(train)) if i not in out]
    record = {"by": task.select_holdout_by, "held_out": len(held), "train_rows_dropped": len(dropped)}
    return train.select(kept), train.select(sorted(map(int, held))), record


def load_task(task: TaskConfig) -> DatasetDict:
    """The task's files as ``train``, ``dev`` (and ``test`` when set) splits: text (, text pair) columns
    and integer ``label``."""
    source = task_source(task)
    files = {"train": task.train_file, "dev": task.dev_file, "test": task.test_file}
    splits = {}
    if source is not None:
        for split, name in files.items():
            if name is None:
                continue
            splits[split] = load_labelled_file(source / name, task)
    else:
        try:
            hub = load_dataset(task.hub.name, task.hub.config)
        except Exception as err:  # offline, unknown name, ...
            message = (str(err).strip().splitlines() or [""])[0][:100]
            raise ConfigError(
                f"task.hub.name: cannot load {task.hub.name}/{task.hub.config} from the hub "
                f"({type(err).__name__}: {message}); set task.data_dir to a directory of the task's files"
            ) from None
        hub_splits = {"train": task.hub.train_split, "dev": task.hub.dev_split, "test": task.hub.test_split}
        for split, hub_split in hub_splits.items():
            if hub_split is None:
                continue
            ds = hub[hub_split]
            if task.hub.columns:
                ds = ds.rename_columns(dict(task.hub.columns))
            splits[split] = _validate(ds, task, f"{task.hub.name}/{task.hub.config} {hub_split}", None)
    limits = {"train": task.max_train_examples, "dev": task.max_dev_examples, "test": task.max_dev_examples}
    return DatasetDict(
        {s: ds.select(range(limits[s])) if limits[s] is not None and limits[s] < len(ds) else ds for s, ds in splits.items()}
    )


def load_task_splits(task: TaskConfig) -> DatasetDict:
    """What training and evaluation read: ``train``, ``select`` (picks the kept checkpoint) and
    ``report`` (the headline; chose nothing), as ``evaluation_plan`` says."""
    return task_splits_and_plan(task)[0]


def task_splits_and_plan(task: TaskConfig) -> tuple[DatasetDict, dict]:
    """``load_task_splits`` and the evaluation plan as it came out, for metrics.json: ``evaluation_plan`` plus,
    with a training holdout, how many rows were held out and how many training rows were dropped to keep it clean."""
    splits, plan = load_task(task), evaluation_plan(task)
    if plan["report"] == "test":
        return DatasetDict(train=splits["train"], select=splits["dev"], report=splits["test"]), plan
    train, holdout, record = _hold_out(splits["train"], task)
    return DatasetDict(train=train, select=holdout, report=splits["dev"]), plan | {"holdout": record}


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Identifies the tokenizer by its vocabulary and rules, not by object identity or path."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return hashlib.sha1(repr(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    spec = json.loads(backend.to_str())
    # truncation and padding are call-time state (a call with truncation=True changes them), not identity
    spec.pop("truncation", None)
    spec.pop("padding", None)
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def tokenize_task(data: DatasetDict, task: TaskConfig, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
    def encode(batch):
        pair = batch[task.text_pair_field] if task.text_pair_field else None
        enc = tokenizer(batch[task.text_field], pair, truncation=True, max_length=task.max_length)
        enc["labels"] = batch["label"]
        return enc

    key = (tokenizer_fingerprint(tokenizer), task.max_length, task.text_field, task.text_pair_field, TOKENIZE_VERSION)
    return DatasetDict({
        split: ds.map(
            encode, batched=True, remove_columns=ds.column_names, desc=f"tokenize {split}",
            new_fingerprint=Hasher.hash((ds._fingerprint, key)),
        )
        for split, ds in data.items()
    })


# a sentence ends at . ! ? (optionally followed by a quote or bracket) before whitespace
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+")


def _corpus_text(corpus: CorpusConfig, task: TaskConfig) -> Dataset:
    parts = []
    files = [str(fetch(name) / f"{name}.txt") for name in corpus.fetch] + list(corpus.files)
    if files:
        parts.append(by_content(load_dataset("text", data_files=files, split="train"), files, "text"))
    if corpus.hub_name:
        hub = load_dataset(corpus.hub_name, corpus.hub_config, split=corpus.hub_split)
        parts.append(hub.select_columns([corpus.hub_text_field]).rename_column(corpus.hub_text_field, "text"))
    if corpus.include_task:
        parts.append(load_task(task)["train"].select_columns([task.text_field]).rename_column(task.text_field, "text"))
    # sources differ in arrow string type (text files load as large_string): align before joining
    text = concatenate_datasets([part.cast_column("text", Value("large_string")) for part in parts])
    text = text.filter(lambda b: [bool(t and t.strip()) for t in b["text"]], batched=True, desc="drop empty lines")
    if corpus.max_documents is not None and corpus.max_documents < len(text):
        text = text.shuffle(seed=0).select(range(corpus.max_documents))
    return text


def _pack(texts: list[str], tokenizer, max_length: int, pairs: bool) -> list[tuple[str, str | None]]:
    """Greedily pack sentences into chunks that fit ``max_length`` with special tokens."""
    sentences = [s for t in texts for s in SENTENCE_END.split(t.strip()) if s.strip()]
    lengths = [len(ids) for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"]]
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=pairs)
    chunks, current, size = [], [], 0
    for sentence, n in zip(sentences, lengths):
        if current and size + n > budget:
            chunks.append(current)
            current, size = [], 0
        current.append((sentence, n))
        size += n
    if current:
        chunks.append(current)
    out = []
    for chunk in chunks:
        if pairs and len(chunk) > 1:
            # split at the sentence boundary nearest the middle: segment A, segment B
            half, run, cut = sum(n for _, n in chunk) / 2, 0, 1
            for k, (_, n) in enumerate(chunk[:-1], start=1):
                run += n
                cut = k
                if run >= half:
                    break
            out.append((" ".join(s for s, _ in chunk[:cut]), " ".join(s for s, _ in chunk[cut:])))
        else:
            out.append((" ".join(s for s, _ in chunk), None))
    return out


def load_corpus(corpus: CorpusConfig, task: TaskConfig, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Unlabeled text cut into model-length examples (see ``CorpusConfig.packing``)."""
    text = _corpus_text(corpus, task)
    L = corpus.max_length
    # what the tokenizer gives a model: RoBERTa's and MPNet's have no token types (their pair format is their own)
    columns = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in tokenizer.model_input_names]

    def lines(batch):
        return tokenizer(batch["text"], truncation=True, max_length=L)

    def plain(batch):
        stream = [i for ids in tokenizer(batch["text"], add_special_tokens=False)["input_ids"] for i in ids]
        step = L - 2
        ids = [[tokenizer.cls_token_id, *stream[i : i + step], tokenizer.sep_token_id] for i in range(0, len(stream), step)]
        out = {"input_ids": ids, "token_type_ids": [[0] * len(x) for x in ids], "attention_mask": [[1] * len(x) for x in ids]}
        return {k: v for k, v in out.items() if k in columns}

    def pairs(batch):
        packed = _pack(batch["text"], tokenizer, L, pairs=True)
        # the corpus is shuffled for training, so pairs first, then single segments
        two = [(a, b) for a, b in packed if b is not None]
        one = [a for a, b in packed if b is None]
        out = {k: [] for k in columns}
        for enc in (
            tokenizer([a for a, _ in two], [b for _, b in two], truncation=True, max_length=L) if two else None,
            tokenizer(one, truncation=True, max_length=L) if one else None,
        ):
            if enc is not None:
                for k in out:
                    out[k] += enc[k]
        return out

    encode = {"lines": lines, "plain": plain, "pairs": pairs}[corpus.packing]
    key = (text._fingerprint, tokenizer_fingerprint(tokenizer), L, corpus.packing, TOKENIZE_VERSION)
    return text.map(
        encode, batched=True, remove_columns=text.column_names, desc=f"pack corpus ({corpus.packing})",
        new_fingerprint=Hasher.hash(key),
    )


def train_loader(ds: Dataset, tokenizer, batch_size: int, seed: int, group_by_length: bool) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    if group_by_length:
        # batches of similar length: short phrases are not padded to the longest sentence of a random batch
        # lengths straight from arrow: a million augmented rows are not turned into Python lists
        lengths = pc.list_value_length(ds.with_format("arrow")[:]["input_ids"]).to_pylist()
        sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=generator)
    else:
        sampler = RandomSampler(ds, generator=generator)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=DataCollatorWithPadding(tokenizer))


def eval_loader(ds: Dataset, tokenizer, batch_size: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=DataCollatorWithPadding(tokenizer))
