"""The speed a user feels: one whole fine-tuning run, minifreeze against transformers' Trainer (issue 21).

    python benchmarks/e2e.py --depths 0,4 --reps 3 --data-dir ../shared/data

Both sides get the same data and protocol: N stratified SST-2 training examples, a disjoint selection set
of --select examples from the training file (evaluated every epoch; the best epoch's model is kept), and
the SST-2 validation file as the held-out test that the selection never saw. Batch 16, lr 5e-5, linear
decay without warm-up, weight decay 0.01, max length 64, --threads torch threads; repetition r uses
seed r on both sides, so the held-out accuracies are medians over seeds, not one seed timed again.
  ours     `minifreeze.train.train` in this process, `--freeze K` with `--cache-frozen auto` (off with
           --no-cache) and the default `--packing auto`, length-grouped batches; its summary.json carries
           where the time went
  trainer  `transformers.Trainer` as the blog posts run it: AutoModelForSequenceClassification, the bottom
           K layers and the embeddings set `requires_grad=False`, DataCollatorWithPadding, random
           batches, eval and save every epoch, load_best_model_at_end
Wall time covers everything from loading the model to the best model saved; the held-out accuracy is
then computed by each side's own code. The FLOP limit is the time the run's GEMMs on its real tokens
alone would take at this CPU's measured fp32 rate for those very shapes (`flop_limit`): forward and
backward (3x the forward) of the trainable layers, the forward of the frozen ones (once, with the cache),
the forward over the selection set at each evaluation. Runs alternate (ours, trainer, trainer, ours, ...) and repeat
--reps times; the report gives medians with min-max. Writes benchmarks/results/<machine>/e2e.{json,md}.
The Trainer needs `accelerate` (in the test extra). Time it alone: on 2 cores any other job skews it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/X.py` in a checkout

import torch

from benchmarks.common import markdown_table, write_results
from minifreeze import data
from minifreeze.hub import BUNDLED_MODEL, resolve_model
from minifreeze.readers import read_file


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    table = read_file(path)
    return [str(t) for t in table.read("sentence")], [int(y) for y in table.read("label")]


def split_data(args, root: Path) -> Path:
    """Write root/e2e/{train,validation}.tsv (training and selection examples, disjoint); return the folder."""
    texts, labels = read_tsv(Path(args.data_dir) / args.dataset / "train.tsv")
    chosen = data.stratified_subset(labels, args.train_size + args.select, seed=args.data_seed)
    select = set(data.stratified_subset([labels[i] for i in chosen], args.select, seed=args.data_seed + 1))
    folder = root / "e2e"
    folder.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train", [i for j, i in enumerate(chosen) if j not in select]),
                       ("validation", [i for j, i in enumerate(chosen) if j in select])):  # fmt: skip
        lines = ["sentence\tlabel"] + [f"{texts[i]}\t{labels[i]}" for i in keep]
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def held_out(args) -> Path:
    return Path(args.data_dir) / args.dataset / "validation.tsv"


def run_ours(args, depth: int, folder: Path, out: Path, seed: int) -> dict:
    from minifreeze import evaluate
    from minifreeze.train import TrainConfig, train

    start = time.perf_counter()
    cache = False if args.no_cache else "auto"
    cfg = TrainConfig(
        model=args.model, dataset=str(folder), freeze=str(depth), epochs=args.epochs, batch_size=16,
        lr=5e-5, warmup="0", weight_decay=0.01, max_length=64, threads=args.threads, seed=seed,
        eval_every="1ep", out=str(out), progress=False, cache_frozen=cache, train_size=None,
    )  # fmt: skip
    summary = train(cfg)
    wall = time.perf_counter() - start
    scored = evaluate.main(["--model", str(out / "model"), "--dataset", str(held_out(args))])
    timings = summary.get("timings")
    return {
        "wall_s": wall,
        "held_out_accuracy": scored["accuracy"],
        "breakdown": timings,
        "cached": bool(summary["cache"]),
    }


def run_trainer(args, depth: int, folder: Path, out: Path, seed: int) -> dict:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )  # fmt: skip

    start = time.perf_counter()
    set_seed(seed)
    path = str(resolve_model(args.model))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, ignore_mismatched_sizes=True
    )
    base = getattr(model, model.base_model_prefix)
    frozen = [base.embeddings, *base.encoder.layer[:depth]] if depth > 0 else []
    for module in frozen:
        module.requires_grad_(False)

    def encode(path: Path) -> list[dict]:
        texts, labels = read_tsv(path)
        ids = tokenizer(texts, truncation=True, max_length=64)
        return [{"input_ids": i, "attention_mask": m, "labels": y}
                for i, m, y in zip(ids["input_ids"], ids["attention_mask"], labels)]  # fmt: skip

    def accuracy(prediction) -> dict:
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    training = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=16, per_device_eval_batch_size=64,
        num_train_epochs=args.epochs, learning_rate=5e-5, weight_decay=0.01, lr_scheduler_type="linear",
        eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="accuracy", save_total_limit=1, report_to=[], use_cpu=True, seed=seed,
        dataloader_num_workers=0, disable_tqdm=True, logging_strategy="no",
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=training, train_dataset=encode(folder / "train.tsv"),
        eval_dataset=encode(folder / "validation.tsv"),
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
    )  # fmt: skip
    trainer.train()
    wall = time.perf_counter() - start
    accuracy_held_out = trainer.predict(encode(held_out(args))).metrics["test_accuracy"]
    return {"wall_s": wall, "held_out_accuracy": accuracy_held_out, "breakdown": None, "cached": False}


SIDES = {"ours": run_ours, "trainer": run_trainer}
ROWS = 384  # GEMM rows the rates are measured at: a batch of 16 x ~24 real tokens


def gemm_rates(model_name: str) -> dict[tuple[int, int], float]:
    """FLOP/s of this CPU's fp32 GEMM for each weight shape of a layer ([ROWS, K] @ [K, N]), best of 5."""
    from minifreeze.config import load_config

    cfg = load_config(resolve_model(model_name))
    h, f = cfg.hidden_size, cfg.intermediate_size
    rates = {}
    for k, n in {(h, h), (h, f), (f, h)}:
        a, b = torch.randn(ROWS, k), torch.randn(k, n)
        a @ b  # warm-up
        best = min(timed_once(torch.mm, a, b) for _ in range(5))
        rates[(k, n)] = 2 * ROWS * k * n / best
    return rates


