"""What the frozen-prefix cache saves per epoch: training epochs with and without it, against the suffix alone.

    python benchmarks/cache_speed.py                                   # MiniLM + bert-base, default depths
    python benchmarks/cache_speed.py --models minilm --depths 3 --train-size 64 --reps 1 --no-write  # smoke

Per model and frozen depth k (embeddings + k layers frozen), one training epoch over N real SST-2
training sentences (max length 128, length-grouped batches padded to a multiple of 8, as train.py runs
them), timed three ways on the same batches, interleaved step by step (each batch runs in all three modes
in turn, rotating which goes first) so that load from other processes hits all three alike; an epoch's
time is the sum of its steps, and the median over `--reps` epochs is reported:
  nocache  train.py without --cache-frozen: the frozen prefix runs (no_grad, eval mode) every step;
  cache    train.py with --cache-frozen, an epoch after the first: cached prefix outputs are gathered
           into the padded batch (`FrozenCache.loss`) and fed to the suffix;
  suffix   the trainable suffix alone: the same suffix + head + backward + optimizer step on batches whose
           prefix outputs were gathered before timing started (the floor the cache can approach).
A step is what train.py does: loss, backward, gradient clipping, fused AdamW step, zero_grad. The
cache's one-time cost (hashing the frozen weights and examples, running the prefix once per example)
is reported as `build_s`; the first epoch with the cache costs about nocache's prefix forward + build.

Goal (issue 7): cache / suffix <= 1.15, i.e. the gather adds at most 15% to the suffix's own cost.
Models: the bundled real MiniLM (6 layers, H=384) and the bert-base shape (12 layers, H=768) with random
weights fed the same real sentences (the MiniLM tokenizer is bert-base-uncased's WordPiece vocabulary).
Results: benchmarks/results/<machine-tag>/cache_speed.{json,md} (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python benchmarks/cache_speed.py` from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

import minifreeze  # noqa: E402
from benchmarks.machine import command_line, load_average, machine_info, write_results  # noqa: E402
from minifreeze import batching, data  # noqa: E402
from minifreeze import cache as frozen_cache  # noqa: E402
from minifreeze.freezing import freeze  # noqa: E402
from minifreeze.hub import BUNDLED_MODEL  # noqa: E402
from minifreeze.optim import make_optimizer  # noqa: E402

MODES = ("nocache", "cache", "suffix")
DEFAULT_DEPTHS = {"minilm": [3, 5], "bert-base": [6, 10]}
GOAL = 1.15  # issue 7: an epoch from the cache costs at most this many times the suffix alone
LR = 2e-5
MAX_GRAD_NORM = 1.0  # train.py's default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_DEPTHS), choices=list(DEFAULT_DEPTHS))
    p.add_argument("--depths", nargs="+", type=int, help="frozen layers (default: per model, see the code)")
    p.add_argument("--train-size", type=int, default=512, help="SST-2 training sentences per epoch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--reps", type=int, default=3, help="epochs per mode and depth (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per mode and depth first")
    p.add_argument("--cache-dtype", default="fp32", choices=list(frozen_cache.DTYPES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=os.environ.get(data.DATA_DIR_ENV), help="holds sst2/train.tsv")
    p.add_argument("--no-write", action="store_true", help="print only")
    return p.parse_args(argv)


def load(name: str) -> minifreeze.SequenceClassifier:
    if name == "minilm":
        return minifreeze.load_model(BUNDLED_MODEL, num_labels=2, reinit_head="mismatch")
    return minifreeze.random_model(name, num_labels=2)


class Depth:
    """One frozen depth of one model: its own weights, optimizer and cache, and the epoch in three modes."""

    def __init__(self, base, depth: int, encoded: data.EncodedSplit, pad_id: int, args: argparse.Namespace):
        self.model = copy.deepcopy(base)
        self.plan = freeze(self.model, depth)
        self.model.train()
        self.optimizer = make_optimizer(self.model, self.plan, LR)
        self.encoded, self.pad_id, self.args = encoded, pad_id, args
        started = time.perf_counter()
        self.cache = frozen_cache.build(
            self.model, {"train": encoded}, pad_id=pad_id, batch_size=64, device=torch.device("cpu"),
            dtype=args.cache_dtype, cache_dir=frozen_cache.NO_DISK, max_gb=frozen_cache.DEFAULT_MAX_GB,
        )  # fmt: skip
        self.build_seconds = time.perf_counter() - started

    def step(self, loss: torch.Tensor) -> None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def timed_step(self, mode: str, indices: list[int]) -> tuple[float, float]:
        """(wall, CPU) seconds of one training step in `mode`, collate included (train.py collates per step);
        the suffix's inputs are collated and gathered before its clock starts."""
        if mode == "suffix":
            batch = batching.collate(self.encoded, indices, self.pad_id, 8)
            hidden = self.cache.hidden("train", batch)
        started, cpu = time.perf_counter(), time.process_time()
        if mode == "suffix":  # the training loop's own path from the prefix output to the loss
            loss = self.model.from_prefix(
                hidden, batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.labels
            )[0]
        else:
            batch = batching.collate(self.encoded, indices, self.pad_id, 8)
            if mode == "cache":
                loss = self.model.from_prefix(
                    self.cache.hidden("train", batch),
                    batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.labels,
                )[0]  # fmt: skip
            else:
                loss = self.model.loss(
                    batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.labels
                )[0]
        self.step(loss)
        return time.perf_counter() - started, time.process_time() - cpu

    def epoch(self, batches: list[list[int]]) -> dict[str, list[float]]:
        """One epoch in every mode, interleaved step by step (each batch runs in all modes in turn, rotating
        which goes first): load from other processes then stretches all modes alike.

        Returns per mode [wall, CPU] seconds summed over the epoch. CPU time (all threads of this process)
        is the cross-check on a shared machine.
        """
        totals = {m: [0.0, 0.0] for m in MODES}
        for n, indices in enumerate(batches):
            for i in range(len(MODES)):
                mode = MODES[(i + n) % len(MODES)]
                wall, used = self.timed_step(mode, indices)
                totals[mode][0] += wall
                totals[mode][1] += used
        return totals

    def gather_seconds(self, batches: list[list[int]]) -> float:
        """What the cache adds to the suffix, timed alone: collate + copying cached rows into the batch."""
        started = time.perf_counter()
        for indices in batches:
            self.cache.hidden("train", batching.collate(self.encoded, indices, self.pad_id, 8))
        return time.perf_counter() - started


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"One training epoch over {args.train_size} SST-2 training sentences (max length {args.max_length}, "
        f"batch {args.batch_size}, length-grouped, padded to a multiple of 8), fp32, {args.threads} threads; "
        "median over the epochs measured (column `epochs`), the modes interleaved step by step; "
        f"cache dtype {args.cache_dtype}.",
        "`nocache`: the frozen prefix runs every step. `cache`: an epoch after the first with --cache-frozen. "
        "`suffix`: the trainable suffix alone on pre-gathered inputs. `build`: the cache's one-time cost. "
        "`gather`: collate + copying cached rows into the padded batches of one epoch, timed alone.",
        f"Goal: cache / suffix <= {GOAL}.",
        "",
        "Ratios from wall time, and in brackets from this process's CPU time (robust to other processes' load).",
        "",
        "| model | frozen | epochs | nocache s | cache s | suffix s | gather s | build s | nocache / cache "
        "| cache / suffix | (suffix + gather) / suffix | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['depth']} of {r['layers']} | {r['epochs_measured']} | {r['nocache_s']:.2f} | "
            f"{r['cache_s']:.2f} | "
            f"{r['suffix_s']:.2f} | {r['gather_s']:.3f} | {r['build_s']:.2f} | {r['speedup']:.2f}x "
            f"({r['speedup_cpu']:.2f}x) | {r['cache_over_suffix']:.3f} ({r['cache_over_suffix_cpu']:.3f}) | "
            f"{1 + r['gather_s'] / r['suffix_s']:.3f} | "
            f"{'met' if r['goal_met'] else 'missed'} |"
        )
    return "\n".join(lines)


