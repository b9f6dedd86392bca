"""Tiny random models and a tiny tokenizer, for tests and smoke runs (no downloads)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel, BertTokenizerFast

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an and or but not no very good bad great awful movie film story plot actor acting "
    "love hate fun boring dull bright dark funny sad happy long short best worst it is was "
    "this that of to in on with for as by at from one two three ##s ##ing ##ed ##ly"
).split()


def write_tiny_tokenizer(directory: str | Path) -> BertTokenizerFast:
    """An uncased WordPiece tokenizer over a 63-entry vocabulary, saved to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + WORDS) + "\n")
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIALS + WORDS)}, do_lower_case=True)
    tok.save_pretrained(directory)
    return tok


def tiny_bert_config(vocab_size: int, **overrides) -> BertConfig:
    cfg = dict(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, pad_token_id=0,
    )
    cfg.update(overrides)
    return BertConfig(**cfg)


def write_tiny_teacher(directory: str | Path, head: str = "base", num_labels: int = 2, **overrides):
    """Save a tiny random BERT (+ tokenizer) that ``distill.teacher.load_model`` reads like a real one."""
    tok = write_tiny_tokenizer(directory)
    config = tiny_bert_config(len(tok), **overrides)
    cls = {"base": BertModel, "sequence_classification": BertForSequenceClassification, "masked_lm": BertForMaskedLM}[head]
    if head == "sequence_classification":
        config.num_labels = num_labels
    model = cls(config)
    model.save_pretrained(directory)
    return model, tok


POSITIVE, NEGATIVE = ["good", "great", "fun", "love", "best"], ["bad", "awful", "boring", "hate", "worst"]
PLAIN = [w for w in WORDS if not w.startswith("##") and w not in POSITIVE + NEGATIVE]


def write_tiny_tsv(path: str | Path, n: int, seed: int) -> None:
    """A GLUE-style ``sentence<TAB>label`` file of ``n`` learnable rows: each holds one polar word."""
    rng = random.Random(seed)
    rows = ["sentence\tlabel"]
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(PLAIN, rng.randint(1, 8)) + [rng.choice(POSITIVE if label else NEGATIVE)]
        rng.shuffle(words)
        rows.append(f"{' '.join(words)}\t{label}")
    Path(path).write_text("\n".join(rows) + "\n")


def write_tiny_workspace(root: str | Path, n_train: int, n_dev: int, teachers: dict[str, str]) -> Path:
    """``root/data/{train,dev}.tsv`` and one tiny teacher per ``{directory name: head}``, seeded."""
    root = Path(root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    write_tiny_tsv(root / "data" / "train.tsv", n_train, 0)
    write_tiny_tsv(root / "data" / "dev.tsv", n_dev, 1)
    torch.manual_seed(0)
    for name, head in teachers.items():
        write_tiny_teacher(root / name, head=head)
    return root
