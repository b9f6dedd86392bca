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
