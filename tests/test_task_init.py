"""Task-stage initialisation from the fine-tuned (or pretrained) teacher, and stored teacher logits."""


import pytest
import torch
from transformers import AutoModelForSequenceClassification

from distill.attention import use_score_attention
from distill.checks import check
from distill.config import StudentInit, compose_config
from distill.config import LossWeights
from distill.config import StudentShape
from distill.errors import ConfigError
from distill.families.bert import FAMILY as BERT
from distill.hf import load_model
from distill.layer_map import LayerMap
from distill.objective import Objective
from distill.student import _albert_core, build_student
from distill.student_init import copy_teacher_layers, ffn_importance, initialise
from distill.teacher import FrozenTeacher
from distill.testing import write_tiny_teacher
from distill.stages.task import build_task_student


def teacher_shaped(teacher, **overrides) -> StudentShape:
    c = teacher.config
    shape = dict(num_layers=c.num_hidden_layers, hidden_size=c.hidden_size, embedding_size=c.hidden_size,
                 num_heads=c.num_attention_heads, intermediate_size=c.intermediate_size, sharing="none",
                 hidden_act=c.hidden_act, max_position_embeddings=c.max_position_embeddings)
    shape.update(overrides)
    return StudentShape(**shape)


def test_student_copying_all_teacher_layers_reproduces_the_teachers_logits(tiny_dir, tokenizer, padded_batch):
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_dir).eval()
    student = build_student(teacher_shaped(teacher), tokenizer, num_labels=2).eval()
    init = StudentInit(layers="teacher", source_layers="lowest", embedding="teacher", head="teacher")
    done = initialise(student, teacher, init, LayerMap("uniform", 4, 4), tokenizer)
    assert done["teacher_layers"] == [[1], [2], [3], [4]]
    inputs = {k: v for k, v in padded_batch.items() if k != "labels"}
    with torch.no_grad():
        expected, got = teacher(**inputs).logits, student(**inputs).logits
    assert expected.abs().max() > 1e-3  # a real head, not zeros
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_narrower_ffn_keeps_the_most_important_units(tiny_dir, tokenizer):
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_dir).eval()
    student = build_student(teacher_shaped(teacher, num_layers=2, intermediate_size=10), tokenizer, num_labels=2)
    init = StudentInit(layers="teacher", source_layers=[3, 1])
    assert copy_teacher_layers(student, teacher, init, LayerMap("uniform", 2, 4)) == [[3], [1]]
    source = teacher.base_model.encoder.layer[2]  # student layer 1 <- teacher layer 3
    w_in, w_out = source.intermediate.dense.weight, source.output.dense.weight
    importance = (w_in.norm(dim=1) * w_out.norm(dim=0)).tolist()  # restated: ||row of W_in|| * ||column of W_out||
    keep = sorted(sorted(range(len(importance)), key=lambda j: -importance[j])[:10])
    torch.testing.assert_close(ffn_importance(source, BERT), torch.tensor(importance))
    layer = _albert_core(student).encoder.albert_layer_groups[0].albert_layers[0]
    torch.testing.assert_close(layer.ffn.weight, w_in[keep])
    torch.testing.assert_close(layer.ffn_output.weight, w_out[:, keep])
    torch.testing.assert_close(layer.attention.query.weight, source.attention.self.query.weight)


def test_shared_block_from_the_mean_of_its_members(tiny_dir, tokenizer):
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_dir).eval()
    student = build_student(teacher_shaped(teacher, sharing="every_k", k=2), tokenizer, num_labels=2)
    init = StudentInit(layers="teacher", source_layers="lowest", shared_block="mean")
    assert copy_teacher_layers(student, teacher, init, LayerMap("uniform", 4, 4)) == [[1, 2], [3, 4]]
    t = teacher.base_model.encoder.layer
    block = _albert_core(student).encoder.albert_layer_groups[1].albert_layers[0]
    torch.testing.assert_close(block.attention.key.weight, (t[2].attention.self.key.weight + t[3].attention.self.key.weight) / 2)


def test_stored_logits_give_the_live_teachers_loss(tiny_dir, tokenizer, padded_batch, tmp_path):
    from datasets import Dataset

    from distill.config import LossOptions, PhaseConfig, TrainConfig
    from distill.teacher_cache import INDEX_COLUMN, teacher_for_phases

    teacher = FrozenTeacher(load_model(str(tiny_dir), head="sequence_classification"))
    student = use_score_attention(build_student(StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=4,
                                                             intermediate_size=20, max_position_embeddings=64),
                                                tokenizer, num_labels=2)).eval()
    rows = {k: [ids[m.bool()].tolist() for ids, m in zip(v, padded_batch["attention_mask"])]
            for k, v in padded_batch.items() if k not in ("labels",)}
    rows["labels"] = padded_batch["labels"].tolist()
    phase = PhaseConfig(name="prediction", weights=LossWeights(soft_ce=1.0, hard_ce=1.0))
    ds, chosen, _ = teacher_for_phases([phase], Dataset.from_dict(rows), teacher, "t", None, LossOptions(), TrainConfig(),
                                       tmp_path)
    stand_in = chosen[id(phase)]
    stand_in.fill(ds, tokenizer, batch_size=1)  # one row at a time: each example's logits without the others' padding
    assert stand_in.live_batches == 4 and stand_in.logits.known.all()
    batch = dict(padded_batch, **{INDEX_COLUMN: torch.arange(4)})
    live, live_terms = Objective(student, phase.weights, teacher)(batch)
    stored, _ = Objective(student, phase.weights, stand_in)(batch)
    assert stand_in.stored_batches == 1 and stand_in.live_batches == 4  # read, not run
    torch.testing.assert_close(stored, live, atol=1e-6, rtol=0)
    assert live_terms["soft_ce"] > 0


