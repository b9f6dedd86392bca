"""Tasks and corpora by config: files of every shape, clear errors, cache reuse, padding."""

import json
from pathlib import Path

import pytest
import torch

from distill.config import CorpusConfig, HubSource, TaskConfig
from distill.data import eval_loader, load_corpus, load_task, path_identity, tokenize_task, train_loader
from distill.errors import ConfigError


def task_for(tmp_path: Path, **overrides) -> TaskConfig:
    cfg = dict(name="t", data_dir=str(tmp_path), hub=HubSource())
    cfg.update(overrides)
    return TaskConfig(**cfg)


def write(path: Path, text: str, encoding="utf-8") -> None:
    path.write_bytes(text.encode(encoding))


def test_pair_task_from_jsonl_with_string_labels(tmp_path, tokenizer):
    rows = [
        {"premise": "the movie was good", "hypothesis": "it is good", "gold": "entailment"},
        {"premise": "a dull plot", "hypothesis": "the plot was fun", "gold": "not_entailment"},
    ]
    for split in ("train", "dev"):
        write(tmp_path / f"{split}.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    task = task_for(tmp_path, train_file="train.jsonl", dev_file="dev.jsonl", text_field="premise",
                    text_pair_field="hypothesis", label_field="gold", label_names=["entailment", "not_entailment"])
    data = load_task(task)
    assert data["train"]["label"] == [0, 1]
    enc = tokenize_task(data, task, tokenizer)["train"]
    # tokenized as a pair: [CLS] premise [SEP] hypothesis [SEP], segment ids 0 then 1
    ids = enc[0]["input_ids"]
    assert ids.count(tokenizer.sep_token_id) == 2
    assert enc[0]["token_type_ids"][-1] == 1 and enc[0]["token_type_ids"][0] == 0
    assert enc["labels"] == [0, 1]


def test_csv_and_parquet_and_headerless_tsv(tmp_path):
    import pandas as pd

    pd.DataFrame({"text": ["good", "bad"], "y": [1, 0]}).to_parquet(tmp_path / "train.parquet")
    write(tmp_path / "dev.csv", 'text,y\n"bad, really",0\n')
    data = load_task(task_for(tmp_path, train_file="train.parquet", dev_file="dev.csv", text_field="text", label_field="y"))
    assert data["train"]["label"] == [1, 0] and data["dev"]["text"] == ["bad, really"]
    # GLUE CoLA style: no header row, columns named by config
    write(tmp_path / "train.tsv", 'gj04\t1\t\tThe "cat" sat.\ngj04\t0\t*\tSat cat the.\n')
    write(tmp_path / "dev.tsv", "gj04\t1\t\tIt is.\n")
    cola = load_task(task_for(tmp_path, column_names=["source", "label", "original_label", "sentence"]))
    assert cola["train"]["sentence"] == ['The "cat" sat.', "Sat cat the."] and cola["train"]["label"] == [1, 0]


