"""fp32 against bf16 autocast for one saved classifier on this CPU: a forward pass and a training step, measured in one run.

``python -m distill bench precision MODEL_DIR --data TSV [--batch-size 32] [--calls 10] [--threads 2] [--json out.json]``

``train.mixed_precision=bf16`` runs the teacher's stored pass and every training step under
``torch.autocast("cpu", torch.bfloat16)`` (accelerate's CPU autocast). Whether that pays depends on the CPU: with
native bf16 (``avx512_bf16`` or AMX in ``/proc/cpuinfo``) the matrix products run in bf16; without it they are
emulated and slower than fp32. This script answers the question for the machine it runs on, before an hour-long
run does: batches of real sentences (padded to the batch's longest, at most 64 tokens, as the task stage does),
the two precisions taking turns call by call (fp32 batch i, bf16 batch i, ...: ``distill.bench``'s
``interleaved_timings``) so that a change in the machine's speed falls on both, medians over ``--calls`` calls after
``bench.WARMUP`` untimed ones of each, and how far bf16's logits land from fp32's on the first batch (the teacher's
stored targets move by that much).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from distill.bench import WARMUP, interleaved_timings
from distill.data import read_texts
from distill.errors import ConfigError
from distill.files import write_json
from distill.hf import load_classifier


def cpu_flags() -> list[str]:
    """The CPU's native bf16 flags, from /proc/cpuinfo where there is one."""
    info = Path("/proc/cpuinfo")
    flags = set(info.read_text().split()) if info.is_file() else set()
    return sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill bench precision", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="a saved sequence classifier (e.g. a teacher run's model/)")
    parser.add_argument("--data", required=True, help="sentences to batch (a sentence column; .tsv, .csv, .json, .jsonl or .parquet)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--calls", type=int, default=10, help="timed calls per precision and measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    texts = read_texts(args.data)
    n = WARMUP + args.calls
    if len(texts) < n * args.batch_size:
        raise ConfigError(f"--data {args.data}: {len(texts)} sentences, {n * args.batch_size} needed for --calls "
                          f"{args.calls} at --batch-size {args.batch_size}; give a larger file or fewer --calls")
    model, tokenizer = load_classifier(args.model_dir, attn_implementation=None)  # the model's own, as training runs it
    batches = [tokenizer(texts[i * args.batch_size:(i + 1) * args.batch_size], padding=True, truncation=True,
                         max_length=64, return_tensors="pt") for i in range(n)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # a real optimizer step that changes no weight

    def forward(batch, bf16: bool) -> torch.Tensor:
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(**batch).logits.float()

    def train_step(batch, bf16: bool) -> None:
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch).logits.float()
        torch.nn.functional.cross_entropy(logits, logits.argmax(-1)).backward()
        optimizer.step()
        optimizer.zero_grad()

    fp32, bf16 = forward(batches[0], False), forward(batches[0], True)
    report = {"model_dir": str(args.model_dir), "batch_size": args.batch_size, "threads": args.threads,
              "calls": args.calls, "warmup": WARMUP, "cpu_bf16_flags": cpu_flags(), "torch": torch.__version__,
              "max_logit_difference": float((fp32 - bf16).abs().max()),
              "same_class": float((fp32.argmax(-1) == bf16.argmax(-1)).float().mean()), "rows": []}
    for name, fn in (("forward (teacher pass)", forward), ("training step", train_step)):
        times = interleaved_timings([lambda batch: fn(batch, False), lambda batch: fn(batch, True)], [batches, batches])
        fp32_ms, bf16_ms = (1000 * statistics.median(seconds) for seconds in times)
        report["rows"].append({"measure": name, "fp32_ms": fp32_ms, "bf16_ms": bf16_ms, "speedup": fp32_ms / bf16_ms})
    print(f"{args.model_dir}, batch {args.batch_size}, {args.threads} threads, median of {args.calls} interleaved "
          f"calls after {WARMUP} untimed; CPU bf16 flags: {', '.join(report['cpu_bf16_flags']) or 'none'}")
    print(f"bf16 logits against fp32's on {args.batch_size} sentences: max |difference| "
          f"{report['max_logit_difference']:.4f}, same class for {100 * report['same_class']:.1f}%")
    print("| measure | fp32 ms | bf16 ms | bf16 speed-up |\n|---|---|---|---|")
    for row in report["rows"]:
        print(f"| {row['measure']} | {row['fp32_ms']:.0f} | {row['bf16_ms']:.0f} | {row['speedup']:.2f}x |")
    if args.json:
        write_json(args.json, report)
    return 0