def timed_once(fn, *args) -> float:
    start = time.perf_counter()
    for _ in range(20):
        fn(*args)
    return (time.perf_counter() - start) / 20


def flop_limit(args, depth: int, folder: Path, rates: dict, cached: bool) -> float:
    """Seconds the run's GEMMs on real tokens would take at `rates` (module doc); attention's two products
    (Q K^T and P V: 4 x length x H per token) are counted at the [H, H] rate."""
    from minifreeze import load_tokenizer
    from minifreeze.config import load_config

    cfg = load_config(resolve_model(args.model))
    h, f, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
    tokenizer = load_tokenizer(str(resolve_model(args.model)))

    def layer_seconds(split: str) -> float:  # one forward of one layer over the split's real tokens
        texts, _ = read_tsv(folder / f"{split}.tsv")
        lengths = [len(ids) for ids in tokenizer.encode(texts, max_length=64).input_ids]
        tokens, pairs = sum(lengths), sum(n * n for n in lengths)
        linear = tokens * (
            2 * 4 * h * h / rates[(h, h)] + 2 * h * f / rates[(h, f)] + 2 * f * h / rates[(f, h)]
        )
        return linear + 4 * pairs * h / rates[(h, h)]

    train, select = layer_seconds("train"), layer_seconds("validation")
    frozen, trainable = depth, layers - depth
    epochs = args.epochs
    prefix_passes = 1 if cached else epochs
    return (
        epochs * trainable * 3 * train
        + prefix_passes * frozen * train  # training
        + epochs * (trainable + (0 if cached else frozen)) * select
        + (frozen * select if cached else 0)
    )


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def acc_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})" if values else "—"


