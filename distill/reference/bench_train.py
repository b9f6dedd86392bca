"""Training throughput of distillation steps against the official TinyBERT setup, measured in one process.

``python -m distill bench train [--data $SST2] [--teacher DIR] [--student tinybert4]
[--batch-size 32] [--threads 2] [--windows 5] [--window-steps 8] [--mixed-precision no|bf16] [--json out.json]``

Rows (each: ``WARMUP`` untimed steps, then ``windows`` timed windows of ``window_steps`` optimizer steps;
the median window's examples/s and real (non-padding) tokens/s; peak resident memory sampled while the
row runs, or peak CUDA memory on a GPU):

- ``distill`` rows run the framework's own step (``distill.trainer.train_step`` on an ``Objective``,
  the loaders of ``distill.data``: dynamic padding, length-grouped batches) for the stage configs'
  phases: (a) the task stage's intermediate phase, (b) its prediction phase, (c) general
  distillation. Three rows each: the teacher's outputs read from full stores (``distill.teacher_cache``;
  a run's later epochs; the time to fill them is printed), ``first epoch`` (empty stores: the teacher
  runs and its outputs are written, as in a run's first epoch) and ``live teacher`` (the teacher on
  every step, truncated at its deepest mapped layer, nothing stored); and the student trained on hard
  labels alone, for scale (its ratio to (b) is paired window by window: the same batches).
- ``reference`` rows restate the official TinyBERT loop in plain torch on the same models and data:
  every batch padded to ``max_seq_length`` (64 for the task, fixed 128-token chunks for general
  distillation), random order, the teacher run on every step, fp32, ``loss.item()`` every step.

Equal work: before timing, both compute their loss on one identical batch (dropout off) and the
largest absolute difference per term is printed; the reference restates the loss formulas
independently (masked MSE over real tokens, attention MSE over real (query, key) pairs, soft CE).
Speed-up = median examples/s of a ``distill`` row over its reference's (tokens/s for general
distillation, whose packings differ), measured in this run.
"""

from __future__ import annotations

import argparse
import os
import copy
import dataclasses
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader, RandomSampler
from transformers import DataCollatorWithPadding, get_scheduler

from distill.attention import use_score_attention
from distill.config import LossWeights, compose_config
from distill.data import cache_root, load_corpus, load_task_splits, path_identity, tokenize_task, train_loader
from distill.errors import ConfigError
from distill.files import text_table, write_json
from distill.hf import load_model, load_tokenizer, resolve_path
from distill.layer_map import LayerMap
from distill.objective import Objective
from distill.student import build_student
from distill.teacher import FrozenTeacher
from distill.teacher_cache import WriteThroughTeacher, teacher_for_phases
from distill.trainer import _optimizer, rss_mb, train_step

WARMUP = 3
TASK_MAX_LENGTH = 64  # TinyBERT's task_distill.py --max_seq_length for single sentences
GENERAL_MAX_LENGTH = 128  # TinyBERT's general distillation corpus: fixed 128-token chunks


class PeakMemory:
    """Peak memory while the block runs: CUDA's allocator peak on a GPU, else the process's resident
    set sampled every 5 ms (the models and data loaded before the row count too)."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb = device, 0.0

    def _sample(self):
        while not self._done.wait(0.005):
            self.peak_mb = max(self.peak_mb, rss_mb() or 0.0)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._done = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._done.set()
            self._thread.join()


def _batches(loader):
    while True:
        yield from loader


def timed(step, loader, windows: int, window_steps: int, device: torch.device) -> dict:
    """Median examples/s and real tokens/s over ``windows`` windows of ``window_steps`` steps, after WARMUP."""
    batches = _batches(loader)
    for _ in range(WARMUP):
        step(next(batches))
    rates, token_rates = [], []
    with PeakMemory(device) as memory:
        for _ in range(windows):
            examples = tokens = 0
            start = time.perf_counter()
            for _ in range(window_steps):
                batch = next(batches)
                step(batch)
                examples += batch["input_ids"].size(0)
                tokens += int(batch["attention_mask"].sum())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            rates.append(examples / seconds)
            token_rates.append(tokens / seconds)
    return {"examples_per_s": statistics.median(rates), "tokens_per_s": statistics.median(token_rates),
            "window_rates": rates, "peak_memory_mb": memory.peak_mb}


# --- the reference: TinyBERT's loop, restated in plain torch --------------------------------------------

TOKEN_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")


def reference_collate(tokenizer, max_length: int):
    """Every batch padded (and truncated) to ``max_length``, as TinyBERT's feature files are."""
    pad = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)

    def collate(rows):
        return pad([{k: (v[:max_length] if k in TOKEN_COLUMNS else v) for k, v in row.items()
                     if k in (*TOKEN_COLUMNS, "label", "labels")} for row in rows])

    return collate


