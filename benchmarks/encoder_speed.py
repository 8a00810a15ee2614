"""One full fine-tuning step of our encoder against transformers' on the same weights, batch and threads.

    python benchmarks/encoder_speed.py                      # bert-base 8x128 and MiniLM 32x64, fp32, eager
    python benchmarks/encoder_speed.py --cases tiny:4x16 --steps 3 --warmup 1 --no-write   # smoke test

A step is forward + loss + backward + AdamW step + zero_grad, in train mode (dropout active in both), no
freezing. Both sides start from the same weights (benchmarks/peer.py: ours saved with `save_pretrained`,
the peer `from_pretrained`s it), and the logits are compared in eval mode before timing, so a parity bug
cannot pass for a speed-up.

Sides (timed round-robin, one step each in turn, so that load from other processes hits all alike):
- `minifreeze`: `make_optimizer` (fused AdamW on CPU, decay on weights only);
- `peer-fused`: the peer with `torch.optim.AdamW(fused=True)` and the same groups and hyper-parameters,
  the fair comparison (and what the transformers Trainer uses by default with torch >= 2.8);
- `peer-default`: the peer with `torch.optim.AdamW()` left to its defaults, what a hand-written loop gets
  (on CPU that is the single-tensor for-loop implementation, neither foreach nor fused).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/X.py` in a checkout

import torch

from benchmarks import common
from benchmarks.machine import command_line, load_average, machine_tag
from benchmarks.peer import build_pair, check_parity, peer_available, peer_loss, peer_optimizer
from minifreeze.freezing import freeze


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
    batch = common.random_batch(ours, batch_size, length, seed=args.seed)
    parity = check_parity(ours, peer, batch)
    amp = torch.bfloat16 if args.dtype == "bf16" else None
    sides = [
        common.Side("minifreeze", common.ours_loss(ours), common.ours_optimizer(ours, plan), amp=amp),
        common.Side("peer-fused", peer_loss(peer), peer_optimizer(peer, "fused"), amp=amp),
    ]
    if not args.no_default_peer:
        # A second optimizer over the same peer parameters: the model's speed does not depend on its
        # weights, and one model for both keeps memory (and cache behaviour) identical.
        sides.append(common.Side("peer-default", peer_loss(peer), peer_optimizer(peer, "default"), amp=amp))
    common.round_robin(sides, lambda i: batch, args.steps, args.warmup)
    row = {
        "model": common.resolve_model_name(name),
        "batch_size": batch_size,
        "seq_len": length,
        "dtype": args.dtype,
        "dropout": not args.no_dropout,
        "threads": torch.get_num_threads(),
        "parity_max_abs_logit_diff": parity,
        "sides": {s.name: {phase: common.summary(s.times[phase]) for phase in common.PHASES} for s in sides},
    }
    base = row["sides"]["minifreeze"]["step"]["median_ms"]
    row["ours_over_peer_fused"] = base / row["sides"]["peer-fused"]["step"]["median_ms"]
    if "peer-default" in row["sides"]:
        row["ours_over_peer_default"] = base / row["sides"]["peer-default"]["step"]["median_ms"]
    profiles = {}
    if args.profile:
        for side in sides:
            profiles[side.name] = common.profile_table(lambda s=side: s.step(batch), steps=args.profile_steps)
    return row, profiles


def markdown(rows: list[dict]) -> str:
    header = ["model", "batch", "side", "step ms (median)", "p10-p90 ms", "fwd ms", "bwd ms", "optimizer ms",
              "ours / side"]  # fmt: skip
    table = []
    for row in rows:
        ours = row["sides"]["minifreeze"]["step"]["median_ms"]
        for name, phases in row["sides"].items():
            s, shape = phases["step"], f"{row['batch_size']}x{row['seq_len']}"
            spread = f"{s['p10_ms']:.1f}-{s['p90_ms']:.1f}"
            parts = [f"{phases[p]['median_ms']:.1f}" for p in ("fwd", "bwd", "opt")]
            ratio = f"{ours / s['median_ms']:.3f}"
            table.append([row["model"], shape, name, f"{s['median_ms']:.1f}", spread, *parts, ratio])
    lines = common.markdown_table(header, "lll" + "r" * 6, table)
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
    parser.add_argument("--steps", type=int, default=15, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--no-default-peer", action="store_true", help="skip the peer with default AdamW")
    parser.add_argument("--profile", action="store_true", help="write torch.profiler tables per side")
    parser.add_argument("--profile-steps", type=int, default=2)
    common.add_options(
        parser, "--threads", "--dtype", "--no-dropout", "--seed", "--results-root", "--no-write"
    )
    args = parser.parse_args(argv)
    reason = peer_available()
    if reason:
        print(f"encoder_speed: {reason}: nothing to compare", file=sys.stderr)
        return 0
    common.set_threads(args.threads)
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
    folder = common.write_results(
        name,
        rows,
        table,
        command=command_line(argv, "benchmarks/encoder_speed.py"),
        root=args.results_root,
        extra=extra,
        jsonl=True,
    )
    for case, profiles in all_profiles.items():
        if profiles:
            text = "\n\n".join(f"## {side}\n{table_}" for side, table_ in profiles.items())
            (folder / f"{name}_profile_{case}.txt").write_text(text + "\n", encoding="utf-8")
    print(f"results in {folder} (machine {machine_tag()})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
