"""Where and how a command runs: the device, the autocast, atomic JSON files, memory and bytes.

Every command needs these and none owns them, so they live below all of them: train, evaluate, predict
and the sweep import this module, never each other (a command importing a command is how import cycles
started here).
"""

from __future__ import annotations

import contextlib
import json
import re
import resource
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from .errors import MinifreezeError

DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when there is one; a device this machine lacks is one line, not a crash later."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not DEVICE.fullmatch(name):
        raise MinifreezeError(f"--device {name}: use cpu, cuda, cuda:N, mps or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MinifreezeError(f"--device {name}: CUDA is not available here; use --device cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise MinifreezeError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise MinifreezeError("--device mps: MPS is not available here; use --device cpu")
    return torch.device(name)


def autocast(amp: str, device: torch.device):
    """The `--amp` context: off, bf16 (CPU and CUDA) or fp16 (CUDA only: it needs grad scaling)."""
    if amp == "off":
        return nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise MinifreezeError("--amp fp16 needs a CUDA device; on CPU use --amp bf16")
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def write_json(path: Path, payload: dict) -> None:
    """Write a JSON file whole or not at all (a reader never sees half of it), the way transformers writes
    its config files: sorted keys, indented, UTF-8 text as itself, a final newline."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def human_bytes(nbytes: float) -> str:
    """Bytes in the largest binary unit that keeps the number >= 1: 512 B, 1.5 KiB, 20.0 MiB, 1.25 GiB."""
    for unit in ("B", "KiB", "MiB"):
        if abs(nbytes) < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.2f} GiB"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM (and ru_maxrss)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """(MiB, what was measured) since the last reset_peak_memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
        return int(line.split()[1]) / 1024, "rss high-water mark"
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss (process lifetime)"


class Laps:
    """Where a run's wall time went (summary.json "timings", seconds per phase): `lap(phase)` charges the
    time since the last lap to a phase; `timed(phase, fn)` charges each call of fn. A user comparing whole
    runs needs to see loading, tokenizing, the cache build, evaluation and checkpoint writes apart from
    the training steps: that is where a whole run and an epoch benchmark differ."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.mark = time.perf_counter()

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.add(phase, now - self.mark)
        self.mark = now

    def timed(self, phase: str, fn):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - start)

        return call

    def report(self, loop: str = "loop") -> dict[str, float]:
        """The phases, with the loop's time less what `timed` charged inside it called "train_steps"."""
        inside = sum(v for k, v in self.seconds.items() if k in ("evaluation", "checkpoint_writes"))
        out = {k: v for k, v in self.seconds.items() if k != loop}
        out["train_steps"] = self.seconds.get(loop, 0.0) - inside
        return {k: round(v, 3) for k, v in out.items()}
