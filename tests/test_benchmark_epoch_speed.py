"""Keeps benchmarks/epoch_speed.py working: both questions on a tiny model and a few real sentences.

Nothing looks at a second: what must hold is which sides ran, how many steps an epoch took, and that every
reported ratio is the ratio of the reported times.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

epoch_speed = pytest.importorskip("benchmarks.epoch_speed")
HAS_PEER = importlib.util.find_spec("transformers") is not None


def run(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return epoch_speed.main(argv)
    finally:
        torch.set_num_threads(threads)


def written(root: Path, name: str) -> tuple[dict, str]:
    (folder,) = root.iterdir()
    return json.loads((folder / f"{name}.json").read_text()), (folder / f"{name}.md").read_text()


@pytest.mark.skipif(not HAS_PEER, reason="--vs peer compares against transformers")
def test_vs_peer_reports_speedups_over_the_peer(tmp_path, data_dir, minilm_dir):
    argv = "--model tiny --train-size 48 --batch-size 16 --rows 0,3 --cache --warmup 1 --threads 1".split()
    assert (
        run(argv + ["--data-dir", str(data_dir), "--name", "tiny_epoch", "--results-root", str(tmp_path)])
        == 0
    )
    meta, markdown = written(tmp_path, "tiny_epoch")
    rows = [r for r in meta["rows"] if r["kind"] == "epoch"]
    assert [(r["row"], r["mode"]) for r in rows] == [
        ("0", "peer"),
        ("0", "nograd"),
        ("3", "peer"),
        ("3", "nograd"),
        ("3", "cache"),
    ]  # nothing to cache at depth 0
    peer = {r["row"]: r["seconds"] for r in rows if r["mode"] == "peer"}
    for r in rows:
        assert r["examples"] == 48 and r["steps"] == 3 and r["epochs"] == 1
        assert r["samples_per_s"] == pytest.approx(48 / r["seconds"])
        assert r["speedup_over_peer"] == pytest.approx(peer[r["row"]] / r["seconds"])
        assert r["speedup_over_peer_incl_setup"] == pytest.approx(
            peer[r["row"]] / (r["seconds"] + r["setup_seconds"])
        )
        assert (r["setup_seconds"] > 0) == (r["mode"] == "cache")  # only the cache is built first
    fraction = {r["mode"]: r["real_token_fraction"] for r in rows if r["row"] == "0"}
    assert 0 < fraction["peer"] < fraction["nograd"] <= 1  # length grouping pads less than random batches
    goals = [r for r in meta["rows"] if r["kind"] == "goal"]
    assert goals[0]["met"] == (goals[0]["worst"] >= 2.0)
    assert goals[1]["met"] is None  # depth L-2 = 2 was not asked for
    assert "| 3 | cache |" in markdown and "### Goals" in markdown


def test_vs_suffix_reports_the_cache_against_the_suffix_alone(tmp_path, data_dir, minilm_dir):
    argv = "--vs suffix --model tiny --rows 2 --train-size 48 --batch-size 16 --reps 2 --warmup 1 --threads 1"
    assert run(argv.split() + ["--data-dir", str(data_dir), "--results-root", str(tmp_path)]) == 0
    meta, markdown = written(tmp_path, "cache_speed")
    (row,) = meta["rows"]
    assert (row["model"], row["depth"], row["layers"], row["epochs_measured"]) == ("tiny", 2, 4, 2)
    for mode in ("nocache", "cache", "suffix"):
        assert len(row[f"{mode}_all_s"]) == 2
        assert row[f"{mode}_s"] == pytest.approx(statistics.median(row[f"{mode}_all_s"]))
    assert row["speedup"] == pytest.approx(row["nocache_s"] / row["cache_s"])
    assert row["cache_over_suffix"] == pytest.approx(row["cache_s"] / row["suffix_s"])
    assert row["cache_over_suffix_cpu"] == pytest.approx(row["cache_cpu_s"] / row["suffix_cpu_s"])
    assert row["goal_met"] == (row["cache_over_suffix"] <= epoch_speed.CACHE_GOAL)
    assert row["build_s"] > 0 and row["gather_s"] > 0
    assert meta["args"]["max_grad_norm"] == 1.0  # the suffix question trains as train.py does
    assert "| tiny | 2 of 4 | 2 |" in markdown


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "tiny", "minilm"], "--vs peer compares one model with its peer"),
        (["--data-dir", "/nonexistent"], "needs the sst2 sentences"),
    ],
)
def test_bad_options_are_one_line(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        epoch_speed.parse_args(["--data-dir", str(tmp_path), *argv], None)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
