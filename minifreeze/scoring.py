"""Score a whole encoded split: logits in the split's order, then the metrics and the loss.

The training loop and `python -m minifreeze.evaluate` both score through here (a library module, so no
command imports another). Batches go by length, longest first: the least padding, since order does not
matter for a score.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from . import batching, data, problem


@torch.no_grad()
def predict_logits(
    model,
    encoded: data.EncodedSplit,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    forward: Callable[[batching.Batch], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits [N, C] in the split's original order.

    `forward(batch) -> logits` replaces the model call, e.g. to score from the frozen-prefix cache.
    """

    def call_model(batch: batching.Batch) -> torch.Tensor:
        return model(batch.input_ids, batch.attention_mask, batch.token_type_ids)

    forward = forward or call_model
    chunks, order = [], []
    for indices in batching.sorted_batches(encoded.lengths, batch_size):
        batch = batching.collate(encoded, indices, pad_id, 8).to(device)
        chunks.append(forward(batch).float().cpu())
        order.extend(indices)
    logits = torch.cat(chunks)
    return logits[torch.argsort(torch.tensor(order))]


def evaluate_split(
    model,
    encoded: data.EncodedSplit,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    forward: Callable[[batching.Batch], torch.Tensor] | None = None,
    threshold: float | None = None,
    parts: tuple[list[int], list[int]] | None = None,
) -> dict:
    """The metrics of the model's problem type (problem.py); multi-label's `threshold` defaults to the
    model's own (`model.task`), else 0.5. With `parts` (selection, held out: `heldout_parts`) the metrics
    are the selection part's, and the held-out part's come as heldout_<metric>: one pass scores both."""
    start = time.perf_counter()
    logits = predict_logits(model, encoded, pad_id, batch_size, device, forward)
    seconds = time.perf_counter() - start
    labels = torch.tensor(encoded.labels)
    kind, threshold = problem.of(model), problem.threshold_of(model, threshold)
    if parts is None:
        result = problem.metrics(kind, logits, labels, threshold)
    else:
        chosen, held = (torch.tensor(part) for part in parts)
        result = problem.metrics(kind, logits[chosen], labels[chosen], threshold)
        heldout = problem.metrics(kind, logits[held], labels[held], threshold)
        result |= {f"heldout_{name}": value for name, value in heldout.items()}
    result["samples_per_second"] = len(labels) / max(seconds, 1e-9)
    return result


HELDOUT_SEED = 0  # not the data seed: every run of a study, on any subset, reports on the same examples


def heldout_parts(labels, fraction: float) -> tuple[list[int], list[int]] | None:
    """Validation indices (selection, held out), stratified by class; None when `fraction` is 0.

    Choosing the best checkpoint on the examples it is then scored on flatters it (the maximum of many
    noisy evaluations); scoring the chosen checkpoint on examples the choice never saw does not.
    """
    if not fraction:
        return None
    return data.stratified_split(labels, fraction, HELDOUT_SEED)  # scores and label sets: a seeded shuffle
