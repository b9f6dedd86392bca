"""The teacher's outputs stored on disk as training first computes them, and read back from then on.

A distillation phase otherwise runs the frozen teacher on every step of every epoch. Here the
teacher runs only on batches holding an example it has not seen: the first epoch runs it live (as
the loss needs it anyway) and writes what it computed, per example; later epochs, later phases,
resumed runs, other runs and sweep members with the same teacher and data read it back. There is no
separate pass over the data before training, and only the examples a run visits are stored (a
150-step run writes 150 batches' worth, not the whole training set), so a cache never costs a pass of
its own. (Measured: a first epoch is still 7-22% slower than the live teacher that stores nothing,
docs/performance.md.)

Three stores, each a directory keyed by the data's fingerprint (which holds the tokenizer and max
length), the teacher's identity (``distill.data.path_identity``: its files' content) and
``CACHE_VERSION``:
- ``teacher_logits-<key>``: the logits, float32 [n, labels];
- ``teacher_layers-<key>`` (also keyed by the layers it holds): of the embedding output, the G(1..L_S)
  hidden states [t, h] and attention scores [heads, t, t], those the run's terms read, per example, real
  tokens only, float16;
- ``teacher_qkv-<key>`` (also keyed by the layer): one layer's query, key and value projections
  [t, 3, h] per example, real tokens only, float16 (the relation term's).
Each holds ``filled.npy``, which examples are written. Its files are allocated whole (sparse: unwritten
regions take no disk) and checked on open (``cache_problem``); a damaged store is rebuilt.

The losses always read the stored values (a batch that ran the teacher gets its outputs as the stores hold them:
rounded to float16 and zero at padding, made in place when every row was just written, else read back), so the numbers
are the same whichever run or epoch computed them, up to the last bits when a run with other batches
(another batch size or seed) stored them. Exact resume: whether a batch runs the teacher depends on
which examples the run knew to be stored, and that set travels in checkpoints
(``TeacherStores.state_dict``); examples another process stored meanwhile are not read by this run. Only the masked (default) losses read the stores:
they never look at padded positions, which are not stored. TinyBERT-compatible mode
(``stage.loss.tinybert_compat``) scores padding too and runs the live teacher.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from datasets.fingerprint import Hasher
from filelock import FileLock
from transformers import DataCollatorWithPadding

from distill.attention import Intermediates
from distill.errors import DiskSpaceError
from distill.files import building_dir
from distill.layer_map import LayerMap
from distill.teacher import FrozenTeacher
from distill.terms import EMBEDDINGS, LOGITS, MAPPED_ATTENTION, MAPPED_HIDDEN, QKV, STORED, reads_of, term_classes

log = logging.getLogger("distill")

CACHE_VERSION = "2"  # bump when what is stored changes, to invalidate caches
INDEX_COLUMN = "example_index"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def mapped_layers(layer_map: LayerMap, reads: frozenset[str] | None = None) -> tuple[list[int], list[int]]:
    """Indices into the teacher's ``hidden_states`` (0 = embeddings) and ``attention_scores`` that terms with these
    ``reads`` read (None: every layer read; a phase of hidden-state terms stores no attention scores)."""
    reads = LAYER_STORED if reads is None else reads
    hidden = sorted(({0} if EMBEDDINGS in reads else set()) | (set(layer_map.targets) if MAPPED_HIDDEN in reads else set()))
    scores = sorted({t - 1 for t in layer_map.targets}) if MAPPED_ATTENTION in reads else []
    return hidden, scores


def cache_bytes(lengths: np.ndarray, n_hidden: int, width: int, n_scores: int, heads: int) -> int:
    """float16 bytes for examples of ``lengths`` tokens: hidden [n_hidden, t, width], scores [n_scores, heads, t, t]."""
    lengths = lengths.astype(np.int64)
    return int(2 * (n_hidden * width * lengths.sum() + n_scores * heads * (lengths**2).sum()))


def qkv_bytes(lengths: np.ndarray, width: int) -> int:
    """float16 bytes of one layer's Q, K and V [t, 3, width] for examples of ``lengths`` tokens."""
    return int(2 * 3 * width * lengths.astype(np.int64).sum())


def token_lengths(ds) -> np.ndarray:
    # straight from arrow: a million augmented rows are not turned into Python lists
    return pc.list_value_length(ds.with_format("arrow")[:]["input_ids"]).to_numpy().astype(np.int64)


