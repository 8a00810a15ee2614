"""Keeps benchmarks/encoder_speed.py working on a tiny config: structure only, never a timing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

pytest.importorskip("transformers", reason="the encoder benchmark compares against transformers")
encoder_speed = pytest.importorskip("benchmarks.encoder_speed")


def test_tiny_run_writes_every_side(tmp_path):
    threads = torch.get_num_threads()
    try:
        argv = ["--cases", "tiny:2x8", "--steps", "2", "--warmup", "1", "--threads", "1"]
        assert encoder_speed.main(argv + ["--results-root", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    (folder,) = tmp_path.iterdir()
    rows = [json.loads(line) for line in (folder / "encoder_speed.jsonl").read_text().splitlines()]
    (row,) = rows
    assert set(row["sides"]) == {"minifreeze", "peer-fused", "peer-default"}
    assert row["parity_max_abs_logit_diff"] < 1e-4  # the same weights on both sides
    for phases in row["sides"].values():
        assert set(phases) == {"step", "fwd", "bwd", "opt"} and phases["step"]["n"] == 2
        assert phases["step"]["median_ms"] >= phases["fwd"]["median_ms"] > 0
    ours = row["sides"]["minifreeze"]["step"]["median_ms"]
    for side, key in (("peer-fused", "ours_over_peer_fused"), ("peer-default", "ours_over_peer_default")):
        assert row[key] == pytest.approx(ours / row["sides"][side]["step"]["median_ms"])
    meta = json.loads((folder / "encoder_speed.json").read_text())
    assert meta["command"].startswith("python benchmarks/encoder_speed.py --cases tiny:2x8")
    assert "| tiny | 2x8 | minifreeze |" in (folder / "encoder_speed.md").read_text()
