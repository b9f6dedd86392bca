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
def predict(model: nn.Module, loader: DataLoader, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits [n, c] (float32, on the CPU) and the labels [n], in the loader's order."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in loader:
        batch = {k: v.to(device) if device is not None else v for k, v in batch.items()}
        labels.append(batch.pop("labels").cpu())
        logits.append(model(**batch).logits.float().cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: nn.Module, loader: DataLoader, metrics: list[str], device=None) -> dict[str, float]:
    logits, labels = predict(model, loader, device)
    y, p = labels.numpy(), logits.argmax(-1).numpy()
    return {name: float(METRIC_FUNCTIONS[name](y, p)) for name in metrics}


def soft_target_stats(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """How much a teacher's targets say beyond the labels: its accuracy against them, its mean top
    probability, the mean entropy of softmax(z_T) in nats (ln c: uniform over c classes) and the share of
    targets whose top probability is at least 0.99 (as good as one-hot). logits: [n, c], labels: [n]."""
    targets = torch.distributions.Categorical(logits=logits.float())
    p = targets.probs
    top = p.max(-1).values
    entropy = targets.entropy()
    return {
        "examples": len(labels),
        "teacher_accuracy": (p.argmax(-1) == labels).float().mean().item(),
        "mean_top_probability": top.mean().item(),
        "mean_entropy_nats": entropy.mean().item(),
        "share_top_probability_ge_0.99": (top >= 0.99).float().mean().item(),
    }
