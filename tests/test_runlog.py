"""What a run tells while it trains (minifreeze/runlog.py, docs/logging.md): train_log.jsonl, time stamps,
resume without duplicate steps, TensorBoard (refused when absent, written through a fake writer), the
plain progress lines without a terminal, the eval bar, the training-only ETA, the banner, and the plot."""

from __future__ import annotations

import io
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch

from minifreeze import runlog
from minifreeze.resume import Progress
from minifreeze.train import TrainConfig, main


def run(toy_model, toy_data, out, *extra, progress=False):
    args = [
        *("--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data), "--out", str(out)),
        *("--epochs", "1", "--batch-size", "16", "--lr", "3e-3", "--warmup", "0", "--train-size", "0"),
        *("--freeze", "1", "--log-every", "4"),
        *(() if progress else ("--no-progress",)),
        *extra,
    ]
    return main(args)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def is_utc_timestamp(text: str) -> bool:
    return text.endswith("Z") and datetime.fromisoformat(text.replace("Z", "+00:00")).utcoffset().seconds == 0


def one_line_error(capsys, argv) -> str:
    from minifreeze import cli

    with pytest.raises(SystemExit) as exit_:
        cli.run(main, argv)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ------------------------------------------------------------------------------------ train_log.jsonl
def test_train_log_every_n_steps_with_its_fields(toy_model, toy_data, tmp_path):
    """192 examples / 16 = 12 steps, --log-every 4: windows end at steps 4, 8, 12."""
    run(toy_model, toy_data, tmp_path / "run")
    lines = records(tmp_path / "run" / "train_log.jsonl")
    assert [r["step"] for r in lines] == [4, 8, 12]
    for r in lines:
        assert set(r) == {
            *("step", "epoch", "train_loss", "lr", "grad_norm", "samples_per_second"),
            *("train_seconds", "elapsed_seconds", "time"),
        }
        assert r["grad_norm"] > 0 and r["samples_per_second"] > 0 and r["train_loss"] > 0
        assert is_utc_timestamp(r["time"])
    assert [r["epoch"] for r in lines] == pytest.approx([4 / 12, 8 / 12, 1.0])
    assert lines[0]["elapsed_seconds"] <= lines[-1]["elapsed_seconds"]
    for r in records(tmp_path / "run" / "metrics.jsonl"):  # every evaluation is stamped too
        assert is_utc_timestamp(r["time"])


def test_train_loss_is_the_mean_over_the_window(toy_model, toy_data, tmp_path):
    """--log-every 1 logs every step's loss; --log-every 4 must log the mean of each four of them (the same
    trajectory: logging draws no random number and touches no weight)."""
    run(toy_model, toy_data, tmp_path / "each", "--log-every", "1")
    run(toy_model, toy_data, tmp_path / "four")
    each = [r["train_loss"] for r in records(tmp_path / "each" / "train_log.jsonl")]
    four = [r["train_loss"] for r in records(tmp_path / "four" / "train_log.jsonl")]
    assert len(each) == 12
    assert four == pytest.approx([sum(each[i : i + 4]) / 4 for i in (0, 4, 8)], rel=1e-6)


def test_last_partial_window_is_logged_and_log_every_0_writes_none(toy_model, toy_data, tmp_path):
    run(toy_model, toy_data, tmp_path / "five", "--log-every", "5")
    assert [r["step"] for r in records(tmp_path / "five" / "train_log.jsonl")] == [5, 10, 12]
    run(toy_model, toy_data, tmp_path / "off", "--log-every", "0")
    assert not (tmp_path / "off" / "train_log.jsonl").exists()


def test_grad_norm_without_clipping_is_measured_and_matches_the_clipped_run(toy_model, toy_data, tmp_path):
    """The first window's grad norm is the norm before clipping: --max-grad-norm 0 measures the same value at
    step 1 (the runs are identical until the first clip)."""
    run(toy_model, toy_data, tmp_path / "clip", "--log-every", "1", "--max-steps", "1")
    run(
        toy_model, toy_data, tmp_path / "free", "--log-every", "1", "--max-steps", "1", "--max-grad-norm", "0"
    )
    clipped = records(tmp_path / "clip" / "train_log.jsonl")[0]["grad_norm"]
    free = records(tmp_path / "free" / "train_log.jsonl")[0]["grad_norm"]
    assert free == pytest.approx(clipped, rel=1e-5) and free > 0


def test_clip_gradients_skips_the_norm_when_nothing_logs():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([3.0, 4.0, 0.0])
    assert runlog.clip_gradients([p], 0, measure=False) is None
    assert float(runlog.clip_gradients([p], 0, measure=True)) == pytest.approx(5.0)
    assert torch.equal(p.grad, torch.tensor([3.0, 4.0, 0.0]))  # measured, never clipped
    assert float(runlog.clip_gradients([p], 1.0, measure=False)) == pytest.approx(5.0)
    assert float(p.grad.norm()) == pytest.approx(1.0, rel=1e-4)


def test_log_every_negative_is_refused(capsys, toy_model, toy_data, tmp_path):
    line = one_line_error(
        capsys,
        ["--model", str(toy_model), "--data-dir", str(toy_data), "--dataset", "toy", "--log-every", "-1"],
    )
    assert line == "error: --log-every -1: must be at least 0"


def test_trainer_spelling_logging_steps():
    from minifreeze import cli

    cfg = cli.parse(TrainConfig, ["--logging-steps", "7"], "p", "d")
    assert cfg.log_every == 7


def test_resume_appends_without_duplicate_steps(toy_model, toy_data, tmp_path):
    """A run killed after logging step 8 (and half a line) with its checkpoint at step 6 redoes steps 7-8
    when resumed: its train_log holds each step once, with the numbers of a run never killed."""
    same = ("--eval-every", "6", "--log-every", "2", "--schedule", "constant")  # the lr ignores --max-steps
    full, killed = tmp_path / "full", tmp_path / "killed"
    run(toy_model, toy_data, full, *same)
    whole = records(full / "train_log.jsonl")
    assert [r["step"] for r in whole] == [2, 4, 6, 8, 10, 12]
    run(toy_model, toy_data, killed, *same, "--max-steps", "6")  # DIR/last at step 6
    lines = (full / "train_log.jsonl").read_text().splitlines()
    (killed / "train_log.jsonl").write_text("\n".join(lines[:4]) + '\n{"step": 9, "train_lo')
    (killed / "summary.json").unlink()  # as the kill left it: not finished
    config = json.loads((killed / "config.json").read_text())
    (killed / "config.json").write_text(json.dumps({**config, "max_steps": None}))
    main(["--out", str(killed), "--resume", "--no-progress"])
    resumed = records(killed / "train_log.jsonl")
    assert [r["step"] for r in resumed] == [2, 4, 6, 8, 10, 12]
    assert [r["train_loss"] for r in resumed] == pytest.approx([r["train_loss"] for r in whole], rel=1e-5)


def test_a_full_disk_while_logging_is_one_line(toy_model, toy_data, tmp_path, capsys, monkeypatch):
    from minifreeze import cli

    def full_disk(path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(runlog, "open", full_disk, raising=False)  # the train_log's writes only
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        cli.run(lambda argv: run(toy_model, toy_data, out))
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: cannot write the run folder {out} ({out / runlog.TRAIN_LOG}): No space left on device; "
        "free some space, fix its permissions or choose another --out"
    ]


# ------------------------------------------------------------------------------------ TensorBoard
def test_report_to_tensorboard_without_the_package_is_one_line(
    capsys, monkeypatch, toy_model, toy_data, tmp_path
):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were absent
    out = tmp_path / "run"
    argv = ["--model", str(toy_model), "--data-dir", str(toy_data), "--dataset", "toy", "--out", str(out)]
    line = one_line_error(capsys, [*argv, "--report-to", "tensorboard"])
    assert line == "error: tensorboard is not installed: pip install tensorboard, or drop --report-to"
    assert not out.exists()  # refused before anything ran


class FakeWriter:
    """Records what SummaryWriter would write."""

    made: list[FakeWriter] = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def close(self):
        self.closed = True


def test_tensorboard_gets_the_logged_and_evaluated_numbers(toy_model, toy_data, tmp_path, monkeypatch):
    monkeypatch.setattr(runlog, "summary_writer_class", lambda: FakeWriter)
    monkeypatch.setattr(FakeWriter, "made", [])
    out = tmp_path / "run"
    run(toy_model, toy_data, out, "--report-to", "tensorboard", "--eval-every", "6")
    [writer] = FakeWriter.made
    assert writer.log_dir == str(out / "tensorboard") and writer.purge_step is None and writer.closed
    logged = records(out / "train_log.jsonl")
    for name, tag in (("train_loss", "train/loss"), ("lr", "train/lr"), ("grad_norm", "train/grad_norm")):
        assert [(s, v) for t, v, s in writer.scalars if t == tag] == [(r["step"], r[name]) for r in logged]
    assert [s for t, _, s in writer.scalars if t == "train/samples_per_second"] == [4, 8, 12]
    evals = records(out / "metrics.jsonl")
    for name in ("loss", "accuracy", "f1", "mcc"):
        assert [(s, v) for t, v, s in writer.scalars if t == f"eval/{name}"] == [
            (r["step"], r[name]) for r in evals
        ]


def test_tensorboard_on_resume_purges_past_the_checkpoint(toy_model, toy_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run(toy_model, toy_data, out, "--eval-every", "6", "--max-steps", "6")
    (out / "summary.json").unlink()
    monkeypatch.setattr(runlog, "summary_writer_class", lambda: FakeWriter)
    monkeypatch.setattr(FakeWriter, "made", [])
    main(["--out", str(out), "--resume", "--no-progress", "--report-to", "tensorboard"])
    [writer] = FakeWriter.made
    assert writer.purge_step == 7  # the killed run's events after its checkpoint (step 6) go


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorboard") is None, reason="tensorboard is not installed"
)
def test_tensorboard_writes_event_files(toy_model, toy_data, tmp_path):
    run(toy_model, toy_data, tmp_path / "run", "--report-to", "tensorboard")
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


# ------------------------------------------------------------------------------------ progress and banner
def test_without_a_terminal_a_few_plain_lines_and_no_carriage_returns(toy_model, toy_data, tmp_path, capsys):
    """pytest's stderr is no terminal: the bar gives way to a line at every tenth of the run."""
    run(toy_model, toy_data, tmp_path / "run", "--epochs", "3", progress=True)  # 36 steps
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("train ")]
    assert 5 <= len(lines) <= 11, lines  # every 4 steps (36 / 10, rounded), and the last
    assert lines[-1].startswith("train 36/36 (100%)") and " eta 0 s" in lines[-1]
    assert "loss " in lines[-1] and "samples_s " in lines[-1]


