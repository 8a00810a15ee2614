"""One training epoch on real sentences per frozen depth: the number users feel, and what the cache saves.

    python benchmarks/epoch_speed.py --model minilm --train-size 1000 --cache --threads 1      # vs the peer
    python benchmarks/epoch_speed.py --vs suffix --train-size 192 --reps 2                     # vs the suffix
    python benchmarks/epoch_speed.py --model tiny --train-size 48 --rows 0,3 --no-write       # smoke test

An epoch is every batch of N real training sentences (truncated at --max-length), each side taking one
step per batch in turn (round-robin, rotating which side goes first), so that load from other processes
stretches every side alike; a side's epoch time is the sum of its steps, collation included. A step is
loss + backward (+ gradient clipping) + AdamW step + zero_grad (benchmarks/common.py's Side). Sides:
  peer     transformers as blog posts run it: random batches padded to their longest, requires_grad=False
           freezing, torch AdamW (benchmarks/peer.py)
  nograd   minifreeze's defaults, train.py without --cache-frozen: length-grouped batches padded to a
           multiple of 8, the frozen prefix under no_grad in eval mode
  cache    train.py --cache-frozen in an epoch after the first: the prefix's outputs, computed once per
           example before the epoch (`setup s`, in memory), gathered into each batch and fed through
           model.from_prefix, the training loop's own path
  suffix   cache's steps on batches collated and gathered before the clock starts: the trainable suffix
           alone, the floor the cache can approach

Two questions (`--vs`), each with its defaults and its report:
  peer     (default) sides peer, nograd and, with --cache, cache; one epoch per depth 0..L; goals: nograd
           >= 2x the peer's throughput at depth 0, cache >= 4x at depth L-2. Writes
           freeze_depth_epoch_<model>_b<batch>_n<N>.{json,jsonl,md} (its name from freeze_depth.py --epoch).
  suffix   sides nograd (`nocache`), cache and suffix; the median of --reps epochs; gradients clipped at
           1.0 as train.py does; the bundled MiniLM and the bert-base shape (random weights, the same
           sentences); goal (issue 7): cache / suffix <= 1.15. Writes cache_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/X.py` in a checkout

import torch

from benchmarks import common
from benchmarks.machine import command_line, load_average, machine_tag
from benchmarks.peer import build_pair, freeze_peer, peer_available, peer_loss, peer_optimizer
from minifreeze import cache
from minifreeze.batching import collate, length_grouped_batches, padded_length, random_batches
from minifreeze.data import DATA_DIR_ENV
from minifreeze.freezing import freeze

PRESETS = {  # the defaults of each question; an option given on the command line wins
    "peer": dict(models=["minilm"], train_size=2000, reps=1, max_grad_norm=0.0),
    "suffix": dict(models=["minilm", "bert-base"], train_size=512, reps=3, max_grad_norm=1.0),
}
SUFFIX_DEPTHS = {"minilm": ["3", "5"], "bert-base": ["6", "10"]}
CACHE_GOAL = 1.15  # issue 7: an epoch from the cache costs at most this many times the suffix alone
BUILD_BATCH = 64  # train.py builds the cache with its --eval-batch-size, 64 by default
PEER_COLUMNS = (  # the table against the peer: header, record key, format
    ("depth", "row", ""),
    ("mode", "mode", ""),
    ("epoch s", "seconds", ".1f"),
    ("samples/s", "samples_per_s", ".1f"),
    ("speed-up over peer", "speedup_over_peer", ".2f"),
    ("setup s", "setup_seconds", ".1f"),
    ("speed-up incl. setup", "speedup_over_peer_incl_setup", ".2f"),
    ("real-token fraction", "real_token_fraction", ".2f"),
    ("padded tokens / example", "padded_tokens_per_example", ".1f"),
)
GROUPED_PAD = 8  # minifreeze pads length-grouped batches to a multiple of 8; the peer to their longest (1)


# ----------------------------------------------------------------------------------------------------
# The sides of one depth


class Depth:
    """One model at one frozen depth: its sides, and the batch orders they step through."""

    def __init__(self, model, row: str, encoded, pad_id: int, peer, args: argparse.Namespace):
        self.model, self.row, self.encoded, self.pad_id, self.args = model, row, encoded, pad_id, args
        self.amp = torch.bfloat16 if args.dtype == "bf16" else None
        self.plan = freeze(model, row)
        self.orders: dict[str, list[list[int]]] = {}
        self.frozen, self.setup_seconds = None, 0.0
        wanted = {"peer": ["peer", "nograd"] + (["cache"] if args.cache else []),
                  "suffix": ["nograd", "cache", "suffix"]}[args.vs]  # fmt: skip
        if model.encoder.frozen_blocks == 0:  # nothing frozen: nothing to cache
            wanted = [w for w in wanted if w not in ("cache", "suffix")]
        if "cache" in wanted:
            self.setup_seconds = common.timed(self.build_cache, args.device)
        self.sides = [self.side(name, peer) for name in wanted]

    def build_cache(self) -> None:
        """The prefix once per example, in memory only; keyed (and computed) under the training autocast."""
        with common.autocast(self.args.device, self.amp):
            self.frozen = cache.build(
                self.model, {"train": self.encoded}, pad_id=self.pad_id, batch_size=BUILD_BATCH,
                device=torch.device(self.args.device), dtype=self.args.cache_dtype, cache_dir=cache.NO_DISK,
                max_gb=self.args.cache_max_gb,
            )  # fmt: skip

    def collate(self, indices: list[int], multiple: int = GROUPED_PAD):
        return collate(self.encoded, indices, self.pad_id, multiple).to(self.args.device)

    def from_cache(self, batch, hidden=None) -> torch.Tensor:
        """The loss from cached prefix outputs, through the training loop's path (model.from_prefix)."""
        hidden = self.frozen.hidden("train", batch) if hidden is None else hidden
        return self.model.from_prefix(
            hidden, batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.labels
        )[0]

    def side(self, name: str, peer) -> common.Side:
        """A Side whose `batch` is the step number j; each side reads batch j of its own order."""
        order = "random" if name == "peer" else "grouped"
        indices = lambda j: self.orders[order][j]  # noqa: E731
        loss_fn, prepare = {
            "peer": (lambda idx: peer_loss(peer)(self.collate(idx, 1)), indices),
            "nograd": (lambda idx: common.ours_loss(self.model)(self.collate(idx)), indices),
            "cache": (lambda idx: self.from_cache(self.collate(idx)), indices),
            "suffix": (
                lambda ready: self.from_cache(*ready),
                lambda j: self.gathered(self.collate(indices(j))),
            ),
        }[name]
        if name == "peer":
            freeze_peer(peer, self.model, self.plan)
            optimizer = peer_optimizer(peer, self.args.peer_optimizer)
        else:
            optimizer = common.ours_optimizer(self.model, self.plan)
        return common.Side(name, loss_fn, optimizer, self.args.device, self.amp, prepare=prepare,
                    max_grad_norm=self.args.max_grad_norm)  # fmt: skip

    def gathered(self, batch):
        return batch, self.frozen.hidden("train", batch)

    def new_orders(self, rep: int) -> None:
        n, size, seed = len(self.encoded.input_ids), self.args.batch_size, self.args.seed
        self.orders = {"grouped": length_grouped_batches(self.encoded.lengths, size, seed, rep),
                       "random": random_batches(n, size, seed, rep)}  # fmt: skip

    def tokens(self, name: str) -> tuple[int, int]:
        """(real, computed) token positions of one epoch of this side: what its padding costs."""
        multiple = 1 if name == "peer" else GROUPED_PAD
        order = self.orders["random" if name == "peer" else "grouped"]
        rows = [[len(self.encoded.input_ids[i]) for i in batch] for batch in order]
        return sum(map(sum, rows)), sum(len(r) * padded_length(max(r), multiple) for r in rows)

    def gather_seconds(self) -> float:
        """What the cache adds to the suffix, timed alone: collate + copying cached rows into the batch."""
        return common.timed(
            lambda: [self.gathered(self.collate(b)) for b in self.orders["grouped"]], self.args.device
        )