def reference_loader(ds, tokenizer, batch_size: int, max_length: int, seed: int) -> DataLoader:
    """Random order (no length grouping), fixed padding."""
    return DataLoader(ds, batch_size=batch_size, sampler=RandomSampler(ds, generator=torch.Generator().manual_seed(seed)),
                      collate_fn=reference_collate(tokenizer, max_length))


def _masked_mse(s, t, real):  # [b, t, h], [b, t, h], [b, t] bool
    diff = (s - t)[real]
    return diff.pow(2).mean() if diff.numel() else s.sum() * 0.0


def reference_loss(objective: Objective, teacher: FrozenTeacher, batch) -> dict[str, torch.Tensor]:
    """The objective's terms computed without it: full teacher forward, the formulas written out here."""
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    terms = objective.terms
    reads_layers = bool({"embedding", "hidden", "attention"} & set(terms))
    s = objective.student(**inputs, output_hidden_states=reads_layers, output_attentions=reads_layers)
    with torch.no_grad():
        t = teacher.model(**inputs, output_hidden_states=reads_layers, output_attentions=reads_layers)
    real = batch["attention_mask"].bool()
    out = {}
    if "embedding" in terms:
        out["embedding"] = _masked_mse(objective.embedding.proj(s.hidden_states[0]), t.hidden_states[0], real)
    pairs = list(enumerate(objective.layer_map.targets, start=1)) if objective.layer_map else []
    if "hidden" in terms:
        projs = objective.hidden.projs
        out["hidden"] = sum(_masked_mse(projs[i if len(projs) > 1 else 0](s.hidden_states[m]), t.hidden_states[g], real)
                            for i, (m, g) in enumerate(pairs))
    if "attention" in terms:
        valid = (real[:, None, :, None] & real[:, None, None, :]).expand_as(s.attentions[0])  # [b, n, q, k]
        out["attention"] = sum((s.attentions[m - 1][valid] - t.attentions[g - 1][valid]).pow(2).mean() for m, g in pairs)
    if "soft_ce" in terms:
        T = objective.options.temperature
        out["soft_ce"] = -(F.softmax(t.logits / T, -1) * F.log_softmax(s.logits / T, -1)).sum(-1).mean()
    if "hard_ce" in terms:
        out["hard_ce"] = F.cross_entropy(s.logits, batch["labels"])
    out["total"] = sum(getattr(objective.weights, k) * v for k, v in out.items())
    return out


def reference_step(objective: Objective, teacher: FrozenTeacher, optimizer, max_grad_norm: float):
    def step(batch):
        loss = reference_loss(objective, teacher, batch)["total"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        loss.item()  # TinyBERT: tr_loss += loss.item() on every step
    return step


# --- the rows ---------------------------------------------------------------------------------------------

def loss_difference(objective: Objective, teacher: FrozenTeacher, ours: dict, reference: dict) -> dict[str, float]:
    """Largest |ours - reference| per term on the same examples (dropout off), each side padded its own way."""
    objective.eval()
    with torch.no_grad():
        total, terms = objective(ours)
        ref = reference_loss(objective, teacher, reference)
    objective.train()
    mine = {**terms, "total": total}
    return {k: abs(float(mine[k]) - float(ref[k])) for k in ref}


def same_examples(ds, tokenizer, size: int, max_length: int) -> tuple[dict, dict]:
    """One batch of ``size`` examples short enough not to be truncated at ``max_length``: padded
    dynamically (as distill batches) and to ``max_length`` (as the reference's)."""
    lengths = [len(ids) for ids in ds["input_ids"][: 50 * size]]
    rows = list(ds.select([i for i, n in enumerate(lengths) if n <= max_length][:size]))
    return DataCollatorWithPadding(tokenizer)(rows), reference_collate(tokenizer, max_length)(rows)


def measure_ours(name, objective, data, tokenizer, phase, cfg, args, device) -> dict:
    """The framework's own step: ``train_step`` on a prepared ``Objective`` and ``distill.data.train_loader``."""
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=device.type == "cpu")
    optimizer = _optimizer(objective, phase, cfg.train.weight_decay)
    scheduler = get_scheduler("constant", optimizer)
    model, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    loader = accelerator.prepare(train_loader(data, tokenizer, args.batch_size, cfg.train.seed, True))
    return {"row": f"{name}: distill", **timed(
        lambda b: train_step(model, b, optimizer, scheduler, accelerator, cfg.train.max_grad_norm),
        loader, args.windows, args.window_steps, device)}


