"""docs/study.md's tables are the committed runs' tables: each is rebuilt here from its runs.csv files
(the sweep report's interval tables, or scripts/study_arms.py's), and every row must be in the page."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from minifreeze.sweep.report import read_runs

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "study"

# scripts/study_arms.py arms as docs/study.md quotes them: (label, sweep folder, freeze spec)
HEAD_ONLY = [
    ("full (lr 5e-5)", "headonly", "0"),
    ("head, CLS, lr 5e-5", "headonly", "head"),
    ("head, CLS, lr 1e-3", "headonly-cls-lr1e-3", "head"),
    ("head, CLS, lr 1e-2", "headonly-cls-lr1e-2", "head"),
    ("head, mean, lr 1e-3", "headonly-mean-lr1e-3", "head"),
    ("head, mean, lr 1e-2", "headonly-mean-lr1e-2", "head"),
]
MATCHED = [
    ("full (0)", "matched", "0"),
    ("depth 4", "matched", "4"),
    ("random:0.843", "matched", "random:0.843"),
    ("bitfit, lr 5e-5", "matched", "bitfit"),
    ("bitfit, lr 1e-3", "matched-bitfit-lr1e-3", "bitfit"),
]
# whole sweeps whose interval tables the page quotes, with the headline metric of each; a list of folders
# is one grid run in parts (study_arms --sweep)
SWEEPS = [(["grid"], "crossfit_accuracy"), (["cola"], "crossfit_mcc")]


def study_arms():
    spec = importlib.util.spec_from_file_location("study_arms", ROOT / "scripts" / "study_arms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("| ") and not line.startswith("| train size")]


def page_lines() -> set[str]:
    return {line.strip() for line in (ROOT / "docs" / "study.md").read_text().splitlines()}


@pytest.mark.parametrize("arms", [HEAD_ONLY, MATCHED], ids=["headonly", "matched"])
def test_arm_tables_are_the_committed_runs(arms, capsys):
    argv = ["--metric", "crossfit_accuracy"]
    argv += [f"{label}={STUDY / folder / 'runs.csv'}:{spec}" for label, folder, spec in arms]
    rows = table_rows(study_arms().main(argv))
    capsys.readouterr()
    missing = [row for row in rows if row not in page_lines()]
    assert rows and not missing, f"docs/study.md lacks these rows (rerun scripts/study_arms.py): {missing}"


@pytest.mark.parametrize("folders, metric", SWEEPS, ids=["+".join(folders) for folders, _ in SWEEPS])
def test_sweep_tables_are_the_committed_runs(folders, metric, capsys):
    argv = ["--metric", metric]
    argv += [arg for folder in folders for arg in ("--sweep", str(STUDY / folder / "runs.csv"))]
    rows = table_rows(study_arms().main(argv))
    capsys.readouterr()
    missing = [row for row in rows if row not in page_lines()]
    assert rows and not missing, f"docs/study.md lacks these rows of docs/study/{folders}: {missing}"


def test_lr_tables_are_the_committed_runs(capsys):
    """Phase 5's tables (scripts/study_lr.py over docs/study/lr/POOLING-lrLR/runs.csv) are on the page."""
    spec = importlib.util.spec_from_file_location("study_lr", ROOT / "scripts" / "study_lr.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [
        line for line in module.main([str(STUDY / "lr")]) if line.startswith("| ") and "depth" not in line
    ]
    capsys.readouterr()
    missing = [row for row in rows if row not in page_lines()]
    assert rows and not missing, f"docs/study.md lacks these rows of docs/study/lr: {missing}"


def cell_mean(folder: str, spec: str, column: str = "crossfit_accuracy") -> float:
    """The mean of one spec's runs; `folder` may name a train size as FOLDER@N (the grid has several)."""
    folder, _, size = folder.partition("@")
    rows = [r for r in read_runs(STUDY / folder / "runs.csv") if r["freeze"] == spec]
    values = [float(r[column]) for r in rows if not size or r["train_size"] == size]
    return sum(values) / len(values)


def test_the_results_summary_quotes_the_committed_runs():
    """docs/results.md's study table: each figure is a cell mean of a committed runs.csv (MCC for CoLA)."""
    page = (ROOT / "docs" / "results.md").read_text()
    rows = {
        "SST-2 n=100, depth 0 / -1 / 1 / 2 / 4": [("grid@100", s) for s in ("0", "-1", "1", "2", "4")],
        "SST-2 n=200, depth 0 / -1 / 1 / 2 / 3 / 4": [("grid@200", s) for s in ("0", "-1", "1", "2", "3", "4")],
        "SST-2 n=1000, depth 0 / -1 / 1 / 2 / 3 / 4": [("grid@1000", s) for s in ("0", "-1", "1", "2", "3", "4")],
        "SST-2 n=500, depth 0 / 2 / 3 / 4 / 5": [("grid@500", s) for s in ("0", "2", "3", "4", "5")],
        "SST-2 n=500, full / depth 4 / random:0.843 / BitFit (lr 1e-3)": [
            ("matched", "0"), ("matched", "4"), ("matched", "random:0.843"), ("matched-bitfit-lr1e-3", "bitfit")],
        "rotten_tomatoes n=1000, full / head only (mean pooling, lr 1e-3)": [
            ("headonly", "0"), ("headonly-mean-lr1e-3", "head")],
        "CoLA n=1000 (cross-fitted **MCC**, chosen by MCC), depth 0 / -1 / 1 / 2 / 3 / 4 / 5": [
            ("cola@1000", s) for s in ("0", "-1", "1", "2", "3", "4", "5")],
    }  # fmt: skip
    for label, cells in rows.items():
        line = next(line for line in page.splitlines() if line.startswith(f"| {label} |"))
        score, _, cpu = [c.strip() for c in line.strip("|").split("|")[1:]]
        column = "crossfit_mcc" if label.startswith("CoLA") else "crossfit_accuracy"
        assert score == " / ".join(f"{cell_mean(f, s, column):.3f}" for f, s in cells)
        assert cpu == " / ".join(f"{cell_mean(f, s, 'cpu_seconds'):.0f}" for f, s in cells)
