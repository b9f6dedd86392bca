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


def test_mpnet_scores_add_the_relative_position_bias_and_leave_the_outputs_alone():
    """MPNet's attention is outside the AttentionInterface: a bound forward returns its scores
    Q K^T / sqrt(d) + relative position bias + mask, and the model computes what eager MPNet computes."""
    import copy
    import math

    from transformers import MPNetConfig, MPNetModel

    from distill.attention import intermediates, use_score_attention

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                         max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    eager = MPNetModel(config).eval()
    model = use_score_attention(copy.deepcopy(eager))
    ids = torch.tensor([[0, 5, 6, 7, 8, 2], [0, 9, 10, 2, 1, 1]])  # <s> ... </s>, padded with <pad> = 1
    mask = (ids != 1).long()
    with torch.no_grad():
        ref = eager(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        got = intermediates(model, {"input_ids": ids, "attention_mask": mask})
        assert len(got.attention_scores) == 2
        for a, b in zip(got.hidden_states, ref.hidden_states):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        bias = eager.encoder.compute_position_bias(ref.hidden_states[0])  # [b, heads, t, t]
        assert bias.abs().max() > 0
        real = mask.bool()[:, None, None, :].expand(-1, 4, 6, -1)
        for layer, scores in enumerate(got.attention_scores):
            attn, x = eager.encoder.layer[layer].attention.attn, ref.hidden_states[layer]
            q, k = (proj(x).view(2, 6, 4, 8).transpose(1, 2) for proj in (attn.q, attn.k))
            expected = q @ k.transpose(-1, -2) / math.sqrt(8) + bias
            torch.testing.assert_close(scores[real], expected[real], atol=1e-5, rtol=1e-5)
            assert (scores[~real] < -1e30).all()  # masked keys carry the additive mask
