"""stage=task: TinyBERT's task distillation, both steps in one run.

Phase 1 (intermediate): embedding + hidden + attention losses from the
fine-tuned teacher. Phase 2 (prediction): soft cross-entropy on the teacher's
logits (plus hard labels if weighted). The teacher runs on the first pass over
each example and its outputs are stored (its logits, and its mapped layers in
float16 on disk when they fit ``train.teacher_cache_max_gb``); later passes,
phases and runs read them (distill/teacher_cache.py). The
student starts from the fine-tuned teacher's layers, embeddings and head
(``stage.init``, e.g. ``recipe=fast``) or from the general student of the same
shape. The checkpoint that scores best on the selection split is kept in
``<run_dir>/model`` and reported on a split that chose nothing
(``distill.data.evaluation_plan``).

With ``augment.enabled=true`` both phases train on the training split plus its
TinyBERT augmentation (distill/augment.py; cached, so a sweep over students
builds it once). Variants have no label: the teacher's logits are their targets.
"""

from __future__ import annotations

import time

from distill import rundir
from distill.augment import augment_train
from distill.bench import benchmark
from distill.data import cache_root, eval_loader, path_identity, task_splits_and_plan, tokenize_task, train_loader
from distill.evaluation import evaluate
from distill.files import write_json
from distill.hf import load_model, load_tokenizer
from distill.model_card import write_task_card
from distill.objective import Objective
from distill.projections import ProjectionCarry
from distill.student import build_student, load_albert_body, parameter_counts
from distill.student_init import copy_teacher_head, initialise, load_source, logits_gap, student_settings, student_shape
from distill.teacher import FrozenTeacher
from distill.teacher_cache import teacher_for_phases, teacher_sources
from distill.trainer import planned_examples, train

def run(cfg) -> dict:
    run = rundir.start(cfg)  # every check, before any data or model loads
    teacher_dir = cfg.teacher.finetuned
    tokenizer = load_tokenizer(teacher_dir, field="teacher.finetuned")
    splits, plan, augmented = load_data(cfg)  # a malformed file fails before any model is loaded
    data = tokenize_task(splits, cfg.task, tokenizer)
    teacher = FrozenTeacher(load_model(teacher_dir, head="sequence_classification", trained_head=True,
                                       field="teacher.finetuned")).to(run.accelerator.device)
    student, start_from = build_task_student(cfg, tokenizer, teacher, run.checked.layer_map, data["train"])
    if "teacher" in start_from:  # how close the copy starts: exact for a whole BERT, approximate for MPNet or a slice
        start_from["logits_gap"] = logits_gap(student, teacher.model, data["select"], tokenizer, run.accelerator.device)
    # the first pass runs the teacher and stores its logits and mapped layers; later passes (and runs) read them
    data["train"], teacher_of, stores = teacher_for_phases(
        cfg.stage.phases, data["train"], teacher, path_identity(teacher_dir), run.checked.layer_map, cfg.stage.loss,
        cfg.train, cache_root(), visits=planned_examples(cfg.stage.phases, cfg.train, len(data["train"])))

    # W_E / W_h start from the general stage's (when the student is its) and go from phase to phase
    carry = ProjectionCarry.load(start_from.get("general_student"))
    if carry.source:
        start_from["projections"] = carry.source
    score = scorer(cfg, run, data, tokenizer, student)
    best = rundir.BestCheckpoint(run, student, tokenizer, cfg.task.metrics[0])
    results = train(
        cfg.stage.phases,
        lambda phase: carry.adopt(Objective(student, phase.weights, teacher_of[id(phase)], run.checked.layer_map,
                                            cfg.stage.loss)),
        train_loader(data["train"], tokenizer, cfg.train.batch_size, cfg.train.seed, cfg.train.group_by_length),
        cfg.train, run.context(evaluate=lambda: score("select"), best=best, teacher_stores=stores), run.resume,
    )

    started = time.perf_counter()
    evals = rundir.held_out_eval(best, score, results[-1]["steps"], plan, role="student")
    evals |= {"teacher": score("report", teacher.model), "teacher_select": score("select", teacher.model)}
    # what the run spends after training, for the per-stage times (distill.report.stage_times)
    after = {"held_out_eval": time.perf_counter() - started}
    started = time.perf_counter()
    speed = measure_speed(cfg, run, list(splits["report"][cfg.task.text_field])) \
        if cfg.bench.enabled and run.accelerator.is_main_process else {}
    after["bench"] = time.perf_counter() - started if speed else 0.0
    metrics = rundir.summary(cfg, results, parameter_counts(student), {
        "eval": evals, **speed, "best_step": best.best_step, "student_init": start_from, "teacher_dir": teacher_dir,
        "teacher_params": parameter_counts(teacher.model),
        "layer_map": list(run.checked.layer_map.targets) if run.checked.layer_map else None,
        # per phase: batches that ran the teacher and batches that read its stored outputs, or 'live'
        "teacher_outputs": teacher_sources(cfg.stage.phases, teacher_of),
        "train_examples": len(data["train"]), "augment": augmented.stats if augmented is not None else None,
        "seconds_after_training": after,
    })
    if run.accelerator.is_main_process:
        write_task_card(run.model_dir, cfg, metrics, len(data["report"]))
    return rundir.finish(run, metrics)


