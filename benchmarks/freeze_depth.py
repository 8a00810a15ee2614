"""What freezing the bottom k layers buys, per depth, against the ways others freeze: the headline benchmark.

    python benchmarks/freeze_depth.py --model minilm --batch-size 32 --seq-len 64
    python benchmarks/freeze_depth.py --model minilm --batch-size 8 --seq-len 32 --steps 3 --warmup 1 \\
        --rows 0,3,6,head --bound-reps 2                                                   # quick (< 2 min)

Rows are freeze specs: every depth k = 0..L, then -1 (embeddings only), head and bitfit. For each row
the modes run side by side in one process, one step each in turn (round-robin), on the same batch:
  nograd         minifreeze as designed: the frozen prefix runs under torch.no_grad() in eval mode
  requires_grad  minifreeze, same trainable set, frozen by requires_grad=False only: the prefix runs under
                 autograd with dropout, as everyone else freezes (freeze(..., mode="requires_grad"))
  peer           transformers' AutoModelForSequenceClassification loaded from our weights, frozen by
                 requires_grad=False (same trainable set, same dropout, same optimizer settings)
  train_emb      minifreeze with trainable embeddings and layers 0..k-1 frozen (a regex: spec): gradients
                 must flow through the frozen layers to reach the embeddings, so no prefix can skip
                 autograd; only the frozen weights' gradient GEMMs are saved (rows k >= 1 only)
Per row and mode: median step time (forward + loss + backward + AdamW step) with p10/p90 and the IQR,
samples/s, bytes saved for backward, peak step memory, trainable parameters and optimizer-state bytes
(benchmarks/common.py), and the analytic bound (benchmarks/bound.py).

One epoch on real sentences per depth is benchmarks/epoch_speed.py (`--epoch` here still runs it, for
the commands that produced the committed results). Results go to benchmarks/results/<machine-tag>/ as
Markdown, JSON lines and PNG plots; benchmarks/README.md says how to read them.
"""

from __future__ import annotations