def test_no_progress_prints_no_progress_lines(toy_model, toy_data, tmp_path, capsys):
    run(toy_model, toy_data, tmp_path / "run")
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("train ")]


def test_a_line_every_30_seconds_between_the_tenths(monkeypatch, capsys, tmp_path):
    from minifreeze.distributed import Dist

    clock = [1000.0]
    monkeypatch.setattr(runlog, "clock", lambda: clock[0])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    cfg = TrainConfig(log_every=0, out=str(tmp_path))
    log = runlog.RunLog(cfg, tmp_path, Dist(), Progress(), total_steps=1000, steps_per_epoch=1000)
    progress = Progress()
    printed = []
    for seconds in (1.0, 31.0, 1.0):
        clock[0] += seconds
        progress.took_step(0, progress.step + 1, 16, seconds)
        log.step(progress, 0.5, 1e-4, None)
        printed.append(capsys.readouterr().err)
    log.close()
    assert printed[0] == "" and printed[1].startswith("train 2/1000 (0%)") and printed[2] == ""


def test_the_train_bar_counts_training_time_only(tmp_path, monkeypatch):
    """On a terminal the ETA comes from the seconds spent in steps: a long evaluation between two steps
    changes neither the elapsed time nor the rate the bar shows."""
    from minifreeze.distributed import Dist

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    log = runlog.RunLog(TrainConfig(log_every=0), tmp_path, Dist(), Progress(), 100, 100)
    log.bar.fp = io.StringIO()
    progress = Progress()
    for _ in range(10):
        progress.took_step(0, progress.step + 1, 16, 0.5)  # 10 steps of 0.5 s of training
        log.step(progress, 0.5, 1e-4, None)
    log.bar.start_t -= 3600  # as if an evaluation took an hour: the next step sets the clock right
    progress.took_step(0, progress.step + 1, 16, 0.5)
    log.step(progress, 0.5, 1e-4, None)
    meter = log.bar.format_dict
    assert meter["elapsed"] == pytest.approx(5.5, abs=0.5)
    assert meter["rate"] is None  # smoothing 0: the rate is steps / elapsed, i.e. training time only
    assert "00:44" in str(log.bar)  # (100 - 11) steps at 0.5 s each remain
    log.close()