def measure_reference(name, objective_for, ours: Objective, teacher, data_ours, data_ref, tokenizer, phase, cfg, args,
                      device, ref_length) -> tuple[dict, dict]:
    """The reference row, on its own copy of ``ours``' weights (taken before ``ours`` trains), and the loss
    difference between the two on the same examples."""
    # the reference trains its own copy, from the same weights, with the score-returning attention
    reference = objective_for(copy.deepcopy(ours.student), live=True).to(device)
    use_score_attention(reference.student)
    reference.load_state_dict(ours.state_dict())
    ours_batch, ref_batch = same_examples(data_ours, tokenizer, args.batch_size, ref_length)
    difference = loss_difference(ours, teacher, _to(ours_batch, device), _to(ref_batch, device))
    optimizer = torch.optim.AdamW(reference.parameters(), lr=phase.lr)
    loader = reference_loader(data_ref, tokenizer, args.batch_size, ref_length, cfg.train.seed)
    row = timed(reference_step(reference, teacher, optimizer, cfg.train.max_grad_norm), _on(loader, device),
                args.windows, args.window_steps, device)
    return {"row": f"{name}: reference (TinyBERT setup)", **row}, difference


def _to(batch, device):
    return {k: v.to(device) for k, v in batch.items()}


def _on(loader, device):
    for batch in _batches(loader):
        yield _to(batch, device)