def test_phase_freeze_leaves_matching_parameters_out_of_the_optimizer(tokenizer):
    import pytest

    from distill.errors import ConfigError
    from distill.config import PhaseConfig
    from distill.trainer import _optimizer

    student = build_student(StudentShape(num_layers=1, hidden_size=16, embedding_size=8, num_heads=4, sharing="all",
                                         intermediate_size=20, max_position_embeddings=64), tokenizer, num_labels=2)
    objective = Objective(student, LossWeights(hard_ce=1.0))
    optimizer = _optimizer(objective, PhaseConfig(freeze=["word_embeddings"]), 0.01)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    word = student.albert.embeddings.word_embeddings.weight
    assert id(word) not in trained and not word.requires_grad
    assert id(student.classifier.weight) in trained
    # the next phase decides again: nothing frozen, everything trains
    optimizer = _optimizer(objective, PhaseConfig(), 0.01)
    assert id(word) in {id(p) for group in optimizer.param_groups for p in group["params"]}
    with pytest.raises(ConfigError, match=r"freeze: \['word_embedings'\] match no parameter"):
        _optimizer(objective, PhaseConfig(freeze=["word_embedings"]), 0.01)


def test_task_student_from_the_pretrained_or_the_finetuned_teacher(tmp_path):
    """stage.init.source: the copied layers, embeddings and pooler come from the named teacher, and the
    student computes with its activation; only the fine-tuned one has a classifier to copy."""
    pretrained, tok = write_tiny_teacher(tmp_path / "pretrained")
    # other random weights, and another activation: the student must follow the model it is copied from
    finetuned, _ = write_tiny_teacher(tmp_path / "finetuned", head="sequence_classification", hidden_act="relu")
    tok.save_pretrained(tmp_path / "finetuned")
    c = pretrained.config

    def config(source, pretrained_dir="pretrained"):
        return compose_config([
            "recipe=fast", f"stage.init.source={source}", f"teacher.name_or_path={tmp_path / pretrained_dir}",
            f"teacher.finetuned={tmp_path / 'finetuned'}", f"student.num_layers={c.num_hidden_layers}",
            f"student.hidden_size={c.hidden_size}", f"student.embedding_size={c.hidden_size}",
            f"student.num_heads={c.num_attention_heads}", f"student.intermediate_size={c.intermediate_size}",
            f"student.hidden_act={c.hidden_act}", f"student.max_position_embeddings={c.max_position_embeddings}"])

    def student_from(source):
        cfg = config(source)
        assert check(cfg).teacher_config.hidden_size == c.hidden_size
        teacher = FrozenTeacher(load_model(str(tmp_path / "finetuned"), head="sequence_classification", trained_head=True))
        layer_map = LayerMap("uniform", c.num_hidden_layers, c.num_hidden_layers)
        return build_task_student(cfg, tok, teacher, layer_map)

    for source, model in (("pretrained", pretrained), ("finetuned", finetuned)):
        student, done = student_from(source)
        assert done["source"] == source and done["teacher"] == str(tmp_path / source)
        assert student.config.hidden_act == model.config.hidden_act != ("gelu" if source == "finetuned" else "relu")
        core = _albert_core(student)
        torch.testing.assert_close(core.encoder.albert_layer_groups[1].albert_layers[0].attention.query.weight,
                                   model.base_model.encoder.layer[1].attention.self.query.weight)
        torch.testing.assert_close(core.embeddings.word_embeddings.weight, model.base_model.embeddings.word_embeddings.weight)
        torch.testing.assert_close(core.pooler.weight, model.base_model.pooler.dense.weight)
        copied = torch.equal(student.classifier.weight, finetuned.classifier.weight)
        assert copied == (source == "finetuned")

    # the copied weights come from the pretrained teacher: the checks read its shape too, before any work
    write_tiny_teacher(tmp_path / "narrow", hidden_size=16)
    with pytest.raises(ConfigError, match=r"student.hidden_size=32 != the teacher's 16"):
        check(config("pretrained", "narrow"))
    check(config("finetuned", "narrow"))  # not read for the student: no problem
