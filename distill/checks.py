"""Every rule a config must satisfy, each stated once, all checked before any data or model loads.

``check(cfg)`` reports every problem at once, one line each naming the field and
the fix (a ``ConfigError``), reading at most the teacher's ``config.json``. It
returns what the checks had to build anyway and the recipes reuse, so a rule
and its use cannot drift apart (the layer map is built here and nowhere else).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from distill.assets import BUILDERS as ASSETS
from distill.config import (
    CANDIDATE_SOURCES,
    EVAL_SPLITS,
    FACTORISED_EMBEDDINGS,
    GENERAL_STUDENT_AUTO,
    HEAD_REDUCTIONS,
    HOLDOUT_BY,
    INIT_CHOICES,
    INIT_SOURCES,
    LOSS_BALANCE,
    METRICS,
    MIXED_PRECISION,
    ON_NONFINITE,
    PACKING,
    POOLING,
    SCHEDULERS,
    SHARING_MODES,
    TEACHER_MLM,
    AugmentConfig,
    Config,
    StudentInit,
    StudentShape,
)
from distill.errors import ConfigError, LayerMapError
from distill.families import family_of
from distill.layer_map import LayerMap

# stages that train a student against a teacher (the others fine-tune, augment or score)
DISTILLING = ("general", "task")


@dataclass
class Checked:
    """What the checks built for the recipe: the teacher's config and the layer map (None when no loss term
    and no initialisation reads one)."""

    teacher_config: object | None = None
    layer_map: LayerMap | None = None


def one_of(where: str, value, allowed) -> list[str]:
    return [] if value in allowed else [f"{where}='{value}' is unknown; use one of {', '.join(map(str, allowed))}"]


def student_problems(shape: StudentShape) -> list[str]:
    out = [f"student.{name}={getattr(shape, name)} must be >= 1"
           for name in ("num_layers", "hidden_size", "embedding_size", "num_heads", "intermediate_size")
           if getattr(shape, name) < 1]
    if shape.num_heads >= 1 and shape.hidden_size % shape.num_heads:
        out.append(
            f"student.hidden_size={shape.hidden_size} is not divisible by student.num_heads={shape.num_heads}; "
            "pick a head count that divides it (with a teacher of another head count, also set "
            "stage.loss.attention_head_reduction=mean)"
        )
    out += one_of("student.sharing", shape.sharing, SHARING_MODES)
    if shape.sharing == "every_k" and (shape.k < 1 or shape.num_layers % shape.k):
        out.append(
            f"student.k={shape.k} does not divide student.num_layers={shape.num_layers}; "
            "sharing=every_k needs consecutive blocks of k layers"
        )
    out += one_of("student.pooling", shape.pooling, POOLING)
    if not 0.0 <= shape.dropout < 1.0:
        out.append(f"student.dropout={shape.dropout} must be in [0, 1)")
    return out


def is_layer_list(value) -> bool:
    if isinstance(value, str):
        return False
    try:
        return len(value) > 0 and all(int(x) == x for x in value)
    except (TypeError, ValueError):
        return False


def init_problems(cfg: Config) -> list[str]:
    init = cfg.stage.init
    out = [line for name, allowed in INIT_CHOICES.items() for line in one_of(f"stage.init.{name}", getattr(init, name), allowed)]
    if not (init.source_layers in ("map", "lowest") or is_layer_list(init.source_layers)):
        out.append(f"stage.init.source_layers={init.source_layers!r} is unknown; use map, lowest or a list of teacher layers")
    if init.head == "teacher" and cfg.stage.name != "task":
        out.append(f"stage.init.head=teacher copies a fine-tuned teacher's classifier: only stage=task has one, not stage={cfg.stage.name}")
    if init.source not in INIT_SOURCES and Path(init.source).exists() and not (Path(init.source) / "config.json").is_file():
        out.append(f"stage.init.source={init.source} is not a model directory (no config.json); give a Hugging Face "
                   f"model directory or name, or one of {', '.join(INIT_SOURCES)}")
    if init.source == "pretrained" and cfg.stage.name != "task":
        out.append(f"stage.init.source=pretrained chooses between the task stage's two teachers; stage={cfg.stage.name} "
                   f"copies from its only teacher (teacher.name_or_path): leave stage.init.source at finetuned")
    if init.albert_dir and not (Path(init.albert_dir) / "config.json").is_file():
        out.append(f"stage.init.albert_dir={init.albert_dir} is not a model directory (no config.json); give a Hugging Face ALBERT directory")
    general = cfg.general_student
    if cfg.stage.name == "task" and init.layers == "random" and general not in (None, "", GENERAL_STUDENT_AUTO) \
            and not (Path(general) / "config.json").is_file():
        out.append(f"general_student={general} is not a saved model directory (no config.json); point it at a general "
                   f"stage's model/ directory, or use general_student={GENERAL_STUDENT_AUTO} or null")
    general_dir = cfg.general_student_dir() if cfg.stage.name == "task" and init.layers == "random" else None
    if general_dir is not None:
        # the task stage then starts from the general student and copies only stage.init.head: ignore nothing silently
        if init.embedding != "random":
            out.append(f"stage.init.embedding={init.embedding} would be ignored: with stage.init.layers=random the task "
                       f"stage starts from the general student {general_dir} and keeps its embedding; set "
                       f"stage.init.embedding=random, or general_student=null to build it from stage.init.source")
        if init.albert_dir:
            out.append(f"stage.init.albert_dir={init.albert_dir} would be ignored: with stage.init.layers=random the "
                       f"task stage starts from the general student {general_dir}; set general_student=null to start "
                       f"from the converted ALBERT")
    if cfg.stage.name == "task" and (init.layers, init.embedding) == ("random", "random") and not init.albert_dir \
            and general == GENERAL_STUDENT_AUTO and general_dir is None:
        out.append(f"stage=task would start a random student: there is no general student at {cfg.runs_root}/general/"
                   f"{cfg.student.tag()}/model; run stage=general with this student first, set stage.init.layers=teacher "
                   f"to start from the teacher's layers, or general_student=null for random weights on purpose")
    return out


def phase_problems(cfg: Config) -> list[str]:
    from distill.terms import term_classes  # what each term declares (imported here: distill.terms imports torch)

    out = []
    # stage=augment builds data and stage=eval scores a model: neither has phases
    if not cfg.stage.phases and cfg.stage.name not in ("augment", "eval"):
        out.append(f"stage.phases is empty for stage '{cfg.stage.name}'; a stage needs at least one phase")
    for i, phase in enumerate(cfg.stage.phases):
        where = f"stage.phases[{i}] ({phase.name})"
        if phase.lr <= 0:
            out.append(f"{where}.lr={phase.lr} must be > 0")
        if phase.max_steps <= 0 and phase.epochs <= 0:
            out.append(f"{where}: set max_steps > 0 or epochs > 0")
        out += one_of(f"{where}.scheduler", phase.scheduler, SCHEDULERS)
        if not 0 <= phase.warmup_ratio < 1:
            out.append(f"{where}.warmup_ratio={phase.warmup_ratio} must be in [0, 1)")
        if not phase.weights.active():
            out.append(f"{where}.weights are all 0; turn on at least one of {', '.join(f.name for f in fields(phase.weights))}")
        if any(getattr(phase.weights, f.name) < 0 for f in fields(phase.weights)):
            out.append(f"{where}.weights: loss weights must be >= 0")
        terms = term_classes(phase.weights)
        if cfg.stage.name == "teacher" and any(term.teacher_reads for term in terms.values()):
            out.append(f"{where}.weights: stage=teacher fine-tunes the teacher on the labels alone; use hard_ce only")
        out += [f"{where}.weights.{name}: {term.stages_why or 'runs in stage=' + '|'.join(term.stages) + ' only'}"
                for name, term in terms.items() if term.stages is not None and cfg.stage.name not in term.stages]
    return out


def loss_problems(cfg: Config) -> list[str]:
    loss = cfg.stage.loss
    out = one_of("stage.loss.teacher_mlm", loss.teacher_mlm, TEACHER_MLM)
    out += one_of("stage.loss.attention_head_reduction", loss.attention_head_reduction, HEAD_REDUCTIONS)
    out += one_of("stage.loss.balance", loss.balance, LOSS_BALANCE)
    if loss.tinybert_compat and loss.balance != "none":
        out.append(f"stage.loss.balance={loss.balance} is not TinyBERT's formula; set stage.loss.balance=none "
                   "with stage.loss.tinybert_compat=true")
    if loss.temperature <= 0:
        out.append(f"stage.loss.temperature={loss.temperature} must be > 0")
    if not 0 < loss.mlm_probability < 1:
        out.append(f"stage.loss.mlm_probability={loss.mlm_probability} must be in (0, 1)")
    return out


def train_problems(cfg: Config) -> list[str]:
    t = cfg.train
    out = [f"train.{name}={getattr(t, name)} must be >= 1"
           for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "log_every") if getattr(t, name) < 1]
    if cfg.bench.repeats < 1 or cfg.bench.threads < 1:
        out.append("bench.repeats and bench.threads must be >= 1")
    if t.teacher_cache_max_gb <= 0:
        out.append(f"train.teacher_cache_max_gb={t.teacher_cache_max_gb} must be > 0; set train.cache_teacher_layers=false "
                   "to run the teacher on every step instead")
    out += one_of("train.on_nonfinite", t.on_nonfinite, ON_NONFINITE)
    out += one_of("train.mixed_precision", t.mixed_precision, MIXED_PRECISION)
    if t.checkpoint_every < 0 or t.keep_checkpoints < 1:
        out.append("train.checkpoint_every must be >= 0 and train.keep_checkpoints >= 1")
    if not isinstance(cfg.resume, bool) and not (Path(str(cfg.resume)) / "state.pt").is_file():
        out.append(f"resume={cfg.resume}: not a checkpoint directory (no state.pt); use resume=true or a checkpoints/step-* path")
    if cfg.resume is not False and cfg.overwrite:
        out.append("resume and overwrite=true contradict each other; pick one")
    return out


def task_problems(cfg: Config) -> list[str]:
    task = cfg.task
    out = []
    if task.num_labels < 2:
        out.append(f"task.label_names={list(task.label_names)} needs at least two labels")
    if len(set(task.label_names)) != len(task.label_names):
        out.append(f"task.label_names={list(task.label_names)} has duplicates")
    for metric in task.metrics:
        out += one_of("task.metrics", metric, METRICS)
    # the corpus is read by the general stage only
    lengths = {"task.max_length": task.max_length}
    if cfg.stage.name == "general":
        lengths["corpus.max_length"] = cfg.corpus.max_length
    for name, value in lengths.items():
        if not 8 <= value <= cfg.student.max_position_embeddings:
            out.append(f"{name}={value} must be in 8..student.max_position_embeddings ({cfg.student.max_position_embeddings})")
    if task.data_dir is not None:
        for split in (task.train_file, task.dev_file, task.test_file):
            if split is not None and not (Path(task.data_dir) / split).is_file():
                out.append(f"task.data_dir: {Path(task.data_dir) / split} does not exist; point task.data_dir at a directory holding {split}")
    elif task.fetch is not None:
        out += one_of("task.fetch", task.fetch, ASSETS)
    elif task.hub.name is None:
        out.append(f"task '{task.name}': set task.data_dir (a directory of data files), task.fetch or task.hub.name")
    if task.select_holdout < 1:
        out.append(f"task.select_holdout={task.select_holdout} must be >= 1 (training examples held out to pick the checkpoint)")
    out += one_of("task.select_holdout_by", task.select_holdout_by, HOLDOUT_BY)
    if task.select_holdout_by == "containment" and task.text_pair_field:
        out.append("task.select_holdout_by=containment compares single texts; a pair task needs select_holdout_by=row")
    return out


def corpus_problems(cfg: Config) -> list[str]:
    corpus = cfg.corpus
    out = [f"corpus.files: {f} does not exist; give plain-text files, one document per line"
           for f in corpus.files if not Path(f).is_file()]
    for name in corpus.fetch:
        out += one_of("corpus.fetch", name, ASSETS)
    out += one_of("corpus.packing", corpus.packing, PACKING)
    if cfg.stage.name == "general" and not (corpus.fetch or corpus.files or corpus.hub_name or corpus.include_task):
        out.append("corpus: no source is set; give corpus.files, corpus.fetch, corpus.hub_name or corpus.include_task=true")
    return out


def augment_problems(cfg: Config) -> list[str]:
    aug = cfg.augment
    if cfg.augment.enabled and cfg.stage.name not in ("task", "augment"):
        return [f"augment.enabled=true applies to stage=task (the teacher labels the variants), not stage={cfg.stage.name}"]
    if not (aug.enabled or cfg.stage.name == "augment"):
        return []
    out = []
    if not 0 <= aug.p <= 1:
        out.append(f"augment.p={aug.p} must be in [0, 1] (the probability that a word is replaced)")
    if aug.num_candidates < 1:
        out.append(f"augment.num_candidates={aug.num_candidates} must be >= 1")
    if aug.copies < 0:
        out.append(f"augment.copies={aug.copies} must be >= 0")
    if aug.batch_size < 1 or aug.shard_size < 1:
        out.append("augment.batch_size and augment.shard_size must be >= 1")
    out += one_of("augment.candidates", aug.candidates, CANDIDATE_SOURCES)
    if aug.vectors is not None and not Path(aug.vectors).is_file():
        out.append(f"augment.vectors: {aug.vectors} does not exist; give a word-vector text file (word v1 v2 ...) or null")
    if aug.candidates in CANDIDATE_SOURCES:
        try:  # the model's config.json: it must load, and have a head when candidates=mlm
            augment_uses_mlm(aug)
        except ConfigError as err:  # it names augment.model
            out.append(str(err))
    return out


def augment_uses_mlm(aug: AugmentConfig) -> bool:
    """Whether the masked-LM head proposes candidates (reads the model's config.json only)."""
    from distill.hf import has_mlm_head, load_config  # imported here: checking stays light until a model is named

    has_head = has_mlm_head(load_config(aug.model, field="augment.model"))
    if aug.candidates == "neighbours":
        return False
    if aug.candidates == "mlm" and not has_head:
        raise ConfigError(
            f"augment.candidates=mlm but augment.model={aug.model} has no masked-LM head; "
            "point augment.model at a *ForMaskedLM model or use augment.candidates=auto"
        )
    return has_head


def eval_problems(cfg: Config) -> list[str]:
    if cfg.stage.name != "eval":
        return []
    out = []
    if not cfg.model:
        out.append("stage=eval needs model=<a saved model directory>, e.g. model=runs/task/sst2/<student>/model")
    elif not (Path(cfg.model) / "config.json").is_file():
        out.append(f"model={cfg.model} is not a saved model directory (no config.json); point it at a run's model/ directory")
    for split in cfg.eval.splits:
        if split not in EVAL_SPLITS:
            out += one_of("eval.splits", split, EVAL_SPLITS)
        elif split == "test" and not (cfg.task.test_file or cfg.task.hub.test_split):
            out.append(f"eval.splits: task '{cfg.task.name}' has no labelled test split; set task.test_file or leave test out")
    out += [f"eval.files: {name} does not exist; give paths of labelled files in the task's format"
            for name in cfg.eval.files if not Path(name).is_file()]
    return out


def problems(cfg: Config) -> list[str]:
    """Every problem that ``cfg`` alone shows, one line each (the teacher's config is not read)."""
    return [*student_problems(cfg.student), *init_problems(cfg), *phase_problems(cfg), *loss_problems(cfg),
            *train_problems(cfg), *task_problems(cfg), *corpus_problems(cfg), *augment_problems(cfg), *eval_problems(cfg)]


def active_terms(cfg: Config) -> set[str]:
    return {term for phase in cfg.stage.phases for term in phase.weights.active()}


def uses_layer_map(cfg: Config) -> bool:
    """A layer map is read by the terms that pair layers (hidden, attention) and by an initialisation from the
    map's layers."""
    from distill.terms import MAPPED_READS, reads_of

    init = cfg.stage.init
    pairs = any(MAPPED_READS & reads_of(phase.weights)[1] for phase in cfg.stage.phases)
    return pairs or (init.layers == "teacher" and init.source_layers == "map")


def teacher_source(cfg: Config) -> tuple[str, str] | None:
    """(field, model) of the teacher this stage reads: the fine-tuned one for stage=task, the pretrained one
    for the general and teacher stages; None for stages without a teacher."""
    if cfg.stage.name == "task":
        return "teacher.finetuned", cfg.teacher.finetuned
    if cfg.stage.name in ("general", "teacher"):
        return "teacher.name_or_path", cfg.teacher.name_or_path
    return None


def teacher_problems(cfg: Config, teacher_config, init_config=None) -> tuple[list[str], LayerMap | None]:
    """Cross-checks against the teacher's config (config.json; no weights), and the layer map they build.
    ``init_config``: the config of the model the student's weights are copied from, when not the teacher's."""
    out, layer_map = [], None
    if cfg.stage.name not in DISTILLING:
        return out, layer_map
    if uses_layer_map(cfg):
        try:
            layer_map = LayerMap(cfg.stage.layer_map, cfg.student.num_layers, teacher_config.num_hidden_layers)
        except LayerMapError as err:
            out.append(f"stage.{err}")
    from distill.terms import TERMS  # the terms' own checks

    for name in sorted(active_terms(cfg), key=list(TERMS).index):
        out += TERMS[name].problems(cfg, teacher_config)
    source = cfg.init_source()
    if source is not None:
        out += init_shape_problems(cfg.stage.init, cfg.student, init_config or teacher_config, source[0])
        if layer_map is not None and init_config is not None and cfg.stage.init.layers == "teacher" \
                and cfg.stage.init.source_layers == "map":
            try:
                layer_map.for_depth(init_config.num_hidden_layers)
            except LayerMapError as err:
                out.append(f"stage.init.source_layers=map: {err}; give the source's layers as a list "
                           f"(stage.init.source_layers=[...], 1..{init_config.num_hidden_layers})")
    architectures = teacher_config.architectures or []
    if cfg.stage.name == "task" and architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        out.append(
            f"teacher.finetuned={cfg.teacher.finetuned} is a {architectures[0]}, with no classifier to give soft targets; "
            "point it at a model fine-tuned on the task (python -m distill stage=teacher)"
        )
    if cfg.stage.name == "task" and teacher_config.num_labels != cfg.task.num_labels:
        out.append(
            f"the fine-tuned teacher has {teacher_config.num_labels} labels but task '{cfg.task.name}' has "
            f"{cfg.task.num_labels} (task.label_names); fine-tune the teacher on this task first"
        )
    return out, layer_map


def init_shape_problems(init: StudentInit, student: StudentShape, source_config, field: str = "teacher.name_or_path") -> list[str]:
    """What an initialisation that copies from ``source_config``'s model (named by ``field``) needs of the student's
    shape; the source must be of a supported family (its layout says what goes where)."""
    out = []
    try:
        family_of(source_config, field=field)
    except ConfigError as err:
        return [str(err)]
    owner = "the teacher's" if field.startswith("teacher.") else f"the source's ({field})"
    if init.layers == "teacher":
        for s_name, t_name in (("hidden_size", "hidden_size"), ("num_heads", "num_attention_heads")):
            if getattr(student, s_name) != getattr(source_config, t_name):
                out.append(
                    f"stage.init.layers=teacher copies teacher layers, but student.{s_name}={getattr(student, s_name)} "
                    f"!= {owner} {getattr(source_config, t_name)}; match it or use init.layers=random"
                )
        if student.intermediate_size > source_config.intermediate_size:
            out.append(
                f"stage.init.layers=teacher: student.intermediate_size={student.intermediate_size} is wider than "
                f"{owner} {source_config.intermediate_size}; use at most that many (fewer keeps its most important units)"
            )
        T, L = source_config.num_hidden_layers, student.num_layers
        if init.source_layers == "lowest" and L > T:
            out.append(f"stage.init.source_layers=lowest needs student.num_layers <= {owner} {T} layers")
        if is_layer_list(init.source_layers):
            layers = [int(x) for x in init.source_layers]
            if len(layers) != L or not all(1 <= x <= T for x in layers):
                out.append(f"stage.init.source_layers={layers} needs {L} teacher layers (one per student layer), each in 1..{T}")
    if init.embedding == "teacher" and (student.embedding_size, student.hidden_size) != (source_config.hidden_size,) * 2:
        out.append(
            f"stage.init.embedding=teacher needs student.embedding_size = student.hidden_size = teacher width "
            f"({source_config.hidden_size}); use init.embedding=svd for a factorized embedding"
        )
    if init.embedding in FACTORISED_EMBEDDINGS and student.hidden_size != source_config.hidden_size:
        out.append(
            f"stage.init.embedding={init.embedding} needs student.hidden_size = teacher width ({source_config.hidden_size}), "
            f"got {student.hidden_size}"
        )
    if init.embedding in FACTORISED_EMBEDDINGS and student.embedding_size < 2:
        out.append(f"stage.init.embedding={init.embedding} needs student.embedding_size >= 2 (one direction goes to the "
                   f"embedding LayerNorm's centring), got {student.embedding_size}")
    if init.head == "teacher" and student.hidden_size != source_config.hidden_size:
        out.append(
            f"stage.init.head=teacher copies the teacher's pooler and classifier: needs student.hidden_size = teacher "
            f"width ({source_config.hidden_size}), got {student.hidden_size}"
        )
    return out


def check(cfg: Config) -> Checked:
    """Raise one ConfigError listing every problem, one per line; else return what the checks built.

    Reads the stage's teacher's config.json (not its weights) for the cross-checks."""
    found = problems(cfg)
    checked = Checked()
    source = teacher_source(cfg)
    if source is not None:
        from distill.hf import load_config  # imported here: the checks of cfg alone load no model code

        field, model = source
        if field == "teacher.finetuned" and not (Path(model) / "config.json").is_file():
            found.append(f"stage=task needs a fine-tuned teacher at {model}; run `python -m distill stage=teacher "
                         f"task={cfg.task.name}` first, or set teacher.finetuned=<model dir>")
        else:
            try:
                checked.teacher_config = load_config(model, field=field)
                family_of(checked.teacher_config, field=field)  # every stage reads it through its family
                # the copied weights may come from another model than this teacher (stage.init.source)
                copies = cfg.init_source()
                init_config = load_config(copies[1], field=copies[0]) if copies and copies[0] != field else None
                more, checked.layer_map = teacher_problems(cfg, checked.teacher_config, init_config)
                found += more
            except ConfigError as err:
                found.append(str(err))
    if found:
        raise ConfigError("\n".join(found))
    return checked
