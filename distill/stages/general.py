"""stage=general: distil a student from the pretrained teacher on unlabeled text.

TinyBERT's settings (distill/conf/stage/general.yaml): embedding + hidden-state +
attention losses through the layer map G(m) from a random student.
DistilBERT's preset (distill/conf/recipe/distilbert.yaml): the student's own
masked-LM loss, the cosine loss on last hidden states and the soft
cross-entropy on the teacher's masked-LM logits, from a student initialised
with the teacher's layers. The student body lands in ``<run_dir>/model``,
where the task stage looks for it.
"""

from __future__ import annotations

import dataclasses
import logging

from distill import rundir
from distill.checks import active_terms
from distill.data import cache_root, load_corpus, path_identity, train_loader
from distill.hf import has_mlm_head, load_model, load_tokenizer, resolve_path
from distill.objective import Objective, TokenMasker
from distill.projections import ProjectionCarry
from distill.student import build_student, parameter_counts
from distill.student_init import initialise, load_source, student_settings, student_shape
from distill.teacher import FrozenTeacher
from distill.teacher_cache import teacher_for_phases, teacher_sources
from distill.terms import LOGITS, TERMS
from distill.trainer import planned_examples, train

log = logging.getLogger("distill")


def run(cfg) -> dict:
    run = rundir.start(cfg)  # every check, before any data or model loads
    train_cfg, init, layer_map = cfg.train, cfg.stage.init, run.checked.layer_map
    tokenizer = load_tokenizer(cfg.teacher.name_or_path)
    corpus = load_corpus(cfg.corpus, cfg.task, tokenizer)  # a malformed file fails before any model is loaded
    phases, teacher_mlm = masked_lm_phases(cfg, run.checked.teacher_config)
    teacher = FrozenTeacher(load_model(cfg.teacher.name_or_path, head="masked_lm" if teacher_mlm else "base"))
    teacher.to(run.accelerator.device)

    # in this stage a term that reads logits reads masked-LM logits: the student gets an MLM head
    masked_lm = any(LOGITS in TERMS[name].reads for name in active_terms(cfg))
    source, source_tokenizer = load_source(cfg.init_source(), teacher.model, "teacher.name_or_path")
    student = build_student(student_shape(init, cfg.student, source.config), tokenizer, masked_lm=masked_lm,
                            **student_settings(init, source.config))
    done = initialise(student, source, init, layer_map, tokenizer, source_tokenizer, corpus)
    masker = TokenMasker(tokenizer, cfg.stage.loss.mlm_probability) if masked_lm else None
    # the first pass over each chunk runs the teacher and stores its mapped layers (when what the run may store fits
    # train.teacher_cache_max_gb); later epochs read them
    corpus, teacher_of, stores = teacher_for_phases(
        phases, corpus, teacher, path_identity(resolve_path(cfg.teacher.name_or_path)), layer_map, cfg.stage.loss,
        train_cfg, cache_root(), masker, visits=planned_examples(phases, train_cfg, len(corpus)))

    carry = ProjectionCarry()  # W_E / W_h go from phase to phase, and are saved for the task stage
    results = train(
        phases, lambda phase: carry.adopt(Objective(student, phase.weights, teacher_of[id(phase)], layer_map,
                                                    cfg.stage.loss, masker)),
        train_loader(corpus, tokenizer, train_cfg.batch_size, train_cfg.seed, train_cfg.group_by_length),
        train_cfg, run.context(teacher_stores=stores), run.resume,
    )
    if run.accelerator.is_main_process:
        rundir.save_model(run.accelerator.unwrap_model(student), tokenizer, run.model_dir, projections=carry)
    extra = {"layer_map": list(layer_map.targets) if layer_map else None, "init": dataclasses.asdict(init),
             "student_init": done, "teacher_mlm_head": teacher_mlm,
             # per phase: batches that ran the teacher and batches that read its stored outputs, or 'live'
             "teacher_outputs": teacher_sources(phases, teacher_of)}
    return rundir.finish(run, rundir.summary(cfg, results, parameter_counts(student), extra))


def masked_lm_phases(cfg, teacher_config):
    """The phases to train, and whether the teacher's masked-LM logits are read: a term on the teacher's logits
    (soft_ce) needs a teacher with an MLM head; without one (stage.loss.teacher_mlm=auto; 'required' failed the
    checks) the term is dropped, saying so, and the other terms train."""
    phases = list(cfg.stage.phases)
    on_logits = sorted(name for name in active_terms(cfg) if LOGITS in TERMS[name].teacher_reads)
    teacher_mlm = bool(on_logits) and has_mlm_head(teacher_config)
    if on_logits and not teacher_mlm:
        log.warning("the teacher has no masked-LM head: the %s term on MLM logits is dropped, the others train",
                    " and ".join(on_logits))
        off = {name: 0.0 for name in on_logits}
        phases = [dataclasses.replace(p, weights=dataclasses.replace(p.weights, **off)) for p in phases]
    return phases, teacher_mlm
