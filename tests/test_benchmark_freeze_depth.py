"""Keeps benchmarks/freeze_depth.py working: a tiny run end to end, judged on structure and arithmetic only.

Timings on a shared CI machine mean nothing, so nothing here compares a millisecond with a constant. What
must hold on any machine: every row and mode is present, the files and plots are written, every reported
ratio and bound is the arithmetic of the numbers reported beside it, and the memory numbers follow from
the design (fewer saved activations with every frozen layer; trainable embeddings keep the frozen layers'
activations alive).
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
BATCH = 2


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
    argv = f"--model tiny --batch-size {BATCH} --seq-len 8 --steps 2 --warmup 1 --bound-reps 1 --threads 1"
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
    assert meta["command"].startswith("python benchmarks/freeze_depth.py --model tiny")
    assert meta["machine"]["torch_threads"] == 1
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
        assert r["step"]["n"] == 2 and set(r["phases_ms"]) == {"step", "fwd", "bwd", "opt"}
    kinds = {r["kind"] for r in records}
    assert {"run", "block_times", "goal"} <= kinds
    assert len([r for r in records if r["kind"] == "goal"]) == (3 if HAS_PEER else 2)


def test_ratios_are_the_ratios_of_the_reported_medians(step_run):
    _, records, _ = step_run
    by = {(r["row"], r["mode"]): r for r in records if r["kind"] == "row"}
    for (row, mode), r in by.items():
        ms = r["step"]["median_ms"]
        assert r["samples_per_s"] == pytest.approx(BATCH / (ms / 1e3))
        assert r["over_bound"] == pytest.approx(ms / r["bound_ms"])
        if ("0", mode) in by:  # train_emb has no depth 0
            assert r["over_depth0"] == pytest.approx(ms / by[("0", mode)]["step"]["median_ms"])
        if HAS_PEER and mode in ("nograd", "requires_grad"):
            assert r["over_peer"] == pytest.approx(ms / by[(row, "peer")]["step"]["median_ms"])


def expected_bound_ms(blocks: dict, row: str, optimizer_s: float, cached: bool) -> float:
    """DESIGN.md's bound written out for a depth row of nograd: no_grad forward of the frozen blocks
    (none with the cache), forward + weight-gradient backward of the lowest trainable block, forward +
    full backward above it, the head's forward + backward, and the optimizer step."""
    encoder = [blocks["embeddings"], *blocks["layers"]]
    frozen = {"0": 0, "-1": 1, "head": TINY_LAYERS + 1}.get(row, int(row) + 1 if row.isdigit() else None)
    total = 0.0 if cached else sum(b["fwd_nograd"] for b in encoder[:frozen])
    trainable = encoder[frozen:]
    for i, b in enumerate(trainable):
        total += b["fwd_grad"] + (b["bwd_weights"] if i == 0 else b["bwd_full"])
    head = blocks["head"]
    return (
        total + head["fwd_grad"] + (head["bwd_full"] if trainable else head["bwd_weights"]) + optimizer_s
    ) * 1e3


def test_bounds_are_the_sums_of_the_measured_block_times(step_run):
    _, records, _ = step_run
    blocks = next(r for r in records if r["kind"] == "block_times")
    assert len(blocks["layers"]) == TINY_LAYERS
    by = {(r["row"], r["mode"]): r for r in records if r["kind"] == "row"}
    for row in [str(k) for k in range(TINY_LAYERS + 1)] + ["-1", "head"]:
        ours = by[(row, "nograd")]
        for cached, key in ((False, "bound_ms"), (True, "bound_cached_ms")):
            want = expected_bound_ms(blocks, row, ours["optimizer_s"], cached)
            assert ours[key] == pytest.approx(want, rel=1e-9), (row, key)
        for mode in ("requires_grad", "peer"):  # same trainable set: nograd's bound, with its optimizer
            if (row, mode) in by:
                assert by[(row, mode)]["bound_ms"] == pytest.approx(ours["bound_ms"], rel=1e-12)


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


def test_build_setup_leaves_the_options_as_given(monkeypatch):
    """The peer missing (no transformers) is the setup's business: the options still say what was asked."""
    monkeypatch.setattr(freeze_depth, "peer_available", lambda: "transformers is not installed (test)")
    args = freeze_depth.parse_args(["--model", "tiny", "--modes", "nograd,peer", "--device", "cpu"])
    setup = freeze_depth.build_setup(args)
    assert args.modes == ["nograd", "peer"]
    assert setup.modes == ["nograd"] and setup.peer is None
    assert setup.peer_note == "transformers is not installed (test)"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--modes", "nograd,fast"], "--modes: unknown ['fast']"),
        (["--modes", "peer"], "the peer takes its trainable set from nograd or requires_grad"),
        (["--compile", "--warmup", "0"], "--compile needs --warmup >= 1"),
    ],
)
def test_bad_options_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        freeze_depth.parse_args(["--model", "tiny", *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(not HAS_PEER, reason="epoch mode compares against transformers")
def test_epoch_flag_still_runs_the_epoch_benchmark(tmp_path, data_dir, minilm_dir):
    """`freeze_depth.py --epoch` (the README's committed command) forwards to benchmarks/epoch_speed.py."""
    argv = "--model tiny --epoch --train-size 32 --batch-size 16 --rows 0 --warmup 1 --threads 1".split()
    assert run(argv + ["--data-dir", str(data_dir), "--name", "alias", "--results-root", str(tmp_path)]) == 0
    (folder,) = tmp_path.iterdir()
    meta = json.loads((folder / "alias.json").read_text())
    assert meta["command"].startswith("python benchmarks/freeze_depth.py --model tiny --epoch")
    assert {r["mode"] for r in read_rows(folder, "alias") if r["kind"] == "epoch"} == {"peer", "nograd"}


def test_frozen_forward_takes_the_four_cases_apart(tmp_path):
    """benchmarks/frozen_forward.py: eval/train x no_grad/grad mode, each timed, ratios against the prefix."""
    from benchmarks import frozen_forward

    threads = torch.get_num_threads()
    try:
        argv = "--model tiny --batch-size 2 --seq-len 8 --reps 2 --results-root".split() + [str(tmp_path)]
        assert frozen_forward.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    (path,) = tmp_path.glob("*/frozen_forward_tiny_2x8.json")
    rows = json.loads(path.read_text())["rows"]
    assert [r["case"] for r in rows] == list(frozen_forward.CASES)
    for r in rows:
        assert r["vs_prefix"] == pytest.approx(r["median_ms"] / rows[0]["median_ms"])