@pytest.mark.parametrize(
    "train_text, overrides, message",
    [
        ("sentence\tlabel\ngood\t1\nok\tneutral\n", {}, r"train.tsv line 3: label 'neutral' is not in task.label_names"),
        ("sentence\tlabel\ngood\t1\nbad\t7\n", {}, r"train.tsv line 3: label 7 is not in task.label_names"),
        ("text\tlabel\ngood\t1\n", {}, r"train.tsv: no column 'sentence' \(columns: text, label\); set task.text_field"),
        ("sentence\tlabel\ngood\t1\n\t0\n", {}, r"train.tsv line 3: empty text in column 'sentence'"),
        ("sentence\tlabel\ngood\t1\n", {"text_pair_field": "hypothesis"}, r"no column 'hypothesis'.*set task.text_pair_field"),
    ],
)
def test_malformed_files_name_file_line_and_problem(tmp_path, train_text, overrides, message):
    write(tmp_path / "train.tsv", train_text)
    write(tmp_path / "dev.tsv", "sentence\tlabel\nfine\t0\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_task(task_for(tmp_path, **overrides))
    assert "\n" not in str(err.value)


def test_unreadable_encoding_names_the_line(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\ncaf\u00e9 cr\u00e8me\t0\n", encoding="latin-1")
    write(tmp_path / "dev.tsv", "sentence\tlabel\nfine\t0\n")
    with pytest.raises(ConfigError, match=r"train.tsv line 3: not valid utf-8 \(byte 0xe9 at column 4\)"):
        load_task(task_for(tmp_path))
    assert load_task(task_for(tmp_path, encoding="latin-1"))["train"]["sentence"][1] == "caf\u00e9 cr\u00e8me"


def test_second_tokenization_comes_from_the_cache(tmp_path, tokenizer, monkeypatch):
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + "".join(f"good movie {i}\t{i % 2}\n" for i in range(20)))
    write(tmp_path / "dev.tsv", "sentence\tlabel\nbad\t0\n")
    task = task_for(tmp_path)
    first = tokenize_task(load_task(task), task, tokenizer)
    calls = []
    original = type(tokenizer).__call__
    monkeypatch.setattr(type(tokenizer), "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    second = tokenize_task(load_task(task), task, tokenizer)
    assert calls == [], "the second run re-tokenized"
    assert second["train"].cache_files == first["train"].cache_files and second["train"]["input_ids"] == first["train"]["input_ids"]
    # another max length is another cache entry
    task.max_length = 3
    third = tokenize_task(load_task(task), task, tokenizer)
    assert calls and max(len(x) for x in third["train"]["input_ids"]) == 3


def test_dynamic_padding_and_length_grouping(tmp_path, tokenizer):
    lines = [" ".join(["good"] * n) for n in (1, 1, 1, 1, 12, 12, 12, 12)]
    write(tmp_path / "dev.tsv", "sentence\tlabel\n" + "".join(f"{t}\t0\n" for t in lines))
    lengths = [1 + (i * 7) % 12 for i in range(200)]
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + "".join(f"{' '.join(['fun'] * n)}\t1\n" for n in lengths))
    task = task_for(tmp_path)
    data = tokenize_task(load_task(task), task, tokenizer)
    # eval batches in file order: each padded to its own longest sentence, not to max_length
    widths = [b["input_ids"].shape[1] for b in eval_loader(data["dev"], tokenizer, 4)]
    assert widths == [3, 14]
    batch = next(iter(eval_loader(data["dev"], tokenizer, 4)))
    assert batch["attention_mask"].sum().item() == 4 * 3 and torch.equal(batch["labels"], torch.zeros(4, dtype=torch.long))

    def padding(group_by_length):
        loader = train_loader(data["train"], tokenizer, 8, seed=0, group_by_length=group_by_length)
        batches = list(loader)
        assert sum(len(b["input_ids"]) for b in batches) == 200  # every example once per epoch
        return sum(b["attention_mask"].numel() - b["attention_mask"].sum().item() for b in batches)

    grouped, shuffled = padding(True), padding(False)
    assert grouped < shuffled / 3, (grouped, shuffled)


def test_corpus_packing_modes(tmp_path, tokenizer):
    doc = "The movie was good. The plot was dull! It is a fun story. The acting was bad."
    (tmp_path / "c.txt").write_text(doc + "\n\n" + doc + "\n")
    task = task_for(tmp_path)
    base = dict(fetch=[], files=[str(tmp_path / "c.txt")], include_task=False, max_length=16)
    pairs = load_corpus(CorpusConfig(packing="pairs", **base), task, tokenizer)
    for row in pairs:
        assert len(row["input_ids"]) <= 16 and row["input_ids"][0] == tokenizer.cls_token_id
    # pairs: two segments split at a sentence boundary
    assert any(1 in row["token_type_ids"] for row in pairs)
    plain = load_corpus(CorpusConfig(packing="plain", **base), task, tokenizer)
    assert all(len(r) == 16 for r in plain["input_ids"][:-1])
    lines = load_corpus(CorpusConfig(packing="lines", **base), task, tokenizer)
    assert len(lines) == 2  # the empty line is dropped
    # files and the task's own sentences together
    write(tmp_path / "train.tsv", "sentence\tlabel\ngood fun\t1\nbad\t0\n")
    write(tmp_path / "dev.tsv", "sentence\tlabel\nbad\t0\n")
    both = load_corpus(CorpusConfig(packing="lines", **{**base, "include_task": True}), task, tokenizer)
    assert len(both) == 4
    n_tokens = lambda ds: sum(sum(1 for t in ids if t not in (tokenizer.cls_token_id, tokenizer.sep_token_id)) for ids in ds["input_ids"])  # noqa: E731
    assert n_tokens(plain) == n_tokens(pairs) == 2 * 21  # packing loses no text
    assert n_tokens(lines) == 2 * 14  # one example per line, truncated to 16


PHRASES = [
    "the film is good",        # 0  a whole sentence
    "film is good",            # 1  inside 0
    "is good",                 # 2  inside 0, 1
    "good",                    # 3  inside 0, 1, 2, 5
    "a bad plot",              # 4  a whole sentence
    "good acting , bad plot",  # 5  a whole sentence
    "bad plot",                # 6  inside 4, 5
    "The Film is good",        # 7  a copy of 0
    "plot",                    # 8  inside 4, 5, 6
    "dull",                    # 9  a whole sentence
]


def overlapping(held: list[str], train: list[str]) -> list[tuple[str, str]]:
    """Brute force: pairs of a held-out and a training text, one inside the other (whole words, any case)."""
    pad = lambda t: f" {t.lower()} "  # noqa: E731
    return [(h, t) for h in held for t in train if pad(h) in pad(t) or pad(t) in pad(h)]


@pytest.mark.parametrize("order, held, dropped", [
    # "is good" is inside a longer phrase: skipped; the sentence 0 is held out with its phrases and its copy
    ([2, 0, 9, 4, 5, 1, 3, 6, 7, 8], [0, 9], {1, 2, 3, 7}),
    # "good" skipped; sentence 5 takes "good", "bad plot" and "plot" with it; 4 is whole too
    ([3, 5, 4, 0, 1, 2, 6, 7, 8, 9], [5, 4], {3, 6, 8}),
])
def test_containment_holdout_holds_out_whole_sentences_and_drops_their_phrases(order, held, dropped):
    from distill.data import containment_holdout

    got_held, got_dropped = containment_holdout(PHRASES, order, 2)
    assert (got_held, got_dropped) == (held, dropped)
    kept = [t for i, t in enumerate(PHRASES) if i not in set(held) | dropped]
    assert overlapping([PHRASES[i] for i in held], kept) == []
    # a random holdout of the same size overlaps training (what the containment holdout is for)
    assert overlapping([PHRASES[2], PHRASES[3]], [t for i, t in enumerate(PHRASES) if i not in (2, 3)])


def test_containment_holdout_through_the_task_splits_is_clean_and_counted(tmp_path):
    from distill.data import task_splits_and_plan

    rows = [f"w{i} w{i + 1} w{i + 2}" for i in range(0, 300, 3)]  # 100 sentences of 3 words
    rows += [" ".join(r.split()[:2]) for r in rows] + [r.split()[2] for r in rows]  # + two phrases of each
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(rows)))
    write(tmp_path / "dev.tsv", "sentence\tlabel\nw1\t0\nw2\t1\n")
    splits, plan = task_splits_and_plan(task_for(tmp_path, select_holdout=20, select_holdout_by="containment"))
    assert plan["holdout"] == {"by": "containment", "held_out": 20, "train_rows_dropped": 40}
    assert len(splits["select"]) == 20 and len(splits["train"]) == 300 - 60
    assert all(len(t.split()) == 3 for t in splits["select"]["sentence"])  # whole sentences only
    assert overlapping(splits["select"]["sentence"], splits["train"]["sentence"]) == []
    row_splits, row_plan = task_splits_and_plan(task_for(tmp_path, select_holdout=20))
    assert row_plan["holdout"] == {"by": "row", "held_out": 20, "train_rows_dropped": 0}
    assert overlapping(row_splits["select"]["sentence"], row_splits["train"]["sentence"])


