"""Teacher outputs stored as training computes them and read back (distill/teacher_cache.py), and a teacher cut at
its deepest mapped layer."""

import os

import pytest
import torch
from datasets import Dataset

from distill.attention import intermediates, use_score_attention
from distill.config import TrainConfig
from distill.config import LossOptions, LossWeights
from distill.config import StudentShape
from distill.hf import load_model
from distill.layer_map import LayerMap
from distill.objective import Objective
from distill.student import build_student
from distill.teacher import FrozenTeacher
from distill.testing import widen_qkv
from distill.teacher_cache import (
    INDEX_COLUMN,
    LayerStore,
    LogitStore,
    WriteThroughTeacher,
    LAYER_STORED,
    _layer_stores,
    cache_bytes,
    cache_problem,
    mapped_layers,
    teacher_for_phases,
)


@pytest.fixture
def teacher(tiny_dir):
    return FrozenTeacher(load_model(str(tiny_dir), head="sequence_classification"))


def rows_of(batch, labels=True):
    """The batch's examples unpadded, as dataset rows."""
    rows = {k: [ids[m.bool()].tolist() for ids, m in zip(v, batch["attention_mask"])]
            for k, v in batch.items() if k != "labels"}
    if labels:
        rows["labels"] = batch["labels"].tolist()
    return Dataset.from_dict(rows)


def build_layer_cache(rows, teacher, tokenizer, identity, layer_map, root, batch_size=128):
    """``rows`` with an index column and a layer store filled for every row (what a run's later epochs read)."""
    ds = rows.add_column(INDEX_COLUMN, list(range(len(rows))))
    store = LayerStore.for_data(ds, teacher, identity, layer_map, root)
    WriteThroughTeacher(teacher, layers=store).fill(ds, tokenizer, batch_size)
    return ds, store


def student_for(tokenizer, heads=4):
    shape = StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=heads, intermediate_size=20,
                         max_position_embeddings=64)
    return use_score_attention(build_student(shape, tokenizer, num_labels=2)).eval()


def test_a_teacher_cut_at_its_deepest_mapped_layer_gives_the_same_mapped_outputs(teacher, padded_batch):
    depth = 2  # of the tiny teacher's 4 layers
    cut = teacher(padded_batch, depth=depth)  # first: a cut forward must not hide layers from later full ones
    full = intermediates(teacher.model, padded_batch)
    assert len(full.hidden_states) == 5 and len(full.attention_scores) == 4
    assert len(cut.hidden_states) == depth + 1 and len(cut.attention_scores) == depth and cut.logits is None
    for a, b in zip(cut.hidden_states, full.hidden_states[: depth + 1]):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    for a, b in zip(cut.attention_scores, full.attention_scores[:depth]):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert len(teacher.model.base_model.encoder.layer) == 4, "the teacher's own layer list is restored"


def test_the_objective_runs_the_teacher_only_as_deep_as_its_terms_read(teacher, tokenizer):
    student = student_for(tokenizer)
    layers = Objective(student, LossWeights(hidden=1.0, attention=1.0), teacher, LayerMap([1, 2], 2, 4))
    assert layers.teacher_depth == 2
    assert Objective(student, LossWeights(embedding=1.0), teacher, LayerMap([1, 2], 2, 4)).teacher_depth == 0
    # logits are read: the whole teacher runs; a map that reaches the top layer needs all of it anyway
    assert Objective(student, LossWeights(hidden=1.0, soft_ce=1.0), teacher, LayerMap([1, 2], 2, 4)).teacher_depth is None
    assert Objective(student, LossWeights(hidden=1.0), teacher, LayerMap("uniform", 2, 4)).teacher_depth is None


