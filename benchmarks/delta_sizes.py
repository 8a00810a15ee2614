"""What saving only the trained part buys (issue 19): bytes on disk, checkpoint write time, load time.

For each model and freeze spec: the bytes of the full Hub-layout model vs the freeze delta
(delta.safetensors + delta.json); the time of one evaluation's writes as round 1 did them (DIR/last with
every parameter + the best model in full) vs now (DIR/last with the trainable part + the best model as a
delta), each also in units of one training step at that spec, and the share of a run that evaluates
every `--eval-every` steps (write / (write + eval_every x step)); and the time to load the full model vs
base + delta (the base's SHA-256 check included: the hash cache is cleared before each load).

    python -m benchmarks.delta_sizes --models minilm,bert-base

`minilm` is the real bundled MiniLM; `bert-base` has random weights of bert-base's shape (sizes and times
depend on the shapes, not the values). Writes benchmarks/results/<machine>/delta_sizes.{json,md}.
Time it alone: another process on the machine slows the writes and steps it divides.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from benchmarks.common import fmt, load_ours, markdown_table, random_batch, resolve_model_name, write_results
from minifreeze import delta, freeze, resume
from minifreeze.model import load_model
from minifreeze.optim import make_optimizer, make_scheduler
from minifreeze.resume import Progress, save_state

SPECS = ("head", "bitfit", "top:2", "4", "random:0.9")
MB = 2**20


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def base_folder(name: str, root: Path) -> Path:
    """A base in the Hub layout: the bundled MiniLM as installed, a named config saved with random weights."""
    resolved = resolve_model_name(name)
    model = load_ours(resolved)
    if model.source is not None:
        return model.source
    model.save_pretrained(root / "base")
    return root / "base"


def measure(name: str, base: Path, spec: str, args, work: Path) -> dict:
    torch.manual_seed(0)
    model = load_model(base, num_labels=2, reinit_head="mismatch")
    plan = freeze(model, spec)
    optimizer = make_optimizer(model, plan, lr=2e-5, weight_decay=0.01)
    scheduler = make_scheduler(optimizer, total_steps=100, warmup_steps=0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    batch = random_batch(model, args.batch_size, args.length)
    model.train()

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(batch.input_ids, batch.attention_mask), batch.labels)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the optimizer state exists from here on, as at any evaluation
    step_s = median_seconds(step, args.repeats)
    trained = (model, optimizer, scheduler, scaler)

    def round1() -> None:  # every parameter in DIR/last, and the best model in full
        with mock.patch.object(resume, "saved_parameters", lambda m: dict(m.named_parameters())):
            save_state(work / "last_full", *trained, Progress())
        model.save_pretrained(work / "model")

    def now() -> None:  # the trainable part in DIR/last, the best model as a delta
        save_state(work / "last", *trained, Progress())
        delta.save_delta(model, plan, work / "delta", base=str(base))

    old_s, new_s = median_seconds(round1, args.repeats), median_seconds(now, args.repeats)

    def load(folder: Path):
        delta._cached_sha256.cache_clear()  # a fresh process hashes the base once: count it
        return lambda: load_model(folder)

    load_full_s = median_seconds(load(work / "model"), args.repeats)
    load_delta_s = median_seconds(load(work / "delta"), args.repeats)
    full_bytes = (work / "model" / "model.safetensors").stat().st_size  # the weights, as the delta holds
    delta_bytes = folder_bytes(work / "delta")
    share = lambda write: write / (write + args.eval_every * step_s)  # noqa: E731
    return {
        "model": name,
        "freeze": spec,
        "trainable_params": plan.trainable_params,
        "total_params": plan.total_params,
        "full_bytes": full_bytes,
        "delta_bytes": delta_bytes,
        "delta_share": delta_bytes / full_bytes,
        "last_full_bytes": folder_bytes(work / "last_full"),
        "last_bytes": folder_bytes(work / "last"),
        "step_s": step_s,
        "write_round1_s": old_s,
        "write_now_s": new_s,
        "write_round1_steps": old_s / step_s,
        "write_now_steps": new_s / step_s,
        "run_share_round1": share(old_s),
        "run_share_now": share(new_s),
        "load_full_s": load_full_s,
        "load_delta_s": load_delta_s,
        "load_ratio": load_delta_s / load_full_s,
    }


def markdown(rows: list[dict], args) -> str:
    header = [
        "model", "freeze", "trainable", "full model", "delta", "delta/full", "DIR/last r1 -> now",
        "eval writes r1 -> now (steps)", f"share of a run, eval every {args.eval_every}", "load delta/full",
    ]  # fmt: skip
    body = [
        [
            r["model"],
            r["freeze"],
            f"{r['trainable_params'] / r['total_params']:.2%}",
            f"{r['full_bytes'] / MB:.1f} MB",
            f"{r['delta_bytes'] / MB:.3f} MB",
            f"{r['delta_share']:.2%}",
            f"{r['last_full_bytes'] / MB:.0f} -> {r['last_bytes'] / MB:.1f} MB",
            f"{fmt(r['write_round1_steps'], '.2f')} -> {fmt(r['write_now_steps'], '.2f')}",
            f"{r['run_share_round1']:.1%} -> {r['run_share_now']:.1%}",
            f"{r['load_ratio']:.2f}",
        ]  # fmt: skip
        for r in rows
    ]
    notes = (
        f"\n\nSteps: one training step at batch {args.batch_size} x {args.length} tokens at that freeze "
        f"spec (fp32, {args.threads} threads); write and load times are medians of {args.repeats}. "
        "r1 = round 1: every evaluation wrote DIR/last with every parameter and the best model in full; "
        "now: DIR/last with the trainable part and the head, the best model as a delta (--save delta). "
        "Load delta/full: load_model(delta) (base + SHA-256 check + delta) over load_model(full export).\n"
    )
    return "\n".join(markdown_table(header, "llrrrrrrrr", body)) + notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="minilm,bert-base", help="comma-separated: minilm, bert-base, tiny"
    )
    parser.add_argument("--specs", default=",".join(SPECS), help="comma-separated freeze specs")
    parser.add_argument("--batch-size", type=int, default=32, help="the training step's batch")
    parser.add_argument("--length", type=int, default=64, help="the training step's tokens per example")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between evaluations, for the share")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement (the median is kept)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="results root (default benchmarks/results)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rows = []
    try:
        for name in args.models.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                base = base_folder(name, Path(tmp))
                for spec in args.specs.split(","):
                    with tempfile.TemporaryDirectory(dir=tmp) as work:
                        rows.append(measure(name, base, spec, args, Path(work)))
                        print(rows[-1]["model"], spec, f"delta {rows[-1]['delta_share']:.2%}", flush=True)
    finally:
        torch.set_num_threads(threads)
    folder = write_results("delta_sizes", rows, markdown(rows, args), root=args.out)
    print(f"wrote {folder / 'delta_sizes.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
