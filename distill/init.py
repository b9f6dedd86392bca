"""Student initialisation: from the teacher's layers, from an SVD of its embeddings, or from an ALBERT.

These save most of general distillation's cost (DistilBERT initialises its
student from every other teacher layer).

BERT -> ALBERT parameter names, per layer:
    attention.self.{query,key,value}  -> attention.{query,key,value}
    attention.output.dense            -> attention.dense
    attention.output.LayerNorm        -> attention.LayerNorm
    intermediate.dense                -> ffn
    output.dense                      -> ffn_output
    output.LayerNorm                  -> full_layer_layer_norm
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AlbertModel

from distill.errors import ConfigError
from distill.layer_map import LayerMap
from distill.student import _albert_core

LAYER_NAMES = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention.dense",
    "attention.output.LayerNorm": "attention.LayerNorm",
    "intermediate.dense": "ffn",
    "output.dense": "ffn_output",
    "output.LayerNorm": "full_layer_layer_norm",
}


@dataclass
class StudentInit:
    # 'random' or 'teacher': copy teacher layer G(m) into student layer m (for a shared group,
    # the layer its first member maps to); needs the teacher's width, FFN size and head count
    layers: str = "random"
    # 'random', 'teacher' (copy the teacher's embeddings; needs embedding_size = teacher width) or
    # 'svd' (best rank-E factorization of the teacher's V x H word embeddings; needs hidden_size = teacher width)
    embedding: str = "random"
    # a pretrained ALBERT directory (Hugging Face format) to start from, e.g. a converted albert_zh
    albert_dir: str | None = None

    def problems(self) -> list[str]:
        out = []
        if self.layers not in ("random", "teacher"):
            out.append(f"stage.init.layers='{self.layers}' is unknown; use random or teacher")
        if self.embedding not in ("random", "teacher", "svd"):
            out.append(f"stage.init.embedding='{self.embedding}' is unknown; use random, teacher or svd")
        return out


def teacher_shape_problems(init: StudentInit, student_cfg, teacher_cfg) -> list[str]:
    """``student_cfg``: a StudentShape; ``teacher_cfg``: the teacher's transformers config."""
    out = []
    if init.layers == "teacher":
        for s_name, t_name in (("hidden_size", "hidden_size"), ("intermediate_size", "intermediate_size"),
                               ("num_heads", "num_attention_heads")):
            if getattr(student_cfg, s_name) != getattr(teacher_cfg, t_name):
                out.append(
                    f"stage.init.layers=teacher copies teacher layers, but student.{s_name}={getattr(student_cfg, s_name)} "
                    f"!= the teacher's {getattr(teacher_cfg, t_name)}; use the teacher's shape or init.layers=random"
                )
    if init.embedding == "teacher" and (student_cfg.embedding_size, student_cfg.hidden_size) != (teacher_cfg.hidden_size,) * 2:
        out.append(
            f"stage.init.embedding=teacher needs student.embedding_size = student.hidden_size = teacher width "
            f"({teacher_cfg.hidden_size}); use init.embedding=svd for a factorized embedding"
        )
    if init.embedding == "svd" and student_cfg.hidden_size != teacher_cfg.hidden_size:
        out.append(
            f"stage.init.embedding=svd needs student.hidden_size = teacher width ({teacher_cfg.hidden_size}), "
            f"got {student_cfg.hidden_size}"
        )
    return out


@torch.no_grad()
def copy_teacher_layers(student: nn.Module, teacher: nn.Module, layer_map: LayerMap) -> list[int]:
    """Copy teacher layer G(m) into each student layer group; return the teacher layer of each group."""
    core = _albert_core(student)
    teacher_layers = teacher.base_model.encoder.layer
    per_group = core.config.num_hidden_layers // core.config.num_hidden_groups
    sources = []
    for g, group in enumerate(core.encoder.albert_layer_groups):
        first_member = g * per_group + 1  # 1-based student layer
        source = teacher_layers[layer_map(first_member) - 1]
        target = group.albert_layers[0]
        for t_name, s_name in LAYER_NAMES.items():
            t_mod, s_mod = source.get_submodule(t_name), target.get_submodule(s_name)
            s_mod.weight.copy_(t_mod.weight)
            s_mod.bias.copy_(t_mod.bias)
        sources.append(layer_map(first_member))
    return sources


@torch.no_grad()
def copy_teacher_embeddings(student: nn.Module, teacher: nn.Module) -> None:
    """E = H = teacher width: the teacher's embeddings and LayerNorm, and an identity E -> H map."""
    s_emb, t_emb = _albert_core(student).embeddings, teacher.base_model.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
        for p_s, p_t in zip(getattr(s_emb, name).parameters(), getattr(t_emb, name).parameters()):
            rows = min(p_s.shape[0], p_t.shape[0])  # position tables may differ in length
            p_s[:rows].copy_(p_t[:rows])
    mapping = _albert_core(student).encoder.embedding_hidden_mapping_in
    mapping.weight.copy_(torch.eye(mapping.weight.shape[0]))
    mapping.bias.zero_()


@torch.no_grad()
def svd_embeddings(student: nn.Module, teacher: nn.Module) -> torch.Tensor:
    """Best rank-E factorization of the teacher's V x H word embeddings (Eckart-Young).

    W_T = U S V^T; student word embeddings = U_E S_E (V x E), E -> H map = V_E^T
    (its Linear weight is V_E, H x E, bias 0), so word_embeddings @ map = the rank-E
    approximation. Position and token-type tables are projected onto the same basis
    (P_T V_E). Returns the singular values.
    """
    core = _albert_core(student)
    t_emb = teacher.base_model.embeddings
    E = core.config.embedding_size
    U, S, Vh = torch.linalg.svd(t_emb.word_embeddings.weight.float(), full_matrices=False)
    basis = Vh[:E].T  # [H, E]
    core.embeddings.word_embeddings.weight.copy_(U[:, :E] * S[:E])
    for name in ("position_embeddings", "token_type_embeddings"):
        s_table, t_table = getattr(core.embeddings, name).weight, getattr(t_emb, name).weight
        rows = min(s_table.shape[0], t_table.shape[0])
        s_table[:rows].copy_(t_table[:rows] @ basis)
    core.encoder.embedding_hidden_mapping_in.weight.copy_(basis)
    core.encoder.embedding_hidden_mapping_in.bias.zero_()
    return S


def load_albert_dir(student: nn.Module, path: str, vocab_size: int) -> None:
    """Start from a pretrained ALBERT directory of the same shape and vocabulary."""
    try:
        source = AlbertModel.from_pretrained(path)
    except Exception as err:
        raise ConfigError(f"stage.init.albert_dir={path} cannot be loaded as ALBERT ({type(err).__name__}); "
                          "give a Hugging Face ALBERT directory") from None
    if source.config.vocab_size != vocab_size:
        raise ConfigError(
            f"stage.init.albert_dir={path} has a vocabulary of {source.config.vocab_size} but the teacher's tokenizer "
            f"has {vocab_size}; the student must share the teacher's vocabulary"
        )
    try:
        missing, unexpected = _albert_core(student).load_state_dict(source.state_dict(), strict=False)
    except RuntimeError as err:  # size mismatches
        raise ConfigError(f"stage.init.albert_dir={path} does not match the student's shape "
                          f"({str(err).splitlines()[-1].strip()[:120]}); set student.* to its shape") from None
    bad = [k for k in list(missing) + list(unexpected) if not k.startswith("pooler")]
    if bad:
        raise ConfigError(f"stage.init.albert_dir={path} does not match the student's shape ({', '.join(bad[:3])}, ...); "
                          "set student.* to its shape")
