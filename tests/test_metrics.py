"""Dev metrics from ``distill.evaluation.evaluate`` against counts made by hand on a known prediction set."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from distill.evaluation import evaluate

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
