"""The freeze study: `python -m minifreeze.sweep --model M --dataset D --freeze 0,-1,2,4 --out DIR`.

Each grid point (freeze spec x train size x seed) is an in-process `train.train(cfg)`, so what train keeps
in memory between runs (the frozen-prefix cache) is reused, into `DIR/runs/freeze<spec>-n<size>-s<seed>/`;
then `DIR/runs.csv`, `DIR/summary.md` and PNG plots are written. Why it is built this way:
- The CLI is `SweepConfig` plus every `TrainConfig` field the grid does not set, so any training option
  passes through and `--config FILE.toml` works; the defaults are the study protocol.
- Resumable without bookkeeping: a run folder with `summary.json` is done (and must match today's
  options); one without it was interrupted and is redone from scratch; a failure goes to its
  `failed.json` (retried on restart) and the sweep goes on. `runs.csv` is rebuilt from the run folders.
- Nested data: a fixed `data_seed` gives stratified subsets shared by seeds and specs (n=100 lies inside
  n=500). Grid order is seed, size, spec: a sweep cut short has complete curves for its first seeds.
- Peak memory is per run: the RSS high-water mark reset before each run (Linux `clear_refs`), or CUDA's
  allocator peak; elsewhere the process's lifetime high-water mark (the column says which).

This file is the runner (grid, run folders, runs.csv); `report.py` turns rows into tables and plots;
`__main__.py` is the command line. The sweep is the one command that imports another: a grid point is
`train.train(cfg)` with a `train.TrainConfig`, the training library entry, called in-process (so the
frozen cache stays warm); tests/test_imports.py allows that edge and no other.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .. import cli, problem, train
from ..errors import MinifreezeError
from ..metrics import METRICS
from ..runtime import peak_memory, pick_device, reset_peak_memory, write_json
from . import report


@dataclass(frozen=True)
class SweepConfig:
    """The grid and the sweep's own options; the training options come from TrainConfig."""

    freeze: str = cli.option("0,-1,2,4,8,10,12", "comma-separated freeze specs (a leading -: --freeze=-1,0)")
    schedules: str = cli.option(
        "",
        "freeze schedules to add to the grid, separated by ';' (their points use commas): "
        "'linear:0-4;auto;0@0,2@1ep'; auto starts at depth 0 here (default: none)",
    )
    train_sizes: str = cli.option("50,100,200,500,1000", "comma-separated train sizes (0 = all)")
    seeds: str = cli.option("5", "a count N (seeds 0..N-1) or a list: 3,4 (or 7, for seed 7 alone)")
    data_seeds: str = cli.option(
        "",
        "data subsets per train size, a count or a list like --seeds: each is its own draw of the training "
        "examples, paired across specs (default: --data-seed alone)",
    )
    subsets_up_to: int = cli.option(
        0, "train sizes above this use only the first of --data-seeds (0 = every size gets them all)"
    )
    out: str | None = cli.option(None, "sweep folder: runs/, runs.csv, summary.md, plots")
    keep_models: bool = cli.option(False, "keep each run's model/ and last/ folders (large)")
    report: str = cli.option(
        "accuracy,mcc",
        "metrics with a table (besides --metric; same best checkpoint); regression and multi-label runs "
        "report their own first two metrics unless given",
    )
    report_only: bool = cli.option(False, "rebuild runs.csv, summary.md and plots without training")
    progress: bool = cli.option(True, "one progress bar over runs with an ETA (runs never show their own)")


# Set per run by the grid (or forced by the sweep), so not options of the sweep.
GRID_FIELDS = {"freeze", "freeze_schedule", "train_size", "seed", "out", "overwrite", "resume", "progress"}
PROTOCOL = {"epochs": 10, "batch_size": 16, "lr": 5e-5, "warmup": "1ep", "eval_every": "0.5ep"}
TRAIN_FIELDS = [f for f in dataclasses.fields(train.TrainConfig) if f.name not in GRID_FIELDS]


def _copy_field(f: dataclasses.Field, default=dataclasses.MISSING) -> tuple:
    default = f.default if default is dataclasses.MISSING else default
    return f.name, f.type, dataclasses.field(default=default, metadata=f.metadata)


SweepOptions = dataclasses.make_dataclass(
    "SweepOptions",
    [_copy_field(f) for f in dataclasses.fields(SweepConfig)]
    + [_copy_field(f, PROTOCOL.get(f.name, f.default)) for f in TRAIN_FIELDS],
    frozen=True,
)
SweepOptions.__doc__ = "SweepConfig + TrainConfig fields (protocol defaults): what the sweep CLI parses."


