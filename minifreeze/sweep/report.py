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

from .. import stats
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
    cpu_known = any(r.get("cpu_seconds") not in (None, "") for r in rows)  # older sweeps did not record it
    body = []
    for spec in specs:
        speed, memory = mean("train_samples_per_second", spec), mean("peak_memory_mib", spec)
        body.append(
            [spec_label(spec), f"{mean('trainable_params', spec):,.0f}", f"{speed:.1f}"]
            + [f"{speed / reference:.2f}x" if reference else ""]
            + [f"{wall:.0f}" if (wall := mean("wall_seconds", spec, n)) is not None else "—" for n in sizes]
            + [
                f"{cpu:.0f}" if (cpu := mean("cpu_seconds", spec, n)) is not None else "—"
                for n in sizes
                if cpu_known
            ]
            + [f"{mean('eval_seconds', spec):.0f}", f"{memory:.0f}" if memory else "", _reused(rows, spec)]
        )
    header = ["freeze", "trainable params", "train samples/s", "vs freeze 0"]
    header += [f"wall s (n={n})" for n in sizes] + [f"CPU s (n={n})" for n in sizes if cpu_known]
    header += ["eval s per run", "peak MiB", "cache reused (whole)"]
    return ["### Cost per freeze spec (means over runs)", "", *markdown_table(header, body), ""]


def _reused(rows: list[dict], spec: str) -> str:
    """'4 of 5': runs whose frozen-prefix cache came whole from an earlier run of the same process."""
    runs = [r for r in rows if r["freeze"] == spec]
    cached = [r for r in runs if r.get("cache_hit_fraction") not in (None, "")]
    return (
        f"{sum(float(r['cache_hit_fraction']) == 1 for r in cached)} of {len(runs)}" if cached else "no cache"
    )


# -------------------------------------------------------------------------------------------- intervals
def run_key(row: dict) -> tuple[int, int]:
    """What pairs two runs of different specs: the same seed on the same data subset."""
    return int(row["seed"]), int(row.get("data_seed") or 0)


def paired_cells(rows: Iterable[dict], metric: str) -> dict[tuple[int, str], dict[tuple[int, int], float]]:
    """{(train size, spec): {(seed, data seed): value}}, in table order."""
    cells: dict[tuple[int, str], dict[tuple[int, int], float]] = {}
    for row in rows:
        cells.setdefault((int(row["train_size"]), str(row["freeze"])), {})[run_key(row)] = float(row[metric])
    return dict(sorted(cells.items(), key=lambda kv: (kv[0][0], depth_key(kv[0][1]))))


def interval_tables(rows: list[dict], metric: str, reference: str = "0") -> list[str]:
    """Mean ± 95% CI per cell; each spec minus `reference`, paired run by run; the seed spread per cell."""
    cells = paired_cells(rows, metric)
    sizes = sorted({n for n, _ in cells})
    specs = sorted({s for _, s in cells}, key=depth_key)
    means = []
    for n in sizes:
        row = [n]
        for s in specs:
            values = list(cells.get((n, s), {}).values())
            row.append(mean_text(values) if values else "")
        means.append(row)
    lines = [
        f"### {metric}: mean ± 95% confidence interval (t) over runs, runs per cell in brackets", "",
        *markdown_table(["train size", *map(spec_label, specs)], means), "",
    ]  # fmt: skip
    others = [s for s in specs if s != reference]
    if any((n, reference) in cells for n in sizes) and others:
        diffs = []
        for n in sizes:
            tests = {
                s: stats.paired(cells[n, reference], cells[n, s])
                for s in others
                if _pairs(cells, n, s, reference)
            }
            holm = dict(zip(tests, stats.holm([t.p for t in tests.values()])))
            diffs.append([n] + [paired_text(tests[s], holm[s]) if s in tests else "" for s in others])
        lines += [
            f"### {metric}: each spec minus freeze {spec_label(reference)}, paired by seed and data subset", "",
            "Mean difference ± the half-width of its 95% interval, and the paired t-test's two-sided p. `*`: "
            "p < 0.05 alone; **bold**: still significant after Holm's correction for the comparisons in "
            "its row. A difference without either is not shown to exist by these runs.", "",
            *markdown_table(["train size", *map(spec_label, others)], diffs), "",
        ]  # fmt: skip
    spreads = [[n] + [_spread_text(cells.get((n, s), {})) for s in specs] for n in sizes]
    lines += [
        f"### {metric}: spread across seeds (sample std, its 95% interval)", "",
        "Within one data subset (pooled over subsets where there are several): how much the seed alone "
        "moves a run. With 5 seeds an std is known only to within about a factor of two.", "",
        *markdown_table(["train size", *map(spec_label, specs)], spreads), "",
    ]  # fmt: skip
    draws = [[n] + [_subset_spread_text(cells.get((n, s), {})) for s in specs] for n in sizes]
    if any(any(row[1:]) for row in draws):
        lines += [
            f"### {metric}: spread across data subsets (std of the subsets' means, its 95% interval)", "",
            "How much the draw of the training examples moves a result. Each subset's mean over seeds keeps "
            "its own seed noise (seed std / √seeds); well above that, the draw matters more than the seed.", "",
            *markdown_table(["train size", *map(spec_label, specs)], draws), "",
        ]  # fmt: skip
    return lines