def test_evaluation_has_its_own_transient_bar_on_a_terminal(tmp_path, monkeypatch):
    from minifreeze.distributed import Dist

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    made = []
    real_tqdm = runlog.tqdm

    def tqdm(*args, **kwargs):
        made.append(kwargs)
        return real_tqdm(*args, **{**kwargs, "file": io.StringIO()})

    monkeypatch.setattr(runlog, "tqdm", tqdm)
    log = runlog.RunLog(TrainConfig(log_every=0), tmp_path, Dist(), Progress(), 100, 100)
    with log.evaluating(130, 64) as tick:
        for _ in range(3):
            tick()
    log.close()
    assert made[-1]["desc"] == "eval" and made[-1]["leave"] is False and made[-1]["total"] == 3
    assert not made[-1]["disable"]


def test_the_banner_says_what_runs(toy_model, toy_data, tmp_path, capsys):
    out = tmp_path / "run"
    run(
        toy_model, toy_data, out, "--batch-size", "32", "--grad-accum", "2", "--epochs", "2", "--threads", "1"
    )
    printed = capsys.readouterr().out
    assert printed.count("minifreeze train\n") == 1
    banner = printed[printed.index("minifreeze train\n") :].split("\n\n")[0]
    rows = dict(line.strip().split("  ", 1) for line in banner.splitlines()[1:8])
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    assert rows["model"] == f"{toy_model} (bert, 2 layers)"
    assert rows["device"] == "cpu, float32, amp off, torch threads 1"
    assert rows["examples"] == "192 train, 64 validation"
    assert rows["steps"] == "6 per epoch, 12 in all (2 epochs)"
    assert rows["batch"].startswith("32 per step in micro-batches of 16 (--grad-accum 2); world size 1")
    assert rows["freeze"].startswith("1: ") and "parameters train" in rows["freeze"]
    assert rows["run folder"] == str(out)


