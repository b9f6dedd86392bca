"""Vocabularies: a WordPiece vocabulary trained on a corpus, and embedding rows moved between two
vocabularies by token string (the rows a new vocabulary shares with a pretrained model keep their vectors).

Used to build a Chinese stand-in teacher offline (``assets.zh_char_minilm``): Chinese BERT's tokenisation
(lower case, every CJK character its own token, WordPiece for the rest) over a vocabulary learned from the
task's training text, on a pretrained encoder's layers.
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece(texts: list[str], min_frequency: int = 2) -> list[str]:
    """A WordPiece vocabulary of ``texts`` as BERT's tokenizer splits them, ``SPECIALS`` first ([PAD] = 0).

    Every piece seen ``min_frequency`` times is kept (no size cut, so ties cannot make it depend on the
    trainer's order) and sorted by string: the same texts give the same vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=1_000_000, min_frequency=min_frequency, special_tokens=list(SPECIALS),
                                        show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return list(SPECIALS) + sorted(set(tokenizer.get_vocab()) - set(SPECIALS))


def transplant_embeddings(source: torch.Tensor, source_vocab: list[str], target_vocab: list[str],
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """Rows for ``target_vocab`` [V_t, E] from ``source`` [V_s, E]: a token both vocabularies have keeps its
    source row; any other starts at the mean of the source rows or, given a ``generator``, at a draw from
    N(mean, std^2) per dimension (so that new tokens are told apart from the first step: when most tokens
    are new, identical rows leave the model blind to most of the text). Returns the rows and how many matched."""
    index = {token: i for i, token in enumerate(source_vocab)}
    mean, std = source.mean(0), source.std(0)
    new = [t for t in target_vocab if t not in index]
    draws = iter(mean + std * torch.randn(len(new), source.shape[1], generator=generator) if generator else [mean] * len(new))
    rows = torch.stack([source[index[t]] if t in index else next(draws) for t in target_vocab])
    return rows, len(target_vocab) - len(new)


def save_wordpiece(tokens: list[str], directory: Path) -> None:
    """Save a lower-casing, CJK-splitting BertTokenizer over ``tokens`` (Chinese BERT's settings) into
    ``directory``, with the plain ``vocab.txt`` beside it for tools that read that file."""
    from transformers import BertTokenizer

    BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True, tokenize_chinese_chars=True).save_pretrained(directory)
    (Path(directory) / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")


def chinese_teacher_from(source: str | Path, name: str, texts: list[str], out_dir: Path) -> None:
    """Save to ``out_dir`` the BERT encoder in directory ``source`` (called ``name`` in the README written
    beside it) with a Chinese WordPiece vocabulary trained on ``texts``."""
    from transformers import AutoTokenizer, BertModel

    from distill.files import write_text

    tokens = train_wordpiece(texts)
    model = BertModel.from_pretrained(source)
    source_ids = AutoTokenizer.from_pretrained(source).get_vocab()
    rows, matched = transplant_embeddings(model.get_input_embeddings().weight.detach(), sorted(source_ids, key=source_ids.get), tokens,
                                          generator=torch.Generator().manual_seed(0))
    model.resize_token_embeddings(len(tokens), mean_resizing=False)
    model.get_input_embeddings().weight.data.copy_(rows)
    model.config.pad_token_id = 0
    model.save_pretrained(out_dir)
    save_wordpiece(tokens, out_dir)
    write_text(out_dir / "README.md", (
        "# A Chinese stand-in teacher (not pretrained on Chinese)\n\n"
        f"- Encoder: {name}'s layers, position and token-type embeddings, unchanged.\n"
        f"- Vocabulary: {len(tokens)} WordPiece tokens trained on {len(texts)} texts (lower case, each CJK character one token); "
        f"{matched} of them are in {name}'s vocabulary and keep its embedding rows, the other {len(tokens) - matched} start at "
        "random draws with the mean and spread of its rows (seeded).\n"
        "- Built by distill's asset `zh_char_minilm` so that a Chinese task runs end to end with no model hub; with a hub, "
        "use a real Chinese BERT (`teacher.name_or_path=<a Chinese BERT>`).\n"
    ))