@pytest.mark.parametrize("map_", [[1, 3], [2, 4]])
def test_cached_layers_give_the_live_teachers_losses(teacher, tokenizer, padded_batch, tmp_path, map_):
    layer_map = LayerMap(map_, 2, 4)
    ds, cache = build_layer_cache(rows_of(padded_batch), teacher, tokenizer, "t", layer_map, tmp_path,
                                  batch_size=3)  # length-sorted batches of 3: rows padded differently than here
    batch = dict(padded_batch, **{INDEX_COLUMN: torch.tensor(ds[INDEX_COLUMN])})
    student = student_for(tokenizer)
    weights = LossWeights(embedding=1.0, hidden=1.0, attention=1.0)
    live = Objective(student, weights, teacher, layer_map)
    cached = Objective(student, weights, WriteThroughTeacher(teacher, layers=cache), layer_map)
    cached.load_state_dict(live.state_dict())  # the same projections
    live_total, live_terms = live(batch)
    cached_total, cached_terms = cached(batch)
    for name in live_terms:  # float16 storage: agreement to about 1e-3 relative
        torch.testing.assert_close(cached_terms[name], live_terms[name], rtol=2e-3, atol=1e-4)
        assert live_terms[name] > 0
    torch.testing.assert_close(cached_total, live_total, rtol=2e-3, atol=1e-4)