def run_depth(depth: Depth, args: argparse.Namespace) -> dict[str, dict]:
    """Warm-up, then --reps epochs of every side interleaved; per side the epochs' totals."""
    totals = {s.name: {"seconds": [], "cpu": [], "real": 0, "padded": 0, "steps": 0} for s in depth.sides}
    gather = []
    for rep in range(args.reps):
        depth.new_orders(rep)
        steps = len(depth.orders["grouped"])
        assert steps == len(depth.orders["random"]), "both orders cut the epoch into ceil(N / batch) batches"
        for side in depth.sides:
            side.times = {key: [] for key in side.times}
        common.round_robin(
            depth.sides, lambda i, n=steps: i % n, steps, args.warmup if rep == 0 else 0, rotate=True
        )
        for side in depth.sides:
            t = totals[side.name]
            t["seconds"].append(sum(side.times["step"]))
            t["cpu"].append(sum(side.times["cpu"]))
            real, padded = depth.tokens(side.name)
            t["real"], t["padded"], t["steps"] = t["real"] + real, t["padded"] + padded, steps
        if depth.frozen is not None:
            gather.append(depth.gather_seconds())
    for side in depth.sides:
        side.optimizer = None  # free the AdamW state before the next depth
    totals["gather"] = gather
    return totals


