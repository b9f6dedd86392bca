"""Google ALBERT and brightmart albert_zh TensorFlow checkpoints -> a Hugging Face ALBERT directory.

``python -m distill convert albert-tf <checkpoint> <output dir> [--config F] [--vocab F]``

transformers 5 no longer reads TensorFlow checkpoints; this does, without TensorFlow
(``distill.tf_checkpoint``). The output (config.json, model.safetensors, BertTokenizer files, README.md)
loads with ``AutoModel`` / ``AutoTokenizer`` and is what ``stage.init.albert_dir`` takes.

Two layouts, told apart by variable names (sources: google-research/albert and brightmart/albert_zh,
``modeling.py``; ``L.`` = ``encoder.albert_layer_groups.{g}.albert_layers.{i}.``, T = kernel transposed):

=====================================================  ============================================  =================================
Google (``bert/encoder/transformer/group_g/inner_group_i/``)  brightmart (``bert/encoder/layer_shared/``)   HF
=====================================================  ============================================  =================================
``attention_1/self/{query,key,value}``                 ``attention/self/{query,key,value}``          ``L.attention.{query,key,value}`` T
``attention_1/output/dense``                           ``attention/output/dense``                    ``L.attention.dense`` T
``LayerNorm``                                          ``attention/output/LayerNorm``                ``L.attention.LayerNorm``
``ffn_1/intermediate/dense``                           ``intermediate/dense``                        ``L.ffn`` T
``ffn_1/intermediate/output/dense``                    ``output/dense``                              ``L.ffn_output`` T
``LayerNorm_1``                                        ``output/LayerNorm``                          ``L.full_layer_layer_norm``
=====================================================  ============================================  =================================

Plus ``bert/embeddings/*``, ``bert/encoder/embedding_hidden_mapping_in`` (T), ``bert/pooler/dense`` (T),
``cls/predictions/{transform/dense (T), transform/LayerNorm, output_bias}`` and
``cls/seq_relationship/output_{weights,bias}`` (already [2, H]), the same names in both layouts.

- brightmart factorises differently: ``word_embeddings`` [V,E] then ``word_embeddings_2`` [E,H] *before*
  position and token-type embeddings and LayerNorm, which therefore have width H. HF ALBERT normalises in
  E-space, so the exact conversion folds the factorisation: ``embedding_size = H``, word embeddings W @ P,
  ``embedding_hidden_mapping_in`` the identity. The model card says so.
- Google numbers groups as ``int(layer / L * num_hidden_groups)``; configs whose groups are not all used
  (``*_google_fast``: 12 groups, 4 layers -> groups 0/3/6/9) are renumbered when HF's assignment
  ``int(layer / (L / groups))`` gives the same sharing, else refused.
- TF's ``gelu`` is the tanh approximation: HF ``gelu_new``. ``ln_type: preln`` (brightmart's xlarge and
  xxlarge) has no HF ALBERT equivalent (post-LN only) and is refused. Optimizer slots (``adam_m``,
  ``adam_v``) and ``global_step`` are skipped; any other variable the mapping does not consume, a shape
  that does not fit, or a vocabulary that does not match is a one-line error, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AlbertConfig, AlbertForMaskedLM, AlbertForPreTraining, AlbertModel

from distill.errors import ConfigError
from distill.files import building_dir, write_text
from distill.tf_checkpoint import Checkpoint, find_prefix
from distill.vocab import save_wordpiece

SKIPPED = re.compile(r"(^|/)(adam_m|adam_v|global_step)$")
ACTIVATIONS = {"gelu": "gelu_new", "relu": "relu", "tanh": "tanh", "linear": "linear"}
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# per-layer sublayers: (Google scope, brightmart scope, HF module under L., kind)
LAYER_PARTS = [
    ("attention_1/self/query", "attention/self/query", "attention.query", "dense"),
    ("attention_1/self/key", "attention/self/key", "attention.key", "dense"),
    ("attention_1/self/value", "attention/self/value", "attention.value", "dense"),
    ("attention_1/output/dense", "attention/output/dense", "attention.dense", "dense"),
    ("LayerNorm", "attention/output/LayerNorm", "attention.LayerNorm", "norm"),
    ("ffn_1/intermediate/dense", "intermediate/dense", "ffn", "dense"),
    ("ffn_1/intermediate/output/dense", "output/dense", "ffn_output", "dense"),
    ("LayerNorm_1", "output/LayerNorm", "full_layer_layer_norm", "norm"),
]
EMBEDDINGS = [("bert/embeddings/position_embeddings", "embeddings.position_embeddings", "param"),
              ("bert/embeddings/token_type_embeddings", "embeddings.token_type_embeddings", "param"),
              ("bert/embeddings/LayerNorm", "embeddings.LayerNorm", "norm")]
POOLER = [("bert/pooler/dense", "pooler", "dense")]
MLM_HEAD = [("cls/predictions/transform/dense", "predictions.dense", "dense"),
            ("cls/predictions/transform/LayerNorm", "predictions.LayerNorm", "norm"),
            ("cls/predictions/output_bias", "predictions.bias", "bias")]
SOP_HEAD = [("cls/seq_relationship/output_weights", "sop_classifier.classifier.weight", "weight"),
            ("cls/seq_relationship/output_bias", "sop_classifier.classifier.bias", "bias")]
# kind -> (TF variable suffix, HF parameter suffix, transpose)
KINDS = {"dense": [("/kernel", ".weight", True), ("/bias", ".bias", False)],
         "norm": [("/gamma", ".weight", False), ("/beta", ".bias", False)],
         "param": [("", ".weight", False)], "bias": [("", "", False)], "weight": [("", "", False)]}


@dataclass
class Plan:
    """What the conversion will write: the HF config and, per HF parameter, its TF source."""

    layout: str
    config: dict
    sources: dict[str, tuple[str, bool]] = field(default_factory=dict)  # HF name -> (TF name, transpose)
    notes: list[str] = field(default_factory=list)

    def add(self, tf_scope: str, hf_module: str, kind: str) -> None:
        for tf_suffix, hf_suffix, transpose in KINDS[kind]:
            self.sources[hf_module + hf_suffix] = (tf_scope + tf_suffix, transpose)


def read_tf_config(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"--config {path} cannot be read as JSON ({err}); give the albert_config*.json the checkpoint came with") from None
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size") if k not in cfg]
    if missing:
        raise ConfigError(f"--config {path} lacks {', '.join(missing)}; give the albert_config*.json the checkpoint came with")
    if cfg.get("ln_type", "postln") not in ("postln", None):
        raise ConfigError(f"--config {path}: ln_type={cfg['ln_type']} (pre-LayerNorm) cannot be represented by Hugging Face "
                          "ALBERT, which is post-LN only; only post-LN checkpoints (albert_zh tiny/base/large, Google ALBERT) convert")
    if cfg.get("hidden_act", "gelu") not in ACTIVATIONS:
        raise ConfigError(f"--config {path}: hidden_act={cfg['hidden_act']} is not one of {', '.join(ACTIVATIONS)}")
    return cfg


def _find_one(directory: Path, patterns: tuple[str, ...], what: str, flag: str) -> Path:
    for pattern in patterns:
        found = sorted(directory.glob(pattern))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(f"{directory} has several {what} files ({', '.join(p.name for p in found)}); choose one with {flag}")
    raise ConfigError(f"{directory} has no {what} file ({' or '.join(patterns)}); give it with {flag}")


def plan_conversion(names: set[str], cfg: dict) -> Plan:
    """Detect the layout from the variable names and map every HF parameter to its TF variable."""
    layers, heads = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    hf = dict(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], num_hidden_layers=layers,
              num_attention_heads=heads, intermediate_size=cfg["intermediate_size"],
              hidden_act=ACTIVATIONS[cfg.get("hidden_act", "gelu")],
              max_position_embeddings=cfg.get("max_position_embeddings", 512), type_vocab_size=cfg.get("type_vocab_size", 2),
              initializer_range=cfg.get("initializer_range", 0.02), layer_norm_eps=1e-12,
              hidden_dropout_prob=cfg.get("hidden_dropout_prob", 0.0),
              attention_probs_dropout_prob=cfg.get("attention_probs_dropout_prob", 0.0))
    google = {(int(g), int(i)) for n in names if (m := re.match(r"bert/encoder/transformer/group_(\d+)/inner_group_(\d+)/", n))
              for g, i in [m.groups()]}
    if google:
        groups = sorted({g for g, _ in google})
        inner = cfg.get("inner_group_num", 1)
        tf_groups = cfg.get("num_hidden_groups", 1)
        for layer in range(layers):  # HF must share the layers TF shared
            tf_group = int(layer / layers * tf_groups)
            hf_group = int(layer / (layers / len(groups)))
            if tf_group not in groups or groups.index(tf_group) != hf_group:
                raise ConfigError(f"layer {layer} uses TF group {tf_group}, which HF ALBERT with {len(groups)} groups cannot "
                                  f"reproduce (checkpoint groups: {groups}); check --config's num_hidden_groups")
        plan = Plan("google", {**hf, "embedding_size": cfg.get("embedding_size", cfg["hidden_size"]),
                               "num_hidden_groups": len(groups), "inner_group_num": inner})
        if groups != list(range(len(groups))):
            plan.notes.append(f"TF groups {groups} (of num_hidden_groups={tf_groups}) renumbered 0..{len(groups) - 1}")
        for hf_g, tf_g in enumerate(groups):
            for i in range(inner):
                for google_scope, _, hf_module, kind in LAYER_PARTS:
                    plan.add(f"bert/encoder/transformer/group_{tf_g}/inner_group_{i}/{google_scope}",
                             f"encoder.albert_layer_groups.{hf_g}.albert_layers.{i}.{hf_module}", kind)
        if plan.config["embedding_size"] != cfg["hidden_size"] or "bert/encoder/embedding_hidden_mapping_in/kernel" in names:
            plan.add("bert/encoder/embedding_hidden_mapping_in", "encoder.embedding_hidden_mapping_in", "dense")
    elif "bert/embeddings/word_embeddings_2" in names:
        shared = any(n.startswith("bert/encoder/layer_shared/") for n in names)
        plan = Plan("brightmart", {**hf, "embedding_size": cfg["hidden_size"], "num_hidden_groups": 1 if shared else layers,
                                   "inner_group_num": 1})
        plan.notes.append(f"factorised embeddings folded: word_embeddings [V,{cfg.get('embedding_size', '?')}] @ word_embeddings_2 "
                          f"-> [V,{cfg['hidden_size']}], embedding_size = hidden_size, embedding_hidden_mapping_in = identity "
                          "(exact: brightmart projects before the position embeddings and LayerNorm)")
        for g in range(1 if shared else layers):
            scope = "layer_shared" if shared else f"layer_{g}"
            for _, bright_scope, hf_module, kind in LAYER_PARTS:
                plan.add(f"bert/encoder/{scope}/{bright_scope}", f"encoder.albert_layer_groups.{g}.albert_layers.0.{hf_module}", kind)
    else:
        raise ConfigError("the checkpoint is neither Google ALBERT (bert/encoder/transformer/group_*) nor albert_zh "
                          "(bert/embeddings/word_embeddings_2); it does not look like an ALBERT checkpoint")
    plan.add("bert/embeddings/word_embeddings", "embeddings.word_embeddings", "param")  # folded for brightmart (build_model)
    for tf_scope, hf_module, kind in EMBEDDINGS + POOLER:
        plan.add(tf_scope, hf_module, kind)
    if "cls/predictions/output_bias" in names:
        for tf_scope, hf_module, kind in MLM_HEAD:
            plan.add(tf_scope, hf_module, kind)
    if "cls/seq_relationship/output_weights" in names:
        if "cls/predictions/output_bias" not in names:
            raise ConfigError("the checkpoint has a sentence-order head (cls/seq_relationship) but no masked-LM head; "
                              "Hugging Face ALBERT cannot hold one without the other")
        for tf_scope, hf_module, kind in SOP_HEAD:
            plan.add(tf_scope, hf_module, kind)
    return plan


def _model_class(plan: Plan):
    if "sop_classifier.classifier.weight" in plan.sources:
        return AlbertForPreTraining
    return AlbertForMaskedLM if "predictions.bias" in plan.sources else AlbertModel


def build_model(ckpt: Checkpoint, plan: Plan):
    """The HF model holding the checkpoint's weights; a one-line error for any mismatch."""
    names = {n for n in ckpt.entries if not SKIPPED.search(n)}
    stray = sorted(names - {tf for tf, _ in plan.sources.values()} - {"bert/embeddings/word_embeddings_2"})
    if stray:
        raise ConfigError(f"{ckpt.prefix}: unknown variable {stray[0]} ({len(stray)} in all) is not part of ALBERT's encoder, "
                          f"MLM or sentence-order head ({plan.layout} layout); this converter maps pre-training checkpoints only")
    model = _model_class(plan)(AlbertConfig(**plan.config))
    prefix = "" if type(model).__name__ == "AlbertModel" else "albert."
    state = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for hf_name, (tf_name, transpose) in plan.sources.items():
        if tf_name not in ckpt.entries:
            raise ConfigError(f"{ckpt.prefix}: variable {tf_name} is missing ({plan.layout} layout, needed for {hf_name}); "
                              "check that --config matches the checkpoint")
        value = ckpt.read(tf_name).astype(np.float32)
        if plan.layout == "brightmart" and tf_name == "bert/embeddings/word_embeddings":
            value = (value.astype(np.float64) @ ckpt.read("bert/embeddings/word_embeddings_2").astype(np.float64)).astype(np.float32)
        value = value.T if transpose else value
        key = hf_name if hf_name.startswith(("predictions.", "sop_classifier.")) else prefix + hf_name
        if tuple(state[key].shape) != value.shape:
            raise ConfigError(f"{ckpt.prefix}: variable {tf_name} has shape {list(ckpt.entries[tf_name].shape)} but the config "
                              f"makes {hf_name} {list(state[key].shape)}{' (transposed)' if transpose else ''}; give the config the checkpoint came with")
        loaded[key] = torch.from_numpy(np.ascontiguousarray(value))
    mapping = prefix + "encoder.embedding_hidden_mapping_in"
    if f"{mapping}.weight" not in loaded:  # E == H and no mapping stored: the identity is exact
        loaded[f"{mapping}.weight"] = torch.eye(plan.config["hidden_size"])
        loaded[f"{mapping}.bias"] = torch.zeros(plan.config["hidden_size"])
    if "predictions.bias" in loaded:
        loaded["predictions.decoder.bias"] = loaded["predictions.bias"]
        loaded["predictions.decoder.weight"] = loaded[prefix + "embeddings.word_embeddings.weight"]
    missing = sorted(set(state) - set(loaded))
    if missing:
        raise ConfigError(f"nothing in the checkpoint fills {missing[0]}; this is a bug in the {plan.layout} mapping")
    model.load_state_dict(loaded, strict=True)
    return model.eval()


