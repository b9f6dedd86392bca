"""The Chinese path: the zh_reviews task, a Chinese WordPiece vocabulary on a pretrained encoder, and a run
teacher -> task whose student starts from a converted albert_zh-style TF checkpoint (stage.init.albert_dir)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from distill.albert_tf import convert
from distill.assets import fetch
from distill.config import compose_config
from distill.errors import ConfigError
from distill.stages import run
from distill.testing import ZH_VOCAB, tiny_bert_config, write_albert_tf_checkpoint, write_tiny_teacher
from distill.vocab import SPECIALS, chinese_teacher_from, train_wordpiece, transplant_embeddings

POSITIVE, NEGATIVE = list("好喜欢值得推荐快"), list("差失望慢")
PLAIN = [c for c in "的很书质量是了我这本一般太送货服务" if c not in POSITIVE + NEGATIVE]


def write_zh_task(directory: Path, sizes: dict[str, int]) -> None:
    """zh_reviews-shaped TSVs: each review holds one polar character among plain ones."""
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows = ["sentence\tlabel"]
        for _ in range(n):
            positive = rng.random() < 0.5
            chars = rng.sample(PLAIN, rng.randint(2, 8)) + [rng.choice(POSITIVE if positive else NEGATIVE)]
            rng.shuffle(chars)
            rows.append(f"{''.join(chars)}\t{'positive' if positive else 'negative'}")
        (directory / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_zh_reviews_fetch_dedupes_and_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    path = fetch("zh_reviews")
    rows = {s: (path / f"{s}.tsv").read_text(encoding="utf-8").splitlines()[1:] for s in ("train", "dev", "test")}
    # 16,548 + 18,576 lines, about half of them repeats; 17,361 distinct texts under one label, split 80/10/10
    assert {s: len(r) for s, r in rows.items()} == {"train": 13889, "dev": 1736, "test": 1736}
    texts = {s: {line.rsplit("\t", 1)[0] for line in r} for s, r in rows.items()}
    assert sum(len(t) for t in texts.values()) == sum(len(r) for r in rows.values())  # no text twice in a split
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"] and not texts["dev"] & texts["test"]
    assert {line.rsplit("\t", 1)[1] for r in rows.values() for line in r} == {"positive", "negative"}


def test_wordpiece_vocabulary_is_chinese_bert_style_and_deterministic():
    texts = ["这本书很好看，值得推荐！", "质量太差了 bad quality", "Good 书", "好好好"] * 3
    vocab = train_wordpiece(texts)
    assert vocab[: len(SPECIALS)] == list(SPECIALS) and vocab == train_wordpiece(list(reversed(texts)))
    assert {"书", "好", "，", "！", "bad", "quality", "good"} <= set(vocab)  # lower-cased; CJK one token each
    assert not any(len(t) > 1 and any("\u4e00" <= c <= "\u9fff" for c in t) for t in vocab)


def test_transplant_keeps_shared_rows_and_starts_others_at_the_mean():
    source = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    rows, matched = transplant_embeddings(source, ["[PAD]", "a", "b", "c"], ["[PAD]", "书", "c", "好"])
    assert matched == 2
    assert torch.equal(rows, torch.stack([source[0], source.mean(0), source[3], source.mean(0)]))
    # with a generator, new rows are draws from N(mean, std^2) per dimension, in vocabulary order
    rows, _ = transplant_embeddings(source, ["[PAD]", "a", "b", "c"], ["[PAD]", "书", "c", "好"], torch.Generator().manual_seed(3))
    noise = torch.randn(2, 3, generator=torch.Generator().manual_seed(3))
    expected = source.mean(0) + source.std(0) * noise
    assert torch.equal(rows, torch.stack([source[0], expected[0], source[3], expected[1]]))


def test_chinese_teacher_keeps_the_encoder(tmp_path):
    torch.manual_seed(0)
    source, _ = write_tiny_teacher(tmp_path / "en")
    chinese_teacher_from(tmp_path / "en", "a tiny BERT", ["这本书很好", "质量太差 the movie", "很好"] * 2, tmp_path / "zh")
    model = BertModel.from_pretrained(tmp_path / "zh")
    tok = BertTokenizer.from_pretrained(tmp_path / "zh")
    assert tok.tokenize("这本书 the") == ["这", "本", "书", "the"]
    for name, value in source.state_dict().items():
        if "word_embeddings" not in name:
            assert torch.equal(model.state_dict()[name], value), name
    en_vocab = (tmp_path / "en" / "vocab.txt").read_text().split()
    emb, src = model.embeddings.word_embeddings.weight, source.embeddings.word_embeddings.weight
    assert torch.equal(emb[tok.convert_tokens_to_ids("the")], src[en_vocab.index("the")])
    new = emb[tok.convert_tokens_to_ids(["书", "好"])]  # not in the English vocabulary: seeded draws, told apart
    assert not torch.equal(new[0], new[1]) and not torch.isin(new, src).all(dim=1).any()


def _chinese_teacher(directory: Path) -> None:
    """A tiny random BERT with the Chinese vocabulary the converted ALBERT was trained with."""
    directory.mkdir(parents=True)
    BertTokenizer(vocab={t: i for i, t in enumerate(ZH_VOCAB)}, do_lower_case=True).save_pretrained(directory)
    torch.manual_seed(0)
    config: BertConfig = tiny_bert_config(len(ZH_VOCAB), num_attention_heads=2)
    BertModel(config).save_pretrained(directory)


def test_teacher_then_task_from_a_converted_albert_zh(tmp_path):
    write_zh_task(tmp_path / "data", {"train": 160, "dev": 40, "test": 40})
    _chinese_teacher(tmp_path / "teacher")
    write_albert_tf_checkpoint(tmp_path / "tf", "google", hidden=16, embedding=8, layers=4, groups=2, heads=2, ffn=24)
    albert = convert(tmp_path / "tf", tmp_path / "albert_zh")
    common = ["task=zh_reviews", "task.fetch=null", f"task.data_dir={tmp_path / 'data'}", f"teacher.name_or_path={tmp_path / 'teacher'}",
              f"runs_root={tmp_path / 'runs'}", "corpus.fetch=[]", "train.batch_size=16", "train.eval_batch_size=32",
              "train.progress=false", "bench.enabled=false", "task.max_length=32"]
    teacher = run(compose_config(["stage=teacher", *common, "stage.phases.0.epochs=2", "stage.phases.0.lr=1e-3"]))
    assert teacher["eval"]["reported_on"] == "test"
    student = ["student.num_layers=4", "student.hidden_size=16", "student.embedding_size=8", "student.num_heads=2",
               "student.intermediate_size=24", "student.sharing=every_k", "student.k=2", "student.max_position_embeddings=32"]
    task = run(compose_config(["stage=task", *common, *student, f"stage.init.albert_dir={albert}", "general_student=null",
                               "stage.phases.0.epochs=1", "stage.phases.1.epochs=1"]))
    assert task["student_init"]["albert_dir"] == str(albert)
    saved = json.loads(next((tmp_path / "runs" / "task" / "zh_reviews").glob("*/metrics.json")).read_text())
    assert saved["eval"]["reported_on"] == "test" and 0 <= saved["eval"]["student"]["accuracy"] <= 1

    # same weight shapes, another computation: refused, naming the field to set
    wrong = [s.replace("student.num_layers=4", "student.num_layers=2") for s in student]
    with pytest.raises(ConfigError, match="num_hidden_layers=4 but the student has 2; set student.num_layers"):
        run(compose_config(["stage=task", *common, *wrong, f"stage.init.albert_dir={albert}", "general_student=null",
                            f"teacher.finetuned={tmp_path / 'runs' / 'teacher' / 'zh_reviews' / 'model'}",
                            f"runs_root={tmp_path / 'runs2'}"]))
