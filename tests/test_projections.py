"""W_E / W_h of a student narrower than its teacher go from phase to phase and from stage to stage."""

import torch

from distill.config import LossOptions, LossWeights, StudentShape
from distill.hf import load_model
from distill.layer_map import LayerMap
from distill.objective import Objective
from distill.projections import FILE, ProjectionCarry, projection_state
from distill.student import build_student
from distill.teacher import FrozenTeacher

INTERMEDIATE = LossWeights(embedding=1.0, hidden=1.0, attention=1.0)
PREDICTION = LossWeights(soft_ce=1.0, hard_ce=1.0)


def student_and_teacher(tiny_dir, tokenizer):
    torch.manual_seed(3)
    shape = StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=4, intermediate_size=20,
                         sharing="none", max_position_embeddings=64)
    student = build_student(shape, tokenizer, num_labels=2)  # width 16 against the teacher's 32
    return student, FrozenTeacher(load_model(str(tiny_dir), head="sequence_classification"))


def test_projections_go_from_phase_to_phase_past_a_phase_without_them(tiny_dir, tokenizer):
    student, teacher = student_and_teacher(tiny_dir, tokenizer)
    layer_map = LayerMap([2, 4], 2, 4)
    build = lambda weights, options=None: Objective(student, weights, teacher, layer_map, options)  # noqa: E731
    carry = ProjectionCarry()
    first = carry.adopt(build(INTERMEDIATE))
    names = set(projection_state(first))
    assert names == {"embedding.proj.weight", "embedding.proj.bias", "hidden.projs.0.weight", "hidden.projs.0.bias",
                     "hidden.projs.1.weight", "hidden.projs.1.bias"}
    with torch.no_grad():  # what a phase of training does to them
        for p in first.projection_parameters():
            p.add_(torch.randn_like(p))
    trained = {k: v.clone() for k, v in projection_state(first).items()}
    assert projection_state(carry.adopt(build(PREDICTION))) == {}  # logits only: nothing to carry
    third = carry.adopt(build(INTERMEDIATE))
    for name in names:
        torch.testing.assert_close(projection_state(third)[name], trained[name], rtol=0, atol=0)
    fresh = build(INTERMEDIATE)  # without the carry: a new random W
    assert not torch.equal(projection_state(fresh)["hidden.projs.0.weight"], trained["hidden.projs.0.weight"])
    # one W for every layer (a different shape of the term): the names that exist with the same shape load
    shared = carry.adopt(build(INTERMEDIATE, LossOptions(shared_hidden_projection=True)))
    assert set(projection_state(shared)) == names - {"hidden.projs.1.weight", "hidden.projs.1.bias"}
    torch.testing.assert_close(projection_state(shared)["hidden.projs.0.weight"], trained["hidden.projs.0.weight"])


def test_projections_saved_beside_the_student_start_the_next_stage(tiny_dir, tokenizer, tmp_path):
    student, teacher = student_and_teacher(tiny_dir, tokenizer)
    layer_map = LayerMap([2, 4], 2, 4)
    carry = ProjectionCarry()
    general = carry.adopt(Objective(student, INTERMEDIATE, teacher, layer_map))
    carry.save(tmp_path)
    loaded = ProjectionCarry.load(tmp_path)
    assert loaded.source == str(tmp_path / FILE)
    task = loaded.adopt(Objective(student, INTERMEDIATE, teacher, layer_map))
    for name, value in projection_state(general).items():
        torch.testing.assert_close(projection_state(task)[name], value, rtol=0, atol=0)
    # a student at the teacher's width has identity projections: no file, nothing loaded
    empty = tmp_path / "wide"
    empty.mkdir()
    ProjectionCarry().save(empty)
    assert not (empty / FILE).exists() and ProjectionCarry.load(empty).state == {}


def test_initial_balance_starts_every_layer_term_at_its_weight_and_resumes_with_the_same_factors(
        tiny_dir, tokenizer, padded_batch):
    student, teacher = student_and_teacher(tiny_dir, tokenizer)
    layer_map = LayerMap([2, 4], 2, 4)
    weights = LossWeights(embedding=1.0, hidden=2.0, attention=0.5, soft_ce=1.0)
    objective = Objective(student.eval(), weights, teacher, layer_map, LossOptions(balance="initial"))
    total, terms = objective(padded_batch)
    raw = [terms[n].item() for n in ("embedding", "hidden", "attention")]
    assert max(raw) > 10 * min(raw)  # unbalanced, the terms differ in scale
    # each layer term enters at its weight (1 + 2 + 0.5); soft CE, not a layer term, at its own value
    torch.testing.assert_close(total, 3.5 + terms["soft_ce"])
    total.backward()  # the factors are constants, written on the device without breaking the graph
    factors = objective.balance.clone()
    second = {k: v[1:] for k, v in padded_batch.items()}
    total2, terms2 = objective(second)
    torch.testing.assert_close(objective.balance, factors)  # measured once, on the first batch
    expected = sum(w * terms2[n] / terms[n] for n, w in (("embedding", 1.0), ("hidden", 2.0), ("attention", 0.5)))
    torch.testing.assert_close(total2, expected + terms2["soft_ce"])
    resumed = Objective(student, weights, teacher, layer_map, LossOptions(balance="initial"))
    resumed.load_state_dict(objective.state_dict())  # a checkpoint holds the factors
    torch.testing.assert_close(resumed(second)[0], total2)
    plain = Objective(student, weights, teacher, layer_map)
    assert "balance" not in plain.state_dict()  # checkpoints of unbalanced runs are unchanged
