"""Training state on disk: everything needed to continue a run exactly where it stopped.

`DIR/last/` holds the parameters that train (safetensors; the frozen rest is the base model, by
construction, so it is loaded from there again and its files' SHA-256 are checked) and `state.pt`
(optimizer, scheduler, grad scaler, RNG states, and the loop's `Progress`: the position in the data, the
metric history). With most of a model frozen the checkpoint is a fraction of its size. It is
written with the same swap-in-a-finished-folder trick as the best model, so an interrupted save leaves the
previous one whole. `state.pt` holds only tensors and plain containers, and is read back with
`weights_only=True`.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from . import delta
from .checkpoints import write_atomically, write_file
from .errors import MinifreezeError


@dataclass
class Progress:
    """Where the training loop stands: all it needs to go on after --resume, saved (as a dict) in state.pt."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` done: a resumed run goes on with the next one
    best: float | None = None  # the best value of --metric so far, reached at best_step
    best_step: int = 0
    evals: int = 0
    since_best: int = 0  # evaluations since the best one (--patience)
    train_examples: int = 0  # these four feed the summary's speed and padding figures only
    train_seconds: float = 0.0
    real_tokens: int = 0
    padded_tokens: int = 0
    # --freeze-schedule (progressive.py): each growth of the frozen depth, and the auto rule's state
    freeze_events: list = dataclasses.field(default_factory=list)  # [{"step": s, "depth": d}, ...]
    freeze_signal: dict = dataclasses.field(default_factory=dict)

    def took_step(self, epoch: int, batch_in_epoch: int, examples: int, seconds: float) -> None:
        self.step += 1
        self.epoch, self.batch_in_epoch = epoch, batch_in_epoch
        self.train_examples += examples
        self.train_seconds += seconds

    def evaluated(self, value: float, lower_is_better: bool = False) -> bool:
        """Count an evaluation of --metric; True (it is the new best) when it beats every earlier one."""
        self.evals += 1
        improved = self.best is None or (value < self.best if lower_is_better else value > self.best)
        if improved:
            self.best, self.best_step, self.since_best = value, self.step, 0
        else:
            self.since_best += 1
        return improved

    def done_reason(self, total_steps: int, patience: int) -> str | None:
        """Why the run is over, read from the progress alone: a resumed finished run trains no step more."""
        if patience and self.since_best >= patience:
            return f"early stop: no improvement in {patience} evaluations"
        return "completed" if self.step >= total_steps else None

    @property
    def samples_per_second(self) -> float:
        return self.train_examples / max(self.train_seconds, 1e-9)


NEWER_FIELDS = ("freeze_events", "freeze_signal")  # checkpoints from before them had no schedule


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


def saved_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """What a checkpoint holds: every parameter that trains, or trained earlier in the run (the names in
    `model.trained_names`: a --freeze-schedule freezes layers that have moved from the base), and the head
    whole (a head that a spec keeps frozen may be freshly initialised, which the base cannot give back).
    A model that did not come from a folder has no base to restore the rest from, so all of it is saved."""
    named = dict(model.named_parameters())
    if getattr(model, "source", None) is None:
        return named
    keep = getattr(model, "trained_names", ())
    return {n: p for n, p in named.items() if p.requires_grad or n in keep or n.startswith("head.")}


def save_state(
    folder: Path, model: torch.nn.Module, optimizer, scheduler, scaler, progress: Progress
) -> None:
    """Atomically write DIR/last: the model's parameters, optimizer, scheduler, scaler, RNG, progress.
    `scaler` is a torch.amp.GradScaler, enabled or not (a disabled one saves, and loads, an empty dict).

    Both files are serialised in memory and written with write_file, so a full disk or a read-only
    folder raises an OSError that names the problem (torch.save on a full disk says "unexpected pos").
    """

    def fill(tmp: Path) -> None:
        weights = {n: p.detach().contiguous().cpu() for n, p in saved_parameters(model).items()}
        write_file(tmp / "model.safetensors", save(weights))
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_states(),
            "progress": dataclasses.asdict(progress),
            "base_sha256": delta.base_hashes(model.source) if getattr(model, "source", None) else None,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_file(tmp / "state.pt", buffer.getbuffer())

    write_atomically(folder, fill)


def load_state(
    folder: Path,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    scaler,
    before_optimizer: Callable[[Progress], None] | None = None,
) -> Progress:
    """Restore what save_state wrote; returns the loop's progress. `before_optimizer(progress)` runs once
    the weights are back, before the optimizer state loads: a run whose frozen depth grew returns to
    that depth there (its optimizer holds fewer parameters, progressive.py)."""
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
    saved = state.get("progress") if isinstance(state, dict) else None
    saved = saved if isinstance(saved, dict) else {}
    names = [f.name for f in dataclasses.fields(Progress)]
    missing = [name for name in names if name not in saved and name not in NEWER_FIELDS]
    if missing:
        raise MinifreezeError(
            f"--resume: {folder} comes from another minifreeze version (no {', '.join(missing)}); "
            "resume it with that version or start again with --overwrite"
        )
    params = dict(model.named_parameters())
    check_frozen_part(folder, model, set(weights), state.get("base_sha256"))
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    progress = Progress(**{name: saved[name] for name in names if name in saved})
    if before_optimizer is not None:
        before_optimizer(progress)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])  # a disabled scaler ignores it (older checkpoints hold None)
    set_rng_states(state["rng"])
    return progress


def check_frozen_part(
    folder: Path, model: torch.nn.Module, saved: set[str], base_sha256: dict | None
) -> None:
    """The checkpoint must hold every parameter that trains and nothing the model lacks; the rest comes
    from the base, which must be the file the run started from (else the frozen layers would differ)."""
    params = dict(model.named_parameters())
    missing = [n for n in saved_parameters(model) if n not in saved]
    if saved - set(params) or missing:
        raise MinifreezeError(
            f"--resume: {folder} was written by a different model or freeze spec; start a new --out"
        )
    if base_sha256 and getattr(model, "source", None) and set(saved) != set(params):
        have = delta.base_hashes(model.source)
        changed = sorted(f for f in set(have) | set(base_sha256) if have.get(f) != base_sha256.get(f))
        if changed:
            raise MinifreezeError(
                f"--resume: the base model's {changed[0]} in {model.source} changed since the checkpoint, "
                "so the frozen layers would differ; resume with the original base or start again with --overwrite"
            )
