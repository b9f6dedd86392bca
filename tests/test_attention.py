"""Parity: the score-capturing attention changes nothing the model computes."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from distill.attention import SCORES_ATTENTION, intermediates, use_score_attention
from distill.config import StudentShape
from distill.student import build_student


def _eager(model):
    model.set_attn_implementation("eager")
    return model.eval()


@pytest.fixture(params=["bert_teacher", "albert_student"])
def model(request, tiny_dir, tokenizer):
    if request.param == "bert_teacher":
        return _eager(AutoModelForSequenceClassification.from_pretrained(tiny_dir))
    shape = StudentShape(num_layers=4, hidden_size=24, embedding_size=8, num_heads=4, intermediate_size=30, sharing="every_k", k=2)
    return _eager(build_student(shape, tokenizer, num_labels=2))


def test_scores_parity_with_eager_on_padded_batch(model, padded_batch):
    inputs = {k: v for k, v in padded_batch.items() if k != "labels"}
    ref = model(**inputs, output_hidden_states=True, output_attentions=True)
    got = intermediates(use_score_attention(model), padded_batch)
    L = model.config.num_hidden_layers
    assert len(got.hidden_states) == L + 1 and len(got.attention_scores) == L
    for r, g in zip(ref.hidden_states, got.hidden_states):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=0)
    for r, g in zip(ref.attentions, got.attention_scores):
        torch.testing.assert_close(g.softmax(-1), r, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.logits, ref.logits, atol=1e-5, rtol=0)
    # the scores are pre-softmax: padded keys hold the additive mask, real keys do not
    pad_keys = padded_batch["attention_mask"][1] == 0
    assert (got.attention_scores[0][1, :, :, pad_keys] < -1e30).all()
    assert (got.attention_scores[0][1, :, :, ~pad_keys].abs() < 1e3).all()


def test_intermediates_refuses_probabilities(model, padded_batch):
    with pytest.raises(RuntimeError, match="use_score_attention"):
        intermediates(model, padded_batch)


def test_saved_model_does_not_need_distill(tmp_path, model):
    use_score_attention(model)
    assert model.config._attn_implementation == SCORES_ATTENTION
    model.save_pretrained(tmp_path)
    assert SCORES_ATTENTION not in (tmp_path / "config.json").read_text()
