"""The checks a run's options get before anything touches the disk, and the rules of --resume.

`check(cfg)` refuses values that would silently do something other than asked (`--epochs 0` still training a
step, `--max-length 1` turning truncation off, `--patience -1` stopping at once): one line naming the flag,
the value and the valid range. `check_steps` does the same for the options counted in steps, once the
data says how many steps there are. `resumed(...)` turns `--out DIR --resume` into the saved options and
refuses, by name, any flag that would change what the run computes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from . import cli, runlog
from .errors import MinifreezeError
from .runtime import DEVICE

# Flags a resumed run may change: how fast it goes and where it runs, not what it computes (a different
# thread count or device can change the last bits of the floats, nothing more).
# What it logs may change too (--log-every, --report-to).
RESUME_MAY_CHANGE = (
    *("out", "resume", "progress", "threads", "device", "cache_dir", "cache_max_gb"),
    *("log_every", "report_to"),
)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def at_least(cfg, name: str, low, why: str = "") -> None:
    value = getattr(cfg, name)
    if value is not None and not math.isfinite(value):
        raise MinifreezeError(f"{flag(name)} {value}: must be a finite number, at least {low}")
    if value is not None and value < low:
        raise MinifreezeError(f"{flag(name)} {value}: must be at least {low}{why}")


def check(cfg) -> None:
    """Refuse option values outside their range (a TrainConfig; raises MinifreezeError)."""
    for name in ("epochs", "max_steps", "batch_size", "grad_accum", "eval_batch_size", "threads"):
        at_least(cfg, name, 1)
    for name in ("weight_decay", "max_grad_norm", "patience", "train_size", "cache_max_gb", "log_every"):
        at_least(cfg, name, 0)
    pair = " for a text pair" if cfg.text_pair_column else ""
    room = " ([CLS] a [SEP] b [SEP])" if pair else " (room for [CLS], one token and [SEP])"
    at_least(cfg, "max_length", 5 if pair else 3, room)
    if not 0 < cfg.lr_decay <= 1:
        raise MinifreezeError(
            f"--lr-decay {cfg.lr_decay}: must be in (0, 1] (1 = no decay; 0.9 is a common choice)"
        )
    if not 0 <= cfg.heldout < 1:
        raise MinifreezeError(
            f"--heldout {cfg.heldout}: must be in [0, 1), e.g. 0.5 (half the validation set)"
        )
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise MinifreezeError(f"--lr {cfg.lr}: must be a positive number, such as 5e-5")
    if cfg.batch_size % cfg.grad_accum:
        raise MinifreezeError(
            f"--batch-size {cfg.batch_size} is not divisible by --grad-accum {cfg.grad_accum}"
        )
    if not DEVICE.fullmatch(cfg.device):
        raise MinifreezeError(f"--device {cfg.device}: use cpu, cuda, cuda:N, mps or auto")
    if cfg.report_to == "tensorboard":
        runlog.summary_writer_class()  # missing package: one line now, not after the data and model loaded
    steps_from(cfg.warmup, 1, 1, "warmup", minimum=0)
    eval_steps(cfg.eval_every, 1, 1)


def warmup_ratio(text: str) -> str:
    """Trainer's --warmup-ratio R as our --warmup: a fraction of all steps, which ours writes below 1."""
    try:
        ratio = float(text)
    except ValueError:
        ratio = math.nan
    if not 0 <= ratio < 1:
        raise MinifreezeError(f"--warmup-ratio {text}: use a fraction of all steps, 0 <= R < 1")
    return str(ratio)


def steps_from(text: str, steps_per_epoch: int, total_steps: int, option: str, minimum: int = 0) -> int:
    """'200' -> 200 steps, '0.1' -> 10% of all steps, '1ep' / '0.5ep' -> epochs' worth of steps."""
    usage = f"--{option} {text!r}: use N steps, a fraction like 0.1, or epochs like 1ep"
    try:
        if text.endswith("ep"):
            value = float(text[:-2])
            steps = value * steps_per_epoch
        else:
            value = float(text)
            steps = value * total_steps if 0 < value < 1 else value
    except ValueError:
        raise MinifreezeError(usage) from None
    if not math.isfinite(value) or value < 0 or (minimum > 0 and value == 0):
        raise MinifreezeError(f"{usage} ({'above 0' if minimum else 'at least 0'})")
    if not text.endswith("ep") and value >= 1 and value != int(value):
        raise MinifreezeError(f"{usage} (a step count is a whole number)")
    return max(minimum, round(steps))


def check_steps(cfg, steps_per_epoch: int, total_steps: int) -> tuple[int, int]:
    """(warm-up steps, evaluate every N steps) for this run's length; warm-up may not outlast the run."""
    warmup = steps_from(cfg.warmup, steps_per_epoch, total_steps, "warmup")
    if warmup > total_steps:
        raise MinifreezeError(
            f"--warmup {cfg.warmup} is {warmup} steps but the run has {total_steps}: the learning rate "
            "would never reach --lr; use fewer warm-up steps (or a fraction like 0.1)"
        )
    return warmup, eval_steps(cfg.eval_every, steps_per_epoch, total_steps)


def eval_steps(text: str, steps_per_epoch: int, total_steps: int) -> int:
    """Evaluate every this many steps; `none` leaves one evaluation, after the last step (which also saves
    the model: a run always ends with one)."""
    if text.lower() == "none":
        return total_steps
    return steps_from(text, steps_per_epoch, total_steps, "eval-every", minimum=1)


def resumed(cls: type, typed: dict) -> object:
    """The saved options of the run in `--out`, for --resume; `typed` holds the flags given on the command
    line. A typed flag that differs from the saved value is refused unless it is in RESUME_MAY_CHANGE."""
    out = typed.get("out")
    config = Path(out or ".") / "config.json"
    if not out or not config.is_file():
        raise MinifreezeError("--resume needs --out DIR of an earlier run (with DIR/config.json)")
    if "config" in typed:
        raise MinifreezeError("--resume continues with the options in DIR/config.json; drop --config")
    if typed.get("overwrite"):
        raise MinifreezeError("--resume continues the run in --out and --overwrite replaces it: pick one")
    try:
        saved = json.loads(config.read_text())
    except (ValueError, OSError) as err:
        raise MinifreezeError(
            f"--resume: {config} cannot be read ({err}); start again with --overwrite"
        ) from None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(saved) - set(fields))
    if unknown:
        raise MinifreezeError(
            f"--resume: {config} has options this minifreeze does not know ({', '.join(unknown)}): "
            "resume it with the version that started it"
        )
    values = {k: cli.coerce(v, fields[k], config) if v is not None else None for k, v in saved.items()}
    for name, given in typed.items():
        if (
            name in fields
            and name not in RESUME_MAY_CHANGE
            and given != values.get(name, fields[name].default)
        ):
            raise MinifreezeError(
                f"--resume continues with the saved options; {flag(name)} cannot change "
                f"(saved {values.get(name, fields[name].default)}, given {given})"
            )
    changes = {k: v for k, v in typed.items() if k in RESUME_MAY_CHANGE}
    return cls(**{**values, **changes, "resume": True, "overwrite": False, "out": out})


def finished(out: Path) -> dict | None:
    """The summary of a run in `out` that is done (completed or stopped early), else None: a run stopped by
    a signal also writes summary.json, but its "signal" says it can go on."""
    path = Path(out) / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    stopped = str(summary.get("stopped", ""))
    return None if summary.get("signal") or stopped.startswith("stopped by signal") else summary