def selection_bias(rows: list[dict], metric: str) -> list[str]:
    """How much choosing a checkpoint on a set flatters its score there: per run, the chosen checkpoint's
    lead of the selection part over the held-out part, less the parts' mean lead over all evaluations."""
    runs = [r for r in rows if r.get("heldout_offset") not in (None, "")]
    if not runs:
        return []
    bias = [float(r[metric]) - float(r[f"heldout_{metric}"]) - float(r["heldout_offset"]) for r in runs]
    mean, half = stats.mean_ci(bias)
    offset = statistics.fmean(float(r["heldout_offset"]) for r in runs)
    return [
        f"**Selection bias, measured:** at the checkpoint it chose, the selection part scores {mean:+.4f} "
        f"± {half:.4f} {metric} above the held-out part (mean over {len(runs)} runs, 95% interval), beyond the "
        f"{offset:+.4f} the two parts differ by on average over all evaluations: what reporting on the "
        "selection set would have added.", "",
    ]  # fmt: skip


def _pairs(cells: dict, n: int, spec: str, reference: str) -> bool:
    return (
        (n, spec) in cells
        and (n, reference) in cells
        and bool(set(cells[n, spec]) & set(cells[n, reference]))
    )


def mean_text(values: list[float]) -> str:
    mean, half = stats.mean_ci(values)
    return f"{mean:.3f} ± {half:.3f} ({len(values)})" if half == half else f"{mean:.3f} (1)"


def paired_text(test: stats.Paired, holm_significant: bool) -> str:
    text = test.text("*" if test.p < 0.05 else "")
    return f"**{text}**" if holm_significant else text


def _spread_text(cell: dict[tuple[int, int], float]) -> str:
    """Seed std within each data subset (pooled where there are several), with its interval."""
    groups = [v for v in _by_subset(cell) if len(v) > 1]
    if not groups:
        return ""
    # pooled: squared deviations from each subset's own mean, one degree of freedom lost per subset
    df = sum(len(g) - 1 for g in groups)
    return _std_text((sum((x - statistics.fmean(g)) ** 2 for g in groups for x in g) / df) ** 0.5, df)


def _subset_spread_text(cell: dict[tuple[int, int], float]) -> str:
    means = [statistics.fmean(v) for v in _by_subset(cell)]
    return _std_text(statistics.stdev(means), len(means) - 1) if len(means) > 1 else ""


def _std_text(std: float, df: int) -> str:
    low, high = stats.sigma_interval(std, df)
    return f"{std:.3f} [{low:.3f}, {high:.3f}]"


def _by_subset(cell: dict[tuple[int, int], float]) -> list[list[float]]:
    subsets: dict[int, list[float]] = {}  # one list of values per data subset
    for (_seed, subset), value in cell.items():
        subsets.setdefault(subset, []).append(value)
    return list(subsets.values())


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
    heldout = [m for m in metrics if ok and ok[0].get(f"heldout_{m}") not in (None, "")]
    if heldout:
        lines += [
            "## On the held-out part of validation (the checkpoint was chosen on the other part)", "",
            "These are the study's results: scores of the chosen checkpoint on examples its selection never "
            "saw. The tables after them score the selection part itself, which flatters the choice.", "",
        ]  # fmt: skip
        lines += selection_bias(ok, selected_by)
        crossfit = [m for m in heldout if ok[0].get(f"crossfit_{m}") not in (None, "")]
        if crossfit:
            lines += [
                f"`crossfit_`: the checkpoint chosen by {selected_by} on the selection part scored on the "
                "held-out part, and the one chosen on the held-out part scored on the selection part, "
                "averaged: all of validation reports, and no example scores its own choice.", "",
            ]  # fmt: skip
        for metric in crossfit:
            lines += interval_tables(ok, f"crossfit_{metric}")
        for metric in heldout:
            lines += interval_tables(ok, f"heldout_{metric}")
            if plots:
                plot_metric(ok, f"heldout_{metric}", root / f"heldout_{metric}_vs_frozen.png")
                lines += [f"![held-out {metric} vs frozen layers](heldout_{metric}_vs_frozen.png)", ""]
        lines += ["## On the selection part of validation", ""]
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
            f"{path}: no such file (give a sweep's runs.csv, e.g. docs/study/grid/runs.csv)"
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
