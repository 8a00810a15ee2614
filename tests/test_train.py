"""The training loop end to end on a tiny model and a learnable toy task (CPU, seconds per run)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import minifreeze
from minifreeze import MinifreezeError
from minifreeze.heads import Head
from minifreeze.resume import Progress, load_state, save_state
from minifreeze.train import TrainConfig, epoch_batches, main

REPO = Path(__file__).resolve().parents[1]


def run(toy_model, toy_data, out, *extra):
    args = [
        "--model",
        str(toy_model),
        "--dataset",
        "toy",
        "--data-dir",
        str(toy_data),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--lr",
        "3e-3",
        "--warmup",
        "0",
        "--no-progress",
        "--train-size",
        "0",
        "--freeze",
        "0",
        *extra,
    ]
    return main(args)


def test_train_writes_the_contract_and_learns(toy_model, toy_data, tmp_path):
    summary = run(toy_model, toy_data, tmp_path / "run", "--freeze", "1")
    for key in (
        "metrics",
        "best_metric",
        "train_samples_per_second",
        "trainable_params",
        "total_params",
        "freeze",
        "wall_seconds",
        "real_token_fraction",
    ):
        assert key in summary
    assert set(summary["metrics"]) == {"accuracy", "f1", "mcc", "loss"}
    assert summary["best_metric"] >= 0.9, summary  # a fresh head on a "pretrained" toy encoder
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3 and records[-1]["loss"] < records[0]["loss"]
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["freeze"] == "1" and saved["trainable_params"] < saved["total_params"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["freeze"] == "1" and config["lr"] == 3e-3
    model = minifreeze.load_model(tmp_path / "run" / "model")
    assert model.config.id2label == {0: "0", 1: "1"} or len(model.config.id2label) == 2
    phases = {
        "data",
        "tokenize",
        "model",
        "cache_build",
        "setup",
        "train_steps",
        "evaluation",
        "checkpoint_writes",
    }
    timings = saved["timings"]  # where the wall time went: the phases add up to it, none negative
    assert set(timings) == phases and min(timings.values()) >= 0 and timings["evaluation"] > 0
    assert sum(timings.values()) == pytest.approx(saved["wall_seconds"], rel=0.05, abs=0.05)


def test_frozen_layers_unchanged_in_the_saved_model(toy_model, toy_data, tmp_path):
    run(toy_model, toy_data, tmp_path / "run", "--freeze", "1")
    before = load_file(str(toy_model / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    for name in before:
        frozen = "embeddings" in name or ".layer.0." in name
        if frozen:
            assert torch.equal(before[name], after[name]), name
    assert not torch.equal(
        before["bert.encoder.layer.1.output.dense.weight"], after["bert.encoder.layer.1.output.dense.weight"]
    )


def test_same_seed_same_result_other_seed_differs(toy_model, toy_data, tmp_path):
    a = run(toy_model, toy_data, tmp_path / "a", "--seed", "3")
    b = run(toy_model, toy_data, tmp_path / "b", "--seed", "3")
    run(toy_model, toy_data, tmp_path / "c", "--seed", "4")
    assert a["metrics"] == b["metrics"]
    wa = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    wc = load_file(str(tmp_path / "c" / "last" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_evaluating_more_often_does_not_change_training(toy_model, toy_data, tmp_path):
    """Evaluation draws no random numbers and touches no weights, so a finer --eval-every sees the same
    trajectory: the study relies on this to compare best scores across evaluation cadences."""
    coarse = tmp_path / "coarse"
    fine = tmp_path / "fine"
    run(toy_model, toy_data, coarse, "--eval-every", "1ep", "--freeze", "1")  # dropout on in layer 1
    run(toy_model, toy_data, fine, "--eval-every", "0.5ep", "--freeze", "1")

    def records(folder):
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r for r in map(json.loads, lines)}

    by_step_coarse, by_step_fine = records(coarse), records(fine)
    assert len(by_step_fine) == 2 * len(by_step_coarse) == 6
    for step, record in by_step_coarse.items():
        for key in ("accuracy", "loss", "train_loss"):
            assert by_step_fine[step][key] == record[key], (step, key)
    wa = load_file(str(coarse / "last" / "model.safetensors"))
    wb = load_file(str(fine / "last" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("spec", ["head", "top:1", "bitfit", "random:0.5", r"regex:layers\.1\.|head"])
def test_every_spec_trains_from_the_cli(toy_model, toy_data, tmp_path, spec):
    summary = run(toy_model, toy_data, tmp_path / "run", "--freeze", spec, "--epochs", "1")
    assert summary["freeze"] == spec and 0 < summary["trainable_params"] < summary["total_params"]


def test_bf16_autocast_and_mean_pooling_run(toy_model, toy_data, tmp_path):
    summary = run(toy_model, toy_data, tmp_path / "run", "--amp", "bf16", "--pooling", "mean")
    assert summary["best_metric"] >= 0.8, summary
    assert minifreeze.load_model(tmp_path / "run" / "model").pooling == "mean"


def test_threads_hold_for_the_run_only(toy_model, toy_data, tmp_path):
    """Sweeps call train() in-process: --threads must not leak into whatever runs next."""
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    run(toy_model, toy_data, tmp_path / "run", "--epochs", "1", "--threads", str(wanted))
    assert torch.get_num_threads() == before


def test_grad_accumulation_matches_one_big_batch(toy_model, toy_data, tmp_path):
    """Two micro-batches of 8 give the step a batch of 16 gives (dropout off, fp32)."""
    a = run(toy_model, toy_data, tmp_path / "a", "--epochs", "1", "--freeze", "2")
    b = run(toy_model, toy_data, tmp_path / "b", "--epochs", "1", "--freeze", "2", "--grad-accum", "2")
    assert a["metrics"]["loss"] == pytest.approx(b["metrics"]["loss"], abs=1e-5)


def test_compile_matches_eager(dropout_free_model, toy_data, tmp_path):
    """torch.compile (inductor, CPU) gives the eager loss within float tolerance. Dropout is off: compiled
    graphs draw their dropout masks from another RNG stream, so with dropout the runs are not comparable."""
    common = ("--epochs", "1", "--freeze", "1", "--max-length", "16")
    eager = run(dropout_free_model, toy_data, tmp_path / "eager", *common)
    compiled = run(dropout_free_model, toy_data, tmp_path / "compiled", *common, "--compile")
    assert compiled["compiled_graphs"] >= 2  # the trainable part and the frozen prefix, at least
    assert compiled["metrics"]["loss"] == pytest.approx(eager["metrics"]["loss"], abs=1e-4)


def test_run_folder_is_never_overwritten_silently(toy_model, toy_data, tmp_path):
    run(toy_model, toy_data, tmp_path / "run", "--epochs", "1")
    with pytest.raises(MinifreezeError, match="already holds a run: pass --overwrite"):
        run(toy_model, toy_data, tmp_path / "run", "--epochs", "1")
    run(toy_model, toy_data, tmp_path / "run", "--epochs", "1", "--overwrite")


def test_train_size_defaults_to_the_whole_training_set(tmp_path):
    from conftest import toy_rows, write_tsv

    from minifreeze.train import load_training_data

    write_tsv(tmp_path / "big" / "train.tsv", toy_rows(4100, seed=3))  # more than the old default, 4000
    write_tsv(tmp_path / "big" / "validation.tsv", toy_rows(20, seed=4))
    cfg = TrainConfig(dataset="big", data_dir=str(tmp_path))
    assert cfg.train_size is None and len(load_training_data(cfg)[1]) == 4100
    subset = load_training_data(dataclasses.replace(cfg, train_size=4000))[1]
    assert len(subset) == 4000 and subset.source.endswith("[4000 stratified]")


def test_no_arguments_runs_the_demo_on_4000_examples(monkeypatch, capsys):
    import minifreeze.train as train_module

    seen = []
    monkeypatch.setattr(train_module, "train", lambda cfg: seen.append(cfg) or {"signal": None})
    main([])
    assert seen[-1] == dataclasses.replace(TrainConfig(), train_size=4000)  # the defaults, but 4,000 examples
    assert "no arguments: the demo run, --train-size 4000 of sst2" in capsys.readouterr().out
    main(["--freeze", "2"])  # any option: a real run, on the whole training set
    assert seen[-1] == TrainConfig() and seen[-1].train_size is None
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "4,000-example subset of SST-2 (--train-size 4000" in " ".join(capsys.readouterr().out.split())


def test_toml_config_and_flags_override(toy_model, toy_data, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        f'model = "{toy_model}"\ndataset = "toy"\ndata_dir = "{toy_data}"\nepochs = 1\n'
        f'freeze = "bitfit"\nbatch_size = 32\nprogress = false\ntrain_size = 0\n'
    )
    summary = main(["--config", str(config), "--out", str(tmp_path / "run"), "--batch-size", "16"])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert summary["freeze"] == "bitfit" and saved["batch_size"] == 16 and saved["epochs"] == 1
    config.write_text("learning_rate = 1\n")
    with pytest.raises(MinifreezeError, match="unknown option.*learning_rate"):
        main(["--config", str(config)])


def test_nan_loss_stops_with_a_clear_message(toy_model, toy_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Head.loss

    def poisoned(self, *args):
        calls["n"] += 1
        loss, logits = original(self, *args)
        return (loss * float("nan"), logits) if calls["n"] > 14 else (loss, logits)

    monkeypatch.setattr(Head, "loss", poisoned)
    with pytest.raises(
        MinifreezeError,
        match=r"training diverged at step 15 \(the training loss is nan\); .*/last holds the last finite "
        r"evaluation \(step 12\), .*/model the best \(step 4\); lower --lr \(now 0.003\)$",
    ):
        run(toy_model, toy_data, tmp_path / "run", "--eval-every", "4")
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "last" / "state.pt").is_file()


def cli_args(toy_model, toy_data, out):
    return [
        "--model",
        str(toy_model),
        "--dataset",
        "toy",
        "--data-dir",
        str(toy_data),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--no-progress",
        "--train-size",
        "0",
        "--freeze",
        "1",  # a frozen block: DIR/last holds only the trainable part, and resume is still bit-identical
        "--frozen-dropout",
        "--threads",  # the in-process runs and the child must reduce floats in the same order
        "1",
    ]


@pytest.fixture(scope="module")
def uninterrupted(toy_model, toy_data, tmp_path_factory) -> tuple[Path, dict]:
    """The reference for the kill and signal tests: the same run, never interrupted."""
    out = tmp_path_factory.mktemp("uninterrupted") / "whole"
    summary = main(cli_args(toy_model, toy_data, out))
    assert summary["steps"] == 36
    return out, summary


def assert_same_final_weights(a: Path, b: Path, best_too: bool = False) -> None:
    """The last checkpoints (the trainable part) are equal bit for bit; `best_too`: the best models (all of
    it) as well (not after a signal: its extra evaluation can pick another best)."""
    for file in ("last/model.safetensors", "model/model.safetensors")[: 1 + best_too]:
        wa, wb = load_file(str(a / file)), load_file(str(b / file))
        assert set(wa) == set(wb), file
        differ = {k: float((wa[k] - wb[k]).abs().max()) for k in wa if not torch.equal(wa[k], wb[k])}
        assert not differ, (file, differ)


def test_killed_run_resumes_bit_identical(uninterrupted, toy_model, toy_data, tmp_path):
    """SIGKILL right after the first checkpoint, then --resume: the same final weights as no interruption."""
    whole, run_uninterrupted = uninterrupted
    # The child pauses after its first checkpoint so the test can kill it at a known point.
    child = (
        "import sys, time, minifreeze.train as t\n"
        "save = t.save_state\n"
        "def slow(*a, **k):\n    save(*a, **k)\n    time.sleep(60)\n"
        "t.save_state = slow\n"
        "t.main(sys.argv[1:])\n"
    )
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", child, *cli_args(toy_model, toy_data, out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (out / "last" / "state.pt").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert (out / "last" / "state.pt").is_file() and not (out / "summary.json").exists()
    resumed = main(["--out", str(out), "--resume", "--no-progress"])
    assert resumed["steps"] == 36
    assert_same_final_weights(whole, out, best_too=True)
    assert resumed["metrics"] == run_uninterrupted["metrics"]


def train_signalled_at(step: int, signum: int, argv: list[str]) -> subprocess.CompletedProcess:
    """`python -m minifreeze.train ARGV` in a child that sends itself `signum` as optimizer step `step` ends."""
    child = (
        "import os, signal, sys, minifreeze.train as t\n"
        "from minifreeze import cli\n"
        "make = t.make_optimizer\n"
        "def hooked(*a, **k):\n    opt = make(*a, **k)\n    steps = []\n"
        "    def post(o, args, kwargs):\n        steps.append(1)\n"
        f"        if len(steps) == {step}: os.kill(os.getpid(), {int(signum)})\n"
        "    opt.register_step_post_hook(post)\n    return opt\n"
        "t.make_optimizer = hooked\n"
        "cli.run(t.main, sys.argv[1:])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", child, *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_exits_128_plus_the_signal_and_resumes_bit_identical(
    uninterrupted, toy_model, toy_data, tmp_path, signum, status
):
    out = tmp_path / "term"
    done = train_signalled_at(5, signum, cli_args(toy_model, toy_data, out))
    assert done.returncode == status, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"stopped by signal {int(signum)} at step 5, checkpoint saved; "
        f"continue with: python -m minifreeze.train --out {out} --resume"
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 5
    assert "stopped by signal" in json.loads((out / "summary.json").read_text())["stopped"]
    resumed = main(["--out", str(out), "--resume", "--no-progress"])
    assert resumed["steps"] == 36
    assert_same_final_weights(uninterrupted[0], out)


def test_a_signal_at_the_last_step_finishes_the_run_and_still_stops_the_caller(toy_model, toy_data, tmp_path):
    """The last step's evaluation no longer looks at the flag: a signal then must not be swallowed (a sweep
    would go on to its next run), nor turn a finished run into one to resume."""
    out = tmp_path / "late"
    done = train_signalled_at(36, signal.SIGTERM, cli_args(toy_model, toy_data, out))
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"stopped by signal 15 after the last step: the run finished, its results are in {out}"
    )
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["stopped"], summary["steps"], summary["signal"], summary["late_signal"]) == (
        "completed",
        36,
        None,
        15,
    )
    assert (out / "model" / "model.safetensors").is_file()


def test_validation_split_chooses_among_several(toy_model, toy_data, tmp_path):
    """A folder with validation_matched and validation_mismatched: training asks which, then uses it."""
    from conftest import toy_rows, write_tsv

    folder = tmp_path / "data" / "pairs"
    write_tsv(folder / "train.tsv", toy_rows(64, seed=1))
    write_tsv(folder / "validation_matched.tsv", toy_rows(24, seed=2))
    write_tsv(folder / "validation_mismatched.tsv", toy_rows(8, seed=3))
    common = ["--dataset", "pairs", "--data-dir", str(tmp_path / "data"), "--max-steps", "1", "--epochs", "1"]
    with pytest.raises(MinifreezeError, match="choose one with --validation-split"):
        run(toy_model, toy_data, tmp_path / "refused", *common)
    assert not (tmp_path / "refused").exists()
    run(toy_model, toy_data, tmp_path / "run", *common, "--validation-split", "validation_mismatched")
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sum(map(sum, record["confusion_matrix"])) == 8


# ------------------------------------------------------------------------------------ the loop's pieces
class Examples:
    """What epoch_batches reads of an encoded split: its size and its lengths."""

    lengths = [3 + i % 13 for i in range(50)]

    def __len__(self) -> int:
        return len(self.lengths)


@pytest.mark.parametrize("sampler", ["length", "random"])
def test_batches_resume_mid_epoch_exactly(sampler):
    """From the position any checkpoint records (also the one after an epoch's last batch), the batches
    go on exactly as the uninterrupted run's did, across epoch ends; each epoch covers every example once
    in an order of its own."""
    cfg = TrainConfig(batch_size=8, sampler=sampler, seed=3)  # 50 examples: 7 batches an epoch
    whole = list(itertools.islice(epoch_batches(Examples(), cfg, Progress()), 30))
    assert [(epoch, done) for epoch, done, _ in whole[5:9]] == [(0, 6), (0, 7), (1, 1), (1, 2)]
    for first in (0, 7):
        assert sorted(i for _, _, batch in whole[first : first + 7] for i in batch) == list(range(50))
    assert [b for _, _, b in whole[:7]] != [b for _, _, b in whole[7:14]]
    for k in range(1, 30):
        epoch, done, _ = whole[k - 1]
        resumed = epoch_batches(Examples(), cfg, Progress(epoch=epoch, batch_in_epoch=done))
        assert list(itertools.islice(resumed, 30 - k)) == whole[k:], k


@pytest.mark.parametrize("enabled", [False, True])
def test_a_checkpoint_round_trips_the_progress_and_the_grad_scaler(tmp_path, enabled):
    """The loop holds one GradScaler, off unless fp16 runs on CUDA. Off, it saves an empty dict and loads
    anything (older checkpoints saved None) as a no-op; on (torch has CPU scalers too), its scale survives."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=enabled)
    position = dict(step=7, epoch=1, batch_in_epoch=2, best=0.75, best_step=6, evals=3, since_best=1)
    progress = Progress(**position, train_examples=9, train_seconds=1.5, real_tokens=8, padded_tokens=10)
    save_state(tmp_path / "last", model, optimizer, scheduler, scaler, progress)
    state_path = tmp_path / "last" / "state.pt"
    state = torch.load(state_path, weights_only=True)
    assert state["progress"] == dataclasses.asdict(progress) and (state["scaler"] == {}) is not enabled
    again = torch.amp.GradScaler("cpu", enabled=enabled)
    assert load_state(tmp_path / "last", model, optimizer, scheduler, again) == progress
    assert again.get_scale() == (1024.0 if enabled else 1.0)
    if not enabled:
        torch.save({**state, "scaler": None}, state_path)
        assert load_state(tmp_path / "last", model, optimizer, scheduler, again) == progress


def test_progress_keeps_the_best_and_says_when_the_run_is_over():
    """A tie is no improvement (the earlier best model stays); --patience counts evaluations since the best."""
    progress, improved = Progress(), []
    for step, value in [(3, 0.5), (6, 0.7), (9, 0.7), (12, 0.6)]:
        progress.took_step(epoch=0, batch_in_epoch=step, examples=16, seconds=0.5)
        progress.step = step
        improved.append(progress.evaluated(value))
    assert improved == [True, True, False, False]
    assert (progress.best, progress.best_step, progress.since_best, progress.evals) == (0.7, 6, 2, 4)
    assert progress.samples_per_second == 32.0
    assert progress.done_reason(100, patience=2) == "early stop: no improvement in 2 evaluations"
    assert progress.done_reason(100, patience=3) is None and progress.done_reason(100, patience=0) is None
    assert progress.done_reason(12, patience=0) == "completed"
