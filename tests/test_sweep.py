"""The freeze sweep on the toy model: grid, outputs, resume, failures, and the table's statistics."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from minifreeze import MinifreezeError, cli, train
from minifreeze.sweep import SweepOptions, make_grid, run_sweep
from minifreeze.sweep.report import aggregate, depth_key


def options(toy_model, toy_data, out, *extra):
    """Tiny protocol: 1 epoch, no warm-up, one evaluation per run."""
    argv = ["--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data), "--out", str(out)]
    argv += ["--epochs", "1", "--warmup", "0", "--eval-every", "1ep", "--lr", "3e-3", "--no-progress"]
    return cli.parse(SweepOptions, argv + list(extra), "sweep", "test")


class CountingTrain:
    """train.train that counts calls, optionally failing (as a crash would) at one grid point."""

    def __init__(self, crash_at: str | None = None):
        self.calls: list[str] = []
        self.crash_at = crash_at

    def __call__(self, cfg: train.TrainConfig) -> dict:
        self.calls.append(cfg.out)
        if self.crash_at and cfg.out.endswith(self.crash_at):
            raise RuntimeError("simulated crash\nsecond line is not recorded")
        return train.train(cfg)


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_grid_runs_and_writes_everything(toy_model, toy_data, tmp_path):
    out = tmp_path / "sweep"
    opts = options(toy_model, toy_data, out, "--freeze", "0,1", "--train-sizes", "32,64", "--seeds", "3,")
    fake = CountingTrain()
    rows = run_sweep(opts, fake)
    assert len(fake.calls) == len(rows) == 4
    table = read_csv(out / "runs.csv")
    assert {r["status"] for r in table} == {"ok"} and len(table) == 4
    assert {(r["freeze"], r["train_size"], r["seed"]) for r in table} == {
        (f, n, "3") for f in ("0", "1") for n in ("32", "64")
    }
    first = table[0]
    for column in ("accuracy", "mcc", "best_metric", "wall_seconds", "train_samples_per_second"):
        assert float(first[column]) == float(first[column])  # present and a number
    assert float(first["peak_memory_mib"]) > 0 and int(first["trainable_params"]) > 0
    for row in table:  # one evaluation per run: the maxima are the chosen checkpoint's values
        assert all(float(row[f"max_{m}"]) == float(row[m]) for m in ("accuracy", "f1", "mcc"))
    assert first["epochs"] == "1" and first["batch_size"] == "16"  # config fields, protocol batch size
    frozen = [r for r in table if r["freeze"] == "1"]
    assert all(int(r["trainable_params"]) < int(first["trainable_params"]) for r in frozen)
    run_dir = out / "runs" / "freeze1-n64-s3"
    assert (run_dir / "summary.json").is_file() and (run_dir / "metrics.jsonl").is_file()
    assert not (run_dir / "model").exists() and not (run_dir / "last").exists()  # --keep-models is off
    summary = (out / "summary.md").read_text()
    assert "### accuracy" in summary and "### mcc" in summary and "Cost per freeze spec" in summary
    assert "### max_mcc" in summary and "### max_accuracy" not in summary  # accuracy selects: its max is best
    for plot in ("accuracy_vs_frozen.png", "mcc_vs_frozen.png", "cost_vs_frozen.png"):
        assert (out / plot).stat().st_size > 1000


def test_resume_skips_finished_runs_and_redoes_interrupted_ones(toy_model, toy_data, tmp_path):
    out = tmp_path / "sweep"
    grid = ("--freeze", "0,1", "--train-sizes", "32", "--seeds", "0,1", "--keep-models")
    first = CountingTrain()
    run_sweep(options(toy_model, toy_data, out, *grid), first)
    assert len(first.calls) == 4 and (out / "runs" / "freeze0-n32-s0" / "model").is_dir()
    # An interrupted run leaves a folder without summary.json: it is trained again, from scratch.
    (out / "runs" / "freeze1-n32-s1" / "summary.json").unlink()
    (out / "runs" / "freeze1-n32-s1" / "stale.txt").write_text("left over")
    second = CountingTrain()
    rows = run_sweep(options(toy_model, toy_data, out, *grid), second)
    assert [p.split("/")[-1] for p in second.calls] == ["freeze1-n32-s1"]
    assert not (out / "runs" / "freeze1-n32-s1" / "stale.txt").exists()
    assert [r["status"] for r in rows] == ["ok"] * 4
    third = CountingTrain()
    run_sweep(options(toy_model, toy_data, out, *grid), third)
    assert third.calls == []


def test_failing_runs_are_recorded_and_the_sweep_goes_on(toy_model, toy_data, tmp_path):
    out = tmp_path / "sweep"
    # freeze 5 is impossible on the 2-layer toy model; one grid point also crashes outright.
    opts = options(toy_model, toy_data, out, "--freeze", "5,0", "--train-sizes", "32", "--seeds", "2")
    fake = CountingTrain(crash_at="freeze0-n32-s1")
    run_sweep(opts, fake)
    assert len(fake.calls) == 4
    table = {r["run"]: r for r in read_csv(out / "runs.csv")}
    assert table["freeze0-n32-s0"]["status"] == "ok"
    for name in ("freeze5-n32-s0", "freeze5-n32-s1"):
        assert table[name]["status"] == "failed"
        assert table[name]["error"].startswith("MinifreezeError: --freeze 5")
    assert table["freeze0-n32-s1"]["error"] == "RuntimeError: simulated crash"
    assert "Runs not finished" in (out / "summary.md").read_text()
    # Failed runs are retried on restart (they have no summary.json); the finished one is not.
    again = CountingTrain()
    run_sweep(opts, again)
    assert sorted(p.split("/")[-1] for p in again.calls) == [
        "freeze0-n32-s1",
        "freeze5-n32-s0",
        "freeze5-n32-s1",
    ]


def test_a_run_stopped_by_a_signal_stops_the_sweep_and_is_redone_later(tmp_path):
    """train() turns SIGTERM into a clean stop that writes summary.json; the sweep must not count it as done."""

    def stopped_by_signal(cfg):
        Path(cfg.out).mkdir(parents=True)
        (Path(cfg.out) / "summary.json").write_text(
            '{"stopped": "stopped by signal 15: resume with --resume"}'
        )

    opts = cli.parse(
        SweepOptions,
        ["--freeze", "1", "--train-sizes", "8", "--seeds", "1", "--out", str(tmp_path)],
        "s",
        "t",
    )
    with pytest.raises(KeyboardInterrupt):
        run_sweep(opts, stopped_by_signal)
    assert not (tmp_path / "runs" / "freeze1-n8-s0" / "summary.json").exists()


def test_a_signal_as_a_run_ends_keeps_the_run_and_stops_the_sweep(tmp_path):
    """train() reports a signal that came after its last step as late_signal: the run is done (kept, with its
    cost), and the sweep stops before the next one instead of swallowing the request."""
    calls = []

    def finished_then_signalled(cfg):
        calls.append(Path(cfg.out).name)
        Path(cfg.out).mkdir(parents=True)
        (Path(cfg.out) / "summary.json").write_text('{"stopped": "completed", "late_signal": 15}')

    argv = ["--freeze", "1,2", "--train-sizes", "8", "--seeds", "1", "--out", str(tmp_path)]
    opts = cli.parse(SweepOptions, argv, "s", "t")
    with pytest.raises(KeyboardInterrupt):
        run_sweep(opts, finished_then_signalled)
    assert calls == ["freeze1-n8-s0"]
    assert json.loads((tmp_path / "runs" / "freeze1-n8-s0" / "sweep.json").read_text())["cpu_seconds"] >= 0


def test_aggregate_statistics_on_known_values():
    rows = [
        {"train_size": 100, "freeze": "2", "accuracy": a, "majority_baseline": 0.5, "status": "ok"}
        for a in (0.70, 0.80, 0.90, 0.60)
    ]
    rows += [{"train_size": 100, "freeze": "0", "accuracy": 0.75, "majority_baseline": 0.5, "status": "ok"}]
    rows += [{"train_size": 100, "freeze": "0", "accuracy": "", "status": "failed"}]  # ignored
    rows += [{"train_size": 50, "freeze": "-1", "accuracy": 0.55, "majority_baseline": 0.5, "status": "ok"}]
    table = aggregate(rows, "accuracy")
    assert [(t["train_size"], t["freeze"]) for t in table] == [(50, "-1"), (100, "0"), (100, "2")]
    two = table[2]
    assert two["n"] == 4
    assert two["mean"] == pytest.approx(0.75)
    assert two["median"] == pytest.approx(0.75)
    assert two["std"] == pytest.approx(math.sqrt(0.05 / 3))  # sample std: squares 0.0025+0.0025+0.0225+0.0225
    assert (two["min"], two["max"], two["baseline"]) == (0.60, 0.90, 0.5)
    assert table[1]["n"] == 1 and math.isnan(table[1]["std"]) and table[1]["median"] == 0.75


def test_grid_order_and_parsing(tmp_path):
    assert sorted(["4", "bitfit", "-1", "0", "12", "2"], key=depth_key) == [
        "0",
        "-1",
        "2",
        "4",
        "12",
        "bitfit",
    ]
    argv = ["--freeze=-1,0", "--train-sizes", "10,20", "--seeds", "3", "--cache-frozen"]
    grid = make_grid(cli.parse(SweepOptions, argv, "s", "t"), tmp_path)
    names = [Path(cfg.out).name for cfg in grid]
    assert len(grid) == 12 and names[0] == "freeze-1-n10-s0" and names[-1] == "freeze0-n20-s2"
    assert [cfg.seed for cfg in grid[:4]] == [0] * 4  # seed-major
    assert all(not cfg.progress and cfg.overwrite for cfg in grid)
    # the cache is asked for only where a frozen prefix exists (freeze 0 has none)
    assert {cfg.freeze: cfg.cache_frozen for cfg in grid} == {"-1": True, "0": False}
    grid = make_grid(cli.parse(SweepOptions, ["--seeds", "3,7"], "s", "t"), tmp_path)
    assert sorted({cfg.seed for cfg in grid}) == [3, 7]
    opts = cli.parse(SweepOptions, [], "s", "t")  # the study protocol is the default
    assert (opts.epochs, opts.batch_size, opts.warmup, opts.eval_every, opts.lr) == (
        10,
        16,
        "1ep",
        "0.5ep",
        5e-5,
    )
    with pytest.raises(MinifreezeError, match="train-sizes"):
        make_grid(cli.parse(SweepOptions, ["--train-sizes", "10,x"], "s", "t"), tmp_path)


def test_resume_refuses_runs_trained_with_other_options(toy_model, toy_data, tmp_path):
    out = tmp_path / "sweep"
    grid = ("--freeze", "1", "--train-sizes", "32", "--seeds", "1")
    run_sweep(options(toy_model, toy_data, out, *grid), CountingTrain())
    with pytest.raises(MinifreezeError, match="lr: 0.003 then, 0.001 now"):
        run_sweep(options(toy_model, toy_data, out, *grid, "--lr", "1e-3"), CountingTrain())
    again = CountingTrain()  # speed-only options may change
    run_sweep(options(toy_model, toy_data, out, *grid, "--eval-batch-size", "7"), again)
    assert again.calls == []


def test_config_file_sets_protocol_and_flags_win(tmp_path):
    config = tmp_path / "study.toml"
    config.write_text('epochs = 3\nmetric = "mcc"\nfreeze = "0,2"\nmax_length = 64\n')
    opts = cli.parse(SweepOptions, ["--config", str(config), "--epochs", "4"], "s", "t")
    assert (opts.epochs, opts.metric, opts.freeze, opts.max_length) == (4, "mcc", "0,2", 64)


def test_the_study_protocol_config_parses():
    path = Path(__file__).resolve().parents[1] / "scripts" / "study_protocol.toml"
    opts = cli.parse(SweepOptions, ["--config", str(path)], "s", "t")
    assert (opts.weight_decay, opts.heldout, opts.model) == (
        0.0,
        0.5,
        "bundled:minilm",
    )  # as published; held out
    assert (opts.epochs, opts.batch_size, opts.lr, opts.warmup, opts.eval_every) == (
        10,
        16,
        5e-5,
        "1ep",
        "0.5ep",
    )


def test_cost_table_with_an_empty_cell():
    """A spec without finished runs at one train size (a study stopped part-way) shows a dash, no crash."""
    from minifreeze.sweep.report import cost_table

    def row(freeze, size):
        return {"freeze": freeze, "train_size": size, "train_samples_per_second": 10.0, "peak_memory_mib": 900.0,
                "trainable_params": 1000, "wall_seconds": 60.0, "eval_seconds": 5.0}  # fmt: skip

    lines = cost_table([row("0", 100), row("0", 1000), row("4", 100)])
    four = next(line for line in lines if line.startswith("| 4 "))
    assert four.count("—") == 1 and "| 60 |" in four


def test_runs_csv_keeps_each_metrics_own_maximum(tmp_path):
    """Selection by MCC keeps one checkpoint; max_accuracy is still the best accuracy of any evaluation."""
    import json

    from minifreeze.sweep import collect_row

    run_dir = tmp_path / "freeze0-n50-s0"
    run_dir.mkdir()
    evals = [dict(step=4, accuracy=0.70, f1=0.82, mcc=0.00), dict(step=8, accuracy=0.64, f1=0.71, mcc=0.12)]
    lines = [json.dumps(e | {"examples": 10, "samples_per_second": 5.0}) for e in evals]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    summary = dict(
        metrics=dict(accuracy=0.64, f1=0.71, mcc=0.12, loss=0.6), best_metric=0.12, stopped="completed"
    )
    (run_dir / "summary.json").write_text(json.dumps(summary))
    cfg = train.TrainConfig(out=str(run_dir), metric="mcc")
    row = collect_row(cfg)
    assert (row["accuracy"], row["mcc"]) == (0.64, 0.12)  # the chosen checkpoint
    assert (row["max_accuracy"], row["max_f1"], row["max_mcc"]) == (0.70, 0.82, 0.12)
    assert row["eval_seconds"] == 4.0


def test_without_matplotlib_the_tables_are_written_and_one_line_says_how_to_plot(
    toy_model, toy_data, tmp_path, monkeypatch, capsys
):
    """It used to crash after all the training, before summary.md was written."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    out = tmp_path / "sweep"
    rows = run_sweep(
        options(toy_model, toy_data, out, "--freeze", "0", "--train-sizes", "32", "--seeds", "0,")
    )
    assert [r["status"] for r in rows] == ["ok"]
    summary = (out / "summary.md").read_text()
    assert "### Cost per freeze spec" in summary and "| mean |" in summary.replace(" mean |", "| mean |")
    assert ".png" not in summary and not list(out.glob("*.png"))
    said = [line for line in capsys.readouterr().out.splitlines() if "matplotlib is not installed" in line]
    assert len(said) == 1 and "--report-only" in said[0]
