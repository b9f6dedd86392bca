"""The teacher's mapped hidden states and attention scores, computed once and read back from disk.

An intermediate-layer phase otherwise runs the frozen teacher on every step of every epoch. Here
each training example gets one teacher forward, ever: the layers the layer map reads (the
embedding output, G(1..L_S) hidden states, G(1..L_S) attention scores) are stored in float16 on
disk, unpadded (hidden: [t, h] per layer, scores: [heads, t, t] per layer, real tokens only), and
read back per batch, padded to the batch's length. The directory is keyed by the data's
fingerprint (which holds the tokenizer and max length), the teacher's files, the mapped layers
and ``CACHE_VERSION``: a change of any of them writes a new cache, and the members of a sweep with
the same teacher, data and layer map share one. Its size is computed from the token counts and
printed before anything is written; ``train.teacher_cache_max_gb`` caps it.

Only the masked (default) losses read the cache: they never look at padded positions, which it
does not store. TinyBERT-compatible mode (``stage.loss.tinybert_compat``) scores padding too and
runs the live teacher.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from datasets.fingerprint import Hasher
from filelock import FileLock
from transformers import DataCollatorWithPadding

from distill.attention import Intermediates
from distill.config import TEACHER_TERMS
from distill.errors import DiskSpaceError
from distill.files import building_dir
from distill.layer_map import LayerMap
from distill.teacher import FrozenTeacher

log = logging.getLogger("distill")

CACHE_VERSION = "1"  # bump when what is stored changes, to invalidate caches
INDEX_COLUMN = "example_index"


def mapped_layers(layer_map: LayerMap) -> tuple[list[int], list[int]]:
    """Indices into the teacher's ``hidden_states`` (0 = embeddings) and ``attention_scores`` the losses read."""
    hidden = sorted({0, *layer_map.targets})
    scores = sorted({t - 1 for t in layer_map.targets})
    return hidden, scores


def cache_bytes(lengths: np.ndarray, n_hidden: int, width: int, n_scores: int, heads: int) -> int:
    """float16 bytes for examples of ``lengths`` tokens: hidden [n_hidden, t, width], scores [n_scores, heads, t, t]."""
    lengths = lengths.astype(np.int64)
    return int(2 * (n_hidden * width * lengths.sum() + n_scores * heads * (lengths**2).sum()))


