"""stage=general: distil a fresh ALBERT student from the pretrained teacher on unlabeled text.

Embedding + hidden-state + attention losses through the layer map G(m). The
student body lands in ``<run_dir>/model``, where the task stage looks for it.
"""

from __future__ import annotations

from distill import run as runs
from distill.attention import use_score_attention
from distill.data import load_corpus, train_loader
from distill.layer_map import LayerMap
from distill.objective import Objective
from distill.student import build_student, parameter_counts
from distill.teacher import FrozenTeacher, load_model, load_tokenizer
from distill.trainer import train


def run(cfg) -> dict:
    run = runs.start(cfg, teacher=cfg.teacher.name_or_path)
    train_cfg = cfg.train
    tokenizer = load_tokenizer(cfg.teacher.name_or_path)
    # data first: a malformed file fails before any model is loaded
    corpus = load_corpus(cfg.corpus, cfg.task, tokenizer)
    teacher = FrozenTeacher(load_model(cfg.teacher.name_or_path, head="base")).to(run.accelerator.device)
    student = use_score_attention(build_student(cfg.student, tokenizer, type_vocab_size=teacher.config.type_vocab_size))
    layer_map = LayerMap(cfg.stage.layer_map, cfg.student.num_layers, teacher.config.num_hidden_layers)
    loader = train_loader(corpus, tokenizer, train_cfg.batch_size, train_cfg.seed, train_cfg.group_by_length)

    results = train(
        cfg.stage.phases, lambda phase: Objective(student, phase.weights, teacher, layer_map, cfg.stage.loss),
        loader, train_cfg, run.context(), run.resume,
    )
    if run.accelerator.is_main_process:
        runs.save_model(run.accelerator.unwrap_model(student), tokenizer, run.model_dir)
    return runs.finish(run, runs.summary(cfg, results, parameter_counts(student), {"layer_map": list(layer_map.targets)}))
