"""Dev metrics from ``distill.evaluation.evaluate`` against counts made by hand on a known prediction set."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from distill.evaluation import evaluate, soft_target_stats

LABELS = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 1]
PREDS = [1, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0]


class Fixed(nn.Module):
    """Predicts the class written in the first input id (logits favour it by a margin)."""

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.nn.functional.one_hot(input_ids[:, 0], 2).float() * 3 - 1)


def counts():
    tp = sum(p == 1 and y == 1 for p, y in zip(PREDS, LABELS))
    tn = sum(p == 0 and y == 0 for p, y in zip(PREDS, LABELS))
    fp = sum(p == 1 and y == 0 for p, y in zip(PREDS, LABELS))
    fn = sum(p == 0 and y == 1 for p, y in zip(PREDS, LABELS))
    return tp, tn, fp, fn


def test_accuracy_f1_and_matthews_equal_the_hand_counts():
    rows = [{"input_ids": torch.tensor([p, 5, 6]), "attention_mask": torch.ones(3, dtype=torch.long), "labels": torch.tensor(y)}
            for p, y in zip(PREDS, LABELS)]
    loader = DataLoader(rows, batch_size=6)  # 23 rows: an uneven last batch
    got = evaluate(Fixed(), loader, ["accuracy", "f1", "matthews"])
    tp, tn, fp, fn = counts()
    assert (tp, tn, fp, fn) == (9, 7, 3, 4)  # the set is what the counts below are about
    assert got["accuracy"] == pytest.approx((tp + tn) / len(LABELS))
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert got["matthews"] == pytest.approx((tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))


def test_every_allowed_value_in_the_schema_has_an_implementation():
    """The schema lists the allowed names (distill/config.py, checked without torch); each must be implemented."""
    from transformers import SchedulerType

    from distill.config import METRICS, SCHEDULERS
    from distill.evaluation import METRIC_FUNCTIONS

    assert set(METRIC_FUNCTIONS) == set(METRICS)
    assert set(SCHEDULERS) <= {s.value for s in SchedulerType}


def test_soft_target_stats_equal_the_hand_computed_values():
    # a uniform target (right by argmax: ties go to class 0), a confident wrong one, a confident right one
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    stats = soft_target_stats(logits, torch.tensor([0, 1, 1]))
    sure = 1 / (1 + math.exp(-10))  # softmax top probability at a margin of 10
    sure_entropy = -(sure * math.log(sure) + (1 - sure) * math.log(1 - sure))
    assert stats["examples"] == 3
    assert stats["teacher_accuracy"] == pytest.approx(2 / 3)
    assert stats["mean_top_probability"] == pytest.approx((0.5 + 2 * sure) / 3)
    assert stats["mean_entropy_nats"] == pytest.approx((math.log(2) + 2 * sure_entropy) / 3, rel=1e-5)
    assert stats["share_top_probability_ge_0.99"] == pytest.approx(2 / 3)