def test_the_size_estimate_is_the_size_allocated_and_the_cap_counts_what_a_run_visits(teacher, tokenizer, padded_batch,
                                                                                         tmp_path):
    layer_map = LayerMap([1, 3], 2, 4)
    ds, cache = build_layer_cache(rows_of(padded_batch), teacher, tokenizer, "t", layer_map, tmp_path)
    lengths = padded_batch["attention_mask"].sum(1).numpy()
    hidden, scores = mapped_layers(layer_map)
    expected = cache_bytes(lengths, len(hidden), teacher.config.hidden_size, len(scores), teacher.config.num_attention_heads)
    written = sum(os.path.getsize(cache.directory / f) for f in ("hidden.f16", "scores.f16"))
    assert written == expected == cache.meta["bytes"]
    # over the cap: no store (the teacher runs live); a run that visits a quarter of the examples stores a quarter
    assert _layer_stores(ds, teacher, "t", layer_map, LAYER_STORED, None, tmp_path / "small", expected / 2**30 / 2, None) == (None, None)
    assert _layer_stores(ds, teacher, "t", layer_map, LAYER_STORED, None, tmp_path / "small", expected / 2**30 / 2, len(ds) // 4)[0] is not None


def test_the_cache_is_rebuilt_when_teacher_data_layer_map_or_max_length_change(teacher, tokenizer, padded_batch, tmp_path):
    def directory(rows, identity="t", map_=(1, 3)):
        return build_layer_cache(rows, teacher, tokenizer, identity, LayerMap(list(map_), 2, 4), tmp_path)[1].directory

    base = rows_of(padded_batch)
    first = directory(base)
    assert directory(rows_of(padded_batch)) == first, "the same teacher, data and map reuse the cache"
    shorter = tokenizer(["the movie was very good", "bad", "a fun story and great acting but the plot was dull", "it is"],
                        truncation=True, max_length=6)
    changed = {
        "teacher": directory(base, identity="another teacher"),
        "data": directory(base.select([0, 1, 2])),
        "layer map": directory(base, map_=(2, 4)),
        "max length": directory(Dataset.from_dict(dict(shorter))),
    }
    assert len({first, *changed.values()}) == 5, changed


def test_phases_get_the_cache_they_can_read(teacher, tokenizer, padded_batch, tmp_path):
    from distill.config import PhaseConfig

    layers = PhaseConfig(name="intermediate", weights=LossWeights(embedding=1.0, hidden=1.0, attention=1.0))
    logits = PhaseConfig(name="prediction", weights=LossWeights(soft_ce=1.0, hard_ce=1.0))
    hard = PhaseConfig(name="hard", weights=LossWeights(hard_ce=1.0))
    phases = [layers, logits, hard]
    layer_map = LayerMap([1, 3], 2, 4)
    ds, chosen, stores = teacher_for_phases(phases, rows_of(padded_batch), teacher, "t", layer_map, LossOptions(),
                                            TrainConfig(), tmp_path)
    assert INDEX_COLUMN in ds.column_names and "teacher_logits" not in ds.column_names  # no pass before training
    assert chosen[id(layers)].layers is not None and chosen[id(layers)].logits is None
    assert chosen[id(logits)].logits is not None and chosen[id(logits)].layers is None
    assert chosen[id(hard)] is teacher  # hard labels run no teacher (the objective does not call it)
    assert [type(s) for s in stores.stores] == [LogitStore, LayerStore]
    # TinyBERT's unmasked formulas score padding, which the stores do not hold: the live teacher
    _, compat, _ = teacher_for_phases(phases, rows_of(padded_batch), teacher, "t", layer_map,
                                      LossOptions(tinybert_compat=True), TrainConfig(), tmp_path)
    assert compat[id(layers)] is teacher
    _, off, _ = teacher_for_phases(phases, rows_of(padded_batch), teacher, "t", layer_map, LossOptions(),
                                   TrainConfig(cache_teacher_layers=False), tmp_path)
    assert off[id(layers)] is teacher and isinstance(off[id(logits)], WriteThroughTeacher)
    # a teacher under autocast stores other numbers: its own stores, and fp32's keep their place
    _, again, _ = teacher_for_phases(phases, rows_of(padded_batch), teacher, "t", layer_map, LossOptions(),
                                     TrainConfig(), tmp_path)
    _, bf16, _ = teacher_for_phases(phases, rows_of(padded_batch), teacher, "t", layer_map, LossOptions(),
                                    TrainConfig(mixed_precision="bf16"), tmp_path)
    assert again[id(logits)].logits.directory == chosen[id(logits)].logits.directory
    assert bf16[id(logits)].logits.directory != chosen[id(logits)].logits.directory
    assert bf16[id(layers)].layers.directory != chosen[id(layers)].layers.directory


def test_a_layer_store_keeps_only_what_the_terms_read(teacher, tokenizer, padded_batch, tmp_path):
    """Hidden-state terms store no attention scores (for a 12-layer teacher's [heads, t, t] per layer, much of the
    store), attention terms no hidden states; what is stored gives the live teacher's losses."""
    from distill.config import PhaseConfig

    layer_map = LayerMap([1, 3], 2, 4)
    for weights, hidden, scores in ((LossWeights(hidden=1.0, soft_ce=1.0), [1, 3], []),
                                    (LossWeights(attention=1.0), [], [0, 2]),
                                    (LossWeights(embedding=1.0, hidden=1.0), [0, 1, 3], [])):
        phase = PhaseConfig(name="distil", weights=weights)
        ds, chosen, _ = teacher_for_phases([phase], rows_of(padded_batch), teacher, "t", layer_map, LossOptions(),
                                           TrainConfig(), tmp_path)
        store = chosen[id(phase)].layers
        assert (store.hidden_layers, store.score_layers) == (hidden, scores)
        assert (store.directory / "hidden.f16").exists() == bool(hidden)
        assert (store.directory / "scores.f16").exists() == bool(scores)
        batch = dict(padded_batch, **{INDEX_COLUMN: torch.tensor(ds[INDEX_COLUMN])})
        student = student_for(tokenizer)
        live = Objective(student, weights, teacher, layer_map)
        cached = Objective(student, weights, chosen[id(phase)], layer_map)
        cached.load_state_dict(live.state_dict())
        for _ in range(2):  # the pass that stores, then one that reads
            torch.testing.assert_close(cached(batch)[1], live(batch)[1], rtol=2e-3, atol=1e-4)
        assert chosen[id(phase)].live_batches == 1 and chosen[id(phase)].stored_batches == 1


def test_the_first_pass_runs_the_teacher_and_stores_what_it_visits_later_passes_read(teacher, tokenizer, tmp_path):
    from distill.config import PhaseConfig
    from distill.data import train_loader

    texts = [f"the film {'was very ' * (i % 4)}good number {i}" for i in range(12)]
    rows = Dataset.from_dict({**tokenizer(texts), "labels": [i % 2 for i in range(12)]})
    both = PhaseConfig(name="distil", weights=LossWeights(hidden=1.0, attention=1.0, soft_ce=1.0))
    layer_map = LayerMap([1, 3], 2, 4)
    ds, chosen, stores = teacher_for_phases([both], rows, teacher, "t", layer_map, LossOptions(), TrainConfig(), tmp_path)
    stand_in = chosen[id(both)]
    forwards = []
    hook = teacher.model.base_model.register_forward_pre_hook(lambda *a: forwards.append(1))
    student = student_for(tokenizer)
    objective = Objective(student, both.weights, stand_in, layer_map)
    reference = Objective(student, both.weights, teacher, layer_map)
    reference.load_state_dict(objective.state_dict())
    batches = list(train_loader(ds, tokenizer, 4, 0, True))
    objective(batches[0])  # one batch: only its examples are stored
    assert len(forwards) == 1
    assert sorted(map(int, batches[0][INDEX_COLUMN])) == [i for i in range(12) if stand_in.layers.known[i]]
    assert (stand_in.layers.known == stand_in.logits.known).all()
    first = [objective(b)[0] for b in batches[1:]]
    assert len(forwards) == 3 and stand_in.live_batches == 3 and stand_in.stored_batches == 0
    assert stand_in.layers.known.all() and stand_in.logits.known.all()
    second = [objective(b)[0] for b in batches[1:]]  # the next epoch: read, no teacher
    assert len(forwards) == 3 and stand_in.stored_batches == 2
    hook.remove()
    for a, b, batch in zip(first, second, batches[1:]):
        assert torch.equal(a, b)  # a pass that ran the teacher reads back what it stored: the same numbers
        torch.testing.assert_close(a, reference(batch)[0], rtol=2e-3, atol=1e-4)  # and the live teacher's, to float16
    # another run finds them on disk once flushed (before a checkpoint, and at the end)
    assert not LayerStore(stand_in.layers.directory, stand_in.layers.meta).known.any()
    stores.flush()
    _, again, _ = teacher_for_phases([both], rows, teacher, "t", layer_map, LossOptions(), TrainConfig(), tmp_path)
    assert again[id(both)].layers.known.all() and again[id(both)].logits.known.all()


def test_a_batch_just_written_gives_exactly_what_reading_it_back_gives(teacher, tokenizer, padded_batch, tmp_path,
                                                                      monkeypatch):
    """A first-epoch batch is not read back from the files it was just written to: its outputs are made as the
    stores hold them (float16, zero at padding), bit for bit what the read gives."""
    from distill.teacher_cache import QKVStore

    ds = rows_of(padded_batch).add_column(INDEX_COLUMN, list(range(4)))
    stores = (LogitStore.for_data(ds, teacher, "t", tmp_path),
              LayerStore.for_data(ds, teacher, "t", LayerMap([1, 3], 2, 4), tmp_path),  # embedding, hidden, scores
              QKVStore.for_data(ds, teacher, "t", 4, tmp_path))
    stand_in = WriteThroughTeacher(teacher, *stores)
    batch = {**padded_batch, INDEX_COLUMN: torch.arange(4)}
    reads = []
    for store in stores:
        monkeypatch.setattr(type(store), "read", lambda self, *a, read=type(store).read: reads.append(1) or read(self, *a))
    written = stand_in(batch, qkv_layer=4)
    assert stand_in.live_batches == 1 and not reads  # nothing read back
    again = stand_in(batch, qkv_layer=4)
    assert stand_in.stored_batches == 1 and len(reads) == 3
    assert torch.equal(written.logits, again.logits)
    for a, b in zip([*written.hidden_states, *written.attention_scores, *written.qkv],
                    [*again.hidden_states, *again.attention_scores, *again.qkv]):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))
    assert sum(a is not None for a in written.hidden_states) == 3 and written.attention_scores[0] is not None
    assert (written.hidden_states[3][padded_batch["attention_mask"] == 0] == 0).all()  # padding as stored: zero


