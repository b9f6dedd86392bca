"""stage=task: TinyBERT's task distillation, both steps in one run.

Phase 1 (intermediate): embedding + hidden + attention losses from the
fine-tuned teacher. Phase 2 (prediction): soft cross-entropy on the teacher's
logits (plus hard labels if weighted). The student starts from the general
student of the same shape when one exists. The best dev checkpoint of the
selecting phase is kept in ``<run_dir>/model``.

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
from distill.attention import use_score_attention
from distill.augment import augment_train
from distill.bench import benchmark
from distill.config import ConfigError
from distill.data import eval_loader, load_task, tokenize_task, train_loader
from distill.evaluation import evaluate
from distill.export import write_model_card
from distill.layer_map import LayerMap
from distill.objective import Objective
from distill.student import build_student, init_from_albert, parameter_counts
from distill.teacher import FrozenTeacher, load_model, load_tokenizer
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
    splits = load_task(task)
    augmented = None
    if cfg.augment.enabled:  # the training split only: dev stays as it is
        augmented = augment_train(splits["train"], task, cfg.augment, progress=train_cfg.progress)
        splits["train"] = augmented.dataset
    data = tokenize_task(splits, task, tokenizer)
    teacher = FrozenTeacher(load_model(str(teacher_dir), head="sequence_classification")).to(run.accelerator.device)
    labels = task.label_config()
    student = build_student(
        cfg.student, tokenizer, num_labels=labels.pop("num_labels"), type_vocab_size=teacher.config.type_vocab_size,
        **labels,
    )
    general = Path(cfg.general_student)
    if (general / "config.json").is_file():
        body = AlbertModel.from_pretrained(general)
        if body.config.vocab_size != len(tokenizer):
            raise ConfigError(
                f"general_student={general} has a vocabulary of {body.config.vocab_size} but the teacher's tokenizer "
                f"has {len(tokenizer)}; it was distilled from another teacher: re-run stage=general or set general_student"
            )
        init_from_albert(student, body)
        start_from = str(general)
    else:
        log.warning(
            "no general student at %s: starting from a random student (run `python -m distill stage=general` "
            "with the same student shape first for a better one)", general,
        )
        start_from = "random"
    use_score_attention(student)
    layer_map = LayerMap(cfg.stage.layer_map, cfg.student.num_layers, teacher.config.num_hidden_layers)
    loader = train_loader(data["train"], tokenizer, train_cfg.batch_size, train_cfg.seed, train_cfg.group_by_length)
    dev = eval_loader(data["dev"], tokenizer, train_cfg.eval_batch_size)
    device = run.accelerator.device
    best = runs.BestCheckpoint(run, student, tokenizer, task.metrics[0])

    results = train(
        cfg.stage.phases, lambda phase: Objective(student, phase.weights, teacher, layer_map, cfg.stage.loss),
        loader, train_cfg, run.context(evaluate=lambda: evaluate(student, dev, task.metrics, device), best=best),
        run.resume,
    )
    if best.best is None:  # no phase selects: keep the final student
        best(evaluate(student, dev, task.metrics, device), results[-1]["steps"])
    teacher_eval = evaluate(teacher.model, dev, task.metrics, device)
    speed = measure_speed(cfg, run, teacher_dir) if cfg.bench.enabled and run.accelerator.is_main_process else {}
    extra = {
        "eval": {"student": best.best, "teacher": teacher_eval},
        **speed,
        "best_step": best.best_step,
        "student_init": start_from,
        "teacher_dir": str(teacher_dir),
        "teacher_params": parameter_counts(teacher.model),
        "layer_map": list(layer_map.targets),
        "train_examples": len(data["train"]),
        "augment": augmented.stats if augmented is not None else None,
    }
    metrics = runs.summary(cfg, results, parameter_counts(student), extra)
    if run.accelerator.is_main_process:
        write_model_card(run.model_dir, {
            "name": f"distill {cfg.student.tag()} on {task.name}", "teacher": str(teacher_dir),
            "data": f"{task.name} (dev: {len(data['dev'])} examples)", "student": cfg.student.tag(),
            "sharing": cfg.student.sharing, "params": metrics["params"], "dev": best.best, "speedup": speed.get("speedup"),
        })
    return runs.finish(run, metrics)


def measure_speed(cfg, run, teacher_dir: Path) -> dict:
    """CPU latency of the kept student against its teacher, in one process (distill.bench); figures in bench.json."""
    texts = list(load_task(cfg.task)["dev"][cfg.task.text_field])
    report = benchmark([str(teacher_dir), str(run.model_dir)], texts=texts, threads=cfg.bench.threads,
                       repeats=cfg.bench.repeats, onnx=cfg.bench.onnx)
    (run.dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    mine = [r for r in report["results"] if r["model_dir"] == str(run.model_dir)]
    return {
        "speedup": {f"{r['engine']}_batch{r['batch_size']}": r["speedup"] for r in mine},
        "latency_ms": {f"{r['engine']}_batch{r['batch_size']}": r["median_ms"] for r in mine},
    }