def run_benchmark(args) -> dict:
    if not args.data:
        raise ConfigError("bench train needs SST-2: pass --data <GLUE SST-2 directory> (or set SST2)")
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    common = [f"student={args.student}", f"train.batch_size={args.batch_size}"]
    task_cfg = compose_config(["stage=task", "task=sst2", f"task.data_dir={args.data}", *common])
    general_cfg = compose_config(["stage=general", "task=sst2", f"task.data_dir={args.data}",
                                  f"corpus.max_documents={args.documents}", *common])
    # a fine-tuned SST-2 teacher gives the loss check real logits; any teacher of that shape times the same
    finetuned = Path(task_cfg.teacher.finetuned)
    teacher_path = args.teacher or (str(finetuned) if (finetuned / "config.json").is_file() else task_cfg.teacher.name_or_path)
    tokenizer = load_tokenizer(teacher_path)
    teacher = FrozenTeacher(load_model(teacher_path, head="sequence_classification")).to(device)
    layer_map = LayerMap(task_cfg.stage.layer_map, task_cfg.student.num_layers, teacher.config.num_hidden_layers)
    splits = load_task_splits(task_cfg.task)
    splits["train"] = splits["train"].select(range(min(args.examples, len(splits["train"]))))
    data = tokenize_task(splits, task_cfg.task, tokenizer)["train"]
    identity = path_identity(resolve_path(teacher_path))

    def student(num_labels=2, masked_lm=False):
        torch.manual_seed(0)
        return build_student(task_cfg.student, tokenizer, num_labels=num_labels if not masked_lm else None,
                             masked_lm=masked_lm, type_vocab_size=teacher.config.type_vocab_size)

    shared = {"tokenizer": tokenizer, "cfg": task_cfg, "args": args, "device": device}
    intermediate, prediction = task_cfg.stage.phases
    task_student = student()
    scratch = Path(tempfile.mkdtemp(prefix="distill-bench-train-"))  # empty stores: the first epoch's rows

    def stand_ins(phases, ds, source_teacher, map_, cfg, root, fill: bool):
        """The data and each phase's stand-in for the teacher, as the stages build them; with ``fill`` every
        store is filled first (what the later epochs of a run read)."""
        ds, chosen, _ = teacher_for_phases(phases, ds, source_teacher, identity, map_, cfg.stage.loss, cfg.train, root)
        for p in phases if fill else ():
            if isinstance(chosen[id(p)], WriteThroughTeacher):
                chosen[id(p)].fill(ds, tokenizer, cfg.train.eval_batch_size)
        return ds, chosen

    started = time.perf_counter()
    stored_data, stored = stand_ins([intermediate, prediction], data, teacher, layer_map, task_cfg, cache_root(), True)
    cache_seconds = time.perf_counter() - started
    fresh_data, fresh = stand_ins([intermediate, prediction], data, teacher, layer_map, task_cfg, scratch / "task", False)

    def objective(phase, source):
        def build(model=task_student, live=False):
            return Objective(model, phase.weights, teacher if live else source, layer_map, task_cfg.stage.loss)
        return build

    rows = []
    for name, phase in (("(a) task intermediate", intermediate), ("(b) task prediction", prediction)):
        build = objective(phase, stored[id(phase)])
        ours = build().to(device)
        ref, difference = measure_reference(name, build, ours, teacher, stored_data, data, phase=phase,
                                            ref_length=TASK_MAX_LENGTH, **shared)
        rows.append({**measure_ours(name, ours, stored_data, phase=phase, **shared), "loss_max_abs_diff": difference})
        first = measure_ours(name, objective(phase, fresh[id(phase)])().to(device), fresh_data, phase=phase, **shared)
        rows.append({**first, "row": f"{name}: distill, first epoch (write-through)"})
        # the same step with the teacher run on every step, for scale
        live = measure_ours(name, objective(phase, teacher)().to(device), data, phase=phase, **shared)
        rows.append({**live, "row": f"{name}: distill, live teacher"})
        rows.append(ref)

    # the student on hard labels alone: what distillation's prediction step is compared with
    hard = dataclasses.replace(prediction, name="hard", weights=LossWeights(hard_ce=1.0))
    rows.append(measure_ours("hard labels alone", Objective(task_student, hard.weights), data, phase=hard, **shared))

    # (c) general distillation: the configured packing, dynamic padding vs fixed 128-token chunks
    corpus = load_corpus(general_cfg.corpus, general_cfg.task, tokenizer)
    general_cfg.corpus.packing, general_cfg.corpus.max_length = "plain", GENERAL_MAX_LENGTH
    fixed = load_corpus(general_cfg.corpus, general_cfg.task, tokenizer)
    body = student(masked_lm=False, num_labels=None)
    general_phase = general_cfg.stage.phases[0]
    general_map = LayerMap(general_cfg.stage.layer_map, general_cfg.student.num_layers, teacher.config.num_hidden_layers)
    base_teacher = FrozenTeacher(teacher.model.base_model)

    started = time.perf_counter()
    stored_corpus, general_stored = stand_ins([general_phase], corpus, base_teacher, general_map, general_cfg,
                                              cache_root(), True)
    general_cache_seconds = time.perf_counter() - started
    fresh_corpus, general_fresh = stand_ins([general_phase], corpus, base_teacher, general_map, general_cfg,
                                            scratch / "general", False)
    source = general_stored[id(general_phase)]

    def general_objective(model=body, live=False, stand_in=source):
        return Objective(model, general_phase.weights, base_teacher if live else stand_in, general_map,
                         general_cfg.stage.loss)

    ours = general_objective().to(device)
    ref, difference = measure_reference("(c) general", general_objective, ours, base_teacher, stored_corpus, fixed,
                                        phase=general_phase, ref_length=GENERAL_MAX_LENGTH, **shared)
    rows.append({**measure_ours("(c) general", ours, stored_corpus, phase=general_phase, **shared),
                 "loss_max_abs_diff": difference})
    first = measure_ours("(c) general", general_objective(stand_in=general_fresh[id(general_phase)]).to(device),
                         fresh_corpus, phase=general_phase, **shared)
    live = measure_ours("(c) general", general_objective(live=True).to(device), corpus, phase=general_phase, **shared)
    rows += [{**first, "row": "(c) general: distill, first epoch (write-through)"},
             {**live, "row": "(c) general: distill, live teacher"}, ref]
    shutil.rmtree(scratch, ignore_errors=True)
    by_row = {r["row"]: r for r in rows}
    for name, unit in (("(a) task intermediate", "examples_per_s"), ("(b) task prediction", "examples_per_s"),
                       ("(c) general", "tokens_per_s")):
        ref = by_row[f"{name}: reference (TinyBERT setup)"]
        for kind in ("distill", "distill, first epoch (write-through)", "distill, live teacher"):
            ours = by_row[f"{name}: {kind}"]
            ours["speedup_vs_reference"] = ours[unit] / ref[unit]
            ours["speedup_unit"] = unit
    # paired: both rows trained on the same batches in the same order, window by window
    prediction_row, hard_row = by_row["(b) task prediction: distill"], by_row["hard labels alone: distill"]
    prediction_row["vs_hard_labels"] = statistics.median(
        a / b for a, b in zip(prediction_row["window_rates"], hard_row["window_rates"]))
    return {
        "device": str(device), "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "mixed_precision": args.mixed_precision, "batch_size": args.batch_size, "student": task_cfg.student.tag(),
        "teacher": teacher_path, "layer_map": list(layer_map.targets), "examples": len(data),
        "general_chunks": {"distill": len(corpus), "reference": len(fixed)},
        "warmup_steps": WARMUP, "windows": args.windows, "window_steps": args.window_steps,
        "teacher_cache_seconds": cache_seconds, "general_cache_seconds": general_cache_seconds,
        "general_cached": isinstance(source, WriteThroughTeacher), "results": rows,
    }


