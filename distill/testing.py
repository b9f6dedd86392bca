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


FAMILY_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # RoBERTa's and MPNet's first four ids; <mask> comes last


def write_tiny_family_teacher(directory: str | Path, family: str, head: str = "base", num_labels: int = 2, seed: int = 0,
                              **overrides):
    """Save a tiny random model of a teacher family (``bert``, ``roberta``, ``mpnet``) with its own kind of
    tokenizer: BERT's WordPiece over ``WORDS``; RoBERTa's byte-level BPE trained on the tiny sentences; MPNet's
    WordPiece with RoBERTa's special tokens (as all-mpnet-base-v2 has) and one more word. Returns (model, tokenizer)."""
    from transformers import (AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, MPNetConfig,
                              MPNetTokenizerFast, RobertaConfig, RobertaTokenizerFast)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if family == "bert":
        tok = write_tiny_tokenizer(directory)
    elif family == "roberta":
        from tokenizers import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer()
        texts = [" ".join(WORDS[i:i + 6]).replace("##", "") for i in range(len(WORDS))] * 3
        bpe.train_from_iterator(texts, vocab_size=600, min_frequency=1, special_tokens=FAMILY_SPECIALS + ["<mask>"],
                                show_progress=False)
        bpe.save_model(str(directory))
        tok = RobertaTokenizerFast(vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt"))
        tok.save_pretrained(directory)
    elif family == "mpnet":
        vocab = FAMILY_SPECIALS + WORDS + ["cinema", "<mask>"]  # one word BERT's tiny vocabulary lacks
        tok = MPNetTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, unk_token="<unk>")
        tok.save_pretrained(directory)
    else:
        raise ValueError(f"no tiny {family} teacher")
    torch.manual_seed(seed)
    common = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37,
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, layer_norm_eps=1e-5)
    if family == "bert":
        config = tiny_bert_config(len(tok), **overrides)
    elif family == "roberta":  # positions from padding_idx + 1, so two more rows; one token type
        config = RobertaConfig(**common, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                               eos_token_id=2, **overrides)
    else:
        config = MPNetConfig(**common, max_position_embeddings=66, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                             **overrides)
    cls = {"base": AutoModel, "sequence_classification": AutoModelForSequenceClassification,
           "masked_lm": AutoModelForMaskedLM}[head]
    if head == "sequence_classification":
        config.num_labels = num_labels
    model = cls.from_config(config)
    model.save_pretrained(directory)
    return model, tok


POSITIVE, NEGATIVE = ["good", "great", "fun", "love", "best"], ["bad", "awful", "boring", "hate", "worst"]
PLAIN = [w for w in WORDS if not w.startswith("##") and w not in POSITIVE + NEGATIVE]


def widen_qkv(model: torch.nn.Module, factor: float = 8.0) -> torch.nn.Module:
    """Scale a model's query, key and value projections (BERT's and ALBERT's names) in place: random tiny
    projections give near-uniform attention relations, whose KL barely tells a right term from a wrong one."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("query.weight", "key.weight", "value.weight")):
                p.mul_(factor)
    return model


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


ZH_VOCAB = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"好不的很书质量差喜欢买是了我这本值得推荐失望一般太慢快送货服务"]


def write_albert_tf_checkpoint(directory: str | Path, layout: str, seed: int = 0, hidden: int = 16, embedding: int = 8,
                               layers: int = 4, groups: int | list[int] = 2, inner: int = 1, heads: int = 2, ffn: int = 24,
                               heads_mlm: bool = True, config_extra: dict | None = None) -> dict:
    """A tiny random ALBERT pre-training checkpoint in TF's layout ``google`` (google-research/albert) or
    ``brightmart`` (albert_zh, all layers shared), with its albert_config.json and a Chinese vocab.txt, written
    without TensorFlow. ``groups``: how many Google groups, or which group numbers exist (with
    ``config_extra={"num_hidden_groups": ...}``, a ``*_google_fast`` layout). Returns the variables, for
    reference computations."""
    import json

    import numpy as np

    from distill.tf_checkpoint import write_checkpoint

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = len(ZH_VOCAB)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def dense(scope, n_in, n_out):
        return {f"{scope}/kernel": w(n_in, n_out), f"{scope}/bias": w(n_out)}

    def norm(scope, n):
        return {f"{scope}/gamma": 1 + w(n), f"{scope}/beta": w(n)}

    width = embedding if layout == "google" else hidden  # brightmart adds positions after projecting to H
    v = {"bert/embeddings/word_embeddings": w(vocab, embedding), "bert/embeddings/position_embeddings": w(32, width),
         "bert/embeddings/token_type_embeddings": w(2, width), **norm("bert/embeddings/LayerNorm", width),
         **dense("bert/pooler/dense", hidden, hidden), "global_step": np.array(1000, np.int64)}
    if layout == "google":
        v.update(dense("bert/encoder/embedding_hidden_mapping_in", embedding, hidden))
        group_ids = range(groups) if isinstance(groups, int) else groups
        scopes = [f"bert/encoder/transformer/group_{g}/inner_group_{i}/" for g in group_ids for i in range(inner)]
        parts = ["attention_1/self/query", "attention_1/self/key", "attention_1/self/value", "attention_1/output/dense",
                 "LayerNorm", "ffn_1/intermediate/dense", "ffn_1/intermediate/output/dense", "LayerNorm_1"]
    else:
        v["bert/embeddings/word_embeddings_2"] = w(embedding, hidden)
        scopes = ["bert/encoder/layer_shared/"]
        parts = ["attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense",
                 "attention/output/LayerNorm", "intermediate/dense", "output/dense", "output/LayerNorm"]
    for scope in scopes:
        for part in parts:
            if part.endswith("LayerNorm") or part.endswith("LayerNorm_1"):
                v.update(norm(scope + part, hidden))
            elif part.startswith(("ffn_1/intermediate/output", "output/")):
                v.update(dense(scope + part, ffn, hidden))
            elif "intermediate" in part:
                v.update(dense(scope + part, hidden, ffn))
            else:
                v.update(dense(scope + part, hidden, hidden))
    if heads_mlm:
        mlm_width = embedding if layout == "google" else hidden
        v.update(dense("cls/predictions/transform/dense", hidden, mlm_width), **norm("cls/predictions/transform/LayerNorm", mlm_width))
        v.update({"cls/predictions/output_bias": w(vocab), "cls/seq_relationship/output_weights": w(2, hidden),
                  "cls/seq_relationship/output_bias": w(2)})
    # optimizer slots, which the converter must skip
    v["bert/pooler/dense/kernel/adam_m"] = np.zeros((hidden, hidden), np.float32)
    write_checkpoint(directory / "model.ckpt-1000", v)
    config = dict(vocab_size=vocab, hidden_size=hidden, embedding_size=embedding, num_hidden_layers=layers,
                  num_attention_heads=heads, intermediate_size=ffn, hidden_act="gelu", max_position_embeddings=32,
                  type_vocab_size=2, initializer_range=0.02, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if layout == "google":
        config.update(num_hidden_groups=groups if isinstance(groups, int) else len(groups), inner_group_num=inner)
    else:
        config["ln_type"] = "postln"
    config.update(config_extra or {})
    (directory / "albert_config.json").write_text(json.dumps(config, indent=2))
    (directory / "vocab.txt").write_text("\n".join(ZH_VOCAB) + "\n", encoding="utf-8")
    return v
