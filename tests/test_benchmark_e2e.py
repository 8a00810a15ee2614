"""Keeps benchmarks/e2e.py working: both sides run a whole tiny fine-tune on the toy data, in alternation,
and the report's ratio is the ratio of the reported medians. Nothing here looks at a second."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest
import torch

import minifreeze

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

e2e = pytest.importorskip("benchmarks.e2e")
HAS_TRAINER = all(importlib.util.find_spec(m) for m in ("transformers", "accelerate"))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAINER, reason="the peer is transformers' Trainer, which needs accelerate")
def test_both_sides_run_whole_and_the_ratio_is_of_the_medians(toy_model, toy_data, tmp_path):
    threads = torch.get_num_threads()
    try:
        args = ["--model", str(toy_model), "--data-dir", str(toy_data), "--dataset", "toy", "--depths", "0,1"]
        args += ["--train-size", "64", "--select", "32", "--epochs", "1", "--reps", "2", "--threads", "1"]
        assert e2e.main([*args, "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    (folder,) = tmp_path.iterdir()
    rows = json.loads((folder / "e2e.json").read_text())["rows"]
    assert sorted((r["side"], r["depth"]) for r in rows) == sorted(
        [(s, d) for s in ("ours", "trainer") for d in (0, 1)] * 2
    )
    assert [r["side"] for r in rows if r["depth"] == 0] == ["ours", "trainer", "trainer", "ours"]
    assert all(0.0 <= r["held_out_accuracy"] <= 1.0 for r in rows)
    assert all(r["flop_limit_s"] > 0 for r in rows if r["side"] == "ours")
    assert {r["rep"] for r in rows} == {0, 1}  # repetition r trains with seed r on both sides
    wall = {
        s: statistics.median(r["wall_s"] for r in rows if r["side"] == s and r["depth"] == 1)
        for s in ("ours", "trainer")
    }
    assert (
        "| 1 | " in (md := (folder / "e2e.md").read_text()) and f"{wall['ours'] / wall['trainer']:.2f}" in md
    )


def test_flop_limit_counts_what_each_depth_runs(toy_model, toy_data, tmp_path):
    """With the cache the frozen layers run once instead of once per epoch; a trainable layer costs 3
    forwards (forward + backward) where a frozen one costs 1."""
    from argparse import Namespace

    args = Namespace(model=str(toy_model), data_dir=str(toy_data), dataset="toy", train_size=64, select=32)
    args.data_seed, args.epochs = 0, 3
    folder = e2e.split_data(args, tmp_path)
    rates = {shape: 1e9 for shape in e2e.gemm_rates(str(toy_model))}
    layers = minifreeze.load_model(toy_model).config.num_layers
    full = e2e.flop_limit(args, 0, folder, rates, cached=False)
    frozen = e2e.flop_limit(args, layers, folder, rates, cached=False)
    cached = e2e.flop_limit(args, layers, folder, rates, cached=True)
    assert full > frozen > cached > 0
    assert frozen == pytest.approx(args.epochs * cached)
    half = e2e.flop_limit(args, layers // 2, folder, rates, cached=False)
    assert half == pytest.approx((full + frozen) / 2)
