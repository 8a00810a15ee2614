"""One full fine-tuning step of our encoder against transformers' on the same weights, batch and threads.

    python benchmarks/encoder_speed.py                      # bert-base 8x128 and MiniLM 32x64, fp32, eager
    python benchmarks/encoder_speed.py --cases tiny:4x16 --steps 3 --warmup 1 --no-write   # smoke test

A step is forward + loss + backward + AdamW step + zero_grad, in train mode (dropout active in both), no
freezing. Both sides start from the same weights: ours are saved with `save_pretrained` and the peer is
`AutoModelForSequenceClassification.from_pretrained` of that folder, and the logits are compared in eval
mode before timing, so a parity bug cannot pass for a speed-up.

Sides (timed round-robin, one step each in turn, so that load from other processes hits all alike):
- `minifreeze`: `make_optimizer` (fused AdamW on CPU, decay on weights only);
- `peer-fused`: the peer with `torch.optim.AdamW(fused=True)` and the same groups and hyper-parameters,
  the fair comparison (and what the transformers Trainer uses by default with torch >= 2.8);
- `peer-default`: the peer with `torch.optim.AdamW()` left to its defaults, what a hand-written loop gets
  (on CPU that is the single-tensor for-loop implementation, neither foreach nor fused).

This file also holds the primitives that benchmarks/freeze_depth.py builds on (peer construction,
phase-timed steps, round-robin timing, percentiles, profiler tables).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python benchmarks/encoder_speed.py` from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import minifreeze  # noqa: E402
from benchmarks.machine import command_line, load_average, machine_tag, write_results  # noqa: E402
from minifreeze.freezing import FreezePlan, freeze  # noqa: E402
from minifreeze.hub import BUNDLED_MODEL, bundled_model_dir  # noqa: E402
from minifreeze.optim import make_optimizer  # noqa: E402

LR = 2e-5
WEIGHT_DECAY = 0.01


# ----------------------------------------------------------------------------------------------------
# Models: ours and the peer, from the same weights


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
    """Dropout probability 0 everywhere (ours keeps attention dropout as a float, transformers as a module)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def load_peer(folder: Path) -> nn.Module:
    """transformers' classifier for a folder we saved (an optional dependency: ImportError if absent)."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()
    with contextlib.suppress(AttributeError):
        transformers.utils.logging.disable_progress_bar()
    peer = AutoModelForSequenceClassification.from_pretrained(folder)
    # transformers sets this on the first forward with labels; setting it up front keeps the first call
    # from changing the module (under torch.compile that change would force a recompile in a timed step).
    peer.config.problem_type = peer.config.problem_type or "single_label_classification"
    return peer


def peer_available() -> str | None:
    """None when transformers can be imported, else the reason (the peer is optional)."""
    try:
        import transformers  # noqa: F401
    except ImportError as err:
        return f"transformers is not installed ({err}); the peer columns are skipped"
    return None


def build_pair(name: str, dropout: bool = True, with_peer: bool = True) -> tuple[nn.Module, nn.Module | None]:
    """Our model and (optionally) the peer loaded from our saved weights, both in train mode."""
    ours = load_ours(resolve_model_name(name))
    peer = None
    if with_peer:
        with tempfile.TemporaryDirectory() as folder:
            ours.save_pretrained(folder)
            peer = load_peer(Path(folder))
    for model in (ours, peer):
        if model is not None:
            if not dropout:
                disable_dropout(model)
            model.train()
    return ours, peer


def check_parity(ours: nn.Module, peer: nn.Module, batch: Batch) -> float:
    """Max |logit difference| in eval mode: proves both sides compute the same function before timing."""
    ours.eval()
    peer.eval()
    with torch.no_grad():
        a = ours(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        b = peer(**batch.peer_inputs()).logits
    ours.train()
    peer.train()
    diff = (a - b).abs().max().item()
    if diff > 1e-3 * max(1.0, b.abs().max().item()):
        raise RuntimeError(f"ours and the peer disagree (max |logit diff| {diff:.2e}): not the same model")
    return diff


def no_decay_peer(name: str) -> bool:
    """transformers' names for what `minifreeze.optim.no_decay` exempts: biases and LayerNorm weights."""
    return name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name


def peer_optimizer(peer: nn.Module, impl: str = "fused", lr: float = LR) -> torch.optim.Optimizer:
    """torch AdamW over the peer's trainable parameters, same groups and hyper-parameters as ours.

    impl: `fused` (fused=True), `foreach` (foreach=True) or `default` (torch picks; on CPU the for-loop).
    """
    named = [(n, p) for n, p in peer.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not no_decay_peer(n)], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in named if no_decay_peer(n)], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    kwargs = {"fused": dict(fused=True), "foreach": dict(foreach=True), "default": {}}[impl]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, **kwargs)