@pytest.mark.parametrize("teacher_layer", [None, 2])
def test_the_relation_terms_qkv_are_stored_on_the_first_pass_and_read_after(teacher, tokenizer, tmp_path, teacher_layer):
    """MiniLMv2's relation term reads one teacher layer's Q, K, V: stored like the logits and the mapped layers, so
    a 110M teacher runs once per example, not once per step; what the stores give equals the live teacher's."""
    from distill.config import PhaseConfig
    from distill.data import train_loader
    from distill.teacher_cache import QKVStore

    widen_qkv(teacher.model)
    texts = [f"the film {'was very ' * (i % 4)}good number {i}" for i in range(12)]
    rows = Dataset.from_dict({**tokenizer(texts), "labels": [i % 2 for i in range(12)]})
    phase = PhaseConfig(name="distil", weights=LossWeights(hidden=1.0, relation=1.0, soft_ce=1.0))
    options = LossOptions(relation_heads=4, relation_teacher_layer=teacher_layer)
    layer_map = LayerMap([1, 3], 2, 4)
    ds, chosen, stores = teacher_for_phases([phase], rows, teacher, "t", layer_map, options, TrainConfig(), tmp_path)
    stand_in = chosen[id(phase)]
    assert isinstance(stand_in.qkv, QKVStore) and stand_in.qkv.layer == (teacher_layer or 4)
    assert [type(s) for s in stores.stores] == [LogitStore, LayerStore, QKVStore]
    student = widen_qkv(student_for(tokenizer))
    objective = Objective(student, phase.weights, stand_in, layer_map, options)
    reference = Objective(student, phase.weights, teacher, layer_map, options)
    reference.load_state_dict(objective.state_dict())
    forwards = []
    hook = teacher.model.base_model.register_forward_pre_hook(lambda *a: forwards.append(1))
    batches = list(train_loader(ds, tokenizer, 4, 0, True))
    first = [objective(b)[1] for b in batches]
    assert len(forwards) == 3 and stand_in.qkv.known.all()
    second = [objective(b)[1] for b in batches]  # the next epoch: read, no teacher
    assert len(forwards) == 3 and stand_in.stored_batches == 3
    hook.remove()
    for a, b, batch in zip(first, second, batches):
        live = reference(batch)[1]
        assert a["relation"] > 0.05 and torch.equal(a["relation"], b["relation"])
        torch.testing.assert_close(b["relation"], live["relation"], rtol=2e-3, atol=1e-4)  # float16 Q, K, V
    # keyed by the layer: another relation layer gets its own store
    stores.flush()
    other = LossOptions(relation_heads=4, relation_teacher_layer=3)
    _, again, _ = teacher_for_phases([phase], rows, teacher, "t", layer_map, other, TrainConfig(), tmp_path)
    assert again[id(phase)].qkv.directory != stand_in.qkv.directory and not again[id(phase)].qkv.known.any()