def read_vocab(path: Path, vocab_size: int) -> list[str]:
    tokens = path.read_text(encoding="utf-8").split("\n")
    tokens = tokens[:-1] if tokens and tokens[-1] == "" else tokens
    if len(tokens) != vocab_size:
        raise ConfigError(f"--vocab {path} has {len(tokens)} tokens but the config's vocab_size is {vocab_size}; "
                          "give the vocab.txt the checkpoint was trained with")
    lacking = [t for t in SPECIAL_TOKENS if t not in tokens]
    if lacking:
        raise ConfigError(f"--vocab {path} lacks {', '.join(lacking)}: it is not a WordPiece vocab.txt (albert_zh's, or Google's "
                          "vocab_chinese.txt); sentencepiece ALBERT vocabularies are not converted here")
    return tokens


def model_card(plan: Plan, prefix: Path, config_path: Path, vocab_path: Path) -> str:
    lines = [
        "# ALBERT converted from a TensorFlow checkpoint",
        "",
        f"- Source checkpoint: `{prefix}` ({plan.layout} layout), config `{config_path.name}`, vocabulary `{vocab_path.name}`.",
        "- Converted by `python -m distill convert albert-tf` (distill.albert_tf), without TensorFlow.",
        f"- Architecture: {plan.config['num_hidden_layers']} layers, hidden {plan.config['hidden_size']}, embedding "
        f"{plan.config['embedding_size']}, {plan.config['num_hidden_groups']} parameter group(s) x {plan.config['inner_group_num']} "
        f"inner, activation `{plan.config['hidden_act']}` (TF's tanh-approximated gelu is `gelu_new`).",
        "- Tokenizer: BertTokenizer from the checkpoint's WordPiece vocab.txt, lower-cased, CJK characters split.",
        *[f"- {note}." for note in plan.notes],
        "- Exact: the model computes what the TF model computes; each parameter is its TF variable (kernels transposed"
        f"{'; word embeddings the product above' if plan.layout == 'brightmart' else ''}); optimizer slots and global_step were dropped.",
        "- Licence: that of the source checkpoint.",
    ]
    return "\n".join(lines) + "\n"


