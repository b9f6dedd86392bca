"""``python -m distill convert vocab``: an encoder reading another tokenizer's vocabulary, its word embedding rows
matched by token string as a student slice of it is built. Such a model teaches a student that must keep that
vocabulary: a general stage from MiniLM, say, whose student then learns a task from MPNet."""

from __future__ import annotations

from pathlib import Path

import torch

from distill.attention import use_fast_attention
from distill.errors import ConfigError
from distill.files import write_text
from distill.hf import load_model, load_tokenizer
from distill.student_init import source_word_rows


def rebase_vocabulary(source: str, tokenizer: str, out_dir: str | Path) -> dict:
    """Save to ``out_dir`` the encoder ``source`` (a model name, directory or ``pkg:``/``asset:``) reading
    ``tokenizer``'s vocabulary: each of its word embedding rows found by token string in the source's vocabulary
    (special tokens by role), a token the source lacks at the mean of its rows, as a student slice of that source
    is built (``distill.student_init.source_word_rows``); the tokenizer saved beside it. Everything else is the
    source's. Such a model can teach a student that must keep ``tokenizer``'s vocabulary, e.g. a general stage
    from MiniLM whose student then learns a task from MPNet. Returns how many tokens matched."""
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        raise ConfigError(f"{out_dir} already holds a model; give a new output directory")
    # distill's loaders: their errors name the argument; the saved model keeps torch's own attention
    model = use_fast_attention(load_model(source, field="source"))
    source_tokenizer, target = load_tokenizer(source, field="source"), load_tokenizer(tokenizer, field="tokenizer")
    with torch.no_grad():
        rows, matched = source_word_rows(model, target, source_tokenizer)
        model.resize_token_embeddings(len(target), mean_resizing=False)
        model.get_input_embeddings().weight.copy_(rows)
    model.config.pad_token_id = target.pad_token_id
    model.save_pretrained(out_dir)
    target.save_pretrained(out_dir)
    matched = matched or {"vocab_matched": len(target), "vocab_size": len(target)}
    write_text(out_dir / "README.md", (
        f"# {source} reading the vocabulary of {tokenizer}\n\n"
        f"- Encoder: {source}'s layers, position and token-type embeddings, unchanged.\n"
        f"- Word embeddings: {matched['vocab_matched']} of the {matched['vocab_size']} tokens of {tokenizer}'s vocabulary "
        f"keep {source}'s row of the same string (special tokens by role); the rest start at the mean of its rows.\n"
        "- Written by `python -m distill convert vocab`.\n"
    ))
    return matched


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m distill convert vocab",
                                     description=rebase_vocabulary.__doc__.split("\n\n")[0].replace("``", ""))
    parser.add_argument("source", help="the encoder: a model directory or name, pkg:<module> or asset:<name>")
    parser.add_argument("tokenizer", help="the tokenizer whose vocabulary it should read (e.g. the task teacher's model directory)")
    parser.add_argument("output", help="new directory for the model")
    args = parser.parse_args(argv)
    matched = rebase_vocabulary(args.source, args.tokenizer, args.output)
    print(f"wrote {args.output}: {matched['vocab_matched']} of {matched['vocab_size']} tokens matched by string")
    return 0