def run_name(spec: str, size: int, seed: int, schedule: str | None = None, subset: int | None = None) -> str:
    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in schedule or spec)
    return f"{'schedule' if schedule else 'freeze'}{safe}-n{size}-s{seed}" + (
        f"-d{subset}" if subset is not None else ""
    )


def schedule_label(schedule: str) -> str:
    """A scheduled run's `freeze` column in runs.csv and the tables: one spec among the fixed ones."""
    return f"schedule:{schedule}"


def parse_ints(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MinifreezeError(f"--{option} {text!r}: expected comma-separated integers") from None


def make_grid(opts, root: Path) -> list[train.TrainConfig]:
    """One TrainConfig per run, seed-major: a sweep cut short has complete curves for its first seeds."""
    specs = [(s.strip(), None) for s in opts.freeze.split(",") if s.strip()]
    specs += [("0", s.strip()) for s in opts.schedules.split(";") if s.strip()]  # a schedule's start: 0
    sizes = parse_ints(opts.train_sizes, "train-sizes")
    seeds = seed_list(opts.seeds, "seeds")
    subsets = seed_list(opts.data_seeds, "data-seeds") if opts.data_seeds.strip() else [None]
    if not specs or not sizes or not seeds or not subsets:
        raise MinifreezeError("the grid is empty: give --freeze, --train-sizes and --seeds values")
    base = train.TrainConfig(**{f.name: getattr(opts, f.name) for f in TRAIN_FIELDS})
    grid = []
    for seed, size, subset, (spec, schedule) in itertools.product(seeds, sizes, subsets, specs):
        if subset not in (None, subsets[0]) and 0 < opts.subsets_up_to < size:
            continue  # a large size: one subset (their overlap makes more draws say little)
        cfg = dataclasses.replace(
            base, freeze=spec, freeze_schedule=schedule, train_size=size, seed=seed,
            data_seed=base.data_seed if subset is None else subset,
            out=str(root / "runs" / run_name(spec, size, seed, schedule, subset)), overwrite=True,
            resume=False, progress=False,
        )  # fmt: skip
        if cfg.cache_frozen and not (schedule or cache_allowed(spec, cfg.frozen_dropout)):
            cfg = dataclasses.replace(cfg, cache_frozen=False)  # freeze 0 etc.: no prefix to cache
        grid.append(cfg)
    return grid


def seed_list(text: str, option: str) -> list[int]:
    """A count N (0..N-1) or a comma-separated list (one value with a comma: '7,')."""
    values = parse_ints(text, option)
    return list(range(values[0])) if len(values) == 1 and "," not in text else values


def cache_allowed(spec: str, frozen_dropout: bool) -> bool:
    """A frozen prefix to cache exists for N != 0, head and top:K, and only without dropout in it."""
    numeric = spec.lstrip("-").isdigit() and int(spec) != 0
    return (numeric or spec == "head" or spec.startswith("top:")) and not frozen_dropout


def is_finished(run_dir: Path) -> bool:
    """summary.json written by a run that completed (a signal stop also writes one, but is not done)."""
    path = run_dir / "summary.json"
    return path.is_file() and not json.loads(path.read_text())["stopped"].startswith("stopped by signal")


# Options that change how fast a run goes, not what it computes: a resumed sweep may change them.
NEUTRAL = {"out", "overwrite", "resume", "progress", "threads", "eval_batch_size"}
NEUTRAL |= {"cache_dir", "cache_max_gb"}


def check_same_options(cfg: train.TrainConfig) -> None:
    """A finished run is reused only if it was trained with the options this sweep would use now."""
    run_dir = Path(cfg.out)
    saved = json.loads((run_dir / "config.json").read_text())
    now = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NEUTRAL}
    changed = [f"{k}: {saved.get(k)!r} then, {v!r} now" for k, v in now.items() if saved.get(k) != v]
    if changed:
        raise MinifreezeError(
            f"{run_dir} was trained with other options ({'; '.join(changed[:3])}): "
            "use another --out, or delete the run folders to redo them"
        )