def check_free_space(directory: Path, size: int) -> None:
    """Refuse, in one line, to write ``size`` bytes where the disk has less free (np.memmap would die of SIGBUS
    when the disk fills up, with no error)."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    margin = 256 * 2**20
    if size + margin > free:
        raise DiskSpaceError(
            f"teacher layers: the cache needs {size / 2**30:.2f} GB but {directory} has {free / 2**30:.2f} GB free; free "
            f"space (python -m distill cache list|clear), set train.teacher_cache_max_gb below it (the teacher then runs "
            f"live), or move the caches with HF_DATASETS_CACHE")


def token_span(offsets: np.ndarray, i: int, tokens: int) -> tuple[int, int]:
    """Where example ``i``'s ``tokens`` real tokens go in a store laid out by ``offsets``; an error when the batch
    holds another count than the layout (the data changed under its fingerprint)."""
    start, end = int(offsets[i]), int(offsets[i + 1])
    if end - start != tokens:
        raise RuntimeError(f"example {i}: {tokens} real tokens in the batch, {end - start} when the store was laid out; "
                           "the data changed under its fingerprint")
    return start, end


def gather_tokens(values: np.ndarray, offsets: np.ndarray, ids: list[int], length: int) -> np.ndarray:
    """Per-token rows ``values`` [tokens, n, w] (example i at ``offsets[i]:offsets[i + 1]``) of the examples
    ``ids``, as float32 [n, len(ids), length, w] with zeros after each example's tokens."""
    out = np.zeros((values.shape[1], len(ids), length, values.shape[2]), np.float32)
    for row, i in enumerate(ids):
        start, end = offsets[i], offsets[i + 1]
        out[:, row, :end - start] = values[start:end].transpose(1, 0, 2)
    return out


def as_float16(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x`` as a float16 store gives it back: rounded to float16, as float32, 0 where ``keep`` is false (padding,
    which is not stored)."""
    return torch.where(keep, x.half().float(), 0.0)


class _Store:
    """Per-example outputs in fixed-size files of one directory, and which examples are written.

    ``known`` is what this run may read: the examples stored when it opened the store plus those it wrote
    itself. ``flush`` makes the written examples durable and adds them to ``filled.npy`` (merged with what other
    processes added meanwhile, under a lock)."""

    prefix = ""

    def __init__(self, directory: Path, meta: dict):
        self.directory, self.meta = directory, meta
        self.n = meta["examples"]
        self.known = np.load(directory / "filled.npy")
        self.dirty = False

    @classmethod
    def open(cls, root: Path, key: tuple, meta: dict, sizes: dict[str, int], arrays: dict | None = None) -> _Store:
        """The store for ``key`` under ``root``: created (``sizes``: files allocated whole, nothing filled;
        ``arrays``: ``.npy`` files of the layout) when absent, rebuilt when damaged (``cache_problem``)."""
        directory = Path(root) / f"{cls.prefix}-{Hasher.hash(key)}"
        directory.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(directory) + ".lock"):
            problem = cache_problem(directory, meta, sizes, tuple(arrays or ())) if directory.exists() else "absent"
            if problem not in (None, "absent"):
                log.warning("%s: rebuilding the cache at %s (%s)", cls.prefix, directory, problem)
                shutil.rmtree(directory)
            if problem is not None:
                with building_dir(directory) as partial:
                    for name, size in sizes.items():
                        with open(partial / name, "wb") as f:
                            f.truncate(size)  # sparse: only what is written takes disk
                    for name, array in (arrays or {}).items():
                        np.save(partial / name, array)
                    np.save(partial / "filled.npy", np.zeros(meta["examples"], bool))
                    (partial / "meta.json").write_text(json.dumps(meta) + "\n")
        return cls(directory, meta)

    def has(self, ids: list[int]) -> bool:
        return bool(self.known[ids].all())

    def _flush_files(self) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        if not self.dirty:
            return
        self._flush_files()  # the values first: a kill after this line leaves them written, not yet marked
        with FileLock(str(self.directory) + ".lock"):
            filled = self.directory / "filled.npy"
            merged = np.load(filled) | self.known
            tmp = self.directory / ".filled.tmp.npy"
            np.save(tmp, merged)
            tmp.replace(filled)
        self.dirty = False


class LogitStore(_Store):
    """The teacher's logits, float32 [n, labels]."""

    prefix = "teacher_logits"

    def __init__(self, directory: Path, meta: dict):
        super().__init__(directory, meta)
        self.logits = np.memmap(directory / "logits.f32", np.float32, "r+", shape=(self.n, meta["labels"]))

    @classmethod
    def for_data(cls, ds, teacher: FrozenTeacher, identity, root: Path) -> LogitStore:
        labels = teacher.config.num_labels
        meta = {"examples": len(ds), "labels": labels, "teacher": str(identity), "version": CACHE_VERSION}
        return cls.open(root, (ds._fingerprint, identity, "logits", CACHE_VERSION), meta,
                        {"logits.f32": 4 * max(len(ds), 1) * labels})

    def read(self, ids: list[int], length: int | None = None) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.logits[ids]))

    def as_stored(self, out: Intermediates, attention_mask: torch.Tensor) -> torch.Tensor:
        """What ``read`` gives for rows just written from ``out``, without reading them back."""
        return out.logits.float()

    def write(self, ids: list[int], out: Intermediates, attention_mask: torch.Tensor) -> None:
        new = [row for row, i in enumerate(ids) if not self.known[i]]
        if new:
            self.logits[[ids[r] for r in new]] = out.logits[new].float().cpu().numpy()
            self.known[[ids[r] for r in new]] = True
            self.dirty = True

    def _flush_files(self) -> None:
        self.logits.flush()