def test_selection_split_never_overlaps_the_reported_one(tmp_path):
    from distill.data import evaluation_plan, holdout_size, load_task_splits

    lines = lambda rows: "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows)  # noqa: E731
    train = [(f"train {i}", i % 2) for i in range(50)]
    write(tmp_path / "train.tsv", lines(train))
    write(tmp_path / "dev.tsv", lines([(f"dev {i}", i % 2) for i in range(7)]))
    write(tmp_path / "test.tsv", lines([(f"test {i}", i % 2) for i in range(5)]))
    # GLUE-style (no test labels): a holdout of train selects, dev is reported untouched
    glue = task_for(tmp_path, select_holdout=1000)
    splits = load_task_splits(glue)
    assert evaluation_plan(glue) == {"select": "train holdout", "report": "dev"}
    assert holdout_size(glue, 50) == 5 and len(splits["select"]) == 5 and len(splits["train"]) == 45
    assert set(splits["select"]["sentence"]).isdisjoint(splits["train"]["sentence"])
    assert set(splits["select"]["sentence"]) | set(splits["train"]["sentence"]) == {t for t, _ in train}
    assert splits["report"]["sentence"] == [f"dev {i}" for i in range(7)]
    assert load_task_splits(glue)["select"]["sentence"] == splits["select"]["sentence"]  # the same every run
    # with a labelled test file: dev selects, test is reported, train is whole
    labelled = task_for(tmp_path, test_file="test.tsv")
    splits = load_task_splits(labelled)
    assert evaluation_plan(labelled) == {"select": "dev", "report": "test"}
    assert len(splits["train"]) == 50 and splits["select"]["sentence"][0] == "dev 0"
    assert splits["report"]["sentence"] == [f"test {i}" for i in range(5)]


