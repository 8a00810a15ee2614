"""Training state on disk: everything needed to continue a run exactly where it stopped.

`DIR/last/` holds the model (all our parameters, safetensors) and `state.pt` (optimizer, scheduler,
grad scaler, RNG states, the position in the data, the metric history). It is written with the same
swap-in-a-finished-folder trick as the best model, so an interrupted save leaves the previous one whole.
`state.pt` holds only tensors and plain containers, and is read back with `weights_only=True`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .checkpoints import write_atomically
from .errors import MinifreezeError


def rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate((3, tuple(states["python"]), None))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_state(folder: Path, model: torch.nn.Module, optimizer, scheduler, scaler, progress: dict) -> None:
    """Atomically write DIR/last: the model's parameters, optimizer, scheduler, scaler, RNG, progress."""

    def fill(tmp: Path) -> None:
        weights = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters()}
        save_file(weights, str(tmp / "model.safetensors"))
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_states(),
            "progress": progress,
        }
        torch.save(state, tmp / "state.pt")

    write_atomically(folder, fill)


def load_state(folder: Path, model: torch.nn.Module, optimizer, scheduler, scaler) -> dict:
    """Restore what save_state wrote; returns the progress dict."""
    if not (folder / "state.pt").is_file():
        raise MinifreezeError(f"--resume: no checkpoint in {folder}; the run never finished an evaluation")
    weights = load_file(str(folder / "model.safetensors"))
    params = dict(model.named_parameters())
    if set(weights) != set(params):
        raise MinifreezeError(f"--resume: {folder} was written by a different model; start a new --out")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    set_rng_states(state["rng"])
    return state["progress"]