def report(rows: list[dict], args) -> str:
    lines = []
    body = []
    for depth in sorted({r["depth"] for r in rows}):
        side = {s: [r for r in rows if r["depth"] == depth and r["side"] == s] for s in SIDES}
        wall = {s: [r["wall_s"] for r in side[s]] for s in SIDES}
        acc = {s: [r["held_out_accuracy"] for r in side[s]] for s in SIDES}
        ratio = statistics.median(wall["ours"]) / statistics.median(wall["trainer"])
        limit = [r["flop_limit_s"] for r in side["ours"] if "flop_limit_s" in r]
        over_limit = statistics.median(wall["ours"]) / statistics.median(limit) if limit else None
        body.append([
            depth, spread(wall["ours"]), spread(wall["trainer"]), f"{ratio:.2f}",
            acc_spread(acc["ours"]), acc_spread(acc["trainer"]),
            f"{statistics.median(limit):.1f}" if limit else "—", f"{over_limit:.2f}" if limit else "—",
        ])  # fmt: skip
    header = ["frozen layers", "ours, s (min-max)", "Trainer, s (min-max)", "ours / Trainer, wall",
              "held-out acc, ours (min-max)", "held-out acc, Trainer (min-max)", "FLOP limit, s",
              "ours / limit"]  # fmt: skip
    lines += markdown_table(header, "rrrrrrrr", body)
    breakdowns = [r for r in rows if r["side"] == "ours" and r["breakdown"]]
    if breakdowns:
        keys = list(breakdowns[0]["breakdown"])
        lines += ["", "Where our time went (median seconds per phase, from summary.json's timings):", ""]
        table = []
        for depth in sorted({r["depth"] for r in breakdowns}):
            mine = [r["breakdown"] for r in breakdowns if r["depth"] == depth]
            table.append([depth, *(f"{statistics.median(b[k] for b in mine):.1f}" for k in keys)])
        lines += markdown_table(["frozen layers", *keys], "r" * (len(keys) + 1), table)
    lines += ["", f"{args.reps} runs per side and depth (seeds 0-{args.reps - 1}), alternated; {args.train_size} training examples, "
              f"{args.select} for selection, {args.epochs} epochs, {args.threads} threads, "
              f"held out: {args.dataset}/validation.tsv."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=BUNDLED_MODEL, help="a folder, Hub id or bundled:minilm")
    parser.add_argument("--depths", default="0,4", help="comma-separated frozen layer counts")
    parser.add_argument("--reps", type=int, default=3, help="runs per side and depth")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--select", type=int, default=500, help="selection examples (from the train file)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--data-dir", default=None, help=f"else ${data.DATA_DIR_ENV}")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--no-cache", action="store_true", help="ours without --cache-frozen")
    parser.add_argument("--sides", default="ours,trainer")
    parser.add_argument("--out", default=None, help="results root (default benchmarks/results)")
    args = parser.parse_args(argv)
    import os

    args.data_dir = args.data_dir or os.environ.get(data.DATA_DIR_ENV)
    if not args.data_dir:
        raise SystemExit(f"no data: pass --data-dir or set {data.DATA_DIR_ENV}")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = split_data(args, Path(tmp))
            rates = gemm_rates(args.model)
            sides = args.sides.split(",")
            for rep in range(args.reps):
                for depth in (int(d) for d in args.depths.split(",")):
                    for side in sides if rep % 2 == 0 else sides[::-1]:  # alternate who goes first
                        work = Path(tmp) / f"{side}-{depth}-{rep}"
                        result = SIDES[side](args, depth, folder, work, rep)
                        if side == "ours":
                            result["flop_limit_s"] = flop_limit(args, depth, folder, rates, result["cached"])
                        rows.append({"side": side, "depth": depth, "rep": rep, **result})
                        print(side, depth, rep, f"{result['wall_s']:.1f} s", flush=True)
    finally:
        torch.set_num_threads(threads)
    folder = write_results("e2e", rows, report(rows, args), root=args.out)
    print(f"wrote {folder / 'e2e.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