# ------------------------------------------------------------------------------------ plot
def test_plot_writes_a_png_of_a_run(toy_model, toy_data, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the plot needs it)")
    from minifreeze import plot

    out = tmp_path / "run"
    run(toy_model, toy_data, out, "--eval-every", "6")
    assert plot.main([str(out)]) == out / "plot.png"
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = tmp_path / "elsewhere.png"
    plot.main([str(out), "--out", str(other)])
    assert other.read_bytes()[:4] == b"\x89PNG"


def test_plot_of_a_run_without_train_log(toy_model, toy_data, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the plot needs it)")
    from minifreeze import plot

    out = tmp_path / "run"
    run(toy_model, toy_data, out, "--log-every", "0")
    assert plot.main([str(out)]).read_bytes()[:4] == b"\x89PNG"


def test_plot_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    from minifreeze import cli, plot

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SystemExit) as exit_:
        cli.run(plot.main, [str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path} is not a training run folder (no records in train_log.jsonl or metrics.jsonl): "
        "give the --out folder of python -m minifreeze.train"
    ]
    with pytest.raises(SystemExit):
        cli.run(plot.main, [str(tmp_path / "missing")])
    assert "no such folder" in capsys.readouterr().err


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    from minifreeze import cli, plot

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5, "train_loss": 0.6, "accuracy": 0.7}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as exit_:
        cli.run(plot.main, [str(tmp_path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: matplotlib is not installed: pip install matplotlib (the numbers are in {tmp_path}/*.jsonl)"
    ]


def test_time_stamps_are_utc():
    stamp = runlog.now()
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert is_utc_timestamp(stamp) and abs(parsed.timestamp() - time.time()) < 5


def test_a_non_finite_grad_norm_is_logged_as_null(tmp_path):
    """An fp16 step that overflowed (and was skipped) has an infinite norm: JSON has no Infinity, so null."""
    from minifreeze.distributed import Dist

    log = runlog.RunLog(TrainConfig(log_every=1, progress=False), tmp_path, Dist(), Progress(), 10, 10)
    progress = Progress()
    progress.took_step(0, 1, 16, 0.1)
    log.step(progress, 0.7, 1e-4, torch.tensor(float("inf")))
    log.close()
    [record] = records(tmp_path / runlog.TRAIN_LOG)
    assert record["grad_norm"] is None and record["train_loss"] == pytest.approx(0.7)


def test_plot_skips_a_line_a_kill_cut_short(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the plot needs it)")
    from minifreeze import plot

    lines = [
        '{"step": 2, "loss": 0.6, "train_loss": 0.7, "accuracy": 0.6}',
        '{"step": 4, "loss": 0.5, "train_loss": 0.6, "accuracy": 0.7}',
        '{"step": 6, "loss": 0.4, "tra',
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    assert [r["step"] for r in plot.read_records(tmp_path / "metrics.jsonl")] == [2, 4]
    assert plot.main([str(tmp_path)]).read_bytes()[:4] == b"\x89PNG"
