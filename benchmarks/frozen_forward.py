"""Why is a no_grad prefix faster than `requires_grad=False` freezing? Take one frozen forward apart.

With frozen embeddings, `requires_grad=False` alone already stores nothing for the frozen layers (autograd
records no op whose inputs need no gradient), so the activation memory of the two is the same: the
freeze-depth benchmark shows equal "saved MB". What differs is the time of the frozen layers' forward.
Two things can cost time there: grad mode itself (autograd checks every op) and train mode (dropout
draws a random mask per activation, and attention with dropout cannot take SDPA's fused kernel).
This script times the forward of a fully frozen encoder in the four combinations, interleaved:

    python benchmarks/frozen_forward.py --model minilm --batch-size 32 --seq-len 64 --threads 1

minifreeze's prefix is "eval, no_grad"; `requires_grad=False` freezing as usually done is
"train, grad mode"; `--frozen-dropout` keeps "train" inside the prefix.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/X.py` in a checkout

import torch

from benchmarks import common
from benchmarks.machine import command_line, load_average

CASES = {  # name: (train mode, grad mode)
    "eval, no_grad (minifreeze's prefix)": (False, False),
    "eval, grad mode": (False, True),
    "train (dropout), no_grad (--frozen-dropout)": (True, False),
    "train (dropout), grad mode (requires_grad=False)": (True, True),
}


def forward_side(name: str, encoder, train: bool, grad: bool) -> common.Side:
    """The frozen encoder's forward alone (no backward, no optimizer), in one train/grad mode."""

    def forward(batch):
        with torch.set_grad_enabled(grad):
            return encoder(*batch)

    return common.Side(name, forward, backward=None, prepare=lambda batch: (encoder.train(train), batch)[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm", help="named config, folder, Hub id or bundled:minilm")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--reps", type=int, default=8, help="timed forwards per case (after 2 untimed)")
    common.add_options(p, "--threads", "--results-root", "--no-write", threads=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = common.load_ours(common.resolve_model_name(args.model))
    model.requires_grad_(False)
    vocab = model.config.vocab_size
    ids = torch.randint(vocab // 10, vocab, (args.batch_size, args.seq_len))  # ordinary tokens, no specials
    batch = (ids, torch.ones_like(ids))
    sides = [forward_side(name, model.encoder, *modes) for name, modes in CASES.items()]
    common.round_robin(
        sides, lambda i: batch, args.reps, warmup=2
    )  # interleaved: load bursts hit every case alike
    base = statistics.median(sides[0].times["step"])
    rows = [
        {"case": s.name, "median_ms": 1000 * statistics.median(s.times["step"]),
         "vs_prefix": statistics.median(s.times["step"]) / base}
        for s in sides
    ]  # fmt: skip
    title = f"{args.model} {args.batch_size}x{args.seq_len}, {args.threads} threads, load {load_average()}"
    table = [[r["case"], f"{r['median_ms']:.0f}", f"{r['vs_prefix']:.2f}"] for r in rows]
    header = ["case", "median ms", "vs minifreeze's prefix"]
    markdown = "\n".join([f"Frozen encoder forward, {title}\n", *common.markdown_table(header, "lrr", table)])
    print(markdown)
    if not args.no_write:
        slug = args.model.replace("/", "-").replace(":", "-")
        name = f"frozen_forward_{slug}_{args.batch_size}x{args.seq_len}"
        command = command_line(argv, "benchmarks/frozen_forward.py")
        folder = common.write_results(name, rows, markdown, command=command, root=args.results_root)
        print(f"written: {folder / name}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
