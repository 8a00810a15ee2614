"""Measure what autograd keeps: the bytes of tensors saved for backward, per call or per module.

This is the honest activation-memory number on any device: it counts exactly what backward will need,
deduplicating tensors that share a storage (a view saved twice is paid once). Parameters saved for
backward are not activations and are excluded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn


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
    """Bytes of activations autograd keeps for backward while running fn() (parameters excluded)."""
    meter = SavedTensors(parameters)
    with meter.active():
        fn()
    return meter.bytes


def saved_bytes_by_module(
    model: nn.Module, fn: Callable[[], object], modules: dict[str, nn.Module]
) -> dict[str, int]:
    """Saved bytes attributed to the named top-level modules, by forward pre-hooks setting the label."""
    meter = SavedTensors(list(model.parameters()))
    handles = []
    for label, module in modules.items():
        handles.append(
            module.register_forward_pre_hook(lambda m, a, label=label: setattr(meter, "label", label))
        )
        handles.append(module.register_forward_hook(lambda m, a, o: setattr(meter, "label", "other")))
    try:
        with meter.active():
            fn()
    finally:
        for h in handles:
            h.remove()
    return meter.by_label
