"""Does the frozen cache pay for its build? The measurement behind `--cache-frozen auto` (issue 21).

For each (epochs, evaluations) protocol, one training run with the cache (built fresh: `--cache-dir none`,
an empty registry) and one without, alternated, at a frozen depth; from summary.json's timings it
reports the build, the training steps and the evaluations of each, the prefix passes `auto` counts, and
what `auto` decides. The cache pays where (build + steps + evaluations) with it < (steps + evaluations)
without it.

    python -m benchmarks.cache_payoff --depth 4 --data-dir ../shared/data

Writes benchmarks/results/<machine>/cache_payoff_depth<D>.{json,md}. Time it alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from benchmarks.common import markdown_table, write_results
from benchmarks.e2e import split_data
from minifreeze import cache as frozen_cache
from minifreeze import data
from minifreeze.cache.auto import MIN_PASSES, prefix_passes
from minifreeze.hub import BUNDLED_MODEL

PROTOCOLS = {"1 epoch, 1 evaluation": (1, "none"), "3 epochs, each evaluated": (3, "1ep")}
PARTS = ("cache_build", "train_steps", "evaluation")


def run(args, folder: Path, out: Path, epochs: int, eval_every: str, cache: bool) -> dict:
    from minifreeze.train import TrainConfig, train

    frozen_cache.REGISTRY.clear()  # a fresh build every time: nothing from an earlier run
    cfg = TrainConfig(
        model=args.model, dataset=str(folder), freeze=str(args.depth), epochs=epochs, batch_size=16,
        lr=5e-5, warmup="0", weight_decay=0.01, max_length=64, threads=args.threads, seed=0,
        eval_every=eval_every, out=str(out), progress=False, cache_frozen=cache, cache_dir="none",
        train_size=None,
    )  # fmt: skip
    summary = train(cfg)
    timings = summary["timings"]
    return {part: timings.get(part, 0.0) for part in PARTS} | {
        "passes": prefix_passes(cfg, summary["train_examples"], args.select),
        "cached": bool(summary["cache"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=BUNDLED_MODEL)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--select", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--data-dir", default=None, help=f"else ${data.DATA_DIR_ENV}")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="results root (default benchmarks/results)")
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir or os.environ.get(data.DATA_DIR_ENV)
    if not args.data_dir:
        raise SystemExit(f"no data: pass --data-dir or set {data.DATA_DIR_ENV}")
    threads = torch.get_num_threads()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = split_data(args, Path(tmp))
            for i, (name, (epochs, every)) in enumerate(PROTOCOLS.items()):
                for cache in (True, False) if i % 2 == 0 else (False, True):  # alternated
                    out = Path(tmp) / f"{i}-{cache}"
                    result = run(args, folder, out, epochs, every, cache)
                    rows.append({"protocol": name, "cache": cache, **result})
                    print(rows[-1], flush=True)
    finally:
        torch.set_num_threads(threads)
        frozen_cache.REGISTRY.clear()
    name = f"cache_payoff_depth{args.depth}"
    folder = write_results(name, rows, markdown(rows, args), root=args.out)
    print(f"wrote {folder / name}.md")
    return 0


def markdown(rows: list[dict], args) -> str:
    body = []
    for name in PROTOCOLS:
        on, off = (next(r for r in rows if r["protocol"] == name and r["cache"] is c) for c in (True, False))
        with_cache, without = (sum(r[p] for p in PARTS) for r in (on, off))
        decision = "on" if on["passes"] >= MIN_PASSES else "off"
        body.append([
            name, f"{on['passes']:.1f}", f"{on['cache_build']:.1f}", f"{on['train_steps']:.1f}",
            f"{on['evaluation']:.1f}", f"{off['train_steps']:.1f}", f"{off['evaluation']:.1f}",
            f"{with_cache / without:.2f}", decision,
        ])  # fmt: skip
    header = ["protocol", "prefix passes", "build, s", "steps, s (cache)", "evals, s (cache)",
              "steps, s (none)", "evals, s (none)", "with / without", "auto says"]  # fmt: skip
    note = (
        f"{args.model}, depth {args.depth}, {args.train_size} training and {args.select} selection examples "
        f"of {args.dataset}, batch 16, {args.threads} threads; one run per cell, alternated; the cache built "
        "fresh in memory each time (--cache-dir none)."
    )
    return "\n".join(markdown_table(header, "lrrrrrrrl", body) + ["", note])


if __name__ == "__main__":
    raise SystemExit(main())