def ours_optimizer(model: nn.Module, plan: FreezePlan, lr: float = LR) -> torch.optim.Optimizer:
    return make_optimizer(model, plan, lr, weight_decay=WEIGHT_DECAY)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t)
    )


# ----------------------------------------------------------------------------------------------------
# Batches


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    labels: torch.Tensor

    def peer_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs

    def to(self, device: str) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(
            move(self.input_ids), move(self.attention_mask), move(self.token_type_ids), move(self.labels)
        )

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]


def random_batch(model: nn.Module, batch_size: int, length: int, seed: int = 0, device: str = "cpu") -> Batch:
    """Random ids of one fixed length (every token real), away from the special ids at the vocab's start."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    low = min(1000, cfg.vocab_size // 2)
    ids = torch.randint(low, cfg.vocab_size, (batch_size, length), generator=g)
    labels = torch.randint(0, cfg.num_labels, (batch_size,), generator=g)
    types = torch.zeros_like(ids) if cfg.has_token_types else None
    return Batch(ids, torch.ones_like(ids), types, labels).to(device)


# ----------------------------------------------------------------------------------------------------
# Timed steps


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class Side:
    """One thing being timed: a model with its loss function and optimizer. `loss_fn(batch)` -> loss."""

    name: str
    loss_fn: Callable[[Batch], torch.Tensor]
    optimizer: torch.optim.Optimizer | None
    device: str = "cpu"
    amp: torch.dtype | None = None  # autocast dtype, None for fp32
    times: dict[str, list[float]] = field(
        default_factory=lambda: {"step": [], "fwd": [], "bwd": [], "opt": []}
    )

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=self.amp)

    def step(self, batch: Batch) -> dict[str, float]:
        """One training step; returns the seconds of each phase (synchronised on CUDA)."""
        sync = lambda: synchronize(self.device)  # noqa: E731
        sync()
        t0 = time.perf_counter()
        with self.autocast():
            loss = self.loss_fn(batch)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        return {"step": t3 - t0, "fwd": t1 - t0, "bwd": t2 - t1, "opt": t3 - t2}

    def record(self, phases: dict[str, float]) -> None:
        for key, value in phases.items():
            self.times[key].append(value)


def ours_loss(model: nn.Module) -> Callable[[Batch], torch.Tensor]:
    return lambda b: model.loss(b.input_ids, b.attention_mask, b.token_type_ids, b.labels)[0]


def peer_loss(peer: nn.Module) -> Callable[[Batch], torch.Tensor]:
    return lambda b: peer(**b.peer_inputs(), labels=b.labels).loss


def round_robin(
    sides: list[Side], batch_for: Callable[[int], Batch], steps: int, warmup: int, on_step=None
) -> None:
    """Warm-up, then `steps` rounds in which every side takes one step; only the timed rounds are kept.

    Interleaving is what makes the comparison robust on a shared machine: a burst of load from another
    process slows every side's step of that round instead of all steps of one side.
    """
    for i in range(warmup + steps):
        batch = batch_for(i)
        for side in sides:
            phases = side.step(batch)
            if i >= warmup:
                side.record(phases)
        if on_step is not None:
            on_step(i)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); statistics.quantiles needs more points than we have."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float]) -> dict[str, float]:
    """Median, IQR bounds and p10/p90 in milliseconds."""
    ms = [v * 1e3 for v in values]
    return {
        "median_ms": statistics.median(ms),
        "p10_ms": percentile(ms, 10),
        "p25_ms": percentile(ms, 25),
        "p75_ms": percentile(ms, 75),
        "p90_ms": percentile(ms, 90),
        "n": len(ms),
    }


def profile_table(step: Callable[[], object], steps: int = 2, row_limit: int = 25) -> str:
    """torch.profiler's op table (by self CPU time) over a few steps: where the time of a step goes."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first inter-op parallel work
        torch.set_num_interop_threads(1)


# ----------------------------------------------------------------------------------------------------
# The benchmark


