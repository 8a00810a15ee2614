"""Measure what autograd keeps: the bytes of tensors saved for backward, per call or per module.

This is the honest activation-memory number on any device: it counts exactly what backward will need,
deduplicating tensors that share a storage (a view saved twice is paid once). Parameters saved for
backward are not activations and are excluded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch


class SavedTensors:
    """Collects the storages saved for backward while active; `bytes` is their total size."""

    def __init__(self, exclude: list[torch.Tensor] | None = None):
        self.exclude = {p.untyped_storage().data_ptr() for p in exclude or []}
        self.storages: dict[int, int] = {}
        self.by_label: dict[str, int] = {}
        self.label = "other"

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.exclude and key not in self.storages:
            self.storages[key] = storage.nbytes()
            self.by_label[self.label] = self.by_label.get(self.label, 0) + storage.nbytes()
        return tensor

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    @contextlib.contextmanager
    def active(self) -> Iterator[SavedTensors]:
        with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t):
            yield self


def saved_bytes(fn: Callable[[], object], parameters: list[torch.Tensor] | None = None) -> int:
    """Bytes autograd keeps for backward while running fn(); pass the model's parameters to exclude them
    (layers save their weights for backward too, and those are not activations)."""
    meter = SavedTensors(parameters)
    with meter.active():
        fn()
    return meter.bytes
