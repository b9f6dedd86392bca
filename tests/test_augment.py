"""TinyBERT data augmentation: parity with the one-forward-per-word reference, seeds, cache, resume."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from distill import augment as augment_module
from distill.stages import run
from distill.augment import UNLABELED, augment_train, build_augmenter, split_words
from distill.families.base import WORDPIECE
from distill.reference.augment import ReferenceCandidates
from distill.config import AugmentConfig, TaskConfig
from distill.data import load_task, load_task_splits
from distill.testing import write_tiny_workspace

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline import compose_cfg

SENTENCES = [
    "the movie was very good and the acting great",
    "Boring, dull films: awful plot!",
    "a fun story , but the actors were dark",
    "one two three",
    "it is",
]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return write_tiny_workspace(tmp_path_factory.mktemp("aug"), 60, 12, {"mlm": "masked_lm", "base": "base"})


def task_cfg(ws: Path) -> TaskConfig:
    return TaskConfig(name="tiny", data_dir=str(ws / "data"))


def aug_cfg(ws: Path, tmp_path: Path, **kw) -> AugmentConfig:
    return AugmentConfig(**{"model": str(ws / "mlm"), "cache_dir": str(tmp_path / "cache"), "num_candidates": 5,
                            "copies": 6, "shard_size": 16, **kw})


def rows(ds) -> list[tuple]:
    return list(zip(ds["sentence"], ds["label"], ds["source"]))


@pytest.mark.parametrize("model_dir, use_mlm, m", [("mlm", True, 5), ("base", False, 5), ("mlm", True, 60)])
def test_batched_candidates_equal_the_one_forward_per_word_reference(ws, tmp_path, model_dir, use_mlm, m):
    # m=60 of a 63-entry vocabulary: the ranking reaches sub-word pieces and special tokens, which both must drop
    augmenter = build_augmenter(aug_cfg(ws, tmp_path, model=str(ws / model_dir), num_candidates=m), ["sentence"])
    assert (augmenter.mlm is not None) == use_mlm
    model = augmenter.mlm.model if use_mlm else AutoModel.from_pretrained(ws / model_dir)
    reference = ReferenceCandidates(model, augmenter.tokenizer, m, use_mlm)
    batched = augmenter.candidates(SENTENCES)
    for sentence, found in zip(SENTENCES, batched):
        assert [(w.text, c) for w, c in found] == reference(sentence), sentence
    words = {w.text for found in batched for w, _ in found}
    assert {"movie", "good", "films", "boring", "plot"} <= words  # "films" is two pieces (film ##s)
    assert not words & {"the", "was", "very", "and", "but", "it", "is", ","}  # TinyBERT's stop words, punctuation
    if use_mlm:
        ranked = [c for found in batched for w, c in found if len(w.piece_ids) == 1]
        assert all(not t.startswith("##") and not t.startswith("[") for c in ranked for t in c)


def test_mlm_candidates_are_the_top_predictions_at_the_masked_word(ws, tmp_path):
    augmenter = build_augmenter(aug_cfg(ws, tmp_path, num_candidates=8), ["sentence"])
    tok, model = augmenter.tokenizer, augmenter.mlm.model
    text = "the movie was good"
    # TinyBERT's input, built by the tokenizer: [CLS] text with "movie" masked [SEP] text [SEP]
    batch = tok(f"the {tok.mask_token} was good", text, return_tensors="pt")
    at = (batch["input_ids"][0] == tok.mask_token_id).nonzero().item()
    with torch.no_grad():
        logits = model(**batch).logits[0, at]
    top = [tok.convert_ids_to_tokens(i) for i in logits.topk(8).indices.tolist()]
    expected = [t for t in top if not t.startswith("##") and t not in tok.all_special_tokens]
    assert {w.text: c for w, c in augmenter.candidates([text])[0]}["movie"] == expected


def test_words_keep_their_character_spans(ws):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ws / "mlm")
    text = "Boring,  dull films!"  # the tiny vocabulary has no punctuation: [UNK]
    _, [words] = split_words([text], tok, WORDPIECE)
    assert [(text[w.start:w.end], w.text, len(w.piece_ids)) for w in words] == [
        ("Boring", "boring", 1), (",", "[UNK]", 1), ("dull", "dull", 1), ("films", "films", 2), ("!", "[UNK]", 1)
    ]


def test_variants_change_only_eligible_words_and_carry_no_label(ws, tmp_path):
    out = augment_train(load_task(task_cfg(ws))["train"], task_cfg(ws), aug_cfg(ws, tmp_path), progress=False)
    ds, train = out.dataset, load_task(task_cfg(ws))["train"]
    originals = [r for r in rows(ds) if r[1] != UNLABELED]
    assert originals == [(s, y, i) for i, (s, y) in enumerate(zip(train["sentence"], train["label"]))]
    variants = [r for r in rows(ds) if r[1] == UNLABELED]
    assert len(variants) > 3 * len(train)  # p=0.4 over several words and 6 copies: most tries differ
    for sentence, _, source in variants:
        original = train["sentence"][source]
        assert sentence != original
        a, b = original.split(), sentence.split()
        assert len(a) == len(b)  # one word for one word, the spacing kept
        for x, y in zip(a, b):
            assert x == y or x not in {"the", "was", "very", "and", "it", "is"}
    per_source = {}
    for sentence, _, source in variants:
        per_source.setdefault(source, []).append(sentence)
    assert all(len(v) == len(set(v)) <= 6 for v in per_source.values())  # distinct, at most N
    assert out.stats["rows"] == len(ds) and out.stats["examples"] == len(train)


def test_same_seed_same_output_other_seed_other_output(ws, tmp_path):
    train, task = load_task(task_cfg(ws))["train"], task_cfg(ws)
    first = rows(augment_train(train, task, aug_cfg(ws, tmp_path / "a"), progress=False).dataset)
    # another cache and another shard layout: each example's draws depend on (seed, index) only
    again = rows(augment_train(train, task, aug_cfg(ws, tmp_path / "b", shard_size=7), progress=False).dataset)
    other = rows(augment_train(train, task, aug_cfg(ws, tmp_path / "c", seed=7), progress=False).dataset)
    assert first == again
    assert first != other


def test_p_zero_gives_the_originals(ws, tmp_path):
    train, task = load_task(task_cfg(ws))["train"], task_cfg(ws)
    out = augment_train(train, task, aug_cfg(ws, tmp_path, p=0.0), progress=False).dataset
    assert rows(out) == [(s, y, i) for i, (s, y) in enumerate(zip(train["sentence"], train["label"]))]


def test_second_run_reads_the_cache_and_a_new_setting_recomputes(ws, tmp_path, monkeypatch):
    train, task = load_task(task_cfg(ws))["train"], task_cfg(ws)
    first = augment_train(train, task, aug_cfg(ws, tmp_path), progress=False)

    def no_model(*args, **kwargs):
        raise AssertionError("the cache was complete: no model should load")

    monkeypatch.setattr(augment_module, "build_augmenter", no_model)
    second = augment_train(train, task, aug_cfg(ws, tmp_path), progress=False)
    assert rows(second.dataset) == rows(first.dataset) and second.directory == first.directory
    assert second.stats["computed_examples"] == 0
    # one fingerprint for the same rows, computed or read, here or in another cache directory: what the teacher
    # logits cache is keyed by
    elsewhere = tmp_path / "moved"
    shutil.copytree(first.directory.parent, elsewhere / "cache")
    moved = augment_train(train, task, aug_cfg(ws, elsewhere), progress=False)
    assert second.dataset._fingerprint == first.dataset._fingerprint == moved.dataset._fingerprint
    with pytest.raises(AssertionError, match="no model should load"):
        augment_train(train, task, aug_cfg(ws, tmp_path, copies=3), progress=False)
    monkeypatch.undo()
    third = augment_train(train, task, aug_cfg(ws, tmp_path, copies=3), progress=False)
    assert third.directory != first.directory and third.dataset._fingerprint != first.dataset._fingerprint


KILLER = """
import os, signal
import distill.augment as augment

