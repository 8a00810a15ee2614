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
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `minifreeze` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.encoder_speed import load_ours, resolve_model_name  # noqa: E402
from benchmarks.machine import command_line, load_average, write_results  # noqa: E402

CASES = {  # name: (train mode, grad mode)
    "eval, no_grad (minifreeze's prefix)": (False, False),
    "eval, grad mode": (False, True),
    "train (dropout), no_grad (--frozen-dropout)": (True, False),
    "train (dropout), grad mode (requires_grad=False)": (True, True),
}


def time_forward(encoder, ids, mask, train: bool, grad: bool) -> float:
    encoder.train(train)
    with torch.set_grad_enabled(grad):
        started = time.perf_counter()
        encoder(ids, mask)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm", help="named config, folder, Hub id or bundled:minilm")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=8, help="timed forwards per case (after 2 untimed)")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_ours(resolve_model_name(args.model))
    model.requires_grad_(False)
    vocab = model.config.vocab_size
    ids = torch.randint(vocab // 10, vocab, (args.batch_size, args.seq_len))  # ordinary tokens, no specials
    mask = torch.ones_like(ids)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for rep in range(args.reps + 2):
        for name, (train, grad) in CASES.items():  # interleaved: load bursts hit every case alike
            seconds = time_forward(model.encoder, ids, mask, train, grad)
            if rep >= 2:
                times[name].append(seconds)
    base = statistics.median(times[next(iter(CASES))])
    rows = [
        {"case": name, "median_ms": 1000 * statistics.median(t), "vs_prefix": statistics.median(t) / base}
        for name, t in times.items()
    ]
    title = f"{args.model} {args.batch_size}x{args.seq_len}, {args.threads} threads, load {load_average()}"
    table = [
        f"Frozen encoder forward, {title}\n",
        "| case | median ms | vs minifreeze's prefix |",
        "|---|---:|---:|",
    ]
    table += [f"| {r['case']} | {r['median_ms']:.0f} | {r['vs_prefix']:.2f} |" for r in rows]
    markdown = "\n".join(table)
    print(markdown)
    if not args.no_write:
        name = f"frozen_forward_{args.model.replace('/', '-').replace(':', '-')}_{args.batch_size}x{args.seq_len}"
        folder = write_results(
            name, rows, markdown, command=command_line(argv, "benchmarks/frozen_forward.py")
        )
        print(f"written: {folder / name}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
