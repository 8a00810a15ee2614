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
) -> dict:
    """The metrics of the model's problem type (problem.py); multi-label's `threshold` defaults to the
    model's own (`model.task`), else 0.5."""
    start = time.perf_counter()
    logits = predict_logits(model, encoded, pad_id, batch_size, device, forward)
    seconds = time.perf_counter() - start
    labels = torch.tensor(encoded.labels)
    result = problem.metrics(problem.of(model), logits, labels, problem.threshold_of(model, threshold))
    result["samples_per_second"] = len(labels) / max(seconds, 1e-9)
    return result