class LayerStore(_Store):
    """The mapped hidden states and attention scores of each example, float16, real tokens only:
    ``read(ids, length)`` gives them padded to ``length``."""

    prefix = "teacher_layers"

    def __init__(self, directory: Path, meta: dict):
        super().__init__(directory, meta)
        self.hidden_layers, self.score_layers = meta["hidden_layers"], meta["score_layers"]
        self.num_hidden_layers, self.width, self.heads = meta["num_hidden_layers"], meta["width"], meta["heads"]
        offsets = np.load(directory / "offsets.npy")  # [n + 1, 2]: token and score-entry offsets
        self.token_offsets, self.score_offsets = offsets[:, 0], offsets[:, 1]
        # a file only for what the terms read (no scores for hidden-state terms)
        self.hidden = np.memmap(directory / "hidden.f16", np.float16, "r+", shape=(
            max(int(self.token_offsets[-1]), 1), len(self.hidden_layers), self.width)) if self.hidden_layers else None
        self.scores = np.memmap(directory / "scores.f16", np.float16, "r+",
                                shape=(max(int(self.score_offsets[-1]), 1),)) if self.score_layers else None

    @classmethod
    def for_data(cls, ds, teacher: FrozenTeacher, identity, layer_map: LayerMap, root: Path,
                 lengths: np.ndarray | None = None, reads: frozenset[str] | None = None) -> LayerStore:
        """``lengths``: ``token_lengths(ds)``, when the caller has it already; ``reads``: what the terms read of the
        layers (``mapped_layers``)."""
        hidden_layers, score_layers = mapped_layers(layer_map, reads)
        cfg = teacher.config
        lengths = token_lengths(ds) if lengths is None else lengths
        token_offsets = np.concatenate([[0], np.cumsum(lengths)])
        score_offsets = np.concatenate([[0], np.cumsum(len(score_layers) * cfg.num_attention_heads * lengths**2)])
        meta = {"examples": len(ds), "hidden_layers": hidden_layers, "score_layers": score_layers,
                "num_hidden_layers": cfg.num_hidden_layers, "width": cfg.hidden_size, "heads": cfg.num_attention_heads,
                "bytes": cache_bytes(lengths, len(hidden_layers), cfg.hidden_size, len(score_layers),
                                     cfg.num_attention_heads),
                "teacher": str(identity), "version": CACHE_VERSION}
        sizes = {**({"hidden.f16": 2 * max(int(token_offsets[-1]), 1) * len(hidden_layers) * cfg.hidden_size}
                    if hidden_layers else {}),
                 **({"scores.f16": 2 * max(int(score_offsets[-1]), 1)} if score_layers else {})}
        return cls.open(root, (ds._fingerprint, identity, hidden_layers, score_layers, CACHE_VERSION), meta, sizes,
                        {"offsets.npy": np.stack([token_offsets, score_offsets], 1)})

    def read(self, ids: list[int], length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden [len(hidden_layers), b, length, width] and scores [len(score_layers), b, heads, length, length]
        as float32, zero where a position is padding."""
        b, n_s = len(ids), len(self.score_layers)
        hidden = (gather_tokens(self.hidden, self.token_offsets, ids, length) if self.hidden_layers
                  else np.zeros((0, b, length, self.width), np.float32))
        scores = np.zeros((n_s, b, self.heads, length, length), np.float32)
        for row, i in enumerate(ids):
            if n_s:  # [t, t] per head and layer, flattened
                t = int(self.token_offsets[i + 1] - self.token_offsets[i])
                block = self.scores[self.score_offsets[i]:self.score_offsets[i + 1]]
                scores[:, row, :, :t, :t] = block.reshape(n_s, self.heads, t, t)
        return torch.from_numpy(hidden), torch.from_numpy(scores)

    def as_stored(self, out: Intermediates, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``read`` gives for rows just written from ``out``, without reading them back."""
        keep = attention_mask.bool()
        b, length = keep.shape
        pairs = keep[:, None, :, None] & keep[:, None, None, :]
        zeros = torch.zeros((0, b, self.heads, length, length), device=keep.device)
        hidden = [as_float16(out.hidden_states[j], keep[:, :, None]) for j in self.hidden_layers]
        scores = [as_float16(out.attention_scores[j], pairs) for j in self.score_layers]
        return (torch.stack(hidden) if hidden else zeros.new_zeros((0, b, length, self.width)),
                torch.stack(scores) if scores else zeros)

    def write(self, ids: list[int], out: Intermediates, attention_mask: torch.Tensor) -> None:
        new = [row for row, i in enumerate(ids) if not self.known[i]]
        if not new:
            return
        if self.hidden_layers:  # [b, t, n_h, w]
            h = torch.stack([out.hidden_states[j][new] for j in self.hidden_layers], 2).half().cpu().numpy()
        if self.score_layers:  # [b, n_s, heads, t, t]
            s = torch.stack([out.attention_scores[j][new] for j in self.score_layers], 1)
        lengths = attention_mask[new].sum(1).tolist()
        for k, (row, t) in enumerate(zip(new, lengths)):
            i = ids[row]
            start, end = token_span(self.token_offsets, i, t)
            if self.hidden_layers:
                self.hidden[start:end] = h[k, :t]
            if self.score_layers:
                self.scores[self.score_offsets[i]:self.score_offsets[i + 1]] = \
                    s[k, :, :, :t, :t].half().reshape(-1).cpu().numpy()
            self.known[i] = True
        self.dirty = True

    def _flush_files(self) -> None:
        for values in (self.hidden, self.scores):
            if values is not None:
                values.flush()


class QKVStore(_Store):
    """One teacher layer's query, key and value projections, float16, real tokens only: ``read(ids, length)``
    gives (Q, K, V), each [b, length, width] float32, zero where a position is padding."""

    prefix = "teacher_qkv"

    def __init__(self, directory: Path, meta: dict):
        super().__init__(directory, meta)
        self.layer, self.width = meta["qkv_layer"], meta["width"]
        self.token_offsets = np.load(directory / "offsets.npy")
        self.qkv = np.memmap(directory / "qkv.f16", np.float16, "r+",
                             shape=(max(int(self.token_offsets[-1]), 1), 3, self.width))

    @classmethod
    def for_data(cls, ds, teacher: FrozenTeacher, identity, layer: int, root: Path,
                 lengths: np.ndarray | None = None) -> QKVStore:
        width = teacher.config.hidden_size
        lengths = token_lengths(ds) if lengths is None else lengths
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        meta = {"examples": len(ds), "qkv_layer": layer, "width": width, "bytes": qkv_bytes(lengths, width),
                "teacher": str(identity), "version": CACHE_VERSION}
        return cls.open(root, (ds._fingerprint, identity, "qkv", layer, CACHE_VERSION), meta,
                        {"qkv.f16": 2 * max(int(offsets[-1]), 1) * 3 * width}, {"offsets.npy": offsets})

    def read(self, ids: list[int], length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = torch.from_numpy(gather_tokens(self.qkv, self.token_offsets, ids, length))
        return q, k, v

    def as_stored(self, out: Intermediates, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What ``read`` gives for rows just written from ``out``, without reading them back."""
        keep = attention_mask.bool()[:, :, None]
        return tuple(as_float16(x, keep) for x in out.qkv)

    def write(self, ids: list[int], out: Intermediates, attention_mask: torch.Tensor) -> None:
        new = [row for row, i in enumerate(ids) if not self.known[i]]
        if not new:
            return
        qkv = torch.stack([x[new] for x in out.qkv], 2).half().cpu().numpy()  # [b, t, 3, width]
        for k, (row, t) in enumerate(zip(new, attention_mask[new].sum(1).tolist())):
            start, end = token_span(self.token_offsets, ids[row], t)
            self.qkv[start:end] = qkv[k, :t]
            self.known[ids[row]] = True
        self.dirty = True

    def _flush_files(self) -> None:
        self.qkv.flush()


def cache_problem(directory: Path, meta: dict, sizes: dict[str, int], arrays: tuple[str, ...] = ()) -> str | None:
    """Why a store cannot be read (None when it can): no or unreadable meta.json, filled.npy or layout
    ``arrays``, another teacher, layout or version, or files missing or of the wrong size (a copy cut short)."""
    try:
        found = json.loads((directory / "meta.json").read_text())
        filled = np.load(directory / "filled.npy")
        for name in arrays:
            np.load(directory / name)
    except (OSError, ValueError) as err:
        return f"unreadable: {type(err).__name__}"
    if found != meta:
        differ = sorted(k for k in set(found) | set(meta) if found.get(k) != meta.get(k))
        return f"its meta.json differs in {', '.join(differ)}"
    if filled.shape != (meta["examples"],):
        return f"filled.npy holds {filled.shape[0]} examples, {meta['examples']} expected"
    for name, size in sizes.items():
        actual = (directory / name).stat().st_size if (directory / name).is_file() else None
        if actual != size:
            return f"{name} has {actual} bytes, {size} expected"
    return None


class WriteThroughTeacher:
    """Stands in for the teacher: a batch whose examples are all in the stores is read from them; any other batch
    runs the teacher, its outputs are stored for the examples not stored yet, and the batch is then read from the
    stores. Counts both kinds of batches."""

    def __init__(self, teacher: FrozenTeacher, logits: LogitStore | None = None, layers: LayerStore | None = None,
                 qkv: QKVStore | None = None):
        self.teacher, self.logits, self.layers, self.qkv = teacher, logits, layers, qkv
        self.stores = [s for s in (logits, layers, qkv) if s is not None]
        self.live_batches = self.stored_batches = 0

    @property
    def config(self):
        return self.teacher.config

    def __call__(self, batch: dict[str, torch.Tensor], logits_at: torch.Tensor | None = None,
                 depth: int | None = None, layers: bool = True, qkv_layer: int | None = None) -> Intermediates:
        # the Q, K, V asked for are those of the layer the store keeps (teacher_for_phases asks the same term)
        assert qkv_layer == (self.qkv.layer if self.qkv is not None else None), (qkv_layer, self.qkv)
        ids = batch[INDEX_COLUMN].tolist()
        if all(store.has(ids) for store in self.stores):
            self.stored_batches += 1
            return self._read(batch, ids)
        self.live_batches += 1
        # no row of the batch stored yet (a first epoch): every row is written from this pass's outputs below
        fresh = not any(store.known[ids].any() for store in self.stores)
        inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
        # logits alone (no layer or Q/K/V store): the fused attention, no hidden states kept
        out = self.teacher(inputs, logits_at, depth, layers=self.layers is not None or self.qkv is not None,
                           qkv_layer=qkv_layer)
        for store in self.stores:
            store.write(ids, out, batch["attention_mask"])
        # what the loss reads is always the stored values (float16 layers): the same whether this run, an earlier
        # epoch or another run computed them, so a run's numbers do not depend on what was stored when it started.
        # When every row was just written from `out`, those values are made from `out` instead of read back (the
        # same numbers, bit for bit, without the copy through the files: a first epoch as fast as the live teacher)
        return self._read(batch, ids, out if fresh else None)

    def _read(self, batch, ids: list[int], written: Intermediates | None = None) -> Intermediates:
        """The stores' values for the batch's rows; ``written``: the outputs all of them were just written from."""
        device, length, mask = batch["input_ids"].device, batch["input_ids"].size(1), batch["attention_mask"]

        def read(store):
            return store.as_stored(written, mask) if written is not None else store.read(ids, length)

        hidden_states: tuple = ()
        scores: tuple = ()
        if self.layers is not None:
            h, s = read(self.layers)
            full_h = [None] * (self.layers.num_hidden_layers + 1)
            for j, layer in enumerate(self.layers.hidden_layers):
                full_h[layer] = h[j].to(device)
            full_s = [None] * self.layers.num_hidden_layers
            for j, layer in enumerate(self.layers.score_layers):
                full_s[layer] = s[j].to(device)
            hidden_states, scores = tuple(full_h), tuple(full_s)
        logits = read(self.logits).to(device) if self.logits is not None else None
        qkv = tuple(x.to(device) for x in read(self.qkv)) if self.qkv is not None else None
        return Intermediates(hidden_states=hidden_states, attention_scores=scores, logits=logits, qkv=qkv)

    def fill(self, ds, tokenizer, batch_size: int = 128) -> None:
        """Store every example not stored yet, in length-sorted batches (little padding): for benchmarks and tests
        that need a full store before timing or comparing."""
        collate = DataCollatorWithPadding(tokenizer)
        missing = np.flatnonzero(~np.logical_and.reduce([s.known for s in self.stores]))
        if not len(missing):
            return
        lengths = token_lengths(ds.select(missing))
        order = missing[np.argsort(lengths, kind="stable")]
        rows = ds.select_columns([k for k in MODEL_INPUTS if k in ds.column_names])
        device = next(self.teacher.model.parameters()).device
        for start in range(0, len(order), batch_size):
            chunk = [int(i) for i in order[start:start + batch_size]]
            batch = {k: v.to(device) for k, v in collate([rows[i] for i in chunk]).items()}
            self({**batch, INDEX_COLUMN: torch.tensor(chunk)})
        for store in self.stores:
            store.flush()


class TeacherStores:
    """The stores of one run: flushed before every checkpoint and at the end, and what the run knew to be stored
    saved in checkpoints so that a resumed run reads and runs exactly what the uninterrupted one would have."""

    def __init__(self, stores: list[_Store], views: dict[str, WriteThroughTeacher] | None = None):
        self.stores, self.views = stores, views or {}

    def flush(self) -> None:
        for store in self.stores:
            store.flush()

    def state_dict(self) -> dict:
        return {"known": {store.directory.name: np.packbits(store.known) for store in self.stores},
                "batches": {name: (v.live_batches, v.stored_batches) for name, v in self.views.items()}}

    def load_state_dict(self, state: dict) -> None:
        for store in self.stores:
            packed = state["known"].get(store.directory.name)
            if packed is not None:
                store.known = np.unpackbits(packed, count=store.n).astype(bool)
        for name, (live, stored) in state["batches"].items():
            if name in self.views:
                self.views[name].live_batches, self.views[name].stored_batches = live, stored


# what the layer store answers (the logit store answers LOGITS, the Q/K/V store QKV; a term on the last layer, like
# cosine, or on masked positions that change every step, is answered by the live teacher)
LAYER_STORED = STORED - {LOGITS, QKV}


def teacher_for_phases(phases, ds, teacher: FrozenTeacher, identity, layer_map: LayerMap, options, train_cfg,
                       root: Path, masker=None, visits: int | None = None) -> tuple[object, dict[int, object], TeacherStores]:
    """The training data (with an ``example_index`` column when a store is used), per phase (by ``id``) what
    stands in for the teacher (a ``WriteThroughTeacher`` for phases whose teacher terms the stores answer, else the
    teacher), and the run's stores. With a token ``masker`` (masked-LM terms) the teacher reads text that changes
    every step: no store. ``visits``: at most how many examples the run will draw, to size what it may write
    (the layer store's share of ``train.teacher_cache_max_gb`` and the free disk)."""
    # what each phase's terms read of the teacher, and whether the stores may answer all of it: never under
    # tinybert_compat, whose terms also read padding positions (the stores keep real tokens only)
    reads = [reads_of(p.weights)[1] for p in phases]
    cacheable = [bool(r) and r <= STORED and not options.tinybert_compat and masker is None for r in reads]
    if not any(cacheable):
        return ds, {id(p): teacher for p in phases}, TeacherStores([])
    ds = ds.add_column(INDEX_COLUMN, list(range(len(ds))), new_fingerprint=Hasher.hash((ds._fingerprint, INDEX_COLUMN)))
    # a teacher run under bf16/fp16 autocast gives other numbers (MPNet's logits move by about 0.03 in bf16): its
    # stores are its own, so an fp32 run never reads them (fp32 stores keep their key: no cache is invalidated)
    if train_cfg.mixed_precision != "no":
        identity = (identity, train_cfg.mixed_precision)
    logits = LogitStore.for_data(ds, teacher, identity, root) if any(
        c and LOGITS in r for c, r in zip(cacheable, reads)) else None
    # the teacher layer whose Q, K, V a cacheable phase reads (relation): one per run, like the layer map
    qkv_layer = next((layer for p, c in zip(phases, cacheable) if c for t in term_classes(p.weights).values()
                      if (layer := t.teacher_qkv_layer(options, teacher.config)) is not None), None)
    # what the cacheable phases read of the layers, together: the layer store keeps that and no more
    layer_reads = frozenset().union(*(r & LAYER_STORED for c, r in zip(cacheable, reads) if c))
    layers = qkv = None
    if train_cfg.cache_teacher_layers and (layer_reads or qkv_layer is not None):
        layers, qkv = _layer_stores(ds, teacher, identity, layer_map, layer_reads, qkv_layer, root,
                                    train_cfg.teacher_cache_max_gb, visits)
    chosen = {}
    for phase, r, c in zip(phases, reads, cacheable):
        answered = c and (not r & LAYER_STORED or layers is not None) and (QKV not in r or qkv is not None)
        chosen[id(phase)] = WriteThroughTeacher(teacher, logits if LOGITS in r else None,
                                                layers if r & LAYER_STORED else None,
                                                qkv if QKV in r else None) if answered else teacher
    views = {p.name: chosen[id(p)] for p in phases if isinstance(chosen[id(p)], WriteThroughTeacher)}
    return ds, chosen, TeacherStores([s for s in (logits, layers, qkv) if s is not None], views)


def _layer_stores(ds, teacher, identity, layer_map: LayerMap | None, layer_reads: frozenset[str],
                  qkv_layer: int | None, root: Path, max_gb: float,
                  visits: int | None) -> tuple[LayerStore | None, QKVStore | None]:
    """The layer store (of what ``layer_reads`` read through ``layer_map``) and the Q/K/V store (for ``qkv_layer``),
    each None when not asked for, or both None (the teacher then runs live), saying why, when what the run may write
    to them exceeds ``max_gb``; too little free disk is an error (``check_free_space``)."""
    cfg = teacher.config
    lengths = token_lengths(ds)
    full = 0
    if layer_reads:
        hidden_layers, score_layers = mapped_layers(layer_map, layer_reads)
        full += cache_bytes(lengths, len(hidden_layers), cfg.hidden_size, len(score_layers), cfg.num_attention_heads)
    if qkv_layer is not None:
        full += qkv_bytes(lengths, cfg.hidden_size)
    share = 1.0 if visits is None else min(1.0, visits / max(len(ds), 1))
    size = math.ceil(full * share)  # the examples a run visits, on average
    if size > max_gb * 2**30:
        log.warning("teacher layers: the run would store %.1f GB (> train.teacher_cache_max_gb=%s); the teacher runs on "
                    "every step instead", size / 2**30, max_gb)
        return None, None
    check_free_space(Path(root), size)
    layers = LayerStore.for_data(ds, teacher, identity, layer_map, root, lengths, layer_reads) if layer_reads else None
    qkv = QKVStore.for_data(ds, teacher, identity, qkv_layer, root, lengths) if qkv_layer is not None else None
    for store in (layers, qkv):
        if store is not None:
            log.info("%s: %d of %d examples stored in %s; the run stores the others it visits", store.prefix,
                     int(store.known.sum()), len(ds), store.directory)
    log.info("teacher layers: the run stores up to %.2f GB", size / 2**30)
    return layers, qkv


def teacher_sources(phases, chosen: dict[int, object]) -> dict[str, dict | str]:
    """Per phase name, for metrics.json: how many batches ran the teacher (and were stored) and how many read the
    stores; 'live' when the teacher runs on every batch, 'none' when no term reads it (hard labels alone)."""
    out = {}
    for p in phases:
        t = chosen[id(p)]
        if isinstance(t, WriteThroughTeacher):
            out[p.name] = {"live_batches": t.live_batches, "stored_batches": t.stored_batches}
        else:
            out[p.name] = "live" if reads_of(p.weights)[1] else "none"
    return out
