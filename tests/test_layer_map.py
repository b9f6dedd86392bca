import pytest

from distill.errors import LayerMapError
from distill.layer_map import LayerMap


def test_uniform_multiple_is_tinybert_k_times_m():
    lm = LayerMap("uniform", 4, 12)
    assert [lm(m) for m in range(5)] == [0, 3, 6, 9, 12]
    assert lm.hidden_pairs() == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert lm.attention_pairs() == [(0, 2), (1, 5), (2, 8), (3, 11)]


def test_uniform_rounds_down_and_ends_on_last_layer():
    assert LayerMap("uniform", 4, 6).targets == (1, 3, 4, 6)
    assert LayerMap("uniform", 3, 4).targets == (1, 2, 4)


def test_last_and_explicit():
    assert LayerMap("last", 2, 6).targets == (5, 6)
    assert LayerMap([2, 4, 6], 3, 6).targets == (2, 4, 6)


@pytest.mark.parametrize(
    "kind, s, t, message",
    [
        ([1, 7], 2, 6, r"G\(2\) = 7 is out of range; teacher layers are 1..6"),
        ([0, 3], 2, 6, r"G\(1\) = 0 is out of range"),
        ([1, 2, 3], 2, 6, "the list has 3 entries but the student has 2 layers"),
        ("last", 8, 6, "'last' needs student_layers"),
        ("middle", 2, 6, "unknown kind 'middle'"),
    ],
)
def test_bad_maps_fail_with_one_line(kind, s, t, message):
    with pytest.raises(LayerMapError, match=message) as err:
        LayerMap(kind, s, t)
    assert "\n" not in str(err.value)