def run_point(cfg: train.TrainConfig, opts, train_fn: Callable) -> None:
    """Train one grid point (a fresh run folder); a failure is recorded in failed.json, not raised."""
    run_dir = Path(cfg.out)
    device = pick_device(cfg.device)
    reset_peak_memory(device)
    cpu_start = time.process_time()  # CPU seconds, every thread: a fair cost when the machine is shared
    try:
        train_fn(cfg)
    except Exception as err:  # noqa: BLE001 - one bad grid point must not end the study
        run_dir.mkdir(parents=True, exist_ok=True)
        message = (str(err).strip().splitlines() or [""])[0]
        write_json(run_dir / "failed.json", {"error": f"{type(err).__name__}: {message}"})
        return
    if not is_finished(run_dir):  # train stopped by SIGINT/SIGTERM: redo this run on restart
        (run_dir / "summary.json").unlink(missing_ok=True)
        raise KeyboardInterrupt
    mib, source = peak_memory(device)
    cpu = time.process_time() - cpu_start
    write_json(run_dir / "sweep.json", {"peak_memory_mib": mib, "memory_source": source, "cpu_seconds": cpu})
    if not opts.keep_models:
        for folder in ("model", "delta", "last"):
            shutil.rmtree(run_dir / folder, ignore_errors=True)
    if json.loads((run_dir / "summary.json").read_text()).get("late_signal"):
        raise KeyboardInterrupt  # asked to stop as the run ended: it is kept, the sweep stops here


LEAD = ["run", "status", "error", "freeze", "train_size", "seed", "data_seed", "metric", "best_metric"]
LEAD += [*METRICS, "loss", "majority_baseline", "best_step", "steps", "wall_seconds", "cpu_seconds"]
LEAD += ["train_samples_per_second"]
LEAD += ["eval_seconds", "peak_memory_mib", "memory_source", "trainable_params", "total_params"]
LEAD += ["cache_hit_fraction", "real_token_fraction", "stopped", *(f"max_{m}" for m in METRICS)]
# the other problem types' metrics (problem.py): in runs.csv only when some run has them
HIGHER_IS_BETTER = [
    *METRICS,
    *(m for m in problem.SUMMARY[problem.REGRESSION] if m not in problem.LOWER_IS_BETTER),
]
HIGHER_IS_BETTER += [m for m in problem.SUMMARY[problem.MULTI] if m != "loss"]
OTHER_METRICS = [f"heldout_{m}" for m in HIGHER_IS_BETTER] + ["heldout_loss", "heldout_offset"]  # --heldout
OTHER_METRICS += [f"crossfit_{m}" for m in HIGHER_IS_BETTER]
OTHER_METRICS += [m for m in HIGHER_IS_BETTER if m not in METRICS] + ["mse"]
OTHER_METRICS += [f"max_{m}" for m in HIGHER_IS_BETTER if m not in METRICS]


def collect_row(cfg: train.TrainConfig) -> dict | None:
    """One runs.csv row from a run folder; None if the run never started."""
    run_dir = Path(cfg.out)
    if not run_dir.is_dir():
        return None
    row = {"run": run_dir.name, **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "out"}}
    if cfg.freeze_schedule:
        row["freeze"] = schedule_label(cfg.freeze_schedule)
    if (run_dir / "failed.json").is_file():
        return row | {"status": "failed", **json.loads((run_dir / "failed.json").read_text())}
    if not is_finished(run_dir):
        return row | {"status": "incomplete", "error": "interrupted; runs again on restart"}
    summary = json.loads((run_dir / "summary.json").read_text())
    row |= {"status": "ok", "error": "", **summary.pop("metrics")}
    row |= {k: v for k, v in summary.items() if k in LEAD and k not in row}
    if cache := summary.get("cache"):  # the frozen prefix: from an earlier run of this process, or computed
        row["cache_hit_fraction"] = cache["hits"] / max(cache["examples"], 1)
    evals = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    row["eval_seconds"] = sum(r["examples"] / r["samples_per_second"] for r in evals)
    # Each metric at its own best evaluation, whichever checkpoint the selection kept: what a study that
    # selects by that metric would report (the published freeze study reports CoLA this way, by accuracy).
    row |= {f"max_{m}": max(r[m] for r in evals) for m in HIGHER_IS_BETTER if m in row and evals}
    if evals and f"heldout_{cfg.metric}" in evals[0]:  # how far the two parts differ without any choosing
        row["heldout_offset"] = statistics.fmean(r[cfg.metric] - r[f"heldout_{cfg.metric}"] for r in evals)
        row |= crossfit(evals, cfg.metric)
    if (run_dir / "sweep.json").is_file():
        row |= json.loads((run_dir / "sweep.json").read_text())
    return row


def crossfit(evals: list[dict], metric: str) -> dict:
    """crossfit_<m>: choose on the selection part and score on the held-out part, then the other way round,
    and average: every validation example reports, none reports on its own choice (metrics.jsonl has both
    parts at every evaluation). The first best evaluation wins a tie, as in the loop."""
    sign = -1 if metric in problem.LOWER_IS_BETTER else 1
    by_part = (
        max(evals, key=lambda r: sign * r[metric]),
        max(evals, key=lambda r: sign * r[f"heldout_{metric}"]),
    )
    shown = [m for m in HIGHER_IS_BETTER if f"heldout_{m}" in evals[0]]
    return {f"crossfit_{m}": (by_part[0][f"heldout_{m}"] + by_part[1][m]) / 2 for m in shown}


