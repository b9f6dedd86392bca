"""stage=task: TinyBERT's task distillation, both steps in one run.

Phase 1 (intermediate): embedding + hidden + attention losses from the
fine-tuned teacher. Phase 2 (prediction): soft cross-entropy on the teacher's
logits (plus hard labels if weighted). Both read the teacher's outputs from
caches (its logits, and its mapped layers in float16 on disk when they fit
``train.teacher_cache_max_gb``: one teacher forward per example, ever). The
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

import json
import logging
from pathlib import Path

from transformers import AlbertModel

from distill import run as runs
from distill.augment import augment_train
from distill.bench import benchmark
from distill.config import ConfigError
from distill.data import eval_loader, evaluation_plan, load_task_splits, path_identity, tokenize_task, train_loader
from distill.evaluation import evaluate
from distill.export import write_model_card
from distill.layer_map import LayerMap
from distill.init import copy_teacher_head, initialise, student_shape
from distill.objective import Objective
from distill.student import build_student, init_from_albert, parameter_counts
from distill.teacher import FrozenTeacher, load_model, load_tokenizer
from distill.teacher_cache import cache_root, teacher_for_phases, teacher_sources
from distill.trainer import train

log = logging.getLogger("distill")


def run(cfg) -> dict:
    task, train_cfg = cfg.task, cfg.train
    teacher_dir = Path(cfg.teacher.finetuned)
    if not (teacher_dir / "config.json").is_file():
        raise ConfigError(
            f"stage=task needs a fine-tuned teacher at {teacher_dir}; run `python -m distill stage=teacher "
            f"task={task.name}` first, or set teacher.finetuned=<model dir>"
        )
    run = runs.start(cfg, teacher=str(teacher_dir))
    tokenizer = load_tokenizer(str(teacher_dir))
    # data first: a malformed file fails before any model is loaded
    splits = load_task_splits(task)
    augmented = None
    if cfg.augment.enabled:  # the training split only: the evaluation splits stay as they are
        augmented = augment_train(splits["train"], task, cfg.augment, progress=train_cfg.progress)
        splits["train"] = augmented.dataset
    data = tokenize_task(splits, task, tokenizer)
    teacher = FrozenTeacher(load_model(str(teacher_dir), head="sequence_classification", trained_head=True))
    teacher.to(run.accelerator.device)
    layer_map = LayerMap(cfg.stage.layer_map, cfg.student.num_layers, teacher.config.num_hidden_layers)
    student, start_from = build_task_student(cfg, tokenizer, teacher, layer_map)

    # phases read the teacher's logits and mapped layers from caches instead of running it (when they fit)
    data["train"], teacher_of = teacher_for_phases(cfg.stage.phases, data["train"], teacher, tokenizer,
                                                   path_identity(str(teacher_dir)), layer_map, cfg.stage.loss,
                                                   train_cfg, cache_root())
    loader = train_loader(data["train"], tokenizer, train_cfg.batch_size, train_cfg.seed, train_cfg.group_by_length)
    loaders = {split: eval_loader(data[split], tokenizer, train_cfg.eval_batch_size) for split in ("select", "report")}
    device = run.accelerator.device
    score = lambda split, model=student: evaluate(model, loaders[split], task.metrics, device)  # noqa: E731
    best = runs.BestCheckpoint(run, student, tokenizer, task.metrics[0])

    results = train(
        cfg.stage.phases,
        lambda phase: Objective(student, phase.weights, teacher_of[id(phase)], layer_map, cfg.stage.loss),
        loader, train_cfg, run.context(evaluate=lambda: score("select"), best=best), run.resume,
    )
    plan = evaluation_plan(task)
    evals = runs.held_out_eval(best, score, results[-1]["steps"], plan, role="student")
    evals |= {"teacher": score("report", teacher.model), "teacher_select": score("select", teacher.model)}
    report_texts = list(splits["report"][task.text_field])
    speed = measure_speed(cfg, run, teacher_dir, report_texts) if cfg.bench.enabled and run.accelerator.is_main_process else {}
    extra = {
        "eval": evals,
        **speed,
        "best_step": best.best_step,
        "student_init": start_from,
        "teacher_dir": str(teacher_dir),
        "teacher_params": parameter_counts(teacher.model),
        "layer_map": list(layer_map.targets),
        # per phase: teacher outputs read from the caches, or the teacher run on every step
        "teacher_outputs": teacher_sources(cfg.stage.phases, teacher_of),
        "train_examples": len(data["train"]),
        "augment": augmented.stats if augmented is not None else None,
    }
    metrics = runs.summary(cfg, results, parameter_counts(student), extra)
    if run.accelerator.is_main_process:
        write_model_card(run.model_dir, {
            "name": f"distill {cfg.student.tag()} on {task.name}", "teacher": str(teacher_dir),
            "data": f"{task.name} ({plan['report']}: {len(data['report'])} examples, chose nothing)",
            "student": cfg.student.tag(), "sharing": cfg.student.sharing, "params": metrics["params"],
            "heldout": evals["student"], "speedup": speed.get("speedup"),
        })
    return runs.finish(run, metrics)


def build_task_student(cfg, tokenizer, teacher: FrozenTeacher, layer_map: LayerMap):
    """The student and where it started: the fine-tuned teacher's layers when ``stage.init.layers=teacher``
    (the general student is then not read), else the general student of the same shape when it exists."""
    init = cfg.stage.init
    labels = cfg.task.label_config()
    student = build_student(
        student_shape(init, cfg.student, teacher.config), tokenizer, num_labels=labels.pop("num_labels"),
        type_vocab_size=teacher.config.type_vocab_size, **labels,
    )
    general = Path(cfg.general_student) if cfg.general_student else None
    if init.layers == "random" and general is not None and (general / "config.json").is_file():
        body = AlbertModel.from_pretrained(general)
        if body.config.vocab_size != len(tokenizer):
            raise ConfigError(
                f"general_student={general} has a vocabulary of {body.config.vocab_size} but the teacher's tokenizer "
                f"has {len(tokenizer)}; it was distilled from another teacher: re-run stage=general or set general_student"
            )
        init_from_albert(student, body)
        done = {"general_student": str(general)}
        if init.head == "teacher":
            copy_teacher_head(student, teacher.model)
            done["head"] = "teacher"
        return student, done
    if init.layers == "random" and init.embedding == "random" and not init.albert_dir:
        log.warning(
            "no general student at %s and stage.init.layers=random: starting from a random student (run "
            "`python -m distill stage=general` with the same student shape first, or set stage.init.layers=teacher)",
            general,
        )
    return student, {"teacher": str(teacher.model.name_or_path),
                     **initialise(student, teacher.model, init, layer_map, len(tokenizer))}


def measure_speed(cfg, run, teacher_dir: Path, texts: list[str]) -> dict:
    """CPU latency of the kept student against its teacher on ``texts``, in one process (distill.bench);
    figures in bench.json."""
    report = benchmark([str(teacher_dir), str(run.model_dir)], texts=texts, threads=cfg.bench.threads,
                       repeats=cfg.bench.repeats, onnx=cfg.bench.onnx)
    (run.dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    mine = [r for r in report["results"] if r["model_dir"] == str(run.model_dir)]
    return {
        "speedup": {f"{r['engine']}_batch{r['batch_size']}": r["speedup"] for r in mine},
        "latency_ms": {f"{r['engine']}_batch{r['batch_size']}": r["median_ms"] for r in mine},
    }