class TeacherLayerCache:
    """Read side: ``cache[indices, length]`` gives the padded mapped outputs of those examples."""

    def __init__(self, directory: Path):
        meta = json.loads((directory / "meta.json").read_text())
        self.directory, self.hidden_layers, self.score_layers = directory, meta["hidden_layers"], meta["score_layers"]
        self.num_hidden_layers, self.width, self.heads = meta["num_hidden_layers"], meta["width"], meta["heads"]
        offsets = np.load(directory / "offsets.npy")  # [n + 1, 2]: token and score-entry offsets
        self.token_offsets, self.score_offsets = offsets[:, 0], offsets[:, 1]
        self.hidden = np.memmap(directory / "hidden.f16", np.float16, "r",
                                shape=(int(self.token_offsets[-1]), len(self.hidden_layers), self.width))
        self.scores = np.memmap(directory / "scores.f16", np.float16, "r", shape=(int(self.score_offsets[-1]),))

    def __len__(self) -> int:
        return len(self.token_offsets) - 1

    def batch(self, indices: list[int], length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden [len(hidden_layers), b, length, width] and scores [len(score_layers), b, heads, length, length]
        as float32, zero where a position is padding."""
        b, n_h, n_s = len(indices), len(self.hidden_layers), len(self.score_layers)
        hidden = np.zeros((n_h, b, length, self.width), np.float32)
        scores = np.zeros((n_s, b, self.heads, length, length), np.float32)
        for row, i in enumerate(indices):
            start, end = self.token_offsets[i], self.token_offsets[i + 1]
            t = int(end - start)
            hidden[:, row, :t] = self.hidden[start:end].transpose(1, 0, 2)
            block = self.scores[self.score_offsets[i]:self.score_offsets[i + 1]].reshape(n_s, self.heads, t, t)
            scores[:, row, :, :t, :t] = block
        return torch.from_numpy(hidden), torch.from_numpy(scores)


def build_layer_cache(ds, teacher: FrozenTeacher, tokenizer, identity, layer_map: LayerMap, root: Path,
                      max_gb: float, batch_size: int = 128) -> tuple[object, TeacherLayerCache] | None:
    """``ds`` with an ``example_index`` column and the cache of its mapped teacher outputs (built unless it
    exists); None, saying why, when the cache would exceed ``max_gb``."""
    hidden_layers, score_layers = mapped_layers(layer_map)
    key = Hasher.hash((ds._fingerprint, identity, hidden_layers, score_layers, CACHE_VERSION))
    directory = Path(root) / f"teacher_layers-{key}"
    ds = ds.add_column(INDEX_COLUMN, list(range(len(ds))), new_fingerprint=Hasher.hash((ds._fingerprint, INDEX_COLUMN)))
    directory.parent.mkdir(parents=True, exist_ok=True)
    # one writer: the other processes of a multi-process run (or sweep members started together) wait, then read
    with FileLock(str(directory) + ".lock"):
        problem = cache_problem(directory, identity) if directory.exists() else "absent"
        if problem is None:
            log.info("teacher layers: reusing the cache at %s", directory)
        elif problem != "absent":
            log.warning("teacher layers: rebuilding the cache at %s (%s)", directory, problem)
            shutil.rmtree(directory)
        if problem is not None and not _write_layer_cache(ds, teacher, tokenizer, identity, layer_map, directory, max_gb, batch_size):
            return None
    return ds, TeacherLayerCache(directory)


def cache_problem(directory: Path, identity) -> str | None:
    """Why a layer cache cannot be read (None when it can): no or unreadable meta.json, another teacher, another
    version, or files missing or of the wrong size (a copy cut short, a disk that filled up)."""
    try:
        meta = json.loads((directory / "meta.json").read_text())
        offsets = np.load(directory / "offsets.npy")
    except (OSError, ValueError) as err:
        return f"unreadable: {type(err).__name__}"
    if meta.get("teacher") != str(identity) or meta.get("version") != CACHE_VERSION:
        return "its meta.json names another teacher or version"
    expected = {"hidden.f16": 2 * max(int(offsets[-1, 0]), 1) * len(meta["hidden_layers"]) * meta["width"],
                "scores.f16": 2 * max(int(offsets[-1, 1]), 1)}
    for name, size in expected.items():
        actual = (directory / name).stat().st_size if (directory / name).is_file() else None
        if actual != size:
            return f"{name} has {actual} bytes, {size} expected"
    return None


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


def _write_layer_cache(ds, teacher: FrozenTeacher, tokenizer, identity, layer_map: LayerMap, directory: Path,
                       max_gb: float, batch_size: int) -> bool:
    """Write the cache into ``directory``; False, saying why, when it would exceed ``max_gb``."""
    hidden_layers, score_layers = mapped_layers(layer_map)
    cfg = teacher.config
    # lengths straight from arrow: a million augmented rows are not turned into Python lists
    lengths = pc.list_value_length(ds.with_format("arrow")[:]["input_ids"]).to_numpy().astype(np.int64)
    size = cache_bytes(lengths, len(hidden_layers), cfg.hidden_size, len(score_layers), cfg.num_attention_heads)
    if size > max_gb * 2**30:
        log.warning("teacher layers: a cache would take %.1f GB (> train.teacher_cache_max_gb=%s); the teacher runs "
                    "on every step instead", size / 2**30, max_gb)
        return False
    check_free_space(directory.parent, size)
    log.warning("teacher layers: caching %d examples' mapped outputs (%.2f GB, float16) in %s",
                len(ds), size / 2**30, directory)
    with building_dir(directory) as partial:  # whole or absent: an interrupted build is rebuilt
        _write_layers(ds, teacher, tokenizer, identity, layer_map, lengths, size, partial, batch_size)
    return True


def _write_layers(ds, teacher: FrozenTeacher, tokenizer, identity, layer_map: LayerMap, lengths: np.ndarray, size: int,
                  partial: Path, batch_size: int) -> None:
    hidden_layers, score_layers = mapped_layers(layer_map)
    cfg = teacher.config
    token_offsets = np.concatenate([[0], np.cumsum(lengths)])
    score_offsets = np.concatenate([[0], np.cumsum(len(score_layers) * cfg.num_attention_heads * lengths**2)])
    hidden = np.memmap(partial / "hidden.f16", np.float16, "w+",
                       shape=(max(int(token_offsets[-1]), 1), len(hidden_layers), cfg.hidden_size))
    scores = np.memmap(partial / "scores.f16", np.float16, "w+", shape=(max(int(score_offsets[-1]), 1),))
    collate = DataCollatorWithPadding(tokenizer)
    inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in ds.column_names]
    device = next(teacher.model.parameters()).device
    depth = max(layer_map.targets)
    order = np.argsort(lengths, kind="stable")  # length-sorted forwards: little padding
    rows = ds.select_columns(inputs)
    for start in range(0, len(order), batch_size):
        chunk = [int(i) for i in order[start:start + batch_size]]
        enc = {k: v.to(device) for k, v in collate([rows[i] for i in chunk]).items()}
        out = teacher(enc, depth=depth)
        h = torch.stack([out.hidden_states[j] for j in hidden_layers], 2).half().cpu().numpy()  # [b, t, n_h, w]
        s = torch.stack([out.attention_scores[j] for j in score_layers], 1).float()  # [b, n_s, heads, t, t]
        for row, i in enumerate(chunk):
            t = int(lengths[i])
            hidden[token_offsets[i]:token_offsets[i + 1]] = h[row, :t]
            scores[score_offsets[i]:score_offsets[i + 1]] = s[row, :, :, :t, :t].half().reshape(-1).cpu().numpy()
    hidden.flush()
    scores.flush()
    np.save(partial / "offsets.npy", np.stack([token_offsets, score_offsets], 1))
    (partial / "meta.json").write_text(json.dumps({
        "hidden_layers": hidden_layers, "score_layers": score_layers, "num_hidden_layers": cfg.num_hidden_layers,
        "width": cfg.hidden_size, "heads": cfg.num_attention_heads, "examples": len(ds), "bytes": size,
        "teacher": str(identity), "version": CACHE_VERSION,
    }) + "\n")


class CachedTeacher:
    """Stands in for the teacher: mapped layers from a ``TeacherLayerCache`` (by the batch's ``example_index``)
    and logits from the batch's ``teacher_logits`` column, whichever exist; the layers no loss reads are None."""

    def __init__(self, config, layers: TeacherLayerCache | None = None):
        self.config, self.layers = config, layers

    def __call__(self, batch: dict[str, torch.Tensor], logits_at: torch.Tensor | None = None,
                 depth: int | None = None) -> Intermediates:
        hidden_states: tuple = ()
        scores: tuple = ()
        if self.layers is not None:
            ids = batch[INDEX_COLUMN]
            device = ids.device
            h, s = self.layers.batch(ids.tolist(), batch["input_ids"].size(1))
            full_h = [None] * (self.layers.num_hidden_layers + 1)
            for j, layer in enumerate(self.layers.hidden_layers):
                full_h[layer] = h[j].to(device)
            full_s = [None] * self.layers.num_hidden_layers
            for j, layer in enumerate(self.layers.score_layers):
                full_s[layer] = s[j].to(device)
            hidden_states, scores = tuple(full_h), tuple(full_s)
        return Intermediates(hidden_states=hidden_states, attention_scores=scores, logits=batch.get("teacher_logits"))


# teacher terms a cache can answer: the mapped layers and the logits (cosine reads the last layer, MLM
# terms masked positions that change every step)
CACHEABLE = {"embedding", "hidden", "attention", "soft_ce"}
# the layer terms the cache answers (cosine reads the last layer, which it does not store)
LAYER_READERS = {"embedding", "hidden", "attention"}


def teacher_for_phases(phases, ds, teacher: FrozenTeacher, tokenizer, identity, layer_map: LayerMap, options,
                       train_cfg, root: Path, masker=None) -> tuple[object, dict[int, object]]:
    """The training data (with whatever cache columns are needed) and, per phase (by ``id``), what stands in
    for the teacher: a ``CachedTeacher`` for phases whose teacher terms it can answer, else the teacher.
    With a token ``masker`` (masked-LM terms) the teacher reads text that changes every step: no cache."""
    from distill.teacher import with_teacher_logits

    reads = [set(p.weights.active()) & set(TEACHER_TERMS) for p in phases]
    cacheable = [bool(r) and r <= CACHEABLE and not options.tinybert_compat and masker is None for r in reads]
    if any(c and "soft_ce" in r for c, r in zip(cacheable, reads)):
        ds = with_teacher_logits(ds, teacher, tokenizer, identity, train_cfg.eval_batch_size)
    layers = None
    if train_cfg.cache_teacher_layers and any(c and r & LAYER_READERS for c, r in zip(cacheable, reads)):
        built = build_layer_cache(ds, teacher, tokenizer, identity, layer_map, root, train_cfg.teacher_cache_max_gb,
                                  train_cfg.eval_batch_size)
        if built is not None:
            ds, layers = built
    chosen = {}
    for phase, r, c in zip(phases, reads, cacheable):
        answered = c and ("soft_ce" not in r or "teacher_logits" in ds.column_names) and (
            not r & LAYER_READERS or layers is not None)
        # a phase of logits alone does not read the layer files
        chosen[id(phase)] = CachedTeacher(teacher.config, layers if r & LAYER_READERS else None) if answered else teacher
    return ds, chosen


def teacher_sources(phases, chosen: dict[int, object]) -> dict[str, str]:
    """Per phase name, for metrics.json: 'cached' when it reads the caches, 'live' when the teacher runs."""
    return {p.name: "cached" if isinstance(chosen[id(p)], CachedTeacher) else "live" for p in phases}
