"""Training state on disk: everything needed to continue a run exactly where it stopped.

`DIR/last/` holds the model (all our parameters, safetensors) and `state.pt` (optimizer, scheduler,
grad scaler, RNG states, the position in the data, the metric history). It is written with the same
swap-in-a-finished-folder trick as the best model, so an interrupted save leaves the previous one whole.
`state.pt` holds only tensors and plain containers, and is read back with `weights_only=True`.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .checkpoints import write_atomically, write_file
from .errors import MinifreezeError

# What the training loop reads back from `progress`; a checkpoint without one of these is from another version.
PROGRESS_KEYS = ("step", "epoch", "batch_in_epoch", "best", "best_step", "evals", "since_best")


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
    """Atomically write DIR/last: the model's parameters, optimizer, scheduler, scaler, RNG, progress.

    Both files are serialised in memory and written with write_file, so a full disk or a read-only
    folder raises an OSError that names the problem (torch.save on a full disk says "unexpected pos").
    """

    def fill(tmp: Path) -> None:
        weights = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters()}
        write_file(tmp / "model.safetensors", save(weights))
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_states(),
            "progress": progress,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_file(tmp / "state.pt", buffer.getbuffer())

    write_atomically(folder, fill)


def load_state(folder: Path, model: torch.nn.Module, optimizer, scheduler, scaler) -> dict:
    """Restore what save_state wrote; returns the progress dict."""
    if not (folder / "state.pt").is_file():
        raise MinifreezeError(f"--resume: no checkpoint in {folder}; the run never finished an evaluation")
    try:
        weights = load_file(str(folder / "model.safetensors"))
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as err:
        raise MinifreezeError(
            f"--resume: the checkpoint in {folder} cannot be read ({type(err).__name__}); "
            "start again with --overwrite"
        ) from None
    progress = state.get("progress") if isinstance(state, dict) else None
    missing = [key for key in PROGRESS_KEYS if key not in (progress or {})]
    if missing:
        raise MinifreezeError(
            f"--resume: {folder} comes from another minifreeze version (no {', '.join(missing)}); "
            "resume it with that version or start again with --overwrite"
        )
    params = dict(model.named_parameters())
    if set(weights) != set(params):
        raise MinifreezeError(f"--resume: {folder} was written by a different model; start a new --out")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    set_rng_states(state["rng"])
    return state["progress"]