def epoch_records(name: str, depth: Depth, totals: dict, n: int) -> list[dict]:
    """One record per side: median epoch seconds (wall and CPU), throughput, padding, setup."""
    records = []
    peer = statistics.median(totals["peer"]["seconds"]) if "peer" in totals else None
    for side in depth.sides:
        t = totals[side.name]
        seconds = statistics.median(t["seconds"])
        setup = depth.setup_seconds if side.name == "cache" else 0.0
        epochs = len(t["seconds"])
        records.append(
            {
                "kind": "epoch",
                "model": name,
                "row": depth.row,
                "mode": side.name,
                "examples": n,
                "steps": t["steps"],
                "epochs": epochs,
                "seconds": seconds,
                "all_seconds": t["seconds"],
                "cpu_seconds": statistics.median(t["cpu"]),
                "samples_per_s": n / seconds,
                "real_token_fraction": t["real"] / t["padded"],
                "padded_tokens_per_example": t["padded"] / n / epochs,
                "setup_seconds": setup,
                "layers": depth.model.config.num_layers,
                "gather_seconds": statistics.median(totals["gather"]) if side.name == "cache" else None,
            }
        )
        if peer is not None:
            records[-1]["speedup_over_peer"] = peer / seconds
            records[-1]["speedup_over_peer_incl_setup"] = peer / (seconds + setup)
    return records


# ----------------------------------------------------------------------------------------------------
# Reports


def peer_report(records: list[dict], args, n: int, num_layers: int, notes: list[str]) -> tuple[str, list]:
    """The table against the peer and the issue's two epoch goals (2x at depth 0; 4x at L-2, cached)."""
    lines = [
        f"**{common.resolve_model_name(args.models[0])}**, one epoch over {n} {args.dataset} training "
        f"sentences "
        f"(max length {args.max_length}) per depth, batch {args.batch_size}, {args.dtype}, {args.device}, "
        f"{torch.get_num_threads()} threads, dropout {'off' if args.no_dropout else 'on'}; peer: random "
        f"batches padded to their longest, requires_grad=False, AdamW {args.peer_optimizer}; minifreeze: "
        f"length-grouped batches padded to a multiple of 8, no_grad prefix in eval mode, fused AdamW; sides "
        f"interleaved step by step; epoch time includes collation"
        + "".join(f"; {t}" for t in dict.fromkeys(notes)),
        "",
    ]
    header = [column[0] for column in PEER_COLUMNS]
    rows = [[format(r[key], spec) for _, key, spec in PEER_COLUMNS] for r in records]
    lines += common.markdown_table(header, "ll" + "r" * 7, rows)
    goals = []
    for depth, target, mode in (("0", 2.0, "nograd"), (str(num_layers - 2), 4.0, "cache")):
        hit = [r for r in records if r["row"] == depth and r["mode"] == mode]
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


