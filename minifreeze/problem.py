"""What a model learns to predict: one class per text, a number, or a set of classes (docs/tasks.md).

The three names are transformers' `problem_type` values, which the exported config.json carries, so that
AutoModelForSequenceClassification computes the same kind of loss: cross-entropy (single-label), mean
squared error on one output (regression), binary cross-entropy on each class's logit (multi-label).
Everything that differs between them lives here: how labels are read, the loss, the metrics, the metric
that picks the best checkpoint, the baseline, and what predict prints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from .errors import MinifreezeError
from .metrics import classification_metrics, f1_scores, majority_baseline

SINGLE, REGRESSION, MULTI = "single_label_classification", "regression", "multi_label_classification"
SHORT = {"single_label": SINGLE, "regression": REGRESSION, "multi_label": MULTI}
CHOICES = (*SHORT, SINGLE, MULTI)
# summary.json's "metrics" (single-label's four as always); the first picks the best checkpoint by default
SUMMARY = {
    SINGLE: ("accuracy", "f1", "mcc", "loss"),
    REGRESSION: ("pearson", "spearman", "mse", "loss"),
    MULTI: ("f1_micro", "f1_macro", "exact_match", "loss"),
}
SELECTABLE = {**SUMMARY, SINGLE: (*SUMMARY[SINGLE], "f1_macro")}  # what --metric may name
LOWER_IS_BETTER = ("loss", "mse")
BASELINE = {SINGLE: "majority baseline", REGRESSION: "mean baseline mse", MULTI: "majority set baseline"}


def resolve(name: str | None) -> str:
    """The transformers name for a --problem-type value (short forms accepted); None is single-label."""
    full = SHORT.get(name, name) if name else SINGLE
    if full not in SUMMARY:
        raise MinifreezeError(f"--problem-type {name}: use single_label, regression or multi_label")
    return full


def of(model) -> str:
    """The problem a model was trained for: its task record, else its config.json's, else what transformers
    infers without one (one output: regression; more: single-label, for integer labels)."""
    recorded = getattr(model, "task", {}).get("problem_type") or model.config.raw.get("problem_type")
    return resolve(recorded or (REGRESSION if model.config.num_labels == 1 else SINGLE))


def threshold_of(model, given: float | None) -> float:
    """Multi-label's threshold: the one given, else the model's (saved by training), else 0.5."""
    threshold = given if given is not None else getattr(model, "task", {}).get("threshold") or 0.5
    if not 0 < threshold < 1:
        raise MinifreezeError(f"--threshold {threshold}: must be between 0 and 1 (a probability)")
    return threshold


def short(problem_type: str) -> str:
    return next(k for k, v in SHORT.items() if v == problem_type)


def selection_metric(problem_type: str, metric: str | None) -> str:
    """The --metric that picks the best checkpoint; unset: accuracy, pearson or f1_micro by problem type."""
    if metric is None:
        return SUMMARY[problem_type][0]
    if metric not in SELECTABLE[problem_type]:
        allowed = ", ".join(SELECTABLE[problem_type])
        raise MinifreezeError(
            f"--metric {metric}: a {short(problem_type)} model is chosen by one of {allowed}"
        )
    return metric


def training_options(cfg) -> tuple[str, str]:
    """(problem type, the metric that picks the best checkpoint) of a TrainConfig, its options checked:
    class weights and label smoothing shape a cross-entropy, so the other losses refuse them."""
    problem_type = resolve(cfg.problem_type)
    if not 0 <= cfg.label_smoothing < 1:
        raise MinifreezeError(f"--label-smoothing {cfg.label_smoothing}: must be at least 0 and below 1")
    threshold_of(None, cfg.threshold)
    if problem_type != SINGLE and (cfg.class_weights or cfg.label_smoothing):
        raise MinifreezeError(
            f"--class-weights and --label-smoothing weigh a cross-entropy, which --problem-type "
            f"{short(problem_type)} does not use: drop them"
        )
    return problem_type, selection_metric(problem_type, cfg.metric)


# ----------------------------------------------------------------------------------------------------
# Loss


def class_weights(spec: str | None, labels: Sequence[int], names: Sequence[str]) -> torch.Tensor | None:
    """--class-weights as a tensor: `auto` is w_c = N / (C * n_c) (N training examples, C classes, n_c of
    class c): inverse class frequency, normalised so that the average weight per training example is 1.
    Otherwise one non-negative number per class, in class-id order."""
    if not spec:
        return None
    if spec == "auto":
        counts = torch.bincount(torch.tensor(labels), minlength=len(names)).double()
        return (len(labels) / (len(names) * counts.clamp(min=1))).float()
    try:
        weights = [float(w) for w in spec.split(",")]
    except ValueError:
        weights = []
    if (
        len(weights) != len(names)
        or not all(math.isfinite(w) and w >= 0 for w in weights)
        or not any(weights)
    ):
        classes = ", ".join(f"{i}={name}" for i, name in enumerate(names))
        raise MinifreezeError(
            f"--class-weights {spec}: use auto or {len(names)} comma-separated non-negative numbers, one per "
            f"class in id order ({classes})"
        )
    return torch.tensor(weights)


def _cross_entropy(logits, labels, weight: torch.Tensor | None = None, smoothing: float = 0.0):
    weight = None if weight is None else weight.to(logits.device)
    return F.cross_entropy(
        logits.float(), labels, weight=weight, label_smoothing=smoothing, ignore_index=-100
    )


def _mse(logits, labels):
    return F.mse_loss(logits.float().squeeze(-1), labels.float())


def _bce(logits, labels):
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def training_loss(
    problem_type: str, cfg, train_labels: Sequence, id2label: dict[int, str]
) -> Callable | None:
    """The head's `criterion` for a TrainConfig's --problem-type, --class-weights and --label-smoothing."""
    weights = class_weights(cfg.class_weights, train_labels, list(id2label.values()))
    return criterion(problem_type, weights, cfg.label_smoothing)


def criterion(
    problem_type: str, weights: torch.Tensor | None = None, smoothing: float = 0.0
) -> Callable | None:
    """The training loss(logits, labels) a head uses; None for plain cross-entropy (the mean head's fused
    kernel computes that one; it takes no weights or smoothing, so those go through this plain path)."""
    if problem_type == REGRESSION:
        return _mse
    if problem_type == MULTI:
        return _bce
    return (
        partial(_cross_entropy, weight=weights, smoothing=smoothing)
        if weights is not None or smoothing
        else None
    )


# ----------------------------------------------------------------------------------------------------
# Metrics


def metrics(problem_type: str, logits: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> dict:
    """The metrics of one evaluation; the loss is the plain one (no weights, no smoothing), comparable across runs."""
    if problem_type == REGRESSION:
        scores, targets = logits[:, 0].double(), labels.double()
        mse = float(F.mse_loss(scores, targets))
        spearman = _pearson(_ranks(scores), _ranks(targets))
        return {
            "pearson": _pearson(scores, targets),
            "spearman": spearman,
            "mse": mse,
            "loss": mse,
            "examples": len(targets),
        }
    if problem_type == MULTI:
        return _multi_label_metrics(logits, labels, threshold)
    result = classification_metrics(labels, logits.argmax(-1), logits.shape[-1])
    result["f1_macro"] = float(f1_scores(torch.tensor(result["confusion_matrix"])).mean())
    result["loss"] = float(F.cross_entropy(logits, labels))
    return result


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation; 0 when either side is constant (an untrained model's scores may be)."""
    x, y = x - x.mean(), y - y.mean()
    denominator = float(x.norm() * y.norm())
    return float((x * y).sum()) / denominator if denominator > 0 else 0.0


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks with ties averaged, as Spearman's correlation needs."""
    values, inverse = torch.unique(x, return_inverse=True)
    rank = torch.empty_like(x)
    rank[torch.argsort(x)] = torch.arange(len(x), dtype=x.dtype)
    sums = torch.zeros(len(values), dtype=x.dtype).index_add_(0, inverse, rank)
    return (sums / torch.bincount(inverse, minlength=len(values)))[inverse]