@pytest.mark.parametrize("weights", [LossWeights(embedding=1.0, hidden=1.0, attention=1.0), LossWeights(soft_ce=1.0)])
def test_the_benchmarks_reference_loss_matches_the_objective_on_differently_padded_batches(
        teacher, tokenizer, padded_batch, weights):
    """The training benchmark's equal-work check: its plain-torch restatement of the losses, on a batch padded
    to a fixed length, gives the objective's value on the dynamically padded batch."""
    from distill.reference.bench_train import loss_difference, reference_collate

    rows = list(rows_of(padded_batch))
    fixed = reference_collate(tokenizer, 32)(rows)
    assert fixed["input_ids"].shape[1] == 32 > padded_batch["input_ids"].shape[1]
    objective = Objective(student_for(tokenizer), weights, teacher, LayerMap([1, 3], 2, 4))
    difference = loss_difference(objective, teacher, padded_batch, fixed)
    assert set(difference) == {*weights.active(), "total"}
    assert max(difference.values()) < 1e-5, difference


def test_a_teacher_rewritten_with_the_same_size_and_mtime_gets_a_new_cache(teacher, tokenizer, padded_batch, tmp_path,
                                                                           monkeypatch):
    """The cache identity is the files' content: a retrained teacher whose weights file has the same size and
    modification time as before (copied back with its times, say) does not read the old teacher's outputs."""
    import datasets

    from distill.data import path_identity

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))  # the hash memo goes here
    model = tmp_path / "teacher"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 4}')
    (model / "model.safetensors").write_bytes(b"weights A")
    stat = (model / "model.safetensors").stat()
    before = path_identity(str(model))
    assert path_identity(str(model)) == before  # and read back from the memo
    (model / "model.safetensors").write_bytes(b"weights B")
    os.utime(model / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (model / "model.safetensors").stat().st_size == stat.st_size
    assert (model / "model.safetensors").stat().st_mtime_ns == stat.st_mtime_ns
    after = path_identity(str(model))
    assert after != before
    layer_map = LayerMap([1, 3], 2, 4)
    old = build_layer_cache(rows_of(padded_batch), teacher, tokenizer, before, layer_map, tmp_path)[1].directory
    new = build_layer_cache(rows_of(padded_batch), teacher, tokenizer, after, layer_map, tmp_path)[1].directory
    assert old != new


@pytest.mark.parametrize("damage", ["truncated", "meta", "filled"])
def test_a_damaged_cache_is_rebuilt_not_read(teacher, tokenizer, padded_batch, tmp_path, damage):
    import json

    layer_map = LayerMap([1, 3], 2, 4)
    ds, cache = build_layer_cache(rows_of(padded_batch), teacher, tokenizer, "t", layer_map, tmp_path)
    directory = cache.directory
    good = {name: (directory / name).read_bytes() for name in ("hidden.f16", "scores.f16")}
    if damage == "truncated":  # a copy cut short
        (directory / "hidden.f16").write_bytes(good["hidden.f16"][:10])
    elif damage == "meta":  # written by another teacher under the same key (or by hand)
        meta = json.loads((directory / "meta.json").read_text())
        (directory / "meta.json").write_text(json.dumps({**meta, "teacher": "another"}))
    else:
        (directory / "filled.npy").write_bytes(b"not numpy")
    sizes = {"hidden.f16": len(good["hidden.f16"]), "scores.f16": len(good["scores.f16"])}
    assert cache_problem(directory, cache.meta, sizes) is not None
    rebuilt = LayerStore.for_data(ds, teacher, "t", layer_map, tmp_path)
    assert rebuilt.directory == directory and not rebuilt.known.any()  # nothing of the damaged store is read
    assert cache_problem(directory, cache.meta, sizes) is None
    WriteThroughTeacher(teacher, layers=rebuilt).fill(ds, tokenizer)
    assert {name: (directory / name).read_bytes() for name in good} == good


def test_a_cache_larger_than_the_free_disk_is_refused_before_writing(teacher, tokenizer, padded_batch, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from distill.errors import DiskSpaceError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    with pytest.raises(DiskSpaceError, match=r"teacher layers: the cache needs 0.00 GB but .* has 0.00 GB free; free space "
                                             r"\(python -m distill cache list\|clear\)"):
        _layer_stores(rows_of(padded_batch), teacher, "t", LayerMap([1, 3], 2, 4), LAYER_STORED, None, tmp_path, 1.0, None)
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]  # nothing written


def test_cache_list_and_clear(teacher, tokenizer, padded_batch, tmp_path, monkeypatch, capsys):
    import datasets

    from distill.caches import main as cache
    from distill.errors import ConfigError

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path))
    root = tmp_path / "distill"
    for map_ in ([1, 3], [2, 4]):
        build_layer_cache(rows_of(padded_batch), teacher, tokenizer, "t", LayerMap(map_, 2, 4), root)
    names = sorted(p.name for p in root.iterdir() if p.name.startswith("teacher_layers-") and not p.name.endswith(".lock"))
    assert cache(["list"]) == 0
    listed = capsys.readouterr().out
    sizes = {n: sum(f.stat().st_blocks * 512 for f in (root / n).rglob("*")) for n in names}  # on disk
    for name in names:
        assert f"{sizes[name] / 2**20:10.1f} MiB" in listed and name in listed and "4 of 4 examples" in listed
    assert f"in 2 caches under {root}" in listed
    with pytest.raises(ConfigError, match="no cache named nope"):
        cache(["clear", "nope"])
    assert cache(["clear", names[0]]) == 0 and not (root / names[0]).exists() and (root / names[1]).exists()
    assert cache(["clear", "--all"]) == 0 and not (root / names[1]).exists()
