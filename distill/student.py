"""The student: a stock `transformers` ALBERT built from a small shape config.

Cross-layer sharing maps onto ALBERT's own knobs, with ``inner_group_num = 1``
always (one layer per group), so layer i (0-based) runs group
``i // (L / num_hidden_groups)``:
- ``all``: one group, every layer shares one set of weights (ALBERT's default);
- ``every_k``: ``L / k`` groups, consecutive blocks of k layers share weights,
  e.g. k = 2 gives (1,2), (3,4), ... (pattern AABB);
- ``none``: L groups, a plain BERT-like stack.
The vocabulary always comes from the teacher's tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import (
    AlbertConfig,
    AlbertForMaskedLM,
    AlbertForSequenceClassification,
    AlbertModel,
    PreTrainedTokenizerBase,
)

from distill.checks import student_problems
from distill.config import StudentShape
from distill.errors import ConfigError
from distill.modeling_albert_pooled import AlbertMeanPoolForSequenceClassification


def albert_config(shape: StudentShape, tokenizer: PreTrainedTokenizerBase, type_vocab_size: int = 2, **extra) -> AlbertConfig:
    problems = student_problems(shape)
    if problems:
        raise ConfigError("\n".join(problems))
    return AlbertConfig(
        vocab_size=len(tokenizer),
        embedding_size=shape.embedding_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_hidden_groups=shape.num_groups,
        inner_group_num=1,
        num_attention_heads=shape.num_heads,
        intermediate_size=shape.intermediate_size,
        hidden_act=shape.hidden_act,
        hidden_dropout_prob=shape.dropout,
        attention_probs_dropout_prob=shape.dropout,
        classifier_dropout_prob=shape.dropout,
        max_position_embeddings=shape.max_position_embeddings,
        type_vocab_size=type_vocab_size,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **extra,
    )


def build_student(
    shape: StudentShape, tokenizer: PreTrainedTokenizerBase, num_labels: int | None = None, masked_lm: bool = False,
    **extra,
) -> nn.Module:
    """A randomly initialised ALBERT: with ``num_labels`` a sequence classifier pooled by
    ``shape.pooling``; with ``masked_lm`` one with ALBERT's MLM head; else the bare encoder."""
    config = albert_config(shape, tokenizer, **extra)
    if masked_lm:
        return AlbertForMaskedLM(config)
    if num_labels is None:
        return AlbertModel(config)
    config.num_labels = num_labels
    if shape.pooling == "mean":
        return AlbertMeanPoolForSequenceClassification(config)
    return AlbertForSequenceClassification(config)


