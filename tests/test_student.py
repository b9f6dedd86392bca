import pytest
import torch

from distill.config import StudentShape
from distill.student import build_student, layer_group_of, parameter_counts

V, P, T = None, 64, 2  # V comes from the tokenizer


def per_layer(H, I):
    # q, k, v, dense: 4 (H*H + H); attention LayerNorm 2H; ffn H*I + I; ffn_output I*H + H; LayerNorm 2H
    return 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H


def embedding(V, E, H):
    # word, position, token type, LayerNorm(E), then the E->H projection
    return V * E + P * E + T * E + 2 * E + (E * H + H)


@pytest.mark.parametrize("sharing, k, groups", [("all", 1, 1), ("every_k", 2, 2), ("none", 1, 4)])
def test_parameter_counts_match_formulas(tokenizer, sharing, k, groups):
    shape = StudentShape(num_layers=4, hidden_size=24, embedding_size=8, num_heads=4, intermediate_size=30,
                         sharing=sharing, k=k, max_position_embeddings=P)
    V = len(tokenizer)
    H, E, I, L = 24, 8, 30, 4
    pooler = H * H + H
    model = build_student(shape, tokenizer)
    counts = parameter_counts(model)
    assert counts["embedding"] == embedding(V, E, H)
    assert counts["non_embedding"] == L * per_layer(H, I) + pooler
    assert counts["total"] == counts["embedding"] + counts["non_embedding"]
    assert counts["unique"] == embedding(V, E, H) + groups * per_layer(H, I) + pooler
    assert counts["unique"] == sum(p.numel() for p in model.parameters())

    clf = build_student(shape, tokenizer, num_labels=3)
    assert parameter_counts(clf)["unique"] == counts["unique"] + H * 3 + 3
    assert clf.config.vocab_size == len(tokenizer)


def test_shared_blocks_are_the_same_tensors(tokenizer):
    shape = StudentShape(num_layers=6, hidden_size=16, embedding_size=8, num_heads=2, intermediate_size=20,
                         sharing="every_k", k=2)
    model = build_student(shape, tokenizer)
    groups = [layer_group_of(model, i) for i in range(6)]
    assert groups[0] is groups[1] and groups[2] is groups[3] and groups[4] is groups[5]
    assert groups[1] is not groups[2]
    w = lambda g: g.albert_layers[0].attention.query.weight  # noqa: E731
    assert w(groups[0]).data_ptr() == w(groups[1]).data_ptr() != w(groups[2]).data_ptr()

    # the stock ALBERT forward really runs layer i with group i // k: changing group 0 changes layers 1-2 only
    model.eval()
    ids = torch.tensor([[2, 7, 9, 3]])
    before = model(input_ids=ids, output_hidden_states=True).hidden_states
    with torch.no_grad():
        w(groups[4]).mul_(3.0)
    after = model(input_ids=ids, output_hidden_states=True).hidden_states
    assert all(torch.equal(before[i], after[i]) for i in range(5))
    assert not torch.equal(before[5], after[5])

    every = build_student(StudentShape(num_layers=3, hidden_size=16, embedding_size=8, num_heads=2,
                                       intermediate_size=20, sharing="all"), tokenizer)
    assert len({id(layer_group_of(every, i)) for i in range(3)}) == 1
    none = build_student(StudentShape(num_layers=3, hidden_size=16, embedding_size=8, num_heads=2,
                                      intermediate_size=20, sharing="none"), tokenizer)
    assert len({id(layer_group_of(none, i)) for i in range(3)}) == 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=30, num_heads=4), "student.hidden_size=30 is not divisible by student.num_heads=4"),
        (dict(num_layers=3, sharing="every_k", k=2), "student.k=2 does not divide student.num_layers=3"),
        (dict(sharing="some"), "student.sharing='some' is unknown"),
    ],
)
def test_bad_shapes_fail_at_construction(tokenizer, overrides, message):
    with pytest.raises(ValueError, match=message) as err:
        build_student(StudentShape(**overrides), tokenizer)
    assert "\n" not in str(err.value)


def test_tag_names_the_shape():
    assert StudentShape().tag() == "L4_H312_E128_A12_I1200_every2"


def test_mean_pooling_head_saves_and_reloads_without_distill(tokenizer, tmp_path, padded_batch):
    shape = StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=2, intermediate_size=20,
                         sharing="all", pooling="mean")
    assert shape.tag().endswith("_shareall_mean")
    model = build_student(shape, tokenizer, num_labels=3).eval()
    inputs = {k: v for k, v in padded_batch.items() if k != "labels"}
    out = model(**inputs, output_hidden_states=True)
    # the logits are the classifier applied to the mean of the last hidden states over real tokens
    h, m = out.hidden_states[-1], inputs["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(out.logits, model.classifier((h * m).sum(1) / m.sum(1)))
    # padding does not change a sentence's logits
    alone = model(**tokenizer(["bad"], return_tensors="pt")).logits
    torch.testing.assert_close(alone[0], out.logits[1], atol=1e-5, rtol=0)

    model.save_pretrained(tmp_path)
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True).eval()
    assert type(reloaded).__module__.split(".")[0] != "distill"
    torch.testing.assert_close(reloaded(**inputs).logits, out.logits, atol=1e-6, rtol=0)
