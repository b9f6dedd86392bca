"""Every objective term against an independent computation on real tiny-model outputs.

The references below use transformers' own hidden states (eager attention, ``output_hidden_states``),
recompute attention scores from each layer's query/key weights, and write each loss formula out in
plain torch: nothing from ``distill.losses`` or ``distill.attention`` is used to get an expected value.
The batch has several rows of different lengths (padding) and several heads; dropout is off.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

from distill.config import LossOptions, LossWeights
from distill.config import StudentShape
from distill.hf import load_model
from distill.layer_map import LayerMap
from distill.objective import Objective, TokenMasker
from distill.student import build_student
from distill.teacher import FrozenTeacher
from distill.testing import widen_qkv, write_tiny_teacher

MAP = [2, 4]  # student layers 1, 2 learn from teacher layers 2, 4


def eager(model):
    model.set_attn_implementation("eager")
    return model.eval()


def student_for(tokenizer, masked_lm=False):
    torch.manual_seed(3)
    shape = StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=4, intermediate_size=20,
                         sharing="none", max_position_embeddings=64, dropout=0.0)
    return build_student(shape, tokenizer, num_labels=None if masked_lm else 2, masked_lm=masked_lm).eval()


def raw_scores(attention, x, mask, heads):
    """Q K^T / sqrt(d) + additive mask, from a layer's own query/key weights. x: [b, t, h] -> [b, heads, t, t]."""
    b, t, h = x.shape
    d = h // heads
    q = (x @ attention.query.weight.T + attention.query.bias).view(b, t, heads, d).transpose(1, 2)
    k = (x @ attention.key.weight.T + attention.key.bias).view(b, t, heads, d).transpose(1, 2)
    additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    return q @ k.transpose(-1, -2) / math.sqrt(d) + additive


def bert_attention(model, layer):  # 1-based layer
    return model.base_model.encoder.layer[layer - 1].attention.self


def albert_attention(model, layer):  # sharing='none': group i holds layer i
    return model.base_model.encoder.albert_layer_groups[layer - 1].albert_layers[0].attention


def masked_mean_sq(a, b, real):
    """Mean of (a - b)^2 over real tokens and all features; a, b: [b, t, h], real: [b, t]."""
    sq = ((a - b) ** 2).sum(-1)  # [b, t]
    return sq[real].sum() / (real.sum() * a.size(-1))


def reference_terms(objective, student, teacher_model, batch, t_logits=None, s_logits=None, temperature=1.0, t2=False):
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    real = batch["attention_mask"].bool()
    mask = batch["attention_mask"]
    s_out = eager(student)(**inputs, output_hidden_states=True)
    t_out = eager(teacher_model)(**inputs, output_hidden_states=True)
    s_h, t_h = s_out.hidden_states, t_out.hidden_states
    heads = student.config.num_attention_heads
    ref = {}
    # embedding: W_E E_S vs E_T
    w_e = objective.embedding.proj
    ref["embedding"] = masked_mean_sq(s_h[0] @ w_e.weight.T + w_e.bias, t_h[0], real)
    # hidden: sum over mapped layers, one W_h per layer
    ref["hidden"] = sum(masked_mean_sq(s_h[m] @ p.weight.T + p.bias, t_h[g], real)
                        for (m, g), p in zip(enumerate(MAP, start=1), objective.hidden.projs))
    # attention: raw scores, mean over heads x real (query, key) pairs
    valid = (real[:, :, None] & real[:, None, :])[:, None].expand(-1, heads, -1, -1)
    total = 0.0
    for m, g in enumerate(MAP, start=1):
        a_s = raw_scores(albert_attention(student, m), s_h[m - 1], mask, heads)
        a_t = raw_scores(bert_attention(teacher_model, g), t_h[g - 1], mask, teacher_model.config.num_attention_heads)
        total = total + ((a_s - a_t)[valid] ** 2).mean()
    ref["attention"] = total
    # cosine on the last hidden states through W
    w_c = objective.cosine.proj
    cos = F.cosine_similarity(s_h[-1] @ w_c.weight.T + w_c.bias, t_h[-1], dim=-1)
    ref["cosine"] = (1 - cos)[real].mean()
    # soft and hard cross-entropy on the classifier logits
    z_s, z_t = s_out.logits, t_out.logits
    p_t = torch.exp(z_t / temperature) / torch.exp(z_t / temperature).sum(-1, keepdim=True)
    log_p_s = z_s / temperature - torch.logsumexp(z_s / temperature, -1, keepdim=True)
    ref["soft_ce"] = -(p_t * log_p_s).sum(-1).mean() * (temperature**2 if t2 else 1.0)
    y = batch["labels"]
    ref["hard_ce"] = -(z_s - torch.logsumexp(z_s, -1, keepdim=True))[torch.arange(len(y)), y].mean()
    return ref


