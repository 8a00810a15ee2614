"""Keeps benchmarks/freeze_depth.py working: a tiny run end to end, judged on structure and sanity only.

Timings on a shared CI machine mean nothing, so nothing here looks at a millisecond. What must hold on
any machine: every row and mode is present, the files and plots are written, and the memory numbers
follow from the design (fewer saved activations with every frozen layer; trainable embeddings keep the
frozen layers' activations alive).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

freeze_depth = pytest.importorskip("benchmarks.freeze_depth")
HAS_PEER = importlib.util.find_spec("transformers") is not None
TINY_LAYERS = 4  # NAMED_CONFIGS["tiny"]


def run(argv: list[str]) -> int:
    """The script's main() in this process (no second torch import), restoring the thread count after."""
    threads = torch.get_num_threads()
    try:
        return freeze_depth.main(argv)
    finally:
        torch.set_num_threads(threads)


def read_rows(folder: Path, name: str) -> list[dict]:
    lines = (folder / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def step_run(tmp_path_factory) -> tuple[Path, list[dict], str]:
    root = tmp_path_factory.mktemp("results")
    argv = "--model tiny --batch-size 2 --seq-len 8 --steps 2 --warmup 1 --bound-reps 1 --threads 1"
    argv = argv.split() + ["--no-profile-misses", "--name", "tiny_run", "--results-root", str(root)]
    assert run(argv) == 0
    folders = list(root.iterdir())
    assert len(folders) == 1, "results go to exactly one <machine-tag>/ folder"
    return folders[0], read_rows(folders[0], "tiny_run"), (folders[0] / "tiny_run.md").read_text()


def test_files_and_plots_are_written(step_run):
    folder, _, markdown = step_run
    for suffix in (".json", ".jsonl", ".md", "_samples_per_s.png", "_activation_mb.png"):
        assert (folder / f"tiny_run{suffix}").stat().st_size > 0, suffix
    meta = json.loads((folder / "tiny_run.json").read_text())
    assert "freeze_depth.py" in meta["command"] and meta["machine"]["torch_threads"] == 1
    assert "### Summary" in markdown and "### Goals" in markdown and "| freeze | mode |" in markdown


def test_replot_redraws_the_plots_from_the_jsonl(step_run):
    folder, _, _ = step_run
    plot = folder / "tiny_run_samples_per_s.png"
    plot.unlink()
    assert run(["--replot", str(folder / "tiny_run.jsonl")]) == 0
    assert plot.stat().st_size > 0


def test_every_row_and_mode_is_present(step_run):
    _, records, _ = step_run
    rows = [r for r in records if r["kind"] == "row"]
    expected_rows = [str(k) for k in range(TINY_LAYERS + 1)] + ["-1", "head", "bitfit"]
    modes = ["nograd", "requires_grad"] + (["peer"] if HAS_PEER else [])
    for row in expected_rows:
        present = {r["mode"] for r in rows if r["row"] == row}
        wanted = set(modes) | ({"train_emb"} if row.isdigit() and int(row) >= 1 else set())
        assert present == wanted, (row, present)
    for r in rows:
        assert r["step"]["median_ms"] > 0 and r["samples_per_s"] > 0
        assert r["step"]["p10_ms"] <= r["step"]["median_ms"] <= r["step"]["p90_ms"]
        assert r["bound_ms"] > 0 and r["bound_cached_ms"] <= r["bound_ms"]
    kinds = {r["kind"] for r in records}
    assert {"run", "block_times", "goal"} <= kinds
    assert len([r for r in records if r["kind"] == "goal"]) == (3 if HAS_PEER else 2)


def test_saved_bytes_fall_with_every_frozen_layer(step_run):
    _, records, _ = step_run
    ours = {r["row"]: r for r in records if r["kind"] == "row" and r["mode"] == "nograd"}
    saved = [ours[str(k)]["saved_bytes"] for k in range(TINY_LAYERS + 1)]
    assert all(a > b for a, b in zip(saved, saved[1:])), saved
    trainable = [ours[str(k)]["trainable_params"] for k in range(TINY_LAYERS + 1)]
    assert all(a > b for a, b in zip(trainable, trainable[1:])), trainable
    assert ours["head"]["trainable_params"] < ours[str(TINY_LAYERS)]["trainable_params"]  # no pooler
    for r in ours.values():  # AdamW keeps two fp32 moments per trainable element
        assert r["optimizer_state_bytes"] >= 8 * r["trainable_params"]


def test_trainable_embeddings_keep_frozen_activations(step_run):
    """With the embeddings training, gradients cross the frozen layers: their activations stay saved."""
    _, records, _ = step_run
    by = {(r["row"], r["mode"]): r for r in records if r["kind"] == "row"}
    for k in range(1, TINY_LAYERS + 1):
        assert by[(str(k), "train_emb")]["saved_bytes"] > by[(str(k), "nograd")]["saved_bytes"]
        assert by[(str(k), "train_emb")]["prefix_blocks"] == 0
        assert by[(str(k), "nograd")]["prefix_blocks"] == k + 1


@pytest.mark.skipif(not HAS_PEER, reason="epoch mode compares against transformers")
def test_epoch_mode_runs_on_real_sentences(tmp_path, data_dir, minilm_dir):
    argv = "--model tiny --epoch --train-size 48 --batch-size 16 --rows 0,3 --warmup 1 --threads 1"
    argv = argv.split() + [
        "--data-dir",
        str(data_dir),
        "--name",
        "tiny_epoch",
        "--results-root",
        str(tmp_path),
    ]
    assert run(argv) == 0
    (folder,) = tmp_path.iterdir()
    rows = [r for r in read_rows(folder, "tiny_epoch") if r["kind"] == "epoch"]
    assert {(r["row"], r["mode"]) for r in rows} == {(d, m) for d in ("0", "3") for m in ("peer", "nograd")}
    for r in rows:
        assert r["examples"] == 48 and r["steps"] == 3 and 0 < r["real_token_fraction"] <= 1
    fraction = {r["mode"]: r["real_token_fraction"] for r in rows if r["row"] == "0"}
    assert fraction["nograd"] > fraction["peer"]  # length grouping pads less than random batches


def test_frozen_forward_takes_the_four_cases_apart(capsys):
    """benchmarks/frozen_forward.py: eval/train x no_grad/grad mode, each timed, ratios against the prefix."""
    from benchmarks import frozen_forward

    threads = torch.get_num_threads()
    try:
        argv = "--model tiny --batch-size 2 --seq-len 8 --reps 2 --no-write".split()
        assert frozen_forward.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    rows = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "ms" not in line
    ]
    assert len(rows) == 4 and rows[0].endswith("| 1.00 |")
