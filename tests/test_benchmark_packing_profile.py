"""Keeps benchmarks/packing.py and benchmarks/step_profile.py working on the tiny config: every requested
fraction and depth gets a row, the ratio is of the reported medians' kind, the shares add up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

packing = pytest.importorskip("benchmarks.packing")
step_profile = pytest.importorskip("benchmarks.step_profile")


@pytest.mark.parametrize("fraction", [1.0, 0.8, 0.5])
def test_synthetic_lengths_hit_the_fraction(fraction):
    lengths = packing.lengths_for(fraction, 16, 48, np.random.default_rng(0))
    assert max(lengths) == 48 and min(lengths) >= 2 and len(lengths) == 16
    assert abs(sum(lengths) / (16 * 48) - fraction) < 1 / 48


def run(module, argv, tmp_path):
    threads = torch.get_num_threads()
    try:
        assert module.main([*argv, "--threads", "1", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    (folder,) = tmp_path.iterdir()
    return folder


def test_packing_reports_a_row_per_depth_and_fraction(tmp_path):
    argv = [
        "--model",
        "tiny",
        "--depths",
        "0,2",
        "--fractions",
        "1.0,0.5",
        "--batches",
        "2",
        "--repeats",
        "1",
    ]
    folder = run(packing, argv, tmp_path)
    rows = json.loads((folder / "packing.json").read_text())["rows"]
    assert [(r["depth"], r["batches"]) for r in rows] == [
        (d, f"synthetic f={f}") for d in (0, 2) for f in (1.0, 0.5)
    ]
    for r in rows:
        assert r["ratio_min"] <= r["ratio"] <= r["ratio_max"] and r["padded_ms"] > 0
    assert rows[0]["real_fraction"] == 1.0 and abs(rows[1]["real_fraction"] - 0.5) < 0.03
    assert "| 2 | synthetic f=0.5 |" in (folder / "packing.md").read_text()


def test_step_profile_shares_add_up(tmp_path):
    folder = run(step_profile, ["--model", "tiny", "--depths", "0,3", "--steps", "2"], tmp_path)
    rows = json.loads((folder / "step_profile.json").read_text())["rows"]
    assert [r["depth"] for r in rows] == [0, 3]
    for r in rows:
        assert sum(r["shares"].values()) == pytest.approx(1.0) and r["shares"]["gemm"] > 0
        assert r["step_ms"] > 0 and len(r["top_ops"]) > 0
    assert step_profile.classify("aten::addmm") == "gemm" and step_profile.classify("aten::fill_") == "memory"
    assert step_profile.classify("aten::view") == "other"


def test_cache_payoff_reports_both_protocols_and_the_auto_decision(toy_model, toy_data, tmp_path):
    cache_payoff = pytest.importorskip("benchmarks.cache_payoff")
    argv = ["--model", str(toy_model), "--data-dir", str(toy_data), "--dataset", "toy", "--depth", "1"]
    folder = run(cache_payoff, [*argv, "--train-size", "64", "--select", "32"], tmp_path)
    rows = json.loads((folder / "cache_payoff_depth1.json").read_text())["rows"]
    assert sorted((r["protocol"], r["cache"]) for r in rows) == sorted(
        (p, c) for p in cache_payoff.PROTOCOLS for c in (True, False)
    )
    assert all(r["cached"] == r["cache"] for r in rows)
    passes = {r["protocol"]: r["passes"] for r in rows}
    assert passes["1 epoch, 1 evaluation"] == pytest.approx(1.0) and passes["3 epochs, each evaluated"] == 3.0
    md = (folder / "cache_payoff_depth1.md").read_text()
    assert "| 1 epoch, 1 evaluation | 1.0 |" in md and md.count("| on |") == 1