original = augment.Augmenter.__call__
augment.EXAMPLES_PER_MAP_BATCH = 8  # two map batches per shard: the kill lands mid-shard

def call(self, batch, indices):
    if indices[0] >= int(os.environ["KILL_FROM"]):
        os.kill(os.getpid(), signal.SIGKILL)  # this shard's first batch is in its temporary file
    return original(self, batch, indices)

augment.Augmenter.__call__ = call
"""


def test_killed_augmentation_continues_from_its_finished_shards(ws, tmp_path):
    import os
    import subprocess

    (tmp_path / "killer").mkdir()
    (tmp_path / "killer" / "sitecustomize.py").write_text(KILLER)
    repo = Path(__file__).resolve().parents[1]
    cache = tmp_path / "cache"
    cli = [sys.executable, "-m", "distill", "stage=augment", "task=sst2", f"task.data_dir={ws / 'data'}",
           f"augment.model={ws / 'mlm'}", f"augment.cache_dir={cache}", f"runs_root={tmp_path / 'runs'}",
           "augment.shard_size=16", "augment.copies=6", "augment.num_candidates=5", "train.progress=false"]
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'killer'}{os.pathsep}{repo}", KILL_FROM="40")
    killed = subprocess.run(cli, capture_output=True, text=True, cwd=repo, env=env, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    [directory] = [d for d in cache.iterdir() if d.is_dir()]
    assert len(list(directory.glob("shard-*.arrow"))) == 2  # 54 training examples in shards of 16: two finished
    assert list(directory.glob("tmp*")), "the third shard was being written when the process died"

    resumed = subprocess.run(cli, capture_output=True, text=True, cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)),
                             check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stats = json.loads((directory / "stats.json").read_text())
    # 60 rows, 6 held out to select checkpoints (distill.data.holdout_size): 54 are augmented
    assert stats["computed_examples"] == 54 - 32 and stats["examples"] == 54
    assert not list(directory.glob("tmp*"))
    task = TaskConfig(name="sst2", data_dir=str(ws / "data"), select_holdout_by="containment")  # as conf/task/sst2.yaml
    uninterrupted = augment_train(load_task_splits(task)["train"], task, aug_cfg(ws, tmp_path / "whole"), progress=False)
    from datasets import Dataset, concatenate_datasets

    resumed_rows = concatenate_datasets([Dataset.from_file(str(f)) for f in sorted(directory.glob("shard-*.arrow"))])
    assert rows(resumed_rows) == rows(uninterrupted.dataset)


def test_vectors_file_neighbours(ws, tmp_path):
    rng = np.random.default_rng(0)
    words = ["good", "great", "fine", "bad", "awful", "movie", "film", "plot"]
    vectors = {w: rng.normal(size=4) for w in words}
    vectors["great"] = vectors["good"] + 0.01  # nearest to good
    path = tmp_path / "vectors.txt"
    path.write_text("".join(f"{w} {' '.join(f'{x:.6f}' for x in v)}\n" for w, v in vectors.items()))
    augmenter = build_augmenter(aug_cfg(ws, tmp_path, model=str(ws / "base"), vectors=str(path), num_candidates=3),
                                ["sentence"])
    found = {w.text: c for w, c in augmenter.candidates(["a good movie with an acting plot"])[0]}
    assert found["good"][0] == "great" and len(found["good"]) == 3 and "good" not in found["good"]
    assert "acting" not in found  # not in the file: no candidates, the word stays
    matrix = np.stack([vectors[w] for w in words])
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    sims = unit @ unit[words.index("plot")]
    sims[words.index("plot")] = -np.inf
    assert found["plot"] == [words[i] for i in np.argsort(-sims)[:3]]

    path.write_text("good 1 2 3\nbad 1 x 3\n")
    from distill.errors import ConfigError

    with pytest.raises(ConfigError, match="vectors.txt line 2: not 'word v1 v2 ...'"):
        build_augmenter(aug_cfg(ws, tmp_path, model=str(ws / "base"), vectors=str(path)), ["sentence"])


def test_sentence_pairs_augment_both_texts(ws, tmp_path):
    data = tmp_path / "pairs"
    data.mkdir()
    lines = ["a\tb\tlabel", "the movie was good\tthe film was great\t1", "boring plot\tdull story\t0"]
    for split in ("train.tsv", "dev.tsv"):
        (data / split).write_text("\n".join(lines) + "\n")
    task = TaskConfig(name="pairs", data_dir=str(data), text_field="a", text_pair_field="b")
    ds = augment_train(load_task(task)["train"], task, aug_cfg(ws, tmp_path, p=0.9, copies=10), progress=False).dataset
    variants = [(a, b) for a, b, y in zip(ds["a"], ds["b"], ds["label"]) if y == UNLABELED]
    assert any(a != "the movie was good" for a, b in variants[:10])
    assert any(b != "the film was great" for a, b in variants[:10])


def test_task_stage_trains_on_augmented_train_and_untouched_dev(tmp_path):
    ws = write_tiny_workspace(tmp_path, 40, 12, {"teacher": "masked_lm"})
    run(compose_cfg(ws, "stage=teacher"))
    extra = ("augment.enabled=true", "augment.copies=4", "augment.num_candidates=3", "stage.phases.1.weights.hard_ce=1.0",
             "bench.enabled=false")
    built = run(compose_cfg(ws, "stage=augment", *extra[:3]))
    metrics = run(compose_cfg(ws, "stage=task", "general_student=null", *extra))
    assert metrics["augment"]["directory"] == built["directory"] and metrics["augment"]["computed_examples"] == 0
    assert metrics["train_examples"] == built["rows"] > 2 * 36
    assert np.isfinite(metrics["losses"]["hard_ce"]) and np.isfinite(metrics["losses"]["soft_ce"])
    # dev is the 12 original rows, never augmented (and reported: selection uses a holdout of train)
    card = (ws / "runs" / "task" / "sst2" / "L2_H16_E8_A4_I20_shareall" / "model" / "README.md").read_text()
    assert "dev: 12 examples" in card
    settings = json.loads((Path(built["directory"]) / "settings.json").read_text())
    # 40 rows less the 4 held out to pick the checkpoint
    assert settings["copies"] == 4 and settings["examples"] == 36


def test_hard_ce_ignores_unlabeled_variants():
    from distill.terms.hard_ce import HardCrossEntropy

    z = torch.randn(4, 3)
    y = torch.tensor([2, UNLABELED, 0, UNLABELED])
    labelled = torch.tensor([0, 2])
    expected = torch.nn.functional.cross_entropy(z[labelled], y[labelled])
    torch.testing.assert_close(HardCrossEntropy()(z, y), expected)
    assert HardCrossEntropy()(z, torch.full((4,), UNLABELED)).item() == 0.0
