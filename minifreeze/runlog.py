"""What a run tells while it trains: the start banner, the progress, DIR/train_log.jsonl, TensorBoard.

- The banner (`banner`) is one block before the loop: what runs, where, on how much, how long.
- Progress: on a terminal, a tqdm bar whose elapsed time and ETA count training steps only (evaluations
  and checkpoint saves are left out: the bar's clock is set from the seconds spent in steps), and a
  transient `eval` bar during each evaluation. Without a terminal (a log file, CI), a plain line every
  10% of the steps or every 30 s instead of a stream of carriage returns.
- Every `--log-every N` optimizer steps one JSON line goes to DIR/train_log.jsonl with the window's mean
  train loss, and the bar's postfix shows the same numbers; `--report-to tensorboard` writes them, and
  each evaluation's metrics, to DIR/tensorboard/. Fields and files: docs/logging.md.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .errors import MinifreezeError
from .run_folder import disk_errors

TRAIN_LOG = "train_log.jsonl"
NO_TENSORBOARD = "tensorboard is not installed: pip install tensorboard, or drop --report-to"
LINE_EVERY_SECONDS = 30.0  # without a terminal: a progress line at least this often,
LINE_EVERY_FRACTION = 0.1  # and at every tenth of the run
EVAL_SCALARS = ("loss", "accuracy", "f1", "mcc")
clock = time.time  # the wall clock of the logs and the plain lines (a test sets it)


def now() -> str:
    """The time stamp of every log record: ISO-8601 UTC to the millisecond, e.g. 2026-12-01T19:15:06.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summary_writer_class():
    """torch's SummaryWriter; it needs the `tensorboard` package, which minifreeze does not require."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MinifreezeError(NO_TENSORBOARD) from None
    return SummaryWriter


def tensorboard_writer(log_dir: Path, purge_step: int | None):
    """A writer into `log_dir`; on --resume, `purge_step` drops the events the killed run logged past its
    checkpoint (TensorBoard's own mechanism), as trim_metrics does for the JSONL files."""
    return summary_writer_class()(str(log_dir), purge_step=purge_step)


def clip_gradients(params: list[torch.Tensor], max_norm: float, measure: bool) -> torch.Tensor | None:
    """Clip to `max_norm` (0 = off) and return the total gradient norm before clipping: clip_grad_norm_'s
    value when it clips; without clipping the norm costs a pass over the gradients, so it is computed only
    when `measure` (a step whose numbers are logged), else None."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params if p.grad is not None]
    if not (measure and grads):
        return None
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class RunLog:
    """The loop's reporter: `step` after each optimizer step, `evaluating` around each evaluation,
    `evaluated` with its record, `close` at the end. Only rank 0 (`main`) shows or writes anything."""

    def __init__(self, cfg, out: Path, info, progress, total_steps: int, steps_per_epoch: int):
        self.cfg, self.every, self.out = cfg, cfg.log_every, Path(out)
        self.main, self.world_size = info.is_main, info.world_size
        self.total, self.per_epoch = total_steps, steps_per_epoch
        show = cfg.progress and self.main
        self.terminal = show and sys.stderr.isatty()
        self.lines = show and not self.terminal
        # smoothing=0: the rate is steps done / elapsed, and step() sets elapsed to training time only
        self.bar = tqdm(
            total=total_steps, initial=progress.step, desc="train", disable=not self.terminal,
            dynamic_ncols=True, smoothing=0,
        )  # fmt: skip
        self.started, self.last_line = clock(), clock()
        self.first_step, self.seconds_before = progress.step, progress.train_seconds
        self.next_line_step = progress.step + self.line_steps()
        self.window_start(progress)
        self.shown: dict = {}
        resumed_at = progress.step + 1 if cfg.resume else None
        wanted = self.main and cfg.report_to == "tensorboard"
        with disk_errors(self.out):  # SummaryWriter makes its folder now
            self.writer = tensorboard_writer(self.out / "tensorboard", resumed_at) if wanted else None

    def banner(self, model, plan, device: torch.device, examples: tuple[int, int]) -> str:
        """The block a run prints once before its first step: what runs, where, on how much, how long."""
        cfg, world = self.cfg, self.world_size
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        length = f"--max-steps {cfg.max_steps}" if cfg.max_steps else f"{cfg.epochs} epochs"
        micro = cfg.batch_size // cfg.grad_accum
        rows = [
            ("model", f"{cfg.model} ({model.config.family}, {model.config.num_layers} layers)"),
            ("device", f"{device}, {dtype}, amp {cfg.amp}, torch threads {torch.get_num_threads()}"),
            ("examples", f"{examples[0]:,} train, {examples[1]:,} validation"),
            ("steps", f"{self.per_epoch:,} per epoch, {self.total:,} in all ({length})"),
            (
                "batch",
                f"{cfg.batch_size} per step in micro-batches of {micro} (--grad-accum {cfg.grad_accum}); "
                f"world size {world}: {math.ceil(cfg.batch_size / world)} per device per step",
            ),
            ("freeze", plan.summary().splitlines()[0].removeprefix("freeze ")),
            ("run folder", str(self.out)),
        ]
        return "\n".join(["minifreeze train", *(f"  {name:<10}  {value}" for name, value in rows)])

    def line_steps(self) -> int:
        return max(1, round(self.total * LINE_EVERY_FRACTION))

    def window_start(self, progress) -> None:
        self.losses: list[float] = []
        self.examples, self.seconds = progress.train_examples, progress.train_seconds

    def due(self, step: int) -> bool:
        """Whether `step` closes a logging window (every --log-every steps, and the run's last step)."""
        return self.every > 0 and (step % self.every == 0 or step >= self.total)

    def step(self, progress, loss: float, lr: float, grad_norm: torch.Tensor | None) -> None:
        """After an optimizer step: close the window when due (log it, show it), move the bar on."""
        self.losses.append(loss)
        if self.due(progress.step) or self.every == 0:  # --log-every 0: the bar shows each step
            record = self.window_record(progress, lr, grad_norm)
            self.window_start(progress)
            self.shown = {
                "loss": f"{record['train_loss']:.4f}",
                "lr": f"{lr:.2e}",
                **({"grad_norm": f"{record['grad_norm']:.3f}"} if record["grad_norm"] is not None else {}),
                "samples_s": f"{record['samples_per_second']:.1f}",
                "epoch": f"{record['epoch']:.2f}",
            }
            self.bar.set_postfix(self.shown, refresh=False)
            if self.main and self.every:
                self.write(record)
        trained = progress.train_seconds - self.seconds_before
        self.bar.start_t = time.time() - trained  # tqdm's clock: elapsed and ETA count training time only
        self.bar.update(1)
        self.maybe_print_line(progress.step, trained)

    def window_record(self, progress, lr: float, grad_norm: torch.Tensor | None) -> dict:
        norm = None if grad_norm is None else float(grad_norm)
        seconds = progress.train_seconds - self.seconds
        return {
            "step": progress.step,
            "epoch": progress.epoch + progress.batch_in_epoch / self.per_epoch,
            "train_loss": sum(self.losses) / len(self.losses),
            "lr": lr,
            "grad_norm": norm if norm is not None and math.isfinite(norm) else None,  # fp16 overflow: null
            "samples_per_second": (progress.train_examples - self.examples) / max(seconds, 1e-9),
            "train_seconds": progress.train_seconds,
            "elapsed_seconds": clock() - self.started,
            "time": now(),
        }

    def write(self, record: dict) -> None:
        with disk_errors(self.out):
            with open(self.out / TRAIN_LOG, "a") as log:
                log.write(json.dumps(record) + "\n")
            if self.writer is not None:
                for name in ("train_loss", "lr", "grad_norm", "samples_per_second"):
                    if record[name] is not None:
                        self.writer.add_scalar(
                            f"train/{name.removeprefix('train_')}", record[name], record["step"]
                        )

    def maybe_print_line(self, step: int, trained: float) -> None:
        """Without a terminal: one plain line now and then (see LINE_EVERY_*), never a carriage return."""
        if not self.lines:
            return
        if step < self.total and step < self.next_line_step and clock() - self.last_line < LINE_EVERY_SECONDS:
            return
        self.last_line, self.next_line_step = clock(), step + self.line_steps()
        done = step - self.first_step
        eta = (self.total - step) * trained / max(done, 1)
        numbers = "".join(f"  {name} {value}" for name, value in self.shown.items())
        print(
            f"train {step}/{self.total} ({100 * step / self.total:.0f}%){numbers}  eta {eta:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    @contextmanager
    def evaluating(self, examples: int, batch_size: int):
        """A transient `eval` bar (terminal only) for one evaluation; yields the function to call per batch."""
        bar = tqdm(
            total=math.ceil(examples / batch_size), desc="eval", leave=False, disable=not self.terminal,
            dynamic_ncols=True,
        )  # fmt: skip
        try:
            yield bar.update
        finally:
            bar.close()

    def evaluated(self, record: dict) -> None:
        """An evaluation's record (as in metrics.jsonl) to TensorBoard."""
        if self.writer is not None:
            with disk_errors(self.out):
                for name in EVAL_SCALARS:
                    self.writer.add_scalar(f"eval/{name}", record[name], record["step"])

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            with disk_errors(self.out):
                self.writer.close()