def load_data(cfg):
    """The task's splits (``train``, ``select``, ``report``) and the evaluation plan; with ``augment.enabled`` the
    training split plus its augmentation (the evaluation splits stay as they are), and the augmentation's record."""
    splits, plan = task_splits_and_plan(cfg.task)
    augmented = None
    if cfg.augment.enabled:
        augmented = augment_train(splits["train"], cfg.task, cfg.augment, progress=cfg.train.progress)
        splits["train"] = augmented.dataset
    return splits, plan, augmented


def scorer(cfg, run, data, tokenizer, student):
    """``score(split, model=student)``: the task's metrics on the 'select' or 'report' split."""
    loaders = {split: eval_loader(data[split], tokenizer, cfg.train.eval_batch_size) for split in ("select", "report")}
    return lambda split, model=student: evaluate(model, loaders[split], cfg.task.metrics, run.accelerator.device)


def build_task_student(cfg, tokenizer, teacher: FrozenTeacher, layer_map, train_rows=None):
    """The student and where it started: copied from ``Config.init_source`` (the fine-tuned teacher, the pretrained
    one, or another model) when ``stage.init`` copies anything but the head, else the general student of the same
    shape when there is one (``Config.general_student_dir``). ``train_rows``: the tokenized training split (with
    its augmentation), which ``stage.init.embedding=svd_train`` fits to."""
    init = cfg.stage.init
    general = cfg.general_student_dir()
    from_general = init.layers == "random" and general is not None
    # from a general student only the head is copied (stage.init.head=teacher), from the same source as otherwise
    source, source_tokenizer = load_source(cfg.init_source(), teacher.model, "teacher.finetuned")
    labels = cfg.task.label_config()
    settings = student_settings(init, source.config, *((general, "general_student") if from_general else ()))
    student = build_student(student_shape(init, cfg.student, source.config), tokenizer,
                            num_labels=labels.pop("num_labels"), **settings, **labels)
    if from_general:
        load_albert_body(student, general, tokenizer.get_vocab(), field="general_student")
        done = {"general_student": str(general)}
        if init.head == "teacher":
            copy_teacher_head(student, source)
            done["head"] = "teacher"
        return student, done
    return student, {"teacher": str(source.name_or_path), "source": init.source,
                     **initialise(student, source, init, layer_map, tokenizer, source_tokenizer, train_rows)}


def measure_speed(cfg, run, texts: list[str]) -> dict:
    """CPU latency of the kept student against its teacher on ``texts``, in one process (distill.bench);
    figures in bench.json."""
    report = benchmark([cfg.teacher.finetuned, str(run.model_dir)], texts=texts, threads=cfg.bench.threads,
                       repeats=cfg.bench.repeats, onnx=cfg.bench.onnx, rounds=cfg.bench.rounds)
    write_json(run.dir / "bench.json", report)
    mine = [r for r in report["results"] if r["model_dir"] == str(run.model_dir)]
    return {
        # the median over bench.rounds interleaved rounds, and its min-max over them
        "speedup": {f"{r['engine']}_batch{r['batch_size']}": r["speedup"] for r in mine},
        "speedup_range": {f"{r['engine']}_batch{r['batch_size']}": [r["speedup_min"], r["speedup_max"]] for r in mine},
        "latency_ms": {f"{r['engine']}_batch{r['batch_size']}": r["median_ms"] for r in mine},
    }