def format_report(report: dict) -> str:
    lines = [f"device {report['device']}, torch {report['torch_version']}, {report['torch_threads']} threads, "
             f"batch {report['batch_size']}, precision {report['mixed_precision']}; student {report['student']}, "
             f"teacher {report['teacher']} (layer map {report['layer_map']}); {report['warmup_steps']} warm-up steps, "
             f"median of {report['windows']} windows x {report['window_steps']} steps",
             f"'distill' rows read the teacher's stored outputs, as a run's later epochs do (filled for "
             f"{report['examples']} examples in {report['teacher_cache_seconds']:.1f} s, general corpus "
             f"({report['general_chunks']['distill']} chunks) in {report['general_cache_seconds']:.1f} s, or read from an "
             f"earlier run); 'first epoch' rows run the teacher and store its outputs, as a run's first epoch does", ""]
    header = ("row", "examples/s", "tokens/s", "peak MiB", "speed-up", "max |loss diff|")
    body = []
    for r in report["results"]:
        speed = f"{r['speedup_vs_reference']:.2f}x ({r['speedup_unit'].split('_')[0]})" if "speedup_vs_reference" in r else ""
        diff = f"{max(r['loss_max_abs_diff'].values()):.1e}" if "loss_max_abs_diff" in r else ""
        body.append((r["row"], f"{r['examples_per_s']:.1f}", f"{r['tokens_per_s']:.0f}", f"{r['peak_memory_mb']:.0f}", speed, diff))
    lines.append(text_table(header, body))
    ratio = next(r["vs_hard_labels"] for r in report["results"] if "vs_hard_labels" in r)
    lines += ["", f"(b) with stored logits / hard labels alone: {ratio:.2f}x (median of per-window ratios on the same batches)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill bench train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("SST2"), help="a GLUE SST-2 directory (train.tsv, dev.tsv); "
                        "default: $SST2")
    parser.add_argument("--teacher", help="teacher model dir (default: the configured pretrained teacher)")
    parser.add_argument("--student", default="tinybert4", help="a distill/conf/student config name")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-steps", type=int, default=8)
    parser.add_argument("--examples", type=int, default=4096, help="training sentences used")
    parser.add_argument("--documents", type=int, default=2000, help="corpus documents packed for (c)")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even where a GPU is present")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    report = run_benchmark(args)
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
    return 0