def sharpen(model):
    """Random tiny classifiers give near-uniform outputs, on which soft CE barely depends on which side is
    which: a wider classifier gives distributions that differ between rows and models."""
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
        model.classifier.bias.add_(torch.tensor([0.5, -0.5]))
    return model


@pytest.fixture
def models(tiny_dir, tokenizer):
    teacher = FrozenTeacher(sharpen(load_model(str(tiny_dir), head="sequence_classification")))
    return teacher, sharpen(student_for(tokenizer))


@pytest.mark.parametrize("temperature,t2", [(1.0, False), (2.0, False), (3.0, True)])
def test_every_term_equals_its_independent_formula(models, tiny_dir, padded_batch, temperature, t2):
    teacher, student = models
    weights = LossWeights(embedding=1.0, hidden=1.0, attention=1.0, soft_ce=1.0, hard_ce=1.0, cosine=1.0)
    objective = Objective(student, weights, teacher, LayerMap(MAP, 2, 4),
                          LossOptions(temperature=temperature, scale_by_t2=t2)).eval()
    with torch.no_grad():
        total, terms = objective(padded_batch)
        reference_teacher = sharpen(AutoModelForSequenceClassification.from_pretrained(tiny_dir))
        expected = reference_terms(objective, student, eager(reference_teacher), padded_batch, temperature=temperature, t2=t2)
        # the batch can tell the sides of soft CE apart: the distributions differ by a clear margin
        z_s, z_t = student(**{k: v for k, v in padded_batch.items() if k != "labels"}).logits, reference_teacher(
            **{k: v for k, v in padded_batch.items() if k != "labels"}).logits
        assert (z_s.softmax(-1) - z_t.softmax(-1)).abs().max() > 0.1
    assert set(terms) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value, atol=1e-5, rtol=1e-5, msg=f"term {name}")
        assert value > 0
    torch.testing.assert_close(total, sum(expected.values()), atol=1e-4, rtol=1e-5)


def test_the_scores_distilled_are_q_k_over_sqrt_d_plus_the_mask(models, padded_batch):
    """Not after softmax (a constant added to a row would hide there): the raw scores, every query row."""
    from distill.attention import intermediates, use_score_attention

    teacher, student = models
    mask = padded_batch["attention_mask"]
    for model, attention_of in ((teacher.model, bert_attention), (use_score_attention(student), albert_attention)):
        got = intermediates(model, padded_batch)
        heads = model.config.num_attention_heads
        for layer in range(1, model.config.num_hidden_layers + 1):
            expected = raw_scores(attention_of(model, layer), got.hidden_states[layer - 1], mask, heads)
            real_keys = mask.bool()[:, None, None, :].expand_as(expected)
            torch.testing.assert_close(got.attention_scores[layer - 1][real_keys], expected[real_keys], atol=1e-5, rtol=1e-5)
            assert (got.attention_scores[layer - 1][~real_keys] < -1e30).all()