import argparse
import copy
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/X.py` in a checkout

import torch
from torch import nn

from benchmarks import common
from benchmarks.bound import block_times_record, bound_seconds, measure_blocks
from benchmarks.freeze_depth_plots import plot, replot
from benchmarks.machine import command_line, load_average, machine_tag
from benchmarks.peer import (
    build_pair,
    check_parity,
    freeze_peer,
    peer_available,
    peer_loss,
    peer_optimizer,
)
from minifreeze.batching import collate
from minifreeze.freezing import freeze

MODES = ("nograd", "requires_grad", "peer", "train_emb")
BOUND_SLACK = 1.10  # goal: a depth-k step within 10% of its analytic bound
PEER_GOAL, PEER_AIM = 1.0, 0.9  # goal and aim for ours / peer
SUMMARY_COLUMNS = (  # the summary table: header, mode, result key, format (, scale)
    ("ours / peer", "nograd", "over_peer", ".2f"),
    ("requires_grad / peer", "requires_grad", "over_peer", ".2f"),
    ("ours measured / bound", "nograd", "over_bound", ".2f"),
    ("ours k / 0", "nograd", "over_depth0", ".2f"),
    ("peer k / 0", "peer", "over_depth0", ".2f"),
    ("saved MB ours", "nograd", "saved_bytes", ".1f", common.MB),
    ("saved MB peer", "peer", "saved_bytes", ".1f", common.MB),
    ("ours samples/s", "nograd", "samples_per_s", ".1f"),
    ("peer samples/s", "peer", "samples_per_s", ".1f"),
)


# ----------------------------------------------------------------------------------------------------
# Rows and inputs


def default_rows(num_layers: int) -> list[str]:
    return [str(k) for k in range(num_layers + 1)] + ["-1", "head", "bitfit"]


def train_emb_spec(row: str, num_layers: int) -> str | None:
    """The regex spec for mode train_emb at depth k >= 1: embeddings + layers k..L-1 + head train."""
    if not re.fullmatch(r"\d+", row) or int(row) < 1:
        return None
    top = "|".join(str(i) for i in range(int(row), num_layers))
    layers = rf"|encoder\.layers\.({top})\." if top else ""
    return rf"regex:^(encoder\.embeddings\.{layers}|head\.)"


def step_batches(args: argparse.Namespace, model: nn.Module, count: int = 4) -> tuple[list, str]:
    """`count` batches of one shape: random ids, or (--inputs data) real sentences padded to --seq-len."""
    if args.inputs == "random":
        seeds = range(args.seed, args.seed + count)
        batches = [common.random_batch(model, args.batch_size, args.seq_len, s, args.device) for s in seeds]
        return batches, f"random ids, every token real, length {args.seq_len}"
    n = args.batch_size * count
    encoded, pad_id, note = common.load_sentences(
        args.dataset, args.data_dir, model, args.seq_len, n, args.seed
    )
    batches = [
        collate(encoded, range(b, b + args.batch_size), pad_id, args.seq_len, args.seq_len).to(args.device)
        for b in range(0, n, args.batch_size)
    ]
    real = sum(b.num_real_tokens for b in batches) / sum(b.num_padded_tokens for b in batches)
    text = f"{args.dataset} sentences padded to {args.seq_len} ({100 * real:.0f}% real tokens)"
    return batches, text + (f"; {note}" if note else "")


# ----------------------------------------------------------------------------------------------------
# One row: every mode timed side by side, then measured


@dataclass
class Setup:
    """The models of a run: one minifreeze instance per minifreeze mode (torch.compile and optimizers
    stay per instance), the peer (None when not requested or transformers is missing, `peer_note` says
    which), and what they share."""

    modes: list[str]  # the modes that run, in the order asked for
    models: dict[str, nn.Module]
    peer: nn.Module | None
    peer_note: str | None
    num_layers: int
    device: str
    amp: torch.dtype | None


def build_setup(args: argparse.Namespace) -> Setup:
    """The run's models from the options; the options themselves are left as given."""
    wants_peer = "peer" in args.modes
    peer_note = None if wants_peer else "peer not requested"
    if wants_peer and (reason := peer_available()):
        peer_note, wants_peer = reason, False
    ours, peer = build_pair(args.model, dropout=not args.no_dropout, with_peer=wants_peer)
    modes = [m for m in args.modes if m != "peer" or wants_peer]
    models = {}
    for i, mode in enumerate(m for m in modes if m != "peer"):
        models[mode] = (ours if i == 0 else copy.deepcopy(ours)).to(args.device).train()
    peer = peer.to(args.device).train() if peer is not None else None
    amp = torch.bfloat16 if args.dtype == "bf16" else None
    return Setup(modes, models, peer, peer_note, len(ours.encoder.layers), args.device, amp)


def row_sides(row: str, setup: Setup, args: argparse.Namespace) -> tuple[list[common.Side], dict, int | None]:
    """Freeze every mode for this row; (sides, freeze plans by mode, the peer's trainable count)."""
    sides, plans = [], {}
    for mode, model in setup.models.items():
        spec = train_emb_spec(row, setup.num_layers) if mode == "train_emb" else row
        if spec is None:
            continue
        plans[mode] = freeze(model, spec, mode="requires_grad" if mode == "requires_grad" else "no_grad")
        optimizer = common.ours_optimizer(model, plans[mode])
        sides.append(
            common.Side(
                mode, common.ours_loss(model), optimizer, setup.device, setup.amp, compile=args.compile
            )
        )
    peer_trainable = None
    if setup.peer is not None:
        reference = plans.get("nograd") or plans["requires_grad"]  # same trainable set as the peer's
        peer_trainable = freeze_peer(setup.peer, next(iter(setup.models.values())), reference)
        optimizer = peer_optimizer(setup.peer, args.peer_optimizer)
        sides.append(
            common.Side(
                "peer", peer_loss(setup.peer), optimizer, setup.device, setup.amp, compile=args.compile
            )
        )
    return sides, plans, peer_trainable


def run_row(
    row: str, setup: Setup, batches: list, blocks, args, profile: bool
) -> tuple[list[dict], dict | None]:
    """Time every mode of this row round-robin, then measure memory and the bound.

    Returns one result per mode, and profiler tables when `profile` and the row missed a step-time goal.
    """
    if args.compile:
        torch._dynamo.reset()  # compiled code of the previous row guards on a trainable set that is gone
    sides, plans, peer_trainable = row_sides(row, setup, args)
    graphs = {}  # compiled graphs before and after the timed steps: a change means a compile was timed

    def snapshot(i: int) -> None:
        if i in (args.warmup - 1, args.warmup + args.steps - 1):
            graphs[i] = torch._dynamo.utils.counters["stats"]["unique_graphs"]

    common.round_robin(sides, lambda i: batches[i % len(batches)], args.steps, args.warmup, on_step=snapshot)
    compiled_while_timed = args.compile and len(set(graphs.values())) > 1
    if compiled_while_timed:
        print(f"row {row}: torch.compile compiled during the timed steps; raise --warmup", file=sys.stderr)
    results = [measure_side(side, row, setup, plans, peer_trainable, batches[0], args) for side in sides]
    for result in results:
        result["compiled_while_timed"] = compiled_while_timed
    if blocks is not None:
        add_bounds(results, setup, plans, blocks)
    tables = None
    if profile and row_misses(results):
        tables = {
            s.name: common.profile_table(lambda s=s: s.step(batches[0]))
            for s in sides
            if s.name in ("nograd", "peer")
        }
    for side in sides:  # tensors are freed by reference counting (gc.collect would cost ~0.5 s a call here)
        side.optimizer = None
    return results, tables


def measure_side(side: common.Side, row: str, setup: Setup, plans: dict, peer_trainable, batch, args) -> dict:
    """The timed steps' summary and the memory of one mode at one row."""
    model = setup.peer if side.name == "peer" else setup.models[side.name]
    plan = plans.get(side.name)
    step = common.summary(side.times["step"])
    return {
        "kind": "row",
        "row": row,
        "spec": plan.spec if plan else row,
        "mode": side.name,
        "step": step,
        "phases_ms": {k: statistics.median(side.times[k]) * 1e3 for k in common.PHASES},
        "samples_per_s": args.batch_size / (step["median_ms"] / 1e3),
        "saved_bytes": side.saved_bytes(batch, list(model.parameters())),
        "peak_step_bytes": common.peak_step_bytes(side, batch),
        "trainable_params": peer_trainable if side.name == "peer" else plan.trainable_params,
        "optimizer_state_bytes": common.optimizer_state_bytes(side.optimizer),
        "prefix_blocks": plan.prefix_blocks if plan else None,
        "optimizer_s": statistics.median(side.times["opt"]),
    }


def add_bounds(results: list[dict], setup: Setup, plans: dict, blocks) -> None:
    """bound_ms and bound_cached_ms per mode. The bound depends on the trainable set only: the peer and
    requires_grad share nograd's (and its fused optimizer time); train_emb has its own."""
    optimizer_s = {r["mode"]: r["optimizer_s"] for r in results}
    for result in results:
        source = result["mode"] if result["mode"] in ("train_emb", "nograd") else None
        source = source or ("nograd" if "nograd" in plans else "requires_grad")
        model = setup.models[source]
        result["bound_ms"] = bound_seconds(model, blocks, optimizer_s[source]) * 1e3
        result["bound_cached_ms"] = bound_seconds(model, blocks, optimizer_s[source], cached=True) * 1e3


# ----------------------------------------------------------------------------------------------------
# Ratios, goals, tables


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


def step_markdown(results: list[dict], goals: list[dict], context: str) -> str:
    """The summary table (one line per row), the detail table (one line per row and mode), the goals."""
    by = {(r["row"], r["mode"]): r for r in results}
    rows = list(dict.fromkeys(r["row"] for r in results))
    modes = list(dict.fromkeys(r["mode"] for r in results))

    def get(row: str, mode: str, key: str, spec: str, scale: float = 1.0) -> str:
        return common.fmt(by.get((row, mode), {}).get(key), spec, scale)

    header = ["freeze"] + [column[0] for column in SUMMARY_COLUMNS]
    summary_rows = [[row] + [get(row, *column[1:]) for column in SUMMARY_COLUMNS] for row in rows]
    detail_header = ["freeze", "mode", "step ms", "p10-p90 ms", "IQR ms", "fwd / bwd / opt ms", "samples/s",
                     "saved MB", "peak MB", "trainable", "opt state MB", "bound ms", "meas / bound",
                     "cache bound ms", "k / 0"]  # fmt: skip
    fmt, mb = common.fmt, common.MB
    detail = []
    for row in rows:
        for r in (by[(row, mode)] for mode in modes if (row, mode) in by):
            s, ph = r["step"], r["phases_ms"]
            detail.append(
                [
                    row,
                    r["mode"],
                    f"{s['median_ms']:.1f}",
                    f"{s['p10_ms']:.1f}-{s['p90_ms']:.1f}",
                    f"{s['p75_ms'] - s['p25_ms']:.1f}",
                    f"{ph['fwd']:.0f} / {ph['bwd']:.0f} / {ph['opt']:.0f}",
                    f"{r['samples_per_s']:.1f}",
                    fmt(r["saved_bytes"], ".1f", mb),
                    fmt(r["peak_step_bytes"], ".0f", mb),
                    f"{r['trainable_params']:,}",
                    fmt(r["optimizer_state_bytes"], ".1f", mb),
                    fmt(r.get("bound_ms")),
                    fmt(r.get("over_bound"), ".2f"),
                    fmt(r.get("bound_cached_ms")),
                    fmt(r.get("over_depth0"), ".2f"),
                ]
            )
    out = [context, "", "### Summary (ratios; lower is better)", ""]
    out += common.markdown_table(header, "l" + "r" * 9, summary_rows)
    out += ["", "### Every mode", ""] + common.markdown_table(detail_header, "ll" + "r" * 13, detail)
    out += ["", "### Goals", ""]
    for g in goals:
        status = "met" if g["met"] else "MISSED"
        out.append(f"- {g['goal']}: **{status}** (worst: row {g['worst_row']}, {g['worst']:.2f})")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------
# The run


def run_steps(args: argparse.Namespace) -> int:
    """Every row in turn (the modes of a row interleaved), then the tables, the files and the plots."""
    load_before = load_average()
    setup = build_setup(args)
    any_model = next(iter(setup.models.values()))
    batches, input_note = step_batches(args, any_model)
    parity = check_parity(any_model, setup.peer, batches[0]) if setup.peer is not None else None
    blocks = None
    if not args.no_bound:
        freeze(any_model, 0)
        blocks = measure_blocks(any_model, batches[0], args.bound_reps, setup.device, setup.amp)
    results, profiles = [], {}
    for row in args.rows or default_rows(setup.num_layers):
        t0 = time.perf_counter()
        profile = args.profile_misses and len(profiles) < args.profile_limit
        row_results, tables = run_row(row, setup, batches, blocks, args, profile)
        results += row_results
        if tables:
            profiles[row] = tables
        brief = ", ".join(f"{r['mode']} {r['step']['median_ms']:.0f} ms" for r in row_results)
        print(f"row {row}: {brief} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    add_ratios(results)
    goals = check_goals(results, setup.num_layers)
    run_record = {
        "kind": "run", "model": common.resolve_model_name(args.model), "batch_size": args.batch_size,
        "seq_len": args.seq_len, "inputs": input_note, "dtype": args.dtype, "compile": args.compile,
        "device": setup.device, "threads": torch.get_num_threads(), "num_layers": setup.num_layers,
        "modes": setup.modes, "peer_note": setup.peer_note, "parity": parity,
    }  # fmt: skip
    records = [run_record, block_times_record(blocks)] + results + [{"kind": "goal", **g} for g in goals]
    write_step_results(args, records, profiles, load_before)
    return 0


def write_step_results(args: argparse.Namespace, records: list[dict], profiles: dict, load_before) -> None:
    """Print the tables; unless --no-write, write them, the JSON lines, the profiles and the plots."""
    run = records[0]
    results, goals = [r for r in records if r["kind"] == "row"], [r for r in records if r["kind"] == "goal"]
    variant = f"{run['dtype']}, {'torch.compile' if run['compile'] else 'eager'}, {run['device']}"
    context = (
        f"**{run['model']}**, batch {run['batch_size']} x {run['seq_len']} ({run['inputs']}), {variant}, "
        f"{run['threads']} threads, dropout {'off' if args.no_dropout else 'on (train mode)'}, "
        f"{args.steps} timed steps per mode after {args.warmup} warm-up, modes interleaved step by step; "
        f"peer optimizer: AdamW {args.peer_optimizer}; ours: fused AdamW"
        + (f"; peer: {run['peer_note']}" if run["peer_note"] else "")
        + (f"; parity max |logit diff| {run['parity']:.1e}" if run["parity"] is not None else "")
        + (" ; saved bytes measured in eager mode" if args.compile else "")
    )
    slug, kind = re.sub(r"[^A-Za-z0-9.-]+", "-", run["model"]), "compile" if args.compile else "eager"
    parts = ["freeze_depth", slug, f"{args.batch_size}x{args.seq_len}", args.dtype, kind]
    name = args.name or "_".join(parts + (["data"] if args.inputs == "data" else []))
    table = step_markdown(results, goals, context)
    if profiles:
        files = ", ".join(f"`{name}_profile_row{row}.txt`" for row in profiles)
        table += f"\n\nProfiles of the rows that missed a step-time goal: {files}"
    print(table)
    if args.no_write:
        return
    extra = {"load_average_before": load_before, "load_average_after": load_average()}
    folder = common.write_results(name, records, table, command=args.command, root=args.results_root,
                                  extra=extra, device=run["device"], jsonl=True)  # fmt: skip
    for row, tables in profiles.items():
        text = "\n\n".join(f"## {mode}\n{t}" for mode, t in tables.items())
        (folder / f"{name}_profile_row{row}.txt").write_text(text + "\n", encoding="utf-8")
    title = f"{run['model']} {args.batch_size}x{args.seq_len} {variant}, {run['threads']} threads"
    for path in plot(results, run["num_layers"], folder, name, title):
        print(f"plot: {path}", file=sys.stderr)
    print(f"results in {folder} (machine {machine_tag(run['device'])})", file=sys.stderr)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="named config (bert-base, roberta-base, distilbert, "
                   "minilm, tiny; random weights, except minilm = the bundled real MiniLM when installed), "
                   "a Hub id or a model folder")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64, help="the fixed sequence length")
    p.add_argument("--inputs", choices=["random", "data"], default="random",
                   help="random ids, or real sentences (--dataset) padded to --seq-len")  # fmt: skip
    p.add_argument("--steps", type=int, default=10, help="timed steps per mode and row")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile happens here)")
    p.add_argument(
        "--rows", default=None, help="comma-separated freeze specs (default: 0..L, -1, head, bitfit)"
    )
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the loss of every mode, anew per row"
    )
    p.add_argument("--no-bound", action="store_true", help="skip the per-block measurements and the bound")
    p.add_argument("--bound-reps", type=int, default=5, help="repetitions per block measurement")
    p.add_argument("--profile-misses", action=argparse.BooleanOptionalAction, default=True,
                   help="write torch.profiler tables for rows that miss a step-time goal")  # fmt: skip
    p.add_argument("--profile-limit", type=int, default=3, help="profile at most this many rows")
    p.add_argument("--epoch", action="store_true", help="one epoch per depth: runs benchmarks/epoch_speed.py")
    p.add_argument("--replot", metavar="JSONL", default=None, help="only redraw the plots of a result")
    common.add_options(p, *common.OPTIONS)  # threads, dtype, device, dropout, the peer's AdamW, data, files
    args = p.parse_args(argv)
    args.command = command_line(argv, "benchmarks/freeze_depth.py")
    args.rows = [r.strip() for r in args.rows.split(",")] if args.rows else None
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.device = common.resolve_device(args.device)
    if unknown := set(args.modes) - set(MODES):
        p.error(f"--modes: unknown {sorted(unknown)}; choose from {MODES}")
    if "peer" in args.modes and not {"nograd", "requires_grad"} & set(args.modes):
        p.error("--modes: the peer takes its trainable set from nograd or requires_grad; add one of them")
    if not any(m != "peer" for m in args.modes):
        p.error("--modes needs at least one minifreeze mode")
    if args.compile and args.warmup < 1:
        p.error("--compile needs --warmup >= 1 (compilation happens in the first step)")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--epoch" in argv:  # the epoch benchmark's old spelling (the README's committed command)
        from benchmarks import epoch_speed

        command = command_line(argv, "benchmarks/freeze_depth.py")
        return epoch_speed.main([a for a in argv if a != "--epoch"], command=command)
    args = parse_args(argv)
    if args.replot:
        return replot(args.replot)
    common.set_threads(args.threads)
    return run_steps(args)


if __name__ == "__main__":
    raise SystemExit(main())
