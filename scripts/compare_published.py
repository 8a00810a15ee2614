"""Our freeze study beside the published RoBERTa-base one, matched by the fraction of the encoder frozen.

    python scripts/compare_published.py docs/study/round1/sst2/runs.csv docs/study/round1/cola/runs.csv [--gain]

The published study (raphaelb.net/posts/freezing-bert, 2020; its appendix tables are in
docs/study/published/roberta_base_freezing.csv) froze 0, 2, 4, 8, 10 or 12 of RoBERTa-base's 12 layers
and reported each run's best validation *accuracy* on SST-2 and CoLA. MiniLM has 6 layers, so k frozen
layers here are compared with 2k there (the same fraction of the encoder); -1 (embeddings only) and 0 map
to themselves, and our depth 3 (half) has no published counterpart. Our value is `max_accuracy` from
runs.csv: the best accuracy over a run's evaluations, the quantity the published tables report, even
where our sweep chose its checkpoint by MCC (CoLA).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from minifreeze import MinifreezeError, cli
from minifreeze.sweep.report import by_cell, markdown_table, read_runs

PUBLISHED = Path(__file__).resolve().parents[1] / "docs" / "study" / "published" / "roberta_base_freezing.csv"
OURS_TO_PUBLISHED = {"-1": "-1", "0": "0", "1": "2", "2": "4", "4": "8", "5": "10", "6": "12"}
FRACTION = {"-1": "emb", "0": "0", "1": "1/6", "2": "1/3", "4": "2/3", "5": "5/6", "6": "all"}


def read_rows(path: Path) -> list[dict]:
    """The published table (CSV)."""
    if not path.is_file():
        raise MinifreezeError(f"{path}: no such file (give --published a CSV like {PUBLISHED.name})")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def our_means(runs_csv: Path) -> tuple[str, float, dict[tuple[int, str], tuple[float, int]]]:
    """(dataset, majority-class accuracy, {(train size, freeze): (mean max_accuracy, runs)}) over the
    finished runs."""
    rows = read_runs(runs_csv, ["max_accuracy", "majority_baseline"])
    cells = by_cell(rows, "max_accuracy")
    means = {key: (statistics.fmean(seeds.values()), len(seeds)) for key, seeds in cells.items()}
    return rows[0]["dataset"], float(rows[0]["majority_baseline"]), means


def published_means(dataset: str, path: Path = PUBLISHED) -> dict[tuple[int, str], float]:
    return {
        (int(r["train_size"]), r["frozen_layers"]): float(r["mean"])
        for r in read_rows(path)
        if r["dataset"] == dataset
    }


def comparison_table(dataset: str, ours: dict, published: dict) -> list[str]:
    """Markdown: a row per train size, a column per frozen fraction, cells "ours / published"."""
    sizes = sorted({size for size, _ in ours} | {size for size, _ in published})
    header = ["train size", *(f"{FRACTION[d]} ({d} / {p})" for d, p in OURS_TO_PUBLISHED.items())]
    body = []
    for size in sizes:
        cells = [str(size)]
        for depth, theirs in OURS_TO_PUBLISHED.items():
            mine = ours.get((size, depth))
            left = f"{mine[0]:.3f}" if mine else "—"
            right = f"{published[size, theirs]:.3f}" if (size, theirs) in published else "—"
            cells.append(f"{left} / {right}")
        body.append(cells)
    return [f"**{dataset}**: best validation accuracy, mean over seeds: MiniLM (ours) / RoBERTa-base (published)",
            "", *markdown_table(header, body), ""]  # fmt: skip


def gain_kept_table(dataset: str, ours: dict, published: dict, majority: float) -> list[str]:
    """Markdown: the share of full fine-tuning's gain over the majority class that each depth keeps,
    (acc_k - majority) / (acc_0 - majority), ours / published. A side whose depth 0 gains less than a
    point has no meaningful share ("—"). Both sides use our majority baseline: the validation sets agree
    to 0.002 (SST-2 0.509 in both, CoLA 0.689 ours, 0.691 theirs)."""
    depths = [d for d in OURS_TO_PUBLISHED if d != "0"]
    header = ["train size", *(f"{FRACTION[d]} ({d} / {OURS_TO_PUBLISHED[d]})" for d in depths)]
    body = []

    def share(table: dict, size: int, depth: str, mean=lambda v: v) -> str:
        if (size, "0") not in table or (size, depth) not in table:
            return "—"
        full = mean(table[size, "0"]) - majority
        if full < 0.01:
            return "—"
        kept = round((mean(table[size, depth]) - majority) / full, 2) + 0.0  # + 0.0: no "-0%"
        return f"{kept:.0%}"

    for size in sorted({size for size, _ in ours} | {size for size, _ in published}):
        cells = [str(size)]
        for depth in depths:
            mine = share(ours, size, depth, mean=lambda v: v[0])
            cells.append(f"{mine} / {share(published, size, OURS_TO_PUBLISHED[depth])}")
        body.append(cells)
    return [f"**{dataset}**: share of full fine-tuning's gain over the majority class ({majority:.3f}) kept, "
            "ours / published", "", *markdown_table(header, body), ""]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs_csv", nargs="+", type=Path, help="a sweep's runs.csv (its dataset is read from it)"
    )
    parser.add_argument("--published", type=Path, default=PUBLISHED, help="the published table (CSV)")
    parser.add_argument(
        "--gain", action="store_true", help="also print the share of full fine-tuning's gain each depth keeps"
    )
    args = parser.parse_args(argv)
    for path in args.runs_csv:
        dataset, majority, ours = our_means(path)
        published = published_means(dataset, args.published)
        if not published:
            raise MinifreezeError(f"{args.published}: no published rows for dataset {dataset!r}")
        print("\n".join(comparison_table(dataset, ours, published)))
        if args.gain:
            print("\n".join(gain_kept_table(dataset, ours, published, majority)))


if __name__ == "__main__":
    cli.run(main)