def cache_rows(records: list[dict], real_tokens: dict[str, int]) -> list[dict]:
    """One row per model and depth, nocache (= nograd) vs cache vs suffix: the cache's report."""
    by = {(r["model"], r["row"], r["mode"]): r for r in records}
    rows = []
    for model, row in dict.fromkeys((r["model"], r["row"]) for r in records):
        if (model, row, "suffix") not in by:
            continue
        side = {
            "nocache": by[model, row, "nograd"],
            "cache": by[model, row, "cache"],
            "suffix": by[model, row, "suffix"],
        }
        wall = {m: r["seconds"] for m, r in side.items()}
        cpu = {m: r["cpu_seconds"] for m, r in side.items()}
        rows.append(
            {
                "model": model,
                "depth": int(row) if row.isdigit() else row,
                "layers": side["cache"]["layers"],
                "train_size": side["cache"]["examples"],
                "epochs_measured": side["cache"]["epochs"],
                "real_tokens": real_tokens[model],
                **{f"{m}_s": wall[m] for m in side},
                **{f"{m}_all_s": r["all_seconds"] for m, r in side.items()},
                **{f"{m}_cpu_s": cpu[m] for m in side},
                "build_s": side["cache"]["setup_seconds"],
                "gather_s": side["cache"]["gather_seconds"],
                "speedup": wall["nocache"] / wall["cache"],
                "cache_over_suffix": wall["cache"] / wall["suffix"],
                "speedup_cpu": cpu["nocache"] / cpu["cache"],
                "cache_over_suffix_cpu": cpu["cache"] / cpu["suffix"],
                "goal_met": wall["cache"] / wall["suffix"] <= CACHE_GOAL,
            }
        )
    return rows


def cache_report(rows: list[dict], args, n: int) -> str:
    lines = [
        f"One training epoch over {n} SST-2 training sentences (max length {args.max_length}, batch "
        f"{args.batch_size}, length-grouped, padded to a multiple of 8), {args.dtype}, {args.threads} threads; "
        "median over the epochs measured (column `epochs`), the modes interleaved step by step; "
        f"cache dtype {args.cache_dtype}.",
        "`nocache`: the frozen prefix runs every step. `cache`: an epoch after the first with --cache-frozen. "
        "`suffix`: the trainable suffix alone on pre-gathered inputs. `build`: the cache's one-time cost. "
        "`gather`: collate + copying cached rows into the padded batches of one epoch, timed alone.",
        f"Goal: cache / suffix <= {CACHE_GOAL}.",
        "",
        "Ratios from wall time, and in brackets from this process's CPU time (robust to other processes' load).",
        "",
    ]
    header = ["model", "frozen", "epochs", "nocache s", "cache s", "suffix s", "gather s", "build s",
              "nocache / cache", "cache / suffix", "(suffix + gather) / suffix", "goal"]  # fmt: skip
    table = [
        [
            r["model"],
            f"{r['depth']} of {r['layers']}",
            r["epochs_measured"],
            *(f"{r[f'{m}_s']:.2f}" for m in ("nocache", "cache", "suffix")),
            f"{r['gather_s']:.3f}",
            f"{r['build_s']:.2f}",
            f"{r['speedup']:.2f}x ({r['speedup_cpu']:.2f}x)",
            f"{r['cache_over_suffix']:.3f} ({r['cache_over_suffix_cpu']:.3f})",
            f"{1 + r['gather_s'] / r['suffix_s']:.3f}",
            "met" if r["goal_met"] else "missed",
        ]
        for r in rows
    ]
    return "\n".join(lines + common.markdown_table(header, "l" * 12, table))


def write(records, args, n, num_layers, notes, real_tokens, quiet: bool = False) -> None:
    """The report of the question asked: print it and (unless --no-write) write its files."""
    extra = {
        "load_average_before": args.load_before,
        "load_average_after": load_average(),
        "args": vars(args),
    }
    if args.vs == "peer":
        table, goals = peer_report(records, args, n, num_layers, notes)
        slug = re.sub(r"[^A-Za-z0-9.-]+", "-", common.resolve_model_name(args.models[0]))
        name, jsonl = args.name or f"freeze_depth_epoch_{slug}_b{args.batch_size}_n{n}", True
        rows = records + [{"kind": "goal", **g} for g in goals]
    else:
        rows = cache_rows(records, real_tokens)
        name, table, jsonl = args.name or "cache_speed", cache_report(rows, args, n), False
    if not quiet:
        print(table)
    if not args.no_write:
        where = dict(root=args.results_root, extra=extra, device=args.device, jsonl=jsonl)
        folder = common.write_results(name, rows, table, command=args.command, **where)
        if not quiet:
            print(f"results in {folder} (machine {machine_tag(args.device)})", file=sys.stderr)