def test_masked_lm_terms_read_masked_positions_only(tmp_path, tokenizer, padded_batch):
    """mlm: CE of the student's MLM logits against the original tokens; soft_ce: the teacher's MLM
    distribution; both at the masked positions and nowhere else."""
    teacher_dir = tmp_path / "mlm_teacher"
    torch.manual_seed(5)
    write_tiny_teacher(teacher_dir, head="masked_lm")
    teacher = FrozenTeacher(load_model(str(teacher_dir), head="masked_lm"))
    student = student_for(tokenizer, masked_lm=True)
    masker = TokenMasker(tokenizer, 0.5)
    objective = Objective(student, LossWeights(mlm=1.0, soft_ce=1.0), teacher, None, LossOptions(temperature=2.0),
                          masker).eval()
    torch.manual_seed(11)
    with torch.no_grad():
        _, terms = objective(padded_batch)
    torch.manual_seed(11)  # the same masks again
    masked_batch = masker(dict(padded_batch))
    at = masked_batch["labels"] != -100
    assert 0 < at.sum() < padded_batch["attention_mask"].sum()
    inputs = {k: masked_batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        z_s = eager(student)(**inputs).logits[at]  # [n, vocab]
        z_t = eager(AutoModelForMaskedLM.from_pretrained(teacher_dir))(**inputs).logits[at]
    y = masked_batch["labels"][at]
    mlm = -(z_s - torch.logsumexp(z_s, -1, keepdim=True))[torch.arange(len(y)), y].mean()
    p_t = torch.softmax(z_t / 2.0, -1)
    soft = -(p_t * (z_s / 2.0 - torch.logsumexp(z_s / 2.0, -1, keepdim=True))).sum(-1).mean()
    torch.testing.assert_close(terms["mlm"], mlm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms["soft_ce"], soft, atol=1e-5, rtol=1e-5)


def reference_relation(s_x, t_x, mask, heads):
    """MiniLMv2's relation KL written out with loops: per example, relation head and real query, the teacher's and
    the student's softmax over real keys of x_i . x_j / sqrt(d_a), KL(teacher || student), then the mean."""
    total = 0.0
    for s_proj, t_proj in zip(s_x, t_x):  # Q, K, V
        kls = []
        for b in range(mask.shape[0]):
            n = int(mask[b].sum())  # right padding: the real tokens are the first n
            for a in range(heads):
                rel = []
                for x in (t_proj, s_proj):
                    d = x.shape[-1] // heads
                    xa = x[b, :n, a * d:(a + 1) * d]  # [n, d_a]
                    rel.append(torch.softmax(xa @ xa.T / math.sqrt(d), dim=-1))
                p, q = rel
                kls += [(p[i] * (p[i].log() - q[i].log())).sum() for i in range(n)]
        total = total + torch.stack(kls).mean()
    return total


@pytest.mark.parametrize("sharing,student_layer,teacher_layer", [("none", 2, 4), ("all", 1, 3), ("all", 2, 2)])
def test_relation_equals_its_independent_formula(tiny_dir, tokenizer, padded_batch, sharing, student_layer, teacher_layer):
    """The student's width (16) and head count (4) differ from the teacher's (32, 4 heads) and the relations use 2
    heads; with every layer sharing one block, layer 1's Q/K/V are the block's first call, layer 2's its second."""
    teacher = FrozenTeacher(widen_qkv(load_model(str(tiny_dir), head="sequence_classification")))
    torch.manual_seed(3)
    shape = StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=4, intermediate_size=20,
                         sharing=sharing, max_position_embeddings=64, dropout=0.0)
    student = widen_qkv(build_student(shape, tokenizer, num_labels=2).eval())
    options = LossOptions(relation_heads=2, relation_student_layer=student_layer, relation_teacher_layer=teacher_layer)
    objective = Objective(student, LossWeights(relation=1.0), teacher, None, options).eval()
    assert objective.teacher_depth == (teacher_layer if teacher_layer < 4 else None)  # no layer above it runs
    inputs = {k: v for k, v in padded_batch.items() if k != "labels"}
    with torch.no_grad():
        _, terms = objective(padded_batch)
        s_h = eager(student)(**inputs, output_hidden_states=True).hidden_states
        t_h = eager(widen_qkv(AutoModelForSequenceClassification.from_pretrained(tiny_dir)))(**inputs, output_hidden_states=True).hidden_states
        s_att = student.base_model.encoder.albert_layer_groups[0 if sharing == "all" else student_layer - 1].albert_layers[0].attention
        t_att = bert_attention(teacher.model, teacher_layer)
        # the input of layer m is hidden_states[m - 1]
        s_x = [p(s_h[student_layer - 1]) for p in (s_att.query, s_att.key, s_att.value)]
        t_x = [p(t_h[teacher_layer - 1]) for p in (t_att.query, t_att.key, t_att.value)]
        expected = reference_relation(s_x, t_x, padded_batch["attention_mask"], heads=2)
    assert expected > 0.05
    torch.testing.assert_close(terms["relation"], expected, atol=1e-5, rtol=1e-5)