def report(depths, times, cpu, gather, encoded, args, load_before, quiet: bool = False) -> None:
    """Rows (medians over the epochs measured so far) -> print and/or write the JSON + Markdown."""
    rows = []
    for (name, k), depth in depths.items():
        if not times[name, k]["cache"]:
            continue
        med = {m: statistics.median(times[name, k][m]) for m in MODES}
        med_cpu = {m: statistics.median(cpu[name, k][m]) for m in MODES}
        rows.append(
            {
                "model": name,
                "depth": k,
                "layers": depth.model.config.num_layers,
                "train_size": args.train_size,
                "epochs_measured": len(times[name, k]["cache"]),
                "real_tokens": int(encoded.lengths.sum()),
                **{f"{m}_s": med[m] for m in MODES},
                **{f"{m}_all_s": times[name, k][m] for m in MODES},
                **{f"{m}_cpu_s": med_cpu[m] for m in MODES},
                "build_s": depth.build_seconds,
                "gather_s": statistics.median(gather[name, k]),
                "speedup": med["nocache"] / med["cache"],
                "cache_over_suffix": med["cache"] / med["suffix"],
                "speedup_cpu": med_cpu["nocache"] / med_cpu["cache"],
                "cache_over_suffix_cpu": med_cpu["cache"] / med_cpu["suffix"],
                "goal_met": med["cache"] / med["suffix"] <= GOAL,
            }
        )
    table = markdown(rows, args)
    if not quiet:
        print(table)
    if not args.no_write:
        extra = {"load_average_before": load_before, "load_average_after": load_average(), "args": vars(args)}
        folder = write_results("cache_speed", rows, table, command=command_line(), extra=extra)
        if not quiet:
            print(f"wrote {folder}/cache_speed.json and .md ({machine_info()['tag']})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.data_dir or not (Path(args.data_dir) / "sst2" / "train.tsv").is_file():
        print("needs the SST-2 sentences: pass --data-dir or set MINIFREEZE_DATA_DIR", file=sys.stderr)
        return 1
    tokenizer = minifreeze.load_tokenizer(BUNDLED_MODEL)  # bert-base-uncased's vocabulary, for both models
    split = data.load_dataset("sst2", data_dir=args.data_dir).train
    split = split.select(data.stratified_subset(split.labels, args.train_size, seed=0))
    encoded = data.encode_split(split, tokenizer, args.max_length)
    load_before = load_average()
    depths = {}
    for name in args.models:
        base = load(name)
        for k in args.depths or DEFAULT_DEPTHS[name]:
            depths[name, k] = Depth(base, k, encoded, tokenizer.pad_id, args)
            print(f"{name} depth {k}: cache built in {depths[name, k].build_seconds:.2f} s", flush=True)
    warmup = batching.length_grouped_batches(encoded.lengths, args.batch_size, seed=1, epoch=0)[: args.warmup]
    for depth in depths.values():  # first calls pay for allocations and kernel selection: not timed
        depth.epoch(warmup)
    times = {key: {m: [] for m in MODES} for key in depths}
    cpu = {key: {m: [] for m in MODES} for key in depths}
    gather = {key: [] for key in depths}
    for rep in range(args.reps):
        batches = batching.length_grouped_batches(encoded.lengths, args.batch_size, seed=0, epoch=rep)
        for key, depth in depths.items():
            for mode, (wall, used) in depth.epoch(batches).items():
                times[key][mode].append(wall)
                cpu[key][mode].append(used)
            gather[key].append(depth.gather_seconds(batches))
            print(
                f"rep {rep} {key}: " + ", ".join(f"{m} {times[key][m][-1]:.2f} s" for m in MODES), flush=True
            )
            if not args.no_write:  # after every depth: a killed run (shared machine) keeps what it measured
                report(depths, times, cpu, gather, encoded, args, load_before, quiet=True)
    report(depths, times, cpu, gather, encoded, args, load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
