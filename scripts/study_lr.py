"""Phase 5 of the freeze study: which learning rate suits which freeze depth, as tables.

    python scripts/study_lr.py --metric crossfit_accuracy docs/study/lr

The phase is one sweep per pooling and learning rate (scripts/run_study.sh lr writes
`lr/POOLING-lrLR/`), each over the same depths and seeds, because a sweep has one learning rate. Read
one at a time, they answer "what does freezing cost at this lr"; the phase asks the other question, so
this regroups their runs by depth: a row per depth, a column per learning rate. Runs pair by seed (the
same data order and head initialisation at every lr), and each lr is compared with the protocol's 5e-5
at the same depth, Holm-corrected within the depth's row, as the sweep report does for depths. `--plot PNG` draws
the same means against the learning rate, a line per depth and a panel per pooling.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from minifreeze import cli, stats
from minifreeze.errors import MinifreezeError
from minifreeze.sweep.report import (
    _pyplot,
    _save,
    depth_key,
    markdown_table,
    mean_text,
    paired_text,
    plots_available,
    read_runs,
    run_key,
    spec_label,
)

FOLDER = re.compile(r"(?P<pooling>cls|mean)-lr(?P<lr>[0-9.e+-]+)$")


def read_phase(root: Path, metric: str) -> dict[tuple[str, str, str], dict[tuple[int, int], float]]:
    """{(pooling, lr, depth): {(seed, data subset): value}} over the phase's sweep folders."""
    folders = (
        sorted(p for p in root.iterdir() if p.is_dir() and FOLDER.match(p.name)) if root.is_dir() else []
    )
    if not folders:
        raise MinifreezeError(f"{root}: no POOLING-lrLR sweep folders (scripts/run_study.sh lr writes them)")
    cells: dict[tuple[str, str, str], dict[tuple[int, int], float]] = {}
    for folder in folders:
        found = FOLDER.match(folder.name)
        if not (folder / "runs.csv").is_file():
            continue  # a learning rate not run yet: its column stays empty
        for row in read_runs(folder / "runs.csv", [metric]):
            key = (found["pooling"], found["lr"], str(row["freeze"]))
            cells.setdefault(key, {})[run_key(row)] = float(row[metric])
    return cells


def pooling_tables(cells: dict, pooling: str, metric: str, reference: str) -> list[str]:
    """Mean per depth and lr (with each depth's best lr), then each lr minus `reference`, paired by seed."""
    mine = {(lr, depth): runs for (p, lr, depth), runs in cells.items() if p == pooling}
    lrs = sorted({lr for lr, _ in mine}, key=float)
    depths = sorted({depth for _, depth in mine}, key=depth_key)
    means = []
    for depth in depths:
        row = [spec_label(depth)] + [
            mean_text(list(mine[lr, depth].values())) if (lr, depth) in mine else "" for lr in lrs
        ]
        ranked = [lr for lr in lrs if (lr, depth) in mine]
        best = max(ranked, key=lambda lr: stats.mean_ci(list(mine[lr, depth].values()))[0])
        means.append(row + [best])
    lines = [
        f"### {metric}, {pooling} pooling: mean ± 95% confidence interval (t) over seeds, per depth and lr", "",
        *markdown_table(["depth", *(f"lr {lr}" for lr in lrs), "best mean"], means), "",
    ]  # fmt: skip
    others = [lr for lr in lrs if lr != reference]
    diffs = []
    for depth in depths:
        tests = {
            lr: stats.paired(mine[reference, depth], mine[lr, depth])
            for lr in others
            if (reference, depth) in mine and (lr, depth) in mine
        }
        holm = dict(zip(tests, stats.holm([t.p for t in tests.values()])))
        diffs.append(
            [spec_label(depth)] + [paired_text(tests[lr], holm[lr]) if lr in tests else "" for lr in others]
        )
    if any(any(row[1:]) for row in diffs):
        lines += [
            f"### {metric}, {pooling} pooling: each lr minus lr {reference} at the same depth, paired by seed", "",
            "`*`: p < 0.05 alone; **bold**: still significant after Holm's correction for the comparisons in "
            "its row (one depth).", "",
            *markdown_table(["depth", *(f"lr {lr}" for lr in others)], diffs), "",
        ]  # fmt: skip
    return lines


def plot_phase(cells: dict, metric: str, path: Path) -> None:
    """Mean ± 95% interval against lr (log scale), a line per depth, a panel per pooling."""
    plt = _pyplot()
    poolings = sorted({p for p, _, _ in cells})
    fig, axes = plt.subplots(1, len(poolings), figsize=(5 * len(poolings), 3.8), sharey=True, squeeze=False)
    for ax, pooling in zip(axes[0], poolings):
        depths = sorted({d for p, _, d in cells if p == pooling}, key=depth_key)
        for depth in depths:
            lrs = sorted((lr for p, lr, d in cells if p == pooling and d == depth), key=float)
            means = [stats.mean_ci(list(cells[pooling, lr, depth].values())) for lr in lrs]
            ax.errorbar([float(lr) for lr in lrs], [m for m, _ in means], yerr=[h for _, h in means],
                        marker="o", ms=4, capsize=3, label=spec_label(depth))  # fmt: skip
        ax.set_xscale("log")
        ticks = sorted({float(lr) for p, lr, _ in cells if p == pooling})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("peak learning rate")
        ax.set_title(f"{pooling} pooling")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (mean ± 95% CI)")
    axes[0][-1].legend(title="frozen", fontsize=8)
    _save(fig, path)


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the phase's folder, holding cls-lr5e-5/ and the others")
    parser.add_argument(
        "--metric", default="crossfit_accuracy", help="a runs.csv column (default: %(default)s)"
    )
    parser.add_argument(
        "--reference", default="5e-5", help="the lr each other is compared with (default: %(default)s)"
    )
    parser.add_argument("--plot", type=Path, help="also draw the means against lr into this PNG")
    args = parser.parse_args(argv)
    if args.plot and not plots_available():
        raise MinifreezeError("--plot needs matplotlib: pip install matplotlib (the tables need nothing)")
    cells = read_phase(args.root, args.metric)
    if not any(lr == args.reference for _, lr, _ in cells):
        raise MinifreezeError(
            f"{args.root}: no finished runs at lr {args.reference} to compare with (--reference)"
        )
    poolings = sorted({p for p, _, _ in cells})
    lines = [
        line for pooling in poolings for line in pooling_tables(cells, pooling, args.metric, args.reference)
    ]
    print("\n".join(lines))
    if args.plot:
        plot_phase(cells, args.metric, args.plot)
    return lines


if __name__ == "__main__":
    cli.run(main)
