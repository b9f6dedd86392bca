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

import copy
import dataclasses
import logging

import torch
from torch import nn

from distill.config import StudentInit
from distill.layer_map import LayerMap
from distill.student import _albert_core, load_albert_body

log = logging.getLogger("distill")

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


def source_teacher_layers(init: StudentInit, layer_map: LayerMap | None, student_layers: int) -> list[int]:
    """The teacher layer (1-based) each student layer starts from (``stage.init.source_layers``)."""
    if init.source_layers == "map":
        return [layer_map(m) for m in range(1, student_layers + 1)]
    if init.source_layers == "lowest":
        return list(range(1, student_layers + 1))
    return [int(x) for x in init.source_layers]


def student_shape(init: StudentInit, shape, teacher_cfg):
    """The shape to build: copied layers compute what the teacher's did only with the teacher's activation."""
    if init.layers == "teacher" and shape.hidden_act != teacher_cfg.hidden_act:
        return dataclasses.replace(shape, hidden_act=teacher_cfg.hidden_act)
    return shape


def ffn_importance(layer: nn.Module) -> torch.Tensor:
    """Importance of each FFN unit j of a BERT layer: ||W_in[j, :]|| * ||W_out[:, j]|| (how much it can
    move the residual stream), [intermediate_size]. Cheap and data-free."""
    return layer.intermediate.dense.weight.norm(dim=1) * layer.output.dense.weight.norm(dim=0)


@torch.no_grad()
def copy_teacher_layers(student: nn.Module, teacher: nn.Module, init: StudentInit, layer_map: LayerMap) -> list[list[int]]:
    """Copy teacher layers into each student layer group; return the teacher layers behind each group.

    A group shared by several student layers takes its first member's teacher layer, or the mean of
    its members' layers (``init.shared_block``). A narrower student FFN keeps the teacher's units of
    highest ``ffn_importance`` (of the averaged layer), in their original order."""
    core = _albert_core(student)
    teacher_layers = teacher.base_model.encoder.layer
    per_group = core.config.num_hidden_layers // core.config.num_hidden_groups
    wanted = source_teacher_layers(init, layer_map, core.config.num_hidden_layers)
    sources = []
    for g, group in enumerate(core.encoder.albert_layer_groups):
        members = wanted[g * per_group:(g + 1) * per_group]
        chosen = members[:1] if init.shared_block == "first" else members
        source = copy.deepcopy(teacher_layers[chosen[0] - 1])
        for name, param in source.named_parameters():
            param.copy_(torch.stack([teacher_layers[t - 1].get_parameter(name) for t in chosen]).mean(0))
        keep = ffn_importance(source).argsort(descending=True)[: core.config.intermediate_size].sort().values
        target = group.albert_layers[0]
        for t_name, s_name in LAYER_NAMES.items():
            t_mod, s_mod = source.get_submodule(t_name), target.get_submodule(s_name)
            weight, bias = t_mod.weight, t_mod.bias
            if t_name == "intermediate.dense":
                weight, bias = weight[keep], bias[keep]
            elif t_name == "output.dense":
                weight = weight[:, keep]
            s_mod.weight.copy_(weight)
            s_mod.bias.copy_(bias)
        sources.append(chosen)
    return sources


@torch.no_grad()
def copy_teacher_head(student: nn.Module, teacher: nn.Module) -> None:
    """The teacher's pooler (dense + tanh, when the student pools by [CLS]) and, when it has one (a
    fine-tuned teacher), its classifier."""
    core = _albert_core(student)
    if core.pooler is not None and getattr(teacher.base_model, "pooler", None) is not None:
        core.pooler.load_state_dict(teacher.base_model.pooler.dense.state_dict())
    if hasattr(teacher, "classifier"):
        student.classifier.load_state_dict(teacher.classifier.state_dict())


def initialise(student: nn.Module, teacher: nn.Module, init: StudentInit, layer_map: LayerMap, vocab: dict[str, int]) -> dict:
    """Apply ``init`` to a freshly built student (``vocab``: the teacher tokenizer's); return what was done, for metrics.json."""
    done = {}
    if init.albert_dir:
        load_albert_body(student, init.albert_dir, vocab, field="stage.init.albert_dir")
        done["albert_dir"] = init.albert_dir
    if init.layers == "teacher":
        done["teacher_layers"] = copy_teacher_layers(student, teacher, init, layer_map)
        log.info("student layer groups initialised from teacher layers %s", done["teacher_layers"])
    if init.embedding == "teacher":
        copy_teacher_embeddings(student, teacher)
    elif init.embedding == "svd":
        svd_embeddings(student, teacher)
    done["embedding"] = init.embedding
    if init.head == "teacher":
        copy_teacher_head(student, teacher)
    done["head"] = init.head
    return done


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
