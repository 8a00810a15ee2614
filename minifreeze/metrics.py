"""Classification metrics from a confusion matrix: accuracy, F1, Matthews correlation.

F1 is the positive-class F1 for two labels (the GLUE convention, label 1 positive) and the macro
average otherwise. MCC uses the multi-class formula (Gorodkin), which equals the familiar binary one.
"""

from __future__ import annotations

import math

import torch

METRICS = ("accuracy", "f1", "mcc")


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_labels: int) -> torch.Tensor:
    """[true, predicted] counts."""
    flat = labels.long() * num_labels + predictions.long()
    return torch.bincount(flat, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def f1_scores(cm: torch.Tensor) -> torch.Tensor:
    tp = cm.diag().double()
    predicted, actual = cm.sum(0).double(), cm.sum(1).double()
    denominator = predicted + actual
    return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))


def matthews(cm: torch.Tensor) -> float:
    cm = cm.double()
    total, correct = cm.sum(), cm.diag().sum()
    predicted, actual = cm.sum(0), cm.sum(1)
    numerator = correct * total - (predicted * actual).sum()
    denominator = math.sqrt((total**2 - (predicted**2).sum()) * (total**2 - (actual**2).sum()))
    return float(numerator / denominator) if denominator > 0 else 0.0


def classification_metrics(labels: torch.Tensor, predictions: torch.Tensor, num_labels: int) -> dict:
    cm = confusion_matrix(labels, predictions, num_labels)
    f1 = f1_scores(cm)
    total = int(cm.sum())
    return {
        "accuracy": float(cm.diag().sum()) / max(total, 1),
        "f1": float(f1[1]) if num_labels == 2 else float(f1.mean()),
        "mcc": matthews(cm),
        "confusion_matrix": cm.tolist(),
        "examples": total,
    }


def majority_baseline(train_labels: list[int], eval_labels: list[int]) -> float:
    """Accuracy of always predicting the most frequent training label."""
    if not train_labels or not eval_labels:
        return 0.0
    majority = max(set(train_labels), key=train_labels.count)
    return sum(label == majority for label in eval_labels) / len(eval_labels)
