"""Golden tests: each loss against a hand computation on tiny tensors."""

import math

import pytest
import torch

from distill.terms.attention import AttentionMSE, TinyBertAttentionMSE
from distill.terms.cosine import CosineEmbedding
from distill.terms.embedding import EmbeddingMSE
from distill.terms.hard_ce import HardCrossEntropy
from distill.terms.hidden import HiddenMSE
from distill.terms.soft_ce import SoftCrossEntropy

MIN = torch.finfo(torch.float32).min


def test_embedding_mse_identity_masks_padding():
    e_s = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # last token is padding
    e_t = torch.tensor([[[0.0, 2.0], [3.0, 2.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    loss = EmbeddingMSE(2, 2)(e_s, e_t, mask)
    # real entries: diffs 1, 0, 0, 2 -> (1 + 0 + 0 + 4) / 4
    assert loss.item() == pytest.approx(5 / 4, rel=1e-6)
    # without a mask the padding row counts: (1 + 4 + 100^2 + 100^2) / 6
    assert EmbeddingMSE(2, 2)(e_s, e_t).item() == pytest.approx((5 + 2 * 100**2) / 6, rel=1e-6)


def test_embedding_mse_projection_is_learned_linear():
    loss_fn = EmbeddingMSE(2, 3)
    with torch.no_grad():
        loss_fn.proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        loss_fn.proj.bias.zero_()
    e_s = torch.tensor([[[1.0, 2.0]]])
    e_t = torch.tensor([[[1.0, 2.0, 0.0]]])
    # projected: [1, 2, 3] -> diffs 0, 0, 3 -> 9 / 3
    assert loss_fn(e_s, e_t, torch.ones(1, 1)).item() == pytest.approx(3.0)
    assert loss_fn.proj.weight.requires_grad


def test_hidden_mse_sums_layers_and_counts_projections():
    h_s = [torch.ones(1, 2, 2), 2 * torch.ones(1, 2, 2)]
    h_t = [torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)]
    mask = torch.ones(1, 2)
    assert HiddenMSE(2, 2, 2)(h_s, h_t, mask).item() == pytest.approx(1 + 4)
    assert len(HiddenMSE(2, 3, 4, shared_projection=False).projs) == 4
    assert len(HiddenMSE(2, 3, 4, shared_projection=True).projs) == 1
    with pytest.raises(ValueError, match="built for 2 layers"):
        HiddenMSE(2, 2, 2)(h_s[:1], h_t[:1], mask)


def _scores():
    # batch 1, 1 head, 3 tokens, last token padding; masked keys hold finfo.min
    s = torch.tensor([[[[1.0, 2.0, MIN], [3.0, 0.0, MIN], [5.0, 5.0, MIN]]]])
    t = torch.tensor([[[[0.0, 2.0, MIN], [1.0, 1.0, MIN], [0.0, 0.0, MIN]]]])
    return s, t, torch.tensor([[1, 1, 0]])


def test_attention_mse_ignores_masked_pairs_and_stays_finite():
    s, t, mask = _scores()
    s.requires_grad_(True)
    loss = AttentionMSE()([s], [t], mask)
    # valid pairs: (0,0) (0,1) (1,0) (1,1): diffs 1, 0, 2, -1 -> 6 / 4
    assert loss.item() == pytest.approx(6 / 4)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    assert s.grad[0, 0, 2].abs().sum() == 0 and s.grad[0, 0, :, 2].abs().sum() == 0


def test_attention_mse_with_minus_inf_mask_is_finite():
    s, t, mask = _scores()
    s = torch.where(s == MIN, float("-inf"), s)
    assert AttentionMSE()([s], [t], mask).item() == pytest.approx(6 / 4)


def test_attention_mse_head_mean():
    s = torch.stack([torch.ones(2, 2), 3 * torch.ones(2, 2)]).unsqueeze(0)  # [1, 2 heads, 2, 2]
    t = torch.zeros(1, 1, 2, 2)
    # head mean of s is 2 everywhere -> 4
    assert AttentionMSE("mean")([s], [t], torch.ones(1, 2)).item() == pytest.approx(4.0)


def test_tinybert_attention_includes_padded_rows():
    s, t, _ = _scores()
    # TinyBERT: masked entries -> 0, MSE over all 9 entries including the padded query row:
    # diffs 1, 0, 0 | 2, -1, 0 | 5, 5, 0 -> 56 / 9
    assert TinyBertAttentionMSE()([s], [t]).item() == pytest.approx(56 / 9)


def test_soft_cross_entropy_golden():
    z_s = torch.tensor([[1.0, 0.0]])
    z_t = torch.tensor([[0.0, 2.0]])
    T = 2.0
    p_t = [math.exp(0) / (math.exp(0) + math.exp(1)), math.exp(1) / (math.exp(0) + math.exp(1))]
    log_z = math.log(math.exp(0.5) + math.exp(0.0))
    expected = -(p_t[0] * (0.5 - log_z) + p_t[1] * (0.0 - log_z))
    assert SoftCrossEntropy(T)(z_s, z_t).item() == pytest.approx(expected, rel=1e-6)
    assert SoftCrossEntropy(T, scale_by_t2=True)(z_s, z_t).item() == pytest.approx(4 * expected, rel=1e-6)


def test_cosine_embedding_golden():
    h_s = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])
    h_t = torch.tensor([[[0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # token 0: cos 0 -> 1; token 1: cos 1 -> 0; token 2 padding
    assert CosineEmbedding(2, 2)(h_s, h_t, mask).item() == pytest.approx(0.5)


def test_hard_cross_entropy_golden():
    z = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    expected = (-(2 - math.log(math.exp(2) + 1)) + math.log(2)) / 2
    assert HardCrossEntropy()(z, y).item() == pytest.approx(expected, rel=1e-6)