def _multi_label_metrics(logits: torch.Tensor, labels: torch.Tensor, threshold: float) -> dict:
    predicted, truth = torch.sigmoid(logits) > threshold, labels > 0.5
    tp, fp = (predicted & truth).sum(0), (predicted & ~truth).sum(0)
    fn = (~predicted & truth).sum(0)
    per_label = f1_of(tp.double(), fp.double(), fn.double())
    return {
        "f1_micro": float(f1_of(tp.sum().double(), fp.sum().double(), fn.sum().double())),
        "f1_macro": float(per_label.mean()),
        "exact_match": float((predicted == truth).all(1).double().mean()),
        "loss": float(_bce(logits, labels)),
        "label_counts": torch.stack([tp, fp, fn], 1).tolist(),  # per class [tp, fp, fn]
        "examples": len(labels),
    }


def f1_of(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """2tp / (2tp + fp + fn), and 0 where a class was neither true nor predicted (as scikit-learn)."""
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))


def per_class(result: dict, names: Sequence[str]) -> dict | None:
    """precision, recall, f1 and support of each class by name (classification only), for evaluate."""
    if "confusion_matrix" in result:
        cm = torch.tensor(result["confusion_matrix"])
        tp, fp, fn = cm.diag(), cm.sum(0) - cm.diag(), cm.sum(1) - cm.diag()
    elif "label_counts" in result:
        tp, fp, fn = torch.tensor(result["label_counts"]).T
    else:
        return None
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp(min=1), 0.0)
    recall = torch.where(tp + fn > 0, tp / (tp + fn).clamp(min=1), 0.0)
    columns = zip(precision.tolist(), recall.tolist(), f1_of(tp, fp, fn).tolist(), (tp + fn).int().tolist())
    keys = ("precision", "recall", "f1", "support")
    return {name: dict(zip(keys, values)) for name, values in zip(names, columns)}


