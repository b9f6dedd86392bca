"""The teacher is frozen for real, and the objective trains exactly student + projections."""

import torch

from distill.config import LossOptions, LossWeights
from distill.config import StudentShape
from distill.hf import load_model
from distill.layer_map import LayerMap
from distill.objective import Objective
from distill.student import build_student
from distill.teacher import FrozenTeacher

ALL_TERMS = LossWeights(embedding=1, hidden=1, attention=1, soft_ce=1, hard_ce=1, cosine=1)


def _setup(tiny_dir, tokenizer, weights=ALL_TERMS, options=None, num_heads=4):
    teacher = FrozenTeacher(load_model(str(tiny_dir), head="sequence_classification"))
    shape = StudentShape(num_layers=2, hidden_size=24, embedding_size=8, num_heads=num_heads, intermediate_size=30, sharing="all")
    student = load_model_free_student(shape, tokenizer)
    layer_map = LayerMap("uniform", 2, teacher.config.num_hidden_layers)
    return teacher, student, Objective(student, weights, teacher, layer_map, options)


def load_model_free_student(shape, tokenizer):
    from distill.attention import use_score_attention

    return use_score_attention(build_student(shape, tokenizer, num_labels=2))


def test_teacher_is_frozen_four_ways(tiny_dir, tokenizer, padded_batch):
    teacher, student, objective = _setup(tiny_dir, tokenizer)
    # 1. eval mode, and it stays there when the objective (or anyone) calls train()
    objective.train()
    teacher.model.train()
    assert not teacher.model.training and not any(m.training for m in teacher.model.modules())
    # dropout really is off: two forwards agree exactly
    a, b = teacher(padded_batch), teacher(padded_batch)
    assert torch.equal(a.logits, b.logits)
    # 2. no parameter wants a gradient
    assert not any(p.requires_grad for p in teacher.model.parameters())
    # 3. the forward runs under no_grad: nothing it returns is part of a graph
    assert not a.logits.requires_grad and not any(h.requires_grad for h in a.hidden_states)
    # 4. never in the optimizer, nor in the objective's parameters or state
    teacher_ids = {id(p) for p in teacher.model.parameters()}
    optimizer = torch.optim.AdamW(objective.parameters())
    assert not teacher_ids & {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not any(k.startswith("teacher") for k in objective.state_dict())


def test_one_step_gives_gradients_to_student_and_projections_only(tiny_dir, tokenizer, padded_batch):
    teacher, student, objective = _setup(tiny_dir, tokenizer)
    loss, terms = objective(padded_batch)
    assert set(terms) == {"embedding", "hidden", "attention", "soft_ce", "hard_ce", "cosine"}
    assert all(torch.isfinite(v) for v in terms.values())
    loss.backward()
    for name, p in objective.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in teacher.model.parameters())
    # widths differ (24 -> 32): 2 hidden projections, 1 embedding, 1 cosine; weight + bias each
    assert len(objective.projection_parameters()) == 4 * 2


def test_weighted_sum_matches_terms(tiny_dir, tokenizer, padded_batch):
    weights = LossWeights(hidden=2.0, attention=0.5, soft_ce=3.0)
    _, _, objective = _setup(tiny_dir, tokenizer, weights)
    objective.eval()
    loss, terms = objective(padded_batch)
    assert set(terms) == {"hidden", "attention", "soft_ce"}
    torch.testing.assert_close(loss, 2 * terms["hidden"] + 0.5 * terms["attention"] + 3 * terms["soft_ce"])


def test_tinybert_compat_matches_hand_formula(tiny_dir, tokenizer, padded_batch):
    weights = LossWeights(embedding=1, hidden=1, attention=1)
    teacher, student, objective = _setup(tiny_dir, tokenizer, weights, LossOptions(tinybert_compat=True))
    objective.eval()
    _, terms = objective(padded_batch)
    assert len(objective.hidden.projs) == 1 and objective.embedding.proj is objective.hidden.projs[0]
    # TinyBERT's loss, written out: one W for layers 0..L, no padding mask; scores <= -100 -> 0, MSE over all
    from distill.attention import intermediates

    s, t = intermediates(student, padded_batch), teacher(padded_batch)
    W = objective.hidden.projs[0]
    G = [0, 2, 4]
    rep = sum(((W(s.hidden_states[m]) - t.hidden_states[G[m]]) ** 2).mean() for m in range(3))
    att = 0
    for m in (1, 2):
        a_s, a_t = s.attention_scores[m - 1], t.attention_scores[G[m] - 1]
        a_s = torch.where(a_s <= -100, torch.zeros_like(a_s), a_s)
        a_t = torch.where(a_t <= -100, torch.zeros_like(a_t), a_t)
        att = att + ((a_s - a_t) ** 2).mean()
    torch.testing.assert_close(terms["embedding"] + terms["hidden"], rep)
    torch.testing.assert_close(terms["attention"], att)
