"""The freeze study's tables and plots, from runs.csv rows: summary.md, and the scripts that compare studies.

A row is one run (a dict, as `collect_row` builds it or as `csv.DictReader` reads runs.csv back: numbers
may be strings, so every read converts). A cell is one (train size, freeze spec): its runs differ only by
seed. The tables never need matplotlib, an optional dependency: the plots are drawn only when it exists.
`scripts/compare_published.py` and `scripts/compare_followups.py` read runs.csv files through
`read_runs` and `by_cell` and print with `markdown_table`, so a study and its comparisons agree on what a
cell is.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable
from pathlib import Path

from ..errors import MinifreezeError


# -------------------------------------------------------------------------------------------- aggregation
def depth_key(spec: str) -> tuple:
    """Order specs by how much is frozen: 0 (nothing), -1 (embeddings), 1, 2, ...; named specs after."""
    try:
        value = int(spec)
        return (0, 0.5 if value == -1 else value, "")
    except ValueError:
        return (1, 0, spec)


def aggregate(rows: Iterable[dict], metric: str) -> list[dict]:
    """Per (train size, freeze) over finished runs: n, mean, median, sample std, min, max, baseline."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("status", "ok") == "ok":
            groups.setdefault((int(row["train_size"]), str(row["freeze"])), []).append(row)
    table = []
    for (size, spec), members in sorted(groups.items(), key=lambda kv: (kv[0][0], depth_key(kv[0][1]))):
        values = [float(r[metric]) for r in members]
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        baseline = statistics.fmean(float(r["majority_baseline"]) for r in members)
        mean, median = statistics.fmean(values), statistics.median(values)
        table.append(
            dict(train_size=size, freeze=spec, n=len(values), mean=mean, median=median, std=std)
            | dict(min=min(values), max=max(values), baseline=baseline)
        )
    return table


def cell(rows: list[dict], key: str, spec: str, size: int | None = None) -> list[float]:
    """Values of `key` over the runs of one freeze spec (and one train size, if given)."""
    return [float(r[key]) for r in rows if r["freeze"] == spec and size in (None, int(r["train_size"]))]


def spec_label(spec: str) -> str:
    return {"0": "0 (none)", "-1": "-1 (emb)"}.get(spec, spec)


def markdown_table(header: list[str], body: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in body]


def metric_tables(rows: list[dict], metric: str) -> list[str]:
    """The wide table (mean ± std) and the long one (all statistics) of one metric at the best checkpoint."""

    def majority(
        accuracy: float,
    ) -> str:  # always predicting one class has MCC 0; its F1 depends on the class
        return {"accuracy": f"{accuracy:.4f}", "mcc": "0"}.get(metric.removeprefix("max_"), "")

    stats = aggregate(rows, metric)
    specs = sorted({s["freeze"] for s in stats}, key=depth_key)
    cells = {(s["train_size"], s["freeze"]): s for s in stats}
    sizes = sorted({s["train_size"] for s in stats})
    wide = [
        [n, majority(next(c["baseline"] for c in stats if c["train_size"] == n))]
        + [f"{cells[n, s]['mean']:.3f} ± {cells[n, s]['std']:.3f}" if (n, s) in cells else "" for s in specs]
        for n in sizes
    ]
    long = [
        [s["train_size"], spec_label(s["freeze"]), s["n"]]
        + [f"{s[k]:.4f}" for k in ("mean", "median", "std", "min", "max")]
        + [majority(s["baseline"])]
        for s in stats
    ]
    return [
        f"### {metric}: mean ± std over seeds (rows: train size; columns: freeze spec)", "",
        *markdown_table(["train size", "majority class", *map(spec_label, specs)], wide), "",
        f"### {metric}: all statistics", "",
        *markdown_table(["train size", "freeze", "n", "mean", "median", "std", "min", "max", "majority class"], long),
        "",
    ]  # fmt: skip


def cost_table(rows: list[dict]) -> list[str]:
    """Per freeze spec (finished runs): trainable params, train speed (vs freeze 0), wall time, peak memory."""
    specs = sorted({r["freeze"] for r in rows}, key=depth_key)
    sizes = sorted({int(r["train_size"]) for r in rows})

    def mean(key: str, spec: str, size: int | None = None) -> float | None:
        values = cell(rows, key, spec, size)
        return statistics.fmean(values) if values and all(v == v for v in values) else None

    reference = mean("train_samples_per_second", "0") if "0" in specs else None
    body = []
    for spec in specs:
        speed, memory = mean("train_samples_per_second", spec), mean("peak_memory_mib", spec)
        body.append(
            [spec_label(spec), f"{mean('trainable_params', spec):,.0f}", f"{speed:.1f}"]
            + [f"{speed / reference:.2f}x" if reference else ""]
            + [f"{wall:.0f}" if (wall := mean("wall_seconds", spec, n)) is not None else "—" for n in sizes]
            + [f"{mean('eval_seconds', spec):.0f}", f"{memory:.0f}" if memory else ""]
        )
    header = ["freeze", "trainable params", "train samples/s", "vs freeze 0"]
    header += [f"wall s (n={n})" for n in sizes] + ["eval s per run", "peak MiB"]
    return ["### Cost per freeze spec (means over runs)", "", *markdown_table(header, body), ""]


# -------------------------------------------------------------------------------------------- plots
NO_PLOTS = (
    "sweep: matplotlib is not installed, so no plots were drawn (the tables are in summary.md): "
    "pip install matplotlib, then python -m minifreeze.sweep --out {out} --report-only"
)


def plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def _x_axis(ax, specs: list[str], fontsize: int = 9) -> None:
    ax.set_xticks(range(len(specs)), specs)
    ax.set_xlabel("frozen (0 none, -1 emb, N emb + N layers)", fontsize=fontsize)
    ax.grid(alpha=0.3)


def plot_metric(rows: list[dict], metric: str, path: Path) -> None:
    """Metric vs frozen depth (finished runs), a panel per train size: a dot per run, a line through means."""
    plt = _pyplot()
    specs = sorted({r["freeze"] for r in rows}, key=depth_key)
    sizes = sorted({int(r["train_size"]) for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 3.4), sharey=True, squeeze=False)
    for ax, size in zip(axes[0], sizes):
        stats = {s["freeze"]: s for s in aggregate([r for r in rows if int(r["train_size"]) == size], metric)}
        for x, spec in enumerate(specs):
            values = cell(rows, metric, spec, size)
            ax.scatter([x] * len(values), values, s=12, alpha=0.5, color="tab:blue")
        xs = [x for x, s in enumerate(specs) if s in stats]
        ax.plot(xs, [stats[specs[x]]["mean"] for x in xs], "-o", color="tab:red", ms=4, label="mean")
        if stats and metric == "accuracy":
            baseline = next(iter(stats.values()))["baseline"]
            ax.axhline(baseline, ls="--", color="gray", lw=1, label="majority class")
        ax.set_title(f"n = {size}")
        _x_axis(ax, specs, fontsize=7)
    axes[0][0].set_ylabel(f"best validation {metric}")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


def plot_cost(rows: list[dict], path: Path) -> None:
    """Wall time, train throughput and peak memory vs frozen depth (finished runs), a line per train size."""
    plt = _pyplot()
    specs = sorted({r["freeze"] for r in rows}, key=depth_key)
    panels = [
        ("wall_seconds", "wall time per run (s)"),
        ("train_samples_per_second", "train samples/s (log scale)"),
    ]
    panels.append(("peak_memory_mib", "peak memory (MiB)"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (key, label) in zip(axes, panels):
        for size in sorted({int(r["train_size"]) for r in rows}):
            cells = [cell(rows, key, spec, size) for spec in specs]
            points = [(x, statistics.fmean(v)) for x, v in enumerate(cells) if v and all(e == e for e in v)]
            if points:
                ax.plot(*zip(*points), "-o", ms=4, label=f"n = {size}")
        _x_axis(ax, specs)
        ax.set_ylabel(label)
        if key == "train_samples_per_second":  # a cached, head-only run is ~100x faster than the rest
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    _save(fig, path)


def summary(rows: list[dict], selected_by: str, metrics: list[str], root: Path) -> list[str]:
    """summary.md after its heading: per metric a table (and a plot, drawn into root), the same for each
    metric's best over all evaluations, the cost table, and the runs that did not finish."""
    ok = [r for r in rows if r["status"] == "ok"]
    plots = plots_available()
    if ok and not plots:
        print(NO_PLOTS.format(out=root))
    lines = []
    if ok:
        for metric in metrics:
            lines += metric_tables(ok, metric)
            if plots:
                plot_metric(ok, metric, root / f"{metric}_vs_frozen.png")
                lines += [f"![{metric} vs frozen layers]({metric}_vs_frozen.png)", ""]
        for metric in metrics[1:]:
            lines += [
                f"Each run's highest {metric} over all its evaluations, not only at the checkpoint chosen "
                f"by {selected_by}: what selecting by {metric} would have reported.",
                "",
            ]
            lines += metric_tables(ok, f"max_{metric}")
        lines += cost_table(ok)
        if plots:
            plot_cost(ok, root / "cost_vs_frozen.png")
            lines += ["![time and memory vs frozen layers](cost_vs_frozen.png)", ""]
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["### Runs not finished", "", *markdown_table(["run", "status", "error"], [
            [r["run"], r["status"], r["error"]] for r in failed]), ""]  # fmt: skip
    return lines


# -------------------------------------------------------------------------------------------- runs.csv files
def read_runs(path: Path, columns: Iterable[str] = ()) -> list[dict]:
    """The finished runs of a sweep's runs.csv; each must hold `columns` (older files may lack some)."""
    if not path.is_file():
        raise MinifreezeError(
            f"{path}: no such file (give a sweep's runs.csv, e.g. docs/study/sst2/runs.csv)"
        )
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("status") == "ok"]
    if not rows:
        raise MinifreezeError(f"{path}: no finished runs")
    missing = [repr(c) for c in columns if c not in rows[0]]
    if missing:
        raise MinifreezeError(
            f"{path} has no column {', '.join(missing)}: rebuild it with "
            "python -m minifreeze.sweep --out SWEEP_DIR --report-only"
        )
    return rows


def by_cell(rows: Iterable[dict], value: str) -> dict[tuple[int, str], dict[int, float]]:
    """{(train size, freeze spec): {seed: value}}, cells in table order (size, then depth)."""
    cells: dict[tuple[int, str], dict[int, float]] = {}
    for row in rows:
        try:
            number = float(row[value])
        except (TypeError, ValueError):  # an empty cell: a column this run's version did not write
            raise MinifreezeError(
                f"run {row.get('run', '?')}: {value} is {row[value]!r}, not a number; rebuild runs.csv with "
                "python -m minifreeze.sweep --out SWEEP_DIR --report-only"
            ) from None
        cells.setdefault((int(row["train_size"]), str(row["freeze"])), {})[int(row["seed"])] = number
    return dict(sorted(cells.items(), key=lambda kv: (kv[0][0], depth_key(kv[0][1]))))
