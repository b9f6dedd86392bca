"""Latency, throughput, parameters and FLOPs of saved classifiers, measured side by side.

(``python -m distill bench train ...`` measures training steps instead: distill/reference/bench_train.py.)

``python -m distill bench <model_dir> [<model_dir> ...] [--dev-tsv PATH | --length N] [--threads 2]
[--repeats 20] [--rounds 3] [--onnx] [--json out.json]``

The first model is the reference: every other model's speed-up is the
reference's median latency over its own, on the same engine and batch size,
all measured in this one process with the same thread count and the same
sentences. Inputs are either sentences sampled from a dev TSV (each model
tokenizes them itself, padded to the longest in the batch, as at serving
time) or random tokens of a fixed ``--length``.

Latency: ``warmup`` untimed calls, then ``repeats`` timed calls, each on a
different batch; median and 90th percentile. The models take turns call by
call (teacher batch i, student batch i, teacher batch i+1, ...), so a change in
the machine's speed during the run (CPU frequency, another process) falls on
all of them alike instead of on whichever model was measured at the time: on
a 2-core machine, timing one model after the other gave the same student
shape 4.7x and 2.5x at batch 1 in two runs. All of that is done ``rounds``
times (3): each round gives a speed-up, and ``speedup`` is their median, with
``speedup_min`` / ``speedup_max`` the spread (single runs of the same shape
differed by 20-40%; a target compares the median). Latency figures are the
median of the rounds' medians. Throughput: batch size / median latency. FLOPs per example: ``torch.utils.flop_counter.FlopCounterMode`` over a
batch-1 forward with eager attention (the CPU fused attention kernel is not
counted by it), averaged over the batch-1 inputs. It counts matrix products
only: per layer 2(4H^2 + 2HI)T for the projections and feed-forward plus
2*2*T^2*H for the attention products, then pooler and classifier; embedding
lookups, softmax, LayerNorm and activations are left out (a few percent).
ALBERT's shared layers count once per layer they run as.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from distill.data import read_texts
from distill.errors import ExportError
from distill.export import encode, export_onnx, max_length, onnx_logits, parity, require_onnx, session
from distill.files import text_table, write_json
from distill.hf import check_model_dir, load_classifier
from distill.student import parameter_counts

BATCH_SIZES = (1, 32)
WARMUP = 3
ROUNDS = 3
SEED = 0


def label(model_dir: str) -> str:
    """A short row name: the two path parts above a trailing ``model`` (runs/task/sst2/L4_.../model -> sst2/L4_...)."""
    parts = [p for p in Path(model_dir).parts if p not in ("", "/")]
    if parts and parts[-1] == "model":
        parts = parts[:-1]
    return "/".join(parts[-2:])


def text_batches(texts: list[str], batch_size: int, count: int) -> list[list[str]]:
    """``count`` batches of sentences, the same for every model (fixed seed); without replacement while they last."""
    rng = random.Random(SEED + batch_size)
    need = batch_size * count
    picked = rng.sample(texts, need) if need <= len(texts) else rng.choices(texts, k=need)
    return [picked[i : i + batch_size] for i in range(0, need, batch_size)]


def token_batches(tokenizer, batch_size: int, count: int, length: int) -> list[dict[str, np.ndarray]]:
    """``count`` batches of random tokens, all ``length`` long, no padding."""
    rng = np.random.default_rng(SEED + batch_size)
    out = []
    for _ in range(count):
        ids = rng.integers(0, len(tokenizer), size=(batch_size, length), dtype=np.int64)
        out.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    return out


def model_inputs(model, tokenizer, texts: list[str] | None, length: int | None, batch_size: int, count: int):
    """The inputs this model sees at ``batch_size``: its own tokenization of the shared sentences, or fixed tokens."""
    limit = max_length(model, tokenizer)
    if texts is not None:
        return [encode(tokenizer, b, limit) for b in text_batches(texts, batch_size, count)]
    if length > limit:
        raise ExportError(f"--length {length} is longer than this model accepts ({limit}); pass --length <= {limit}")
    return token_batches(tokenizer, batch_size, count, length)


def interleaved_timings(runs: list, batches: list[list[dict[str, np.ndarray]]]) -> list[list[float]]:
    """Seconds per call of each ``runs[m]`` on its ``batches[m]`` after the first WARMUP (untimed) ones, the
    models taking turns on each batch index."""
    times: list[list[float]] = [[] for _ in runs]
    for i in range(len(batches[0])):
        for run, inputs, out in zip(runs, batches, times):
            start = time.perf_counter()
            run(inputs[i])
            if i >= WARMUP:
                out.append(time.perf_counter() - start)
    return times


def summarize(rounds: list[list[float]], batches: list[dict[str, np.ndarray]], batch_size: int) -> dict:
    """Latency of one model, engine and batch size from each round's timed calls: the median of the rounds'
    medians (and p90s), with each round's median kept for the speed-ups."""
    medians = [statistics.median(seconds) for seconds in rounds]
    median = statistics.median(medians)
    return {
        "batch_size": batch_size,
        "median_ms": 1000 * median,
        "p90_ms": 1000 * statistics.median(float(np.percentile(seconds, 90)) for seconds in rounds),
        "round_median_ms": [1000 * m for m in medians],
        "sentences_per_s": batch_size / median,
        "padded_length": float(np.mean([b["input_ids"].shape[1] for b in batches[WARMUP:]])),
    }


