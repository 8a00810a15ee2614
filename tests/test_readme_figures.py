"""Every run the README (or docs/results.md, where its tables moved) quotes has its files in
docs/results/<name>/, and the text says what they say.

The files come from `scripts/readme_runs.sh` (summary.json, metrics.jsonl, config.json, command.txt and
machine.txt per run). Each check below formats the README's sentence or table row from those files; a
number edited by hand, or a rerun whose README was not updated, fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "results"
README = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())  # line breaks read as spaces
RESULTS_DOC = " ".join((REPO / "docs" / "results.md").read_text(encoding="utf-8").split())

SETUPS = {  # results folder -> the README table's first column
    "bitfit_sst2": "BitFit, SST-2 (3 epochs, lr 1e-3)",
    "distilbert_sst2": "DistilBERT recipe, SST-2 (2 epochs)",
    "head_only_rotten_tomatoes": "head only, rotten_tomatoes (3 epochs, lr 1e-3)",
    "random_sst2": "random 90% frozen, SST-2 (3 epochs, lr 1e-4)",
    "top2_amazon_polarity": "top-2 layers, rotten_tomatoes (2 epochs)",
}


def load(name: str) -> tuple[dict, list[dict], str]:
    folder = RESULTS / name
    assert (folder / "summary.json").is_file(), f"{folder} is missing: run scripts/readme_runs.sh"
    summary = json.loads((folder / "summary.json").read_text())
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    machine = (folder / "machine.txt").read_text() if (folder / "machine.txt").is_file() else ""
    return summary, records, machine


def peak_gb(machine: str) -> float:
    kbytes = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", machine).group(1))
    return kbytes / 1024**2


def in_readme(fragment: str, text: str = README, where: str = "the README") -> None:
    fragment = " ".join(fragment.split())
    assert fragment in text, f"{where} should say {fragment!r} (from its file in docs/results)"


def in_results_doc(fragment: str) -> None:
    in_readme(fragment, RESULTS_DOC, "docs/results.md")


def test_default_run():
    summary, _, machine = load("default")
    m = summary["metrics"]
    in_readme(f"**{summary['wall_seconds']:.0f} s wall, validation accuracy {m['accuracy']:.3f}**")
    in_readme(f"(F1 {m['f1']:.3f}, MCC {m['mcc']:.3f}; majority class {summary['majority_baseline']:.3f})")
    in_readme(f"{summary['train_samples_per_second']:.0f} training samples/s")
    in_readme(f"{summary['real_token_fraction']:.0%} real tokens")
    in_readme(f"{peak_gb(machine):.1f} GB peak RSS")


def test_real_run():
    summary, records, _ = load("real_run")
    m = summary["metrics"]
    per_epoch = (
        " / ".join(f"{r['accuracy']:.3f}" for r in records[:-1]) + f" / **{records[-1]['accuracy']:.3f}**"
    )
    best = max(r["accuracy"] for r in records)
    assert m["accuracy"] == best  # the best evaluation is the one summary.json reports
    in_results_doc(f"Validation accuracy {per_epoch}")
    in_results_doc(
        f"(F1 {m['f1']:.3f}, MCC {m['mcc']:.3f}; majority class {summary['majority_baseline']:.3f})"
    )
    in_results_doc(f"{summary['trainable_params'] / summary['total_params']:.1%} of the parameters train")
    in_results_doc(f"Wall time {summary['wall_seconds']:.0f} s")


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_published_setups_table(name):
    summary, _, _ = load(f"setups/{name}")
    m, share = summary["metrics"], summary["trainable_params"] / summary["total_params"]
    trains = (
        f"{100 * share:.3f}%" if share < 0.001 else f"{100 * share:.2f}%" if share < 0.1 else f"{share:.1%}"
    )
    row = (
        f"| {SETUPS[name]} | `{summary['freeze']}` | {trains} | {m['accuracy']:.3f} | {m['f1']:.3f} | "
        f"{m['mcc']:.3f} | {summary['train_samples_per_second']:.0f} |"
    )
    in_results_doc(row)


def test_delta_sizes_table():
    """The README's delta table, row by row, from the committed benchmarks/results file."""
    path = REPO / "benchmarks" / "results" / "cpu-amd-epyc-2t" / "delta_sizes.json"
    rows = json.loads(path.read_text())["rows"]
    assert {r["freeze"] for r in rows} == {"head", "bitfit", "top:2", "4", "random:0.9"}
    mb = 2**20
    for r in rows:
        in_readme(
            f"| {r['model']} | `{r['freeze']}` | {r['full_bytes'] / mb:.1f} MB | {r['delta_bytes'] / mb:.3f} MB "
            f"({r['delta_share']:.2%}) | {r['last_full_bytes'] / mb:.0f} -> {r['last_bytes'] / mb:.1f} MB | "
            f"{r['run_share_round1']:.1%} -> {r['run_share_now']:.1%} | {r['load_ratio']:.2f} |"
        )
    assert max(r["delta_share"] for r in rows if r["freeze"] == "bitfit") < 0.01  # the bar


def test_whole_run_against_the_trainer():
    """The README's headline speed claim: ours / Trainer wall time and held-out accuracy per depth, from the
    committed benchmarks/e2e.py results (medians over the alternated runs)."""
    import statistics

    rows = json.loads((REPO / "benchmarks" / "results" / "cpu-amd-epyc-2t" / "e2e.json").read_text())["rows"]

    def median(side: str, depth: int, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["side"] == side and r["depth"] == depth)

    ratios = {d: median("ours", d, "wall_s") / median("trainer", d, "wall_s") for d in (0, 4)}
    in_readme(f"ours / Trainer wall time **{ratios[0]:.2f} at depth 0 and {ratios[4]:.2f} at depth 4**")
    acc = {(s, d): median(s, d, "held_out_accuracy") for s in ("ours", "trainer") for d in (0, 4)}
    in_readme(f"{acc['ours', 0]:.3f} vs {acc['trainer', 0]:.3f} at depth 0")
    in_readme(f"{acc['ours', 4]:.3f} vs {acc['trainer', 4]:.3f} at depth 4")


def test_packing_table_in_the_internals_doc():
    """docs/internals.md's packed / padded table, cell by cell, from the committed benchmarks/packing.py run."""
    rows = json.loads((REPO / "benchmarks" / "results" / "cpu-amd-epyc-2t" / "packing.json").read_text())[
        "rows"
    ]
    ratio = {(r["batches"], r["depth"]): f"{r['ratio']:.2f}" for r in rows}
    doc = (REPO / "docs" / "internals.md").read_text()
    labels = {f"synthetic f={f}": f"| {f}" for f in ("0.95", "0.9", "0.8", "0.7", "0.5")}
    labels |= {
        "synthetic f=1.0": "| 1.0 (no padding)",
        "SST-2, length-grouped": "| SST-2, length-grouped batches",
    }
    labels |= {"SST-2, random batches": "| SST-2, random batches"}
    for batches, start in labels.items():
        (line,) = [x for x in doc.splitlines() if x.startswith(start + " ")]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1:] == [ratio[batches, 0], ratio[batches, 4]], line
