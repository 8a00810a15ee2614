"""--heldout: the best checkpoint is chosen on one part of validation and scored on the other; and the
sweep's data subsets (--data-seeds) and CPU seconds, which the study's reruns rely on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from minifreeze import MinifreezeError, cli
from minifreeze.scoring import heldout_parts
from minifreeze.sweep import SweepOptions, make_grid, run_sweep
from minifreeze.train import main


def test_heldout_parts_are_disjoint_stratified_and_fixed():
    labels = [0] * 60 + [1] * 40
    chosen, held = heldout_parts(labels, 0.5)
    assert sorted(chosen + held) == list(range(100)) and not set(chosen) & set(held)
    assert sum(labels[i] for i in held) == 20 and len(held) == 50  # half of each class
    assert heldout_parts(labels, 0.5) == (chosen, held)  # the same examples in every run
    assert heldout_parts(labels, 0.0) is None
    scores = [i / 10 for i in range(20)]  # regression: one stratum, a seeded shuffle
    assert len(heldout_parts(scores, 0.25)[1]) == 5


def train_args(toy_model, toy_data, out, *extra):
    return ["--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data), "--out", str(out),
            "--epochs", "3", "--batch-size", "16", "--lr", "3e-3", "--warmup", "0", "--eval-every", "0.25ep",
            "--freeze", "0", "--no-progress", *extra]  # fmt: skip


def test_the_checkpoint_is_chosen_on_the_selection_part_and_scored_on_the_other(
    toy_model, toy_data, tmp_path
):
    out = tmp_path / "run"
    summary = main(train_args(toy_model, toy_data, out, "--heldout", "0.5"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) >= 4 and all(r["examples"] == 32 for r in records)  # 64 validation: 32 select
    best = max(records, key=lambda r: r["accuracy"])  # first of the highest, as the loop keeps it
    assert summary["best_step"] == best["step"] and summary["best_metric"] == best["accuracy"]
    assert summary["metrics"]["heldout_accuracy"] == best["heldout_accuracy"]
    assert summary["metrics"]["heldout_mcc"] == best["heldout_mcc"]
    # the two parts are scored from one pass: their confusion matrices add up to the whole validation set
    assert sum(map(sum, best["confusion_matrix"])) + sum(map(sum, best["heldout_confusion_matrix"])) == 64
    plain = main(train_args(toy_model, toy_data, tmp_path / "plain"))
    assert not any(k.startswith("heldout_") for k in plain["metrics"])


@pytest.mark.parametrize("value", ["1", "-0.1", "1.5"])
def test_a_heldout_fraction_out_of_range_is_one_line(toy_model, toy_data, tmp_path, value):
    with pytest.raises(MinifreezeError, match=r"--heldout .*must be in \[0, 1\)"):
        main(train_args(toy_model, toy_data, tmp_path / "bad", "--heldout", value))


def sweep_options(toy_model, toy_data, out, *extra):
    argv = ["--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data), "--out", str(out),
            "--epochs", "1", "--warmup", "0", "--eval-every", "0.5ep", "--lr", "3e-3", "--no-progress"]  # fmt: skip
    return cli.parse(SweepOptions, argv + list(extra), "sweep", "test")


def test_data_subsets_join_the_grid_up_to_a_size(tmp_path):
    opts = sweep_options("m", "d", tmp_path, "--freeze", "0,1", "--train-sizes", "32,64", "--seeds", "2",
                         "--data-seeds", "3", "--subsets-up-to", "32")  # fmt: skip
    grid = make_grid(opts, tmp_path)
    small = {(c.freeze, c.seed, c.data_seed) for c in grid if c.train_size == 32}
    large = {(c.freeze, c.seed, c.data_seed) for c in grid if c.train_size == 64}
    assert small == {(f, s, d) for f in "01" for s in range(2) for d in range(3)}
    assert large == {(f, s, 0) for f in "01" for s in range(2)}
    assert Path(grid[0].out).name == "freeze0-n32-s0-d0"
    plain = make_grid(
        sweep_options("m", "d", tmp_path, "--freeze", "0", "--seeds", "1", "--data-seed", "4"), tmp_path
    )
    assert {c.data_seed for c in plain} == {4} and Path(plain[0].out).name.endswith("-s0")  # names as before


def test_a_sweep_with_heldout_reports_intervals_and_cpu_seconds(toy_model, toy_data, tmp_path):
    out = tmp_path / "sweep"
    opts = sweep_options(toy_model, toy_data, out, "--freeze", "0,1", "--train-sizes", "32", "--seeds", "2",
                         "--data-seeds", "2", "--heldout", "0.5", "--cache-frozen", "--cache-dir", "none")  # fmt: skip
    run_sweep(opts)
    with open(out / "runs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {r["data_seed"] for r in rows} == {"0", "1"}
    for row in rows:
        assert float(row["cpu_seconds"]) > 0 and 0 <= float(row["heldout_accuracy"]) <= 1
    summary = (out / "summary.md").read_text()
    assert "chosen by accuracy on 50% of the validation set (the other 50% is held out)" in summary
    assert "### heldout_accuracy: mean ± 95% confidence interval" in summary
    assert "each spec minus freeze 0 (none), paired by seed and data subset" in summary
    assert "CPU s (n=32)" in summary and "data seeds 0, 1" in summary
    evals = [
        json.loads(line)
        for line in (out / "runs" / rows[0]["run"] / "metrics.jsonl").read_text().splitlines()
    ]
    by_selection = max(evals, key=lambda r: r["accuracy"])  # the loop's choice: the first of the best
    by_heldout = max(evals, key=lambda r: r["heldout_accuracy"])  # the choice the other way round
    crossfit = (by_selection["heldout_accuracy"] + by_heldout["accuracy"]) / 2
    assert float(rows[0]["crossfit_accuracy"]) == pytest.approx(crossfit) and len(evals) == 2
    assert float(rows[0]["heldout_accuracy"]) == pytest.approx(by_selection["heldout_accuracy"])
    assert "### crossfit_accuracy: mean ± 95% confidence interval" in summary
    bias = [float(r["accuracy"]) - float(r["heldout_accuracy"]) - float(r["heldout_offset"]) for r in rows]
    assert f"the selection part scores {sum(bias) / len(bias):+.4f} ± " in summary  # the measured flattery
    cached = {(r["seed"], r["data_seed"]): float(r["cache_hit_fraction"]) for r in rows if r["freeze"] == "1"}
    assert (cached["0", "0"], cached["1", "0"], cached["1", "1"]) == (0.0, 1.0, 1.0)  # seed 1 reuses seed 0's
    assert 0 < cached["0", "1"] < 1  # a new subset: the validation examples (and shared ones) were cached
    assert all(r["cache_hit_fraction"] == "" for r in rows if r["freeze"] == "0")  # nothing frozen to cache
    cost = next(line for line in summary.splitlines() if line.startswith("| 1 |") and "of 4" in line)
    assert cost.rstrip(" |").endswith("2 of 4") and "no cache" in summary