def parse_case(text: str) -> tuple[str, int, int]:
    """`bert-base:8x128` -> ("bert-base", 8, 128)."""
    name, _, shape = text.rpartition(":")
    try:
        batch, length = (int(x) for x in shape.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--cases {text!r}: expected MODEL:BATCHxLENGTH, e.g. bert-base:8x128") from None
    return name, batch, length


def run_case(name: str, batch_size: int, length: int, args: argparse.Namespace) -> tuple[dict, dict]:
    ours, peer = build_pair(name, dropout=not args.no_dropout)
    plan = freeze(ours, 0)
    batch = random_batch(ours, batch_size, length, seed=args.seed)
    parity = check_parity(ours, peer, batch)
    amp = torch.bfloat16 if args.dtype == "bf16" else None
    sides = [
        Side("minifreeze", ours_loss(ours), ours_optimizer(ours, plan), amp=amp),
        Side("peer-fused", peer_loss(peer), peer_optimizer(peer, "fused"), amp=amp),
    ]
    if not args.no_default_peer:
        # A second optimizer over the same peer parameters: the model's speed does not depend on its
        # weights, and one model for both keeps memory (and cache behaviour) identical.
        sides.append(Side("peer-default", peer_loss(peer), peer_optimizer(peer, "default"), amp=amp))
    round_robin(sides, lambda i: batch, args.steps, args.warmup)
    row = {
        "model": resolve_model_name(name),
        "batch_size": batch_size,
        "seq_len": length,
        "dtype": args.dtype,
        "dropout": not args.no_dropout,
        "threads": torch.get_num_threads(),
        "parity_max_abs_logit_diff": parity,
        "sides": {s.name: {phase: summary(v) for phase, v in s.times.items()} for s in sides},
    }
    base = row["sides"]["minifreeze"]["step"]["median_ms"]
    row["ours_over_peer_fused"] = base / row["sides"]["peer-fused"]["step"]["median_ms"]
    if "peer-default" in row["sides"]:
        row["ours_over_peer_default"] = base / row["sides"]["peer-default"]["step"]["median_ms"]
    profiles = {}
    if args.profile:
        for side in sides:
            profiles[side.name] = profile_table(lambda s=side: s.step(batch), steps=args.profile_steps)
    return row, profiles


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | batch | side | step ms (median) | p10-p90 ms | fwd ms | bwd ms | optimizer ms | ours / side |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours = row["sides"]["minifreeze"]["step"]["median_ms"]
        for name, phases in row["sides"].items():
            s = phases["step"]
            lines.append(
                f"| {row['model']} | {row['batch_size']}x{row['seq_len']} | {name} | {s['median_ms']:.1f} | "
                f"{s['p10_ms']:.1f}-{s['p90_ms']:.1f} | {phases['fwd']['median_ms']:.1f} | "
                f"{phases['bwd']['median_ms']:.1f} | {phases['opt']['median_ms']:.1f} | "
                f"{ours / s['median_ms']:.3f} |"
            )
    lines.append("")
    lines.append(
        "Goal: ours / peer-fused <= 1.0. "
        + "; ".join(f"{r['model']}: {r['ours_over_peer_fused']:.3f}" for r in rows)
        + ". Same weights (max |logit diff| in eval mode: "
        + ", ".join(f"{r['parity_max_abs_logit_diff']:.1e}" for r in rows)
        + f"), {rows[0]['dtype']}, dropout {'on' if rows[0]['dropout'] else 'off'}, "
        f"{rows[0]['threads']} threads, {rows[0]['sides']['minifreeze']['step']['n']} timed steps per side "
        "after warm-up, sides interleaved step by step."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["bert-base:8x128", "minilm:32x64"],
        help="MODEL:BATCHxLENGTH; MODEL is a named config, Hub id or folder (minilm = the bundled MiniLM)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = CPU autocast")
    parser.add_argument("--no-dropout", action="store_true", help="dropout p=0 on both sides")
    parser.add_argument("--no-default-peer", action="store_true", help="skip the peer with default AdamW")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="write torch.profiler tables per side")
    parser.add_argument("--profile-steps", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; write nothing under results/")
    parser.add_argument(
        "--results-root", default=None, help="folder for <machine-tag>/ (default benchmarks/results)"
    )
    args = parser.parse_args(argv)
    reason = peer_available()
    if reason:
        print(f"encoder_speed: {reason}: nothing to compare", file=sys.stderr)
        return 0
    set_threads(args.threads)
    load_before = load_average()
    rows, all_profiles = [], {}
    for case in args.cases:
        name, batch_size, length = parse_case(case)
        row, profiles = run_case(name, batch_size, length, args)
        rows.append(row)
        all_profiles[f"{name.replace('/', '_').replace(':', '_')}_{batch_size}x{length}"] = profiles
        print(f"{case}: ours/peer-fused {row['ours_over_peer_fused']:.3f}", file=sys.stderr, flush=True)
    table = markdown(rows)
    print(table)
    if args.no_write:
        return 0
    name = "encoder_speed" + ("_bf16" if args.dtype == "bf16" else "")
    extra = {"load_average_before": load_before, "load_average_after": load_average()}
    folder = write_results(
        name, rows, table, command=command_line(), root=args.results_root, extra=extra, jsonl=True
    )
    for case, profiles in all_profiles.items():
        if profiles:
            text = "\n\n".join(f"## {side}\n{table_}" for side, table_ in profiles.items())
            (folder / f"{name}_profile_{case}.txt").write_text(text + "\n", encoding="utf-8")
    print(f"results in {folder} (machine {machine_tag()})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