def torch_runner(model):
    @torch.inference_mode()
    def run(batch):
        model(**{k: torch.from_numpy(v) for k, v in batch.items()})

    return run


def flops_per_example(model, batches: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    """Mean matmul FLOPs and mean real tokens per example, over batch-1 inputs, counted with eager attention."""
    default = model.config._attn_implementation
    model.set_attn_implementation("eager")
    counts, tokens = [], []
    try:
        for batch in batches:
            with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                model(**{k: torch.from_numpy(v) for k, v in batch.items()})
            counts.append(counter.get_total_flops() / batch["input_ids"].shape[0])
            tokens.append(float(batch["attention_mask"].sum()) / batch["input_ids"].shape[0])
    finally:
        model.set_attn_implementation(default)
    return float(np.mean(counts)), float(np.mean(tokens))


def onnx_files(model_dir: Path, model, tokenizer, scratch: Path) -> tuple[dict[str, Path], str]:
    """ONNX graphs to time: the directory's model.onnx (+ model.int8.onnx), or a fresh parity-checked export."""
    found = {"onnx": model_dir / "model.onnx", "onnx-int8": model_dir / "model.int8.onnx"}
    found = {k: p for k, p in found.items() if p.is_file()}
    if "onnx" in found:
        return found, "model dir"
    path = export_onnx(model, tokenizer, scratch / "model.onnx")
    parity(model, tokenizer, path)
    return {"onnx": path, **found}, "exported for this run"


@dataclass
class Prepared:
    """One model ready to time: its description, its own tokenization of the shared inputs per batch size,
    and a runner per engine."""

    info: dict
    inputs: dict[int, list[dict[str, np.ndarray]]]
    engines: dict[str, Callable]


def prepare(model_dir: str, texts, length, threads: int, repeats: int, onnx: bool, scratch: Path) -> Prepared:
    """Load one model, tokenize its inputs, count its FLOPs and set up its engines (nothing is timed yet)."""
    path = check_model_dir(model_dir)
    model, tokenizer = load_classifier(path, attn_implementation=None)  # what from_pretrained picks: sdpa on CPU
    inputs = {b: model_inputs(model, tokenizer, texts, length, b, WARMUP + repeats) for b in BATCH_SIZES}
    flops, tokens = flops_per_example(model, inputs[1][WARMUP:])
    info = {
        "model_dir": str(model_dir), "label": label(model_dir), "model_type": model.config.model_type,
        "attn_implementation": model.config._attn_implementation, "params": parameter_counts(model),
        "flops_per_example": flops, "tokens_per_example": tokens,
    }
    engines = {"torch": torch_runner(model)}
    if onnx:
        files, info["onnx_source"] = onnx_files(path, model, tokenizer, scratch)
        for name, file in files.items():
            sess = session(file, threads)
            engines[name] = lambda batch, sess=sess: onnx_logits(sess, batch)
    return Prepared(info, inputs, engines)


def timing_rows(models: list[Prepared], rounds: int = ROUNDS) -> list[dict]:
    """One row per model, engine and batch size; the models that have an engine are timed together, ``rounds``
    times over (each round interleaved call by call, the rounds one after another)."""
    rows: dict[int, list[dict]] = {id(m): [] for m in models}  # grouped by model, in the order given
    for engine in dict.fromkeys(e for m in models for e in m.engines):
        having = [m for m in models if engine in m.engines]
        for b in BATCH_SIZES:
            per_round = [interleaved_timings([m.engines[engine] for m in having], [m.inputs[b] for m in having])
                         for _ in range(rounds)]
            for k, m in enumerate(having):
                rows[id(m)].append({"model": m.info["label"], "model_dir": m.info["model_dir"], "engine": engine,
                                    **summarize([times[k] for times in per_round], m.inputs[b], b)})
    return [row for model_rows in rows.values() for row in model_rows]


def add_speedups(rows: list[dict], reference: str) -> None:
    """Per round, the reference model's median latency / this row's, same engine and batch size; ``speedup`` is
    the median over the rounds, ``speedup_min`` / ``speedup_max`` their spread (None if the reference lacks it)."""
    ref = {(r["engine"], r["batch_size"]): r["round_median_ms"] for r in rows if r["model_dir"] == reference}
    for r in rows:
        base = ref.get((r["engine"], r["batch_size"]))
        ratios = [b / m for b, m in zip(base, r["round_median_ms"])] if base else None
        r["speedup"] = statistics.median(ratios) if ratios else None
        r["speedup_min"], r["speedup_max"] = (min(ratios), max(ratios)) if ratios else (None, None)


def benchmark(model_dirs: list[str], texts: list[str] | None = None, length: int | None = None, threads: int = 2,
              repeats: int = 20, onnx: bool = False, rounds: int = ROUNDS) -> dict:
    """Measure every model in one process; the first is the speed-up reference. Returns what ``--json`` writes."""
    if not model_dirs:
        raise ExportError("no model directory given; pass at least one saved model directory")
    if (texts is None) == (length is None):
        raise ExportError("pass either texts (--dev-tsv) or a fixed length (--length), not both or neither")
    if repeats < 1 or threads < 1 or rounds < 1:
        raise ExportError(f"--repeats {repeats}, --rounds {rounds} and --threads {threads} must be >= 1")
    for d in model_dirs:
        check_model_dir(d)  # fail before measuring anything
    if onnx:
        require_onnx()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="distill-bench-") as scratch:
        prepared = [prepare(d, texts, length, threads, repeats, onnx, Path(scratch) / str(i)) for i, d in enumerate(model_dirs)]
        rows = timing_rows(prepared, rounds)
    models = [m.info for m in prepared]
    add_speedups(rows, models[0]["model_dir"])
    return {
        "threads": threads, "torch_threads": torch.get_num_threads(), "repeats": repeats, "rounds": rounds,
        "warmup": WARMUP,
        "inputs": "dev sentences" if texts is not None else f"fixed length {length}", "length": length,
        "reference": models[0]["model_dir"], "torch_version": torch.__version__,
        "onnxruntime_version": _ort_version() if onnx else None, "models": models, "results": rows,
    }


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def format_report(report: dict) -> str:
    """The plain-text tables: one row per model, then one per model, engine and batch size."""
    models = text_table(
        ("model", "params total", "params unique", "MFLOPs/example", "tokens/example", "attention"),
        [(m["label"], f"{m['params']['total'] / 1e6:.2f}M", f"{m['params']['unique'] / 1e6:.2f}M",
          f"{m['flops_per_example'] / 1e6:.1f}", f"{m['tokens_per_example']:.1f}", m["attn_implementation"])
         for m in report["models"]],
    )
    speed = text_table(
        ("model", "engine", "batch", "padded len", "median ms", "p90 ms", "sentences/s", "speed-up (min-max)"),
        [(r["model"], r["engine"], str(r["batch_size"]), f"{r['padded_length']:.1f}", f"{r['median_ms']:.2f}",
          f"{r['p90_ms']:.2f}", f"{r['sentences_per_s']:.1f}",
          f"{r['speedup']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})" if r["speedup"] else "-")
         for r in report["results"]],
    )
    head = (f"threads: torch {report['torch_threads']}, onnxruntime intra-op {report['threads']}; inputs: {report['inputs']}; "
            f"{report['rounds']} rounds of {report['warmup']} warm-up + {report['repeats']} timed calls per row, "
            f"speed-up the median over rounds; reference: {report['reference']}")
    return f"{head}\n\n{models}\n\n{speed}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m distill bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dirs", nargs="+", help="saved model directories; the first is the speed-up reference")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dev-tsv", help="sample real sentences from this file (a sentence column; .tsv, .csv, .json, .jsonl or .parquet)")
    source.add_argument("--length", type=int, help="random tokens of this fixed length instead (default 128)")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per model, engine and batch size")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds; the speed-up is their median")
    parser.add_argument("--onnx", action="store_true", help="also time ONNX Runtime (model.onnx in the dir, else exported)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    texts = read_texts(args.dev_tsv) if args.dev_tsv else None
    length = None if texts is not None else (args.length or 128)
    report = benchmark(args.model_dirs, texts, length, args.threads, args.repeats, args.onnx, args.rounds)
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
    return 0
