"""stage=general: distil a student from the pretrained teacher on unlabeled text.

TinyBERT's preset (conf/stage/general.yaml): embedding + hidden-state +
attention losses through the layer map G(m) from a random student.
DistilBERT's preset (conf/stage/general_distilbert.yaml): the student's own
masked-LM loss, the cosine loss on last hidden states and the soft
cross-entropy on the teacher's masked-LM logits, from a student initialised
with the teacher's layers. The student body lands in ``<run_dir>/model``,
where the task stage looks for it.
"""

from __future__ import annotations

import dataclasses
import logging

from distill import run as runs
from distill.config import has_mlm_head
from distill.data import load_corpus, path_identity, train_loader
from distill.init import initialise, student_shape
from distill.layer_map import LayerMap
from distill.objective import Objective, TokenMasker
from distill.student import build_student, parameter_counts
from distill.teacher import FrozenTeacher, load_config, load_model, load_tokenizer, resolve_path
from distill.teacher_cache import cache_root, teacher_for_phases, teacher_sources
from distill.trainer import train

log = logging.getLogger("distill")


def run(cfg) -> dict:
    run = runs.start(cfg, teacher=cfg.teacher.name_or_path)
    train_cfg, init, phases = cfg.train, cfg.stage.init, list(cfg.stage.phases)
    tokenizer = load_tokenizer(cfg.teacher.name_or_path)
    # data first: a malformed file fails before any model is loaded
    corpus = load_corpus(cfg.corpus, cfg.task, tokenizer)

    active = {term for phase in phases for term in phase.weights.active()}
    teacher_config = load_config(cfg.teacher.name_or_path)
    teacher_mlm = "soft_ce" in active and has_mlm_head(teacher_config)
    if "soft_ce" in active and not teacher_mlm:  # teacher_mlm=required failed validation already
        log.warning("the teacher has no masked-LM head: the soft_ce term on MLM logits is dropped, the others train")
        phases = [dataclasses.replace(p, weights=dataclasses.replace(p.weights, soft_ce=0.0)) for p in phases]
    head = "masked_lm" if teacher_mlm else "base"
    teacher = FrozenTeacher(load_model(cfg.teacher.name_or_path, head=head)).to(run.accelerator.device)

    masked_lm = bool({"mlm", "soft_ce"} & active)
    shape = student_shape(init, cfg.student, teacher.config)
    student = build_student(shape, tokenizer, masked_lm=masked_lm, type_vocab_size=teacher.config.type_vocab_size)
    layer_map = LayerMap(cfg.stage.layer_map, cfg.student.num_layers, teacher.config.num_hidden_layers)
    done = initialise(student, teacher.model, init, layer_map, len(tokenizer))
    masker = TokenMasker(tokenizer, cfg.stage.loss.mlm_probability) if masked_lm else None
    # a corpus whose mapped teacher layers fit train.teacher_cache_max_gb is run through the teacher once
    identity = path_identity(resolve_path(cfg.teacher.name_or_path))
    corpus, teacher_of = teacher_for_phases(phases, corpus, teacher, tokenizer, identity, layer_map, cfg.stage.loss,
                                            train_cfg, cache_root(), masker)
    loader = train_loader(corpus, tokenizer, train_cfg.batch_size, train_cfg.seed, train_cfg.group_by_length)

    results = train(
        phases, lambda phase: Objective(student, phase.weights, teacher_of[id(phase)], layer_map, cfg.stage.loss, masker),
        loader, train_cfg, run.context(), run.resume,
    )
    if run.accelerator.is_main_process:
        runs.save_model(run.accelerator.unwrap_model(student), tokenizer, run.model_dir)
    extra = {"layer_map": list(layer_map.targets), "init": dataclasses.asdict(init), "student_init": done,
             "teacher_mlm_head": teacher_mlm,
             # per phase: teacher outputs read from the cache, or the teacher run on every step
             "teacher_outputs": teacher_sources(phases, teacher_of)}
    return runs.finish(run, runs.summary(cfg, results, parameter_counts(student), extra))
