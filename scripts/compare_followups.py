"""Each follow-up experiment beside the main freeze study, cell by cell and seed by seed.

    python scripts/compare_followups.py docs/study/round1/sst2/runs.csv docs/study/round1/followups/*/runs.csv

A follow-up (scripts/run_study_followups.sh) reruns some cells of the study with one or two options
changed. Seeds are paired: run s of a cell in both sweeps shares its data subset, initial head and data
order, so the mean of the per-seed differences measures the change with less noise than the difference of
two means. The options that differ are read from the runs.csv files, not assumed.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from minifreeze import cli
from minifreeze.sweep.report import by_cell, markdown_table, read_runs

# The training options a follow-up may change (the grid columns freeze/train_size/seed are the cells).
PROTOCOL_FIELDS = ("model", "dataset", "metric", "epochs", "batch_size", "lr", "weight_decay", "warmup",
                   "schedule", "max_length", "pooling", "frozen_dropout", "eval_every", "data_seed")  # fmt: skip


def changed_options(baseline: list[dict], followup: list[dict]) -> list[str]:
    """'field: base -> new' for every protocol option whose values differ between the two sweeps."""
    changes = []
    for field in PROTOCOL_FIELDS:
        before = {row.get(field, "") for row in baseline}
        after = {row.get(field, "") for row in followup}
        if before != after:
            changes.append(f"{field}: {'/'.join(sorted(before))} -> {'/'.join(sorted(after))}")
    return changes


def comparison_table(baseline: list[dict], followup: list[dict], value: str) -> list[str]:
    """Markdown: a row per follow-up cell: study mean, follow-up mean, mean paired difference, seeds."""
    base, new = by_cell(baseline, value), by_cell(followup, value)
    header = [
        "train size",
        "freeze",
        f"study {value}",
        f"follow-up {value}",
        "paired difference",
        "seeds paired",
    ]
    body = []
    for cell, seeds_new in new.items():
        seeds = sorted(set(seeds_new) & set(base.get(cell, {})))
        study = f"{statistics.fmean(base[cell].values()):.3f}" if cell in base else "—"
        diffs = [seeds_new[s] - base[cell][s] for s in seeds]
        paired = f"{statistics.fmean(diffs):+.3f}" if diffs else "—"
        span = f" ({min(diffs):+.3f} to {max(diffs):+.3f})" if len(diffs) > 1 else ""
        body.append([*cell, study, f"{statistics.fmean(seeds_new.values()):.3f}", paired + span, len(seeds)])
    return markdown_table(header, body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="the main study's runs.csv")
    parser.add_argument("followups", nargs="+", type=Path, help="follow-up sweeps' runs.csv files")
    parser.add_argument("--value", default="max_accuracy",
                        help="the runs.csv column to compare (default: max_accuracy, the best over evaluations)")  # fmt: skip
    args = parser.parse_args(argv)
    baseline = read_runs(args.study, [args.value])
    for path in args.followups:
        followup = read_runs(path, [args.value])
        changes = changed_options(baseline, followup) or ["no option differs"]
        print(f"**{path.parent.name}** ({'; '.join(changes)})", "", sep="\n")
        print("\n".join(comparison_table(baseline, followup, args.value)), "", sep="\n")


if __name__ == "__main__":
    cli.run(main)