def convert(checkpoint: str | Path, output: str | Path, config: str | Path | None = None, vocab: str | Path | None = None) -> Path:
    """Convert a TF ALBERT checkpoint into a Hugging Face directory at ``output``; every check runs before
    anything is written, and the directory appears whole or not at all."""
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise ConfigError(f"{output} already exists and is not empty; give a new output directory (nothing was overwritten)")
    prefix = find_prefix(checkpoint)
    config_path = Path(config) if config else _find_one(prefix.parent, ("albert_config*.json", "*config*.json"), "config", "--config")
    vocab_path = Path(vocab) if vocab else _find_one(prefix.parent, ("vocab.txt", "vocab_chinese.txt", "vocab*.txt"), "vocab", "--vocab")
    if not vocab_path.is_file():
        raise ConfigError(f"--vocab {vocab_path} does not exist; give the vocab.txt the checkpoint was trained with")
    cfg = read_tf_config(config_path)
    tokens = read_vocab(vocab_path, cfg["vocab_size"])
    ckpt = Checkpoint(prefix)
    plan = plan_conversion(set(ckpt.entries), cfg)
    plan.config.update(pad_token_id=tokens.index("[PAD]"), bos_token_id=tokens.index("[CLS]"), eos_token_id=tokens.index("[SEP]"),
                       tokenizer_class="BertTokenizer")
    model = build_model(ckpt, plan)
    with building_dir(output) as work:
        model.save_pretrained(work)
        save_wordpiece(tokens, work)
        write_text(work / "README.md", model_card(plan, prefix, config_path, vocab_path))
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill convert albert-tf", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint directory (its `checkpoint` file or single *.index), prefix, or .index file")
    parser.add_argument("output", help="new directory for the Hugging Face model")
    parser.add_argument("--config", help="the TF config JSON (default: the one albert_config*.json / *config*.json beside it)")
    parser.add_argument("--vocab", help="WordPiece vocab.txt (default: vocab.txt / vocab_chinese.txt beside it)")
    args = parser.parse_args(argv)
    out = convert(args.checkpoint, args.output, args.config, args.vocab)
    print(f"wrote {out}")
    print("\n".join(line for line in (out / "README.md").read_text().splitlines() if line.startswith("- ")))
    return 0