def write_csv(rows: list[dict], path: Path) -> None:
    extra = [f.name for f in dataclasses.fields(train.TrainConfig) if f.name not in LEAD + ["out"]]
    metrics = [m for m in OTHER_METRICS if any(m in row for row in rows)]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, LEAD + metrics + extra, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_report(opts, grid: list[train.TrainConfig], root: Path, metrics: list[str]) -> list[dict]:
    """runs.csv, summary.md and the plots, rebuilt from the run folders."""
    rows = [row for cfg in grid if (row := collect_row(cfg)) is not None]
    for row in rows:  # empty memory columns read as NaN in plots and tables, not as errors
        row.setdefault("peak_memory_mib", float("nan"))
    write_csv(rows, root / "runs.csv")
    finished = sum(r["status"] == "ok" for r in rows)
    lines = [
        f"# Freeze sweep: {opts.model} on {opts.dataset}", "",
        f"{finished} of {len(grid)} runs finished ({len(rows) - finished} failed or incomplete). Best checkpoint "
        f"chosen by {chosen_by(opts)}; every table reads that checkpoint. Protocol: {opts.epochs} "
        f"epochs, batch {opts.batch_size}, lr {opts.lr}, warm-up {opts.warmup}, evaluation every "
        f"{opts.eval_every}, max length {opts.max_length}, {subsets_text(opts)}.", "",
    ]  # fmt: skip
    (root / "summary.md").write_text("\n".join(lines + report.summary(rows, opts.metric, metrics, root)))
    return rows


def chosen_by(opts) -> str:
    if not opts.heldout:
        return f"validation {opts.metric}"
    return f"{opts.metric} on {1 - opts.heldout:.0%} of the validation set (the other {opts.heldout:.0%} is held out)"


def subsets_text(opts) -> str:
    if not opts.data_seeds.strip():
        return f"data seed {opts.data_seed}"
    upto = f" (train sizes up to {opts.subsets_up_to}; above it the first)" if opts.subsets_up_to else ""
    return f"data seeds {', '.join(map(str, seed_list(opts.data_seeds, 'data-seeds')))}{upto}"


def run_sweep(opts, train_fn: Callable[[train.TrainConfig], dict] = train.train) -> list[dict]:
    """Run (or resume) the grid, then write the report; returns the runs.csv rows."""
    if not opts.out:
        raise MinifreezeError("--out DIR is required: the sweep folder (resumable, so keep it)")
    kind = problem.resolve(opts.problem_type)
    opts = dataclasses.replace(opts, metric=problem.selection_metric(kind, opts.metric))
    default = kind != problem.SINGLE and opts.report == SweepConfig.report
    reported = [m.strip() for m in opts.report.split(",") if m.strip()] if not default else []
    allowed = [m for m in problem.SUMMARY[kind] if m in HIGHER_IS_BETTER]  # the tables and plots take these
    reported = reported or [m for m in allowed if m != opts.metric][:2]
    if opts.metric not in allowed or not set(reported) <= set(allowed):
        raise MinifreezeError(f"--metric/--report: use metrics from {', '.join(allowed)}")
    root = Path(opts.out)
    grid = make_grid(opts, root)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "sweep_config.json", dataclasses.asdict(opts))
    if not opts.report_only:
        todo = [cfg for cfg in grid if not is_finished(Path(cfg.out))]
        for cfg in (c for c in grid if c not in todo):
            check_same_options(cfg)
        print(f"sweep: {len(grid)} runs, {len(grid) - len(todo)} already finished, {len(todo)} to go")
        bar = tqdm(todo, desc="sweep", unit="run", dynamic_ncols=True, disable=not opts.progress)
        for cfg in bar:
            bar.set_postfix_str(Path(cfg.out).name)
            run_point(cfg, opts, train_fn)
            write_csv([r for c in grid if (r := collect_row(c))], root / "runs.csv")
    rows = write_report(opts, grid, root, list(dict.fromkeys([opts.metric, *reported])))
    failed = sum(r["status"] != "ok" for r in rows)
    drawn = " and plots" if report.plots_available() else ""
    print(f"sweep: wrote {root}/runs.csv, summary.md{drawn} ({failed} runs failed or incomplete)")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    opts = cli.parse(SweepOptions, argv, "python -m minifreeze.sweep", "Run the freeze study grid.")
    return run_sweep(opts)


def entry() -> None:
    """The console script minifreeze-sweep: `main` as the command line runs it."""
    cli.run(main)