def baseline(problem_type: str, train_labels: list, eval_labels: list) -> float:
    """What guessing without the text scores: the accuracy of the most frequent training class (multi-label:
    the exact-match accuracy of the most frequent label set); regression: the mse of the training mean."""
    if problem_type == REGRESSION:
        mean = sum(train_labels) / max(len(train_labels), 1)
        return sum((y - mean) ** 2 for y in eval_labels) / max(len(eval_labels), 1)
    if problem_type == MULTI:
        train_labels, eval_labels = [tuple(y) for y in train_labels], [tuple(y) for y in eval_labels]
    return majority_baseline(train_labels, eval_labels)


def prediction(problem_type: str, logits: torch.Tensor, names: Sequence[str], threshold: float) -> dict:
    """What predict prints for one text's logits: a score, the classes over the threshold, or one class."""
    if problem_type == REGRESSION:
        return {"score": round(float(logits[0]), 6)}
    probabilities = torch.sigmoid(logits) if problem_type == MULTI else logits.softmax(-1)
    shown = {name: round(p, 6) for name, p in zip(names, probabilities.tolist())}
    if problem_type == MULTI:
        return {
            "labels": [n for n, p in zip(names, probabilities.tolist()) if p > threshold],
            "probabilities": shown,
        }
    best = int(probabilities.argmax())
    return {"label": names[best], "label_id": best, "probabilities": shown}


# ----------------------------------------------------------------------------------------------------
# Labels (single-label labels are read in data.py, which knows the named datasets' classes)


def label_encoder(problem_type: str, train: list, id2label: dict[int, str] | None = None):
    """(encode(part) -> labels, id2label) for regression or multi-label. `train` are data.py's parts of the
    training files (raw labels, file positions); for scoring a trained model `id2label` gives the classes.

    Regression: one number per example, one output called LABEL_0 (as transformers names it). Multi-label:
    a multi-hot row per example; the classes are the 0/1 columns in their order, else the class ids 0..C-1
    (lists of integers), else the class names in sorted order.
    """
    if problem_type == REGRESSION:
        return (lambda part: [_number(part, row) for row in range(len(part.labels))]), {0: "LABEL_0"}
    if id2label is None:
        id2label = _label_names(
            [x for part in train for labels in _label_sets(part) for x in labels], train[0]
        )
    to_id = {name: i for i, name in id2label.items()}

    def encode(part) -> list[list[float]]:
        rows = []
        for row, labels in enumerate(_label_sets(part)):
            ids = [label if isinstance(label, int) else to_id.get(label, -1) for label in labels]
            if unknown := [x for x, i in zip(labels, ids) if not 0 <= i < len(to_id)]:
                raise MinifreezeError(
                    f"{part.table.where(row)}: label {unknown[0]!r} is not one of the classes "
                    f"({', '.join(to_id)}); fix the label or add training examples of that class"
                )
            rows.append([float(i in ids) for i in range(len(to_id))])
        return rows

    return encode, id2label


def _label_names(labels: list, part) -> dict[int, str]:
    columns = part.label_column.split(",")
    if len(columns) > 1:
        return dict(enumerate(columns))
    if not labels:
        raise MinifreezeError(f"{part.table.source}: no training example has a label; check the label column")
    if all(isinstance(label, int) for label in labels):
        return {i: str(i) for i in range(max(labels) + 1)}
    if any(isinstance(label, int) for label in labels):
        raise MinifreezeError(
            f"{part.table.source}: multi-label labels mix class ids and names; use one of them throughout"
        )
    return dict(enumerate(sorted(set(labels))))


def _number(part, row: int) -> float:
    value = part.labels[row]
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise MinifreezeError(
            f"{part.table.where(row)}: label column {part.label_column!r} holds {value!r}; --problem-type "
            "regression needs a finite number (a score such as 3.8) for every example"
        )
    return number


def _label_sets(part) -> list[list[Any]]:
    """Each row's classes: from 0/1 columns (a tuple per row), a JSON list, `a,b` text or one class id."""
    columns = part.label_column.split(",")
    return [_label_set(part, row, columns) for row in range(len(part.labels))]


def _label_set(part, row: int, columns: list[str]) -> list[Any]:
    value = part.labels[row]
    if isinstance(value, tuple):  # several 0/1 columns
        flags = [_flag(v) for v in value]
        if None not in flags:
            return [column for column, flag in zip(columns, flags) if flag]
    elif isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    elif isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()] or None
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value):
        labels = [int(v) if isinstance(v, str) and v.isdigit() else v for v in value]  # "0,2" (TSV): ids
        scores = [v for v in labels if isinstance(v, str) and _is_number(v)]  # "3.8": a score, not a class
        if len(set(labels)) == len(labels) and not scores:
            return labels
    raise MinifreezeError(
        f"{part.table.where(row)}: label column {part.label_column!r} holds {part.labels[row]!r}; --problem-type "
        'multi_label needs each class once per example: a JSON list (["a", "b"] or [0, 2]), "a,b" text, or '
        "several 0/1 columns (--label-column a,b,c)"
    )


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _flag(value: Any) -> bool | None:
    """A 0/1 cell (1, "1", 1.0, true) as a bool; None for anything else."""
    text = str(value).strip().lower()
    return {"0": False, "1": True, "0.0": False, "1.0": True, "false": False, "true": True}.get(text)
