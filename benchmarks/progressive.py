"""Progressive freezing against fixed depths and layer-wise lr decay (issue 20): accuracy and wall time.

    python benchmarks/progressive.py --model bundled:minilm --dataset sst2 --train-size 4000 --seeds 0,1,2
    python benchmarks/progressive.py --tiny --model DIR --dataset toy --data-dir DATA   (the test's smoke run)

Every method is one in-process `minifreeze.train.train` run with the same data, seed, batches and lr
schedule; only the freezing differs:
    full          --freeze 0
    fixed-D       --freeze D --cache-frozen (the frozen prefix cached, as a user of a fixed depth would)
    linear        --freeze-schedule linear:0-D, without and with --cache-frozen
    auto          --freeze-schedule auto --max-freeze D, without and with --cache-frozen
    lr-decay      --freeze 0 --lr-decay 0.9
Each evaluation's wall time (metrics.jsonl "wall_seconds": since the run began, cache builds and
evaluations included) gives the time to reach the target: full fine-tuning's best accuracy (mean over
seeds) minus 0.5 point. The frozen cache lives in memory only and is emptied before every run, so no run
reuses another's. Run it alone on the machine: the times are only comparable side by side, as ratios.
Writes benchmarks/results/<machine-tag>/<name>.json/.md (and <name>_accuracy_vs_time.png with matplotlib).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import common  # noqa: E402
from benchmarks.machine import load_average  # noqa: E402
from minifreeze import cache as frozen_cache  # noqa: E402
from minifreeze.train import TrainConfig, train  # noqa: E402

TARGET_GAP = 0.005  # half a point of accuracy


def methods(depth: int) -> dict[str, dict]:
    """Method name -> the TrainConfig fields that make it."""
    return {
        "full": dict(freeze="0"),
        f"fixed-{depth}": dict(freeze=str(depth), cache_frozen=True),
        "linear": dict(freeze="0", freeze_schedule=f"linear:0-{depth}"),
        "linear+cache": dict(freeze="0", freeze_schedule=f"linear:0-{depth}", cache_frozen=True),
        "auto": dict(freeze="0", freeze_schedule="auto", max_freeze=depth),
        "auto+cache": dict(freeze="0", freeze_schedule="auto", max_freeze=depth, cache_frozen=True),
        "lr-decay-0.9": dict(freeze="0", lr_decay=0.9),
    }


def run_one(args, name: str, fields: dict, seed: int, root: Path) -> dict:
    frozen_cache.REGISTRY.stores.clear()  # every run builds its own cache: none reuses another's
    out = root / f"{name}-s{seed}"
    cfg = TrainConfig(
        model=args.model, dataset=args.dataset, data_dir=args.data_dir, train_size=args.train_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_length=args.max_length,
        eval_every=args.eval_every, seed=seed, threads=args.threads, out=str(out), progress=False,
        cache_dir="none", **fields,
    )  # fmt: skip
    summary = train(cfg)
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "method": name,
        "seed": seed,
        "best_accuracy": max(r["accuracy"] for r in evals),
        "wall_seconds": summary["wall_seconds"],
        "freeze_events": summary["freeze_events"],
        "curve": [(r["wall_seconds"], r["accuracy"]) for r in evals],
    }


def time_to(curve: list, target: float) -> float | None:
    return next((t for t, acc in curve if acc >= target), None)


def mean(values: list) -> float | None:
    return statistics.fmean(values) if values and None not in values else None


def table(rows: list[dict], target: float) -> tuple[list[dict], str]:
    summary = []
    for name in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == name]
        summary.append(
            {
                "method": name,
                "best_accuracy": mean([r["best_accuracy"] for r in mine]),
                "wall_seconds": mean([r["wall_seconds"] for r in mine]),
                "seconds_to_target": mean([time_to(r["curve"], target) for r in mine]),
                "reached": sum(time_to(r["curve"], target) is not None for r in mine),
                "runs": len(mine),
            }
        )
    full = summary[0]["seconds_to_target"]
    body = [
        [
            s["method"], common.fmt(s["best_accuracy"], ".4f"), common.fmt(s["wall_seconds"]),
            common.fmt(s["seconds_to_target"]), f"{s['reached']}/{s['runs']}",
            common.fmt(full / s["seconds_to_target"] if full and s["seconds_to_target"] else None, ".2f"),
        ]
        for s in summary
    ]  # fmt: skip
    header = ["method", "best accuracy", "wall s", "s to target", "reached", "speed-up to target vs full"]
    lines = [
        f"Target: full fine-tuning's best accuracy (mean over seeds) - {TARGET_GAP * 100:.1f} point = "
        f"{target:.4f}. Means over seeds; a time to target is shown only when every seed reached it.",
        "",
        *common.markdown_table(header, "lrrrrr", body),
    ]
    return summary, "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is absent: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["method"] for r in rows):
        for i, r in enumerate(r for r in rows if r["method"] == name):
            t, acc = zip(*r["curve"])
            ax.plot(t, acc, marker=".", color=f"C{list(dict.fromkeys(x['method'] for x in rows)).index(name)}",
                    label=name if i == 0 else None)  # fmt: skip
    ax.set_xlabel("wall time since start (s)")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bundled:minilm")
    p.add_argument("--dataset", default="sst2")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-size", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--eval-every", default="0.25ep")
    p.add_argument("--depth", type=int, default=4, help="fixed depth, linear:0-D end, auto's --max-freeze")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=None, help="comma-separated subset of the methods (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="a smoke run: 64 examples, 1 epoch, depth 1, seed 0")
    p.add_argument("--name", default="progressive")
    p.add_argument("--results-root", default=None)
    args = p.parse_args(argv)
    if args.tiny:
        args.train_size, args.epochs, args.depth, args.seeds, args.lr = 64, 1, 1, "0", 3e-3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = load_average()
    chosen = methods(args.depth)
    if args.methods:
        chosen = {k: chosen[k] for k in args.methods.split(",")}
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_one(args, name, f, seed, Path(tmp)) for seed in seeds for name, f in chosen.items()]
    first = next(iter(chosen))
    target = statistics.fmean(r["best_accuracy"] for r in rows if r["method"] == first) - TARGET_GAP
    summary, markdown = table(rows, target)
    extra = {"target_accuracy": target, "summary": summary, "load_before": load_before}
    extra["load_after"] = load_average()
    folder = common.write_results(args.name, rows, markdown, root=args.results_root, extra=extra)
    plot(rows, folder / f"{args.name}_accuracy_vs_time.png")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