def _albert_core(model: nn.Module) -> AlbertModel:
    return model if isinstance(model, AlbertModel) else model.albert


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameter counts of an ALBERT student (base model or with a head), or of a BERT teacher.

    embedding: the factorized embedding, V*E + P*E + T*E + LayerNorm(E), plus
        the E->H projection (E*H + H).
    non_embedding: everything else *as executed*: a layer shared by n
        positions counts n times (what a BERT of this shape would have), plus
        pooler and head.
    total: embedding + non_embedding.
    unique: distinct tensors, shared weights counted once (what is stored).
    """
    n = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    unique = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    if not isinstance(model.base_model, AlbertModel):
        # a BERT-like teacher: nothing is shared
        embedding = n(model.base_model.embeddings)
        return {"total": unique, "embedding": embedding, "non_embedding": unique - embedding, "unique": unique}
    core = _albert_core(model)
    embedding = n(core.embeddings) + n(core.encoder.embedding_hidden_mapping_in)
    cfg = core.config
    per_group = n(core.encoder.albert_layer_groups[0])
    layers_as_run = per_group * cfg.num_hidden_layers
    layers_stored = sum(n(g) for g in core.encoder.albert_layer_groups)
    non_embedding = unique - embedding - layers_stored + layers_as_run
    return {
        "total": embedding + non_embedding,
        "embedding": embedding,
        "non_embedding": non_embedding,
        "unique": unique,
    }


def layer_group_of(model: nn.Module, layer: int) -> nn.Module:
    """The module that runs as (0-based) layer ``layer``, the same object for shared layers."""
    core = _albert_core(model)
    cfg = core.config
    per_group = cfg.num_hidden_layers // cfg.num_hidden_groups
    return core.encoder.albert_layer_groups[layer // per_group]


def _saved_vocab(path: Path) -> dict[str, int] | None:
    """The vocabulary of the tokenizer saved beside a model, or None when there is none."""
    if not any((path / name).is_file() for name in ("tokenizer.json", "vocab.txt", "spiece.model")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path).get_vocab()


# HF ALBERT config key -> the student field that sets it
SHAPE_FIELDS = {"num_hidden_layers": "student.num_layers", "num_attention_heads": "student.num_heads",
                "num_hidden_groups": "student.sharing / student.k", "inner_group_num": "student.sharing",
                "hidden_act": "student.hidden_act"}
TANH_GELU = {"gelu_new", "gelu_pytorch_tanh"}  # one function (TF's gelu), two implementations


def _load_albert(cls, path: str | Path, field: str):
    """``cls.from_pretrained(path)`` (a model or its config), or a one-line error naming ``field``."""
    try:
        return cls.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{field}={path} cannot be loaded as ALBERT ({type(err).__name__}: "
                          f"{(str(err).strip().splitlines() or [''])[0][:120]}); give a Hugging Face ALBERT directory") from None


def saved_settings(path: str | Path, field: str) -> dict:
    """The settings a saved ALBERT body was built with that no student.* field sets: its token-type rows and
    LayerNorm epsilon. A student that starts from it is built with them: a general stage builds its student with its
    own source's (e.g. MiniLM's two token types and 1e-12), which need not be the task teacher's (MPNet's one and
    1e-5)."""
    config = _load_albert(AlbertConfig, path, field)
    return {"type_vocab_size": config.type_vocab_size, "layer_norm_eps": config.layer_norm_eps}


def load_albert_body(student: nn.Module, path: str | Path, vocab: dict[str, int], field: str) -> None:
    """Load a saved ALBERT's body (a general student, a converted pretrained ALBERT) into ``student``; its
    head stays as built. ``vocab``: the teacher tokenizer's token -> id, which a tokenizer saved with ``path``
    must equal (same size is not enough: a permuted vocabulary would load silently). ``field``: the config
    field that named ``path``, for the error."""
    source = _load_albert(AlbertModel, path, field)
    if source.config.vocab_size != len(vocab):
        raise ConfigError(
            f"{field}={path} has a vocabulary of {source.config.vocab_size} but the teacher's tokenizer has {len(vocab)}; "
            "the student must share the teacher's vocabulary (distil it from this teacher, or point the field elsewhere)"
        )
    saved = _saved_vocab(Path(path))
    if saved is not None and saved != vocab:
        token = next(t for t in sorted(set(saved) | set(vocab), key=lambda t: saved.get(t, vocab.get(t))) if saved.get(t) != vocab.get(t))
        raise ConfigError(
            f"{field}={path} has another vocabulary than the teacher's tokenizer (token {token!r} is id {saved.get(token)} there, "
            f"{vocab.get(token)} in the teacher's); the student must share the teacher's vocabulary"
        )
    # settings that change what the weights compute without changing their shapes
    mine = _albert_core(student).config
    for key, fix in SHAPE_FIELDS.items():
        theirs, ours = getattr(source.config, key), getattr(mine, key)
        if theirs != ours and not {theirs, ours} <= TANH_GELU:
            raise ConfigError(f"{field}={path} has {key}={theirs} but the student has "
                              f"{ours}; set {fix} to match it")
    try:
        missing, unexpected = _albert_core(student).load_state_dict(source.state_dict(), strict=False)
    except RuntimeError as err:  # size mismatches
        raise ConfigError(f"{field}={path} does not match the student's shape "
                          f"({str(err).splitlines()[-1].strip()[:120]}); set student.* to its shape") from None
    # the pooler is unused by a mean-pooled head, and absent before the task stage
    bad = [k for k in list(missing) + list(unexpected) if not k.startswith("pooler")]
    if bad:
        raise ConfigError(f"{field}={path} does not match the student's shape ({', '.join(bad[:3])}, ...); "
                          "set student.* to its shape")
