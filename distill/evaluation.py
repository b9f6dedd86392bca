"""Dev-set metrics for classification, computed locally (no hub metric scripts)."""

from __future__ import annotations

import torch
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from torch import nn
from torch.utils.data import DataLoader

METRIC_FUNCTIONS = {
    "accuracy": accuracy_score,
    "f1": f1_score,
    "matthews": matthews_corrcoef,
}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, metrics: list[str], device=None) -> dict[str, float]:
    was_training = model.training
    model.eval()
    preds, labels = [], []
    for batch in loader:
        batch = {k: v.to(device) if device is not None else v for k, v in batch.items()}
        labels.append(batch.pop("labels").cpu())
        preds.append(model(**batch).logits.argmax(-1).cpu())
    model.train(was_training)
    y, p = torch.cat(labels).numpy(), torch.cat(preds).numpy()
    return {name: float(METRIC_FUNCTIONS[name](y, p)) for name in metrics}
