"""Keeps benchmarks/delta_sizes.py working on the tiny config: every spec gets a row, the ratios are the
ratios of the reported numbers, and a BitFit delta is a small part of the full model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

delta_sizes = pytest.importorskip("benchmarks.delta_sizes")


def test_the_table_has_a_row_per_spec_with_consistent_ratios(tmp_path):
    threads = torch.get_num_threads()
    try:
        args = ["--models", "tiny", "--specs", "bitfit,4,random:0.9", "--repeats", "1", "--batch-size", "4"]
        assert delta_sizes.main([*args, "--length", "16", "--threads", "1", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    (folder,) = tmp_path.iterdir()
    rows = {r["freeze"]: r for r in json.loads((folder / "delta_sizes.json").read_text())["rows"]}
    assert set(rows) == {"bitfit", "4", "random:0.9"}
    for r in rows.values():
        assert r["delta_share"] == pytest.approx(r["delta_bytes"] / r["full_bytes"])
        assert r["write_now_steps"] == pytest.approx(r["write_now_s"] / r["step_s"])
    for spec in ("bitfit", "4"):  # random:P tensors train whole (a gradient mask): DIR/last keeps them
        assert rows[spec]["last_bytes"] < rows[spec]["last_full_bytes"]
    assert rows["bitfit"]["delta_share"] < 0.05  # biases and the classifier only
    assert (
        rows["random:0.9"]["delta_bytes"] < 0.7 * rows["4"]["delta_bytes"]
        or rows["4"]["trainable_params"] < rows["random:0.9"]["trainable_params"]
    )
    assert "| tiny | bitfit |" in (folder / "delta_sizes.md").read_text()