def test_the_tools_read_labelled_files_as_the_tasks_do(tmp_path):
    """bench, export and report read the task formats through one reader: string labels (rt_polarity's dev
    file, which the old integer-only TSV reader refused) map by the model's label names."""
    from distill.data import read_labelled, read_texts

    (tmp_path / "dev.tsv").write_text("sentence\tlabel\ngood fun\tpositive\nawful\tnegative\nok then\t1\n")
    assert read_labelled(tmp_path / "dev.tsv", ["negative", "positive"]) == (["good fun", "awful", "ok then"], [1, 0, 1])
    with pytest.raises(ConfigError, match=r"dev.tsv line 2: label 'positive' is not in task.label_names \['LABEL_0', "):
        read_labelled(tmp_path / "dev.tsv", ["LABEL_0", "LABEL_1"])
    (tmp_path / "texts.jsonl").write_text('{"sentence": "one"}\n{"sentence": "two words"}\n')
    assert read_texts(tmp_path / "texts.jsonl") == ["one", "two words"]
    with pytest.raises(ConfigError, match="no column 'sentence_a'"):
        read_texts(tmp_path / "texts.jsonl", text_field="sentence_a")


def test_cache_identity_follows_the_files_not_the_path(tmp_path):
    """A teacher reached through a symlink (or moved, or exported to ONNX) keeps its caches; a changed file gets new ones."""
    model = tmp_path / "teacher"
    model.mkdir()
    write(model / "config.json", '{"hidden_size": 4}')
    write(model / "model.safetensors", "weights")
    (tmp_path / "link").symlink_to(model)
    moved = tmp_path / "moved"
    before = path_identity(str(model))
    assert path_identity(str(tmp_path / "link")) == before
    model.rename(moved)
    assert path_identity(str(moved)) == before
    write(moved / "model.onnx", "export")  # written beside the weights, not part of the model
    write(moved / "README.md", "model card")
    assert path_identity(str(moved)) == before
    write(moved / "model.safetensors", "retrained weights")
    assert path_identity(str(moved)) != before
    assert path_identity("org/hub-model") == ["org/hub-model"]


def test_the_data_caches_follow_the_files_content_not_their_times(tmp_path, tokenizer):
    """A task's files touched, copied elsewhere or re-mounted (new modification times, new inodes) keep the
    fingerprint the stored teacher outputs are keyed by; one changed byte does not."""
    import os
    import shutil

    original = tmp_path / "a"
    original.mkdir()
    write(original / "train.tsv", "sentence\tlabel\n" + "".join(f"good movie {i}\t{i % 2}\n" for i in range(20)))
    write(original / "dev.tsv", "sentence\tlabel\nbad\t0\n")
    task = task_for(original)
    first = load_task(task)["train"]
    tokenized = tokenize_task(load_task(task), task, tokenizer)["train"]
    later = os.stat(original / "train.tsv").st_mtime_ns + 10**10
    os.utime(original / "train.tsv", ns=(later, later))
    assert load_task(task)["train"]._fingerprint == first._fingerprint
    copy = tmp_path / "b"
    shutil.copytree(original, copy)  # new paths, inodes and times
    assert load_task(task_for(copy))["train"]._fingerprint == first._fingerprint
    # the teacher stores are keyed by the tokenized data's fingerprint (the tokenized rows themselves are written
    # beside datasets' read of the file, so a copy tokenizes again: seconds, against a teacher pass of minutes)
    assert tokenize_task(load_task(task_for(copy)), task_for(copy), tokenizer)["train"]._fingerprint == tokenized._fingerprint
    write(copy / "train.tsv", (copy / "train.tsv").read_text().replace("good movie 7\t1", "good movie 7\t0"))
    assert load_task(task_for(copy))["train"]._fingerprint != first._fingerprint


def test_a_hub_teacher_is_identified_by_the_revision_it_resolves_to(tmp_path, monkeypatch):
    """A hub name stands for whatever revision the local hub cache holds: a new revision gets new caches."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    repo = tmp_path / "hub" / "models--org--teacher"

    def revision(commit: str, weights: str):
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        write(snapshot / "config.json", '{"hidden_size": 4}')
        write(snapshot / "model.safetensors", weights)
        (repo / "refs").mkdir(exist_ok=True)
        write(repo / "refs" / "main", commit)
        return path_identity("org/teacher")

    first = revision("a" * 40, "weights of revision 1")
    assert first != ["org/teacher"] and [name for name, _ in first] == ["config.json", "model.safetensors"]
    assert revision("b" * 40, "weights of revision 2") != first
    assert path_identity("org/not-downloaded") == ["org/not-downloaded"]