# ----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str], command: str | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vs", choices=list(PRESETS), default="peer", help="the question (see above)")
    p.add_argument(
        "--model",
        "--models",
        dest="models",
        nargs="+",
        default=None,
        help="named configs (random weights; minilm = the bundled real MiniLM when installed), Hub ids or "
        "folders; vs peer: one (default minilm); vs suffix: default minilm bert-base",
    )
    p.add_argument(
        "--rows",
        "--depths",
        dest="rows",
        nargs="+",
        default=None,
        help="freeze specs, comma- or space-separated (default: vs peer 0..L; vs suffix per model: "
        f"{SUFFIX_DEPTHS}, others L/2 and L-1)",
    )
    p.add_argument(
        "--train-size", type=int, default=None, help="training sentences (default 2000; vs suffix 512)"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128, help="truncation length")
    p.add_argument(
        "--reps", type=int, default=None, help="epochs per depth, median reported (default 1; vs suffix 3)"
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side first")
    p.add_argument(
        "--cache", action="store_true", help="vs peer: add minifreeze with the frozen-prefix cache"
    )
    p.add_argument("--cache-dtype", default="fp32", choices=list(cache.DTYPES))
    p.add_argument(
        "--cache-max-gb", type=float, default=cache.DEFAULT_MAX_GB, help="memory bound of the cache"
    )
    p.add_argument(
        "--max-grad-norm",
        type=float,
        default=None,
        help="clip gradients before each AdamW step, 0 = off (default: vs peer 0; vs suffix 1.0, as train.py)",
    )
    common.add_options(p, *common.OPTIONS)  # threads, dtype, device, dropout, the peer's AdamW, data, files
    args = p.parse_args(argv)
    for key, value in PRESETS[args.vs].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.rows = [r for text in args.rows for r in text.split(",") if r] if args.rows else None
    args.command = command or command_line(argv, "benchmarks/epoch_speed.py")
    args.device = common.resolve_device(args.device)
    args.data_dir = args.data_dir or os.environ.get(DATA_DIR_ENV)
    if args.vs == "peer" and len(args.models) != 1:
        p.error("--vs peer compares one model with its peer: give one --model")
    if not args.data_dir or not (Path(args.data_dir) / args.dataset / "train.tsv").is_file():
        p.error(f"needs the {args.dataset} sentences: pass --data-dir or set {DATA_DIR_ENV}")
    return args


def depths_for(name: str, layers: int, args: argparse.Namespace) -> list[str]:
    """The rows asked for; else vs peer every depth 0..L, vs suffix the model's two (L/2, L-1 if unknown)."""
    if args.rows:
        return args.rows
    if args.vs == "peer":
        return [str(k) for k in range(layers + 1)]
    return SUFFIX_DEPTHS.get(name, [str(layers // 2), str(layers - 1)])


def main(argv: list[str] | None = None, command: str | None = None) -> int:
    """`command`: the line to record when another script forwards here (freeze_depth.py --epoch)."""
    args = parse_args(sys.argv[1:] if argv is None else list(argv), command)
    if args.vs == "peer" and (reason := peer_available()):
        print(f"epoch_speed: --vs peer needs the peer: {reason}", file=sys.stderr)
        return 1
    common.set_threads(args.threads)
    args.load_before = load_average()
    records, real_tokens, notes = [], {}, []
    if args.vs == "peer" and args.cache:
        notes.append("cache: built in memory per depth (setup s), not counted in the epoch; the column "
                     "'incl. setup' adds it (a first epoch), later epochs and runs reuse it")  # fmt: skip
    for name in args.models:
        base, peer = build_pair(name, dropout=not args.no_dropout, with_peer=args.vs == "peer")
        base.to(args.device)
        peer = peer.to(args.device) if peer is not None else None
        encoded, pad_id, note = common.load_sentences(
            args.dataset, args.data_dir, base, args.max_length, args.train_size, args.seed
        )
        n, layers = len(encoded.input_ids), base.config.num_layers
        real_tokens[name] = int(encoded.lengths.sum())
        notes += [note] if note else []
        for row in depths_for(name, layers, args):
            depth = Depth(copy.deepcopy(base), row, encoded, pad_id, peer, args)
            new = epoch_records(name, depth, run_depth(depth, args), n)
            records += new
            brief = ", ".join(f"{r['mode']} {r['seconds']:.2f} s" for r in new)
            print(f"{name} depth {row}: {brief} (setup {depth.setup_seconds:.1f} s)", file=sys.stderr)
            write(records, args, n, layers, notes, real_tokens, quiet=True)  # a killed run keeps its rows
    write(records, args, n, layers, notes, real_tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
