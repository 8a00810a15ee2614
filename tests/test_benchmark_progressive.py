"""Keeps benchmarks/progressive.py working: its --tiny smoke run on the toy task, judged on structure only
(times on a shared machine mean nothing)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

progressive_bench = pytest.importorskip("benchmarks.progressive")


def test_tiny_run_writes_every_method(toy_model, toy_data, tmp_path):
    threads = torch.get_num_threads()
    argv = ["--tiny", "--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data)]
    argv += ["--results-root", str(tmp_path), "--name", "tiny", "--threads", "1", "--eval-every", "0.5ep"]
    argv += ["--methods", "full,fixed-1,linear+cache,auto,lr-decay-0.9"]
    try:
        assert progressive_bench.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    [folder] = list(tmp_path.iterdir())
    result = json.loads((folder / "tiny.json").read_text())
    assert [r["method"] for r in result["rows"]] == [
        "full",
        "fixed-1",
        "linear+cache",
        "auto",
        "lr-decay-0.9",
    ]
    linear = result["rows"][2]
    assert linear["freeze_events"] == [{"step": 1, "depth": -1}, {"step": 3, "depth": 1}]  # 4 steps in thirds
    for row in result["rows"]:
        assert len(row["curve"]) == 2 and row["best_accuracy"] == max(a for _, a in row["curve"])
    assert result["target_accuracy"] == pytest.approx(result["rows"][0]["best_accuracy"] - 0.005)
    markdown = (folder / "tiny.md").read_text()
    assert "| linear+cache |" in markdown and "speed-up to target vs full" in markdown


def test_time_to_target_reads_the_first_evaluation_that_reaches_it():
    curve = [(1.0, 0.7), (2.0, 0.82), (3.0, 0.9)]
    assert progressive_bench.time_to(curve, 0.8) == 2.0
    assert progressive_bench.time_to(curve, 0.95) is None
