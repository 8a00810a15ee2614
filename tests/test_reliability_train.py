"""Hostile options, a busy or broken run folder, signals, kills and interrupted saves around the train command.

Runs are tiny: the toy model for 6 steps (evaluations at steps 3 and 6). The kill tests run a child process
that SIGKILLs itself at an exact point (or at a random moment), then resume in this process and demand the
final weights of the uninterrupted run, bit for bit (one thread in both, as in test_train.py). This process
runs as root in CI, where chmod does not stop a write: a read-only or full folder is simulated by making
the write raise what the OS raises (and, where tmpfs can be mounted, for real).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import toy_rows, write_tsv
from safetensors import SafetensorError
from safetensors.torch import load_file

from minifreeze import MinifreezeError, checkpoints, cli
from minifreeze.checkpoints import recover, write_atomically
from minifreeze.run_folder import RunFolder, trim_metrics
from minifreeze.train import main

REPO = Path(__file__).resolve().parents[1]


def args(toy_model, toy_data, out, *extra):
    return [
        "--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data), "--out", str(out),
        "--epochs", "1", "--batch-size", "32", "--lr", "3e-3", "--warmup", "0", "--eval-every", "3",
        "--no-progress", "--train-size", "0", "--freeze", "0", "--threads", "1", *extra,
    ]  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder by relative path (the lock file names its holder: it is not part of the run)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".lock")
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "last" / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, note: object = "") -> None:
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb), note
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, (note, differ)


def steps_logged(folder: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(toy_model, toy_data, tmp_path_factory) -> Path:
    """One uninterrupted run: the reference weights, and a run folder to copy for each test."""
    out = tmp_path_factory.mktemp("finished") / "run"
    main(args(toy_model, toy_data, out))
    return out


@pytest.fixture
def old_run(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main, argv)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# ------------------------------------------------------------------------------------ options
@pytest.mark.parametrize(
    "bad, message",
    [
        (["--max-length", "1"], "--max-length 1: must be at least 3 (room for [CLS], one token and [SEP])"),
        (["--max-length", "2"], "--max-length 2: must be at least 3"),
        (["--epochs", "0"], "--epochs 0: must be at least 1"),
        (["--max-steps", "0"], "--max-steps 0: must be at least 1"),
        (["--patience", "-1"], "--patience -1: must be at least 0"),
        (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["--grad-accum", "0"], "--grad-accum 0: must be at least 1"),
        (["--eval-batch-size", "0"], "--eval-batch-size 0: must be at least 1"),
        (["--threads", "0"], "--threads 0: must be at least 1"),
        (["--train-size", "-5"], "--train-size -5: must be at least 0"),
        (["--weight-decay", "-1"], "--weight-decay -1.0: must be at least 0"),
        (["--max-grad-norm", "-1"], "--max-grad-norm -1.0: must be at least 0"),
        (["--weight-decay", "inf"], "--weight-decay inf: must be a finite number, at least 0"),
        (["--patience", "0", "--cache-max-gb", "nan"], "--cache-max-gb nan: must be a finite number"),
        (["--lr", "-1"], "--lr -1.0: must be a positive number"),
        (["--lr", "0"], "--lr 0.0: must be a positive number"),
        (["--lr", "nan"], "--lr nan: must be a positive number"),
        (["--eval-every", "0"], "--eval-every '0': use N steps"),
        (["--eval-every", "-2"], "--eval-every '-2'"),
        (["--warmup", "-1"], "--warmup '-1'"),
        (["--warmup", "2.5"], "a step count is a whole number"),
        (["--warmup", "500"], "--warmup 500 is 500 steps but the run has 6"),
        (["--device", "tpu9"], "--device tpu9: use cpu, cuda, cuda:N, mps or auto"),
    ],
)
def test_nonsense_options_are_refused_before_anything_is_written(
    toy_model, toy_data, tmp_path, capsys, bad, message
):
    out = tmp_path / "run"
    line = one_line_error(capsys, args(toy_model, toy_data, out, *bad))
    assert message in line, line
    assert not out.exists()


def test_max_length_beyond_the_models_positions_stops_at_them(toy_model, tmp_path):
    """The toy model has 128 positions; a 150-word text with --max-length 200 used to index past them."""
    rows = [(("good " * 150).strip(), 1)] + toy_rows(31, seed=3)
    write_tsv(tmp_path / "data" / "toy" / "train.tsv", rows)
    write_tsv(tmp_path / "data" / "toy" / "validation.tsv", rows[:8])
    with pytest.warns(UserWarning, match="max_length 200 is more than the model's 128 positions"):
        summary = main(args(toy_model, tmp_path / "data", tmp_path / "run", "--max-length", "200"))
    assert summary["steps"] == 1


# ------------------------------------------------------------------------------------ --overwrite
@pytest.mark.parametrize(
    "bad", [["--freeze", "banana"], ["--dataset", "no_such_dataset"], ["--batch-size", "0"]]
)
def test_a_refused_overwrite_leaves_the_old_run_byte_identical(old_run, toy_model, toy_data, bad):
    before = snapshot(old_run)
    with pytest.raises(MinifreezeError):
        main(args(toy_model, toy_data, old_run, "--overwrite", *bad))
    assert snapshot(old_run) == before


def test_an_overwrite_that_diverges_before_its_first_checkpoint_puts_the_old_run_back(
    old_run, toy_model, toy_data
):
    before = snapshot(old_run)
    with pytest.raises(MinifreezeError, match="nothing was saved"):
        main(args(toy_model, toy_data, old_run, "--overwrite", "--lr", "1e4"))
    assert snapshot(old_run) == before


def test_an_overwrite_that_reaches_a_checkpoint_replaces_the_old_run(old_run, toy_model, toy_data):
    (old_run / "stale.txt").write_text("from the old run")
    main(args(toy_model, toy_data, old_run, "--overwrite", "--seed", "5"))
    assert not (old_run / "stale.txt").exists()
    assert not [p.name for p in old_run.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert json.loads((old_run / "config.json").read_text())["seed"] == 5


def test_a_killed_overwrite_is_repaired_by_the_next_run(old_run, tmp_path):
    """Killed before its first checkpoint: the old run waits in .replaced-PID; the next start puts it back."""
    before = snapshot(old_run)
    aside = old_run / ".replaced-999999"
    aside.mkdir()
    for entry in list(old_run.iterdir()):
        if entry.name not in (".lock", aside.name):
            os.replace(entry, aside / entry.name)
    (old_run / "config.json").write_text('{"from": "the killed run"}')
    (old_run / ".last.partial-999999").mkdir()  # its first save, cut short
    with pytest.raises(RuntimeError, match="refused later"), RunFolder(old_run, False, True) as folder:
        folder.begin({"new": True})
        raise RuntimeError("refused later")  # the new run fails before its first checkpoint
    assert snapshot(old_run) == before
    assert sorted(p.name for p in old_run.iterdir() if p.name.startswith(".")) == [".lock"]


def test_a_fresh_run_that_fails_before_its_first_checkpoint_leaves_no_folder(toy_model, toy_data, tmp_path):
    out = tmp_path / "new"
    with pytest.raises(MinifreezeError, match="nothing was saved"):
        main(args(toy_model, toy_data, out, "--lr", "1e4"))
    assert not out.exists()


# ------------------------------------------------------------------------------------ NaN evaluations
def test_a_nan_evaluation_is_never_saved_or_selected(toy_model, toy_data, tmp_path, monkeypatch):
    """The second evaluation sees NaN logits: it must not become the best model nor the last checkpoint."""
    import minifreeze.train as train_module

    real = train_module.evaluate_split
    calls = []

    def nan_on_the_second_call(model, encoded, pad_id, batch_size, device, forward, parts=None):
        calls.append(1)
        if len(calls) == 2:
            poisoned = forward

            def forward(batch):  # noqa: F811 - the poisoned logits the real evaluation then scores
                return poisoned(batch) * float("nan")

        return real(model, encoded, pad_id, batch_size, device, forward=forward, parts=parts)

    monkeypatch.setattr(train_module, "evaluate_split", nan_on_the_second_call)
    out = tmp_path / "run"
    with pytest.raises(MinifreezeError) as error:
        main(args(toy_model, toy_data, out))
    assert str(error.value) == (
        f"training diverged at step 6 (the evaluation loss is nan); {out}/last holds the last finite "
        f"evaluation (step 3), {out}/model the best (step 3); lower --lr (now 0.003)"
    )
    assert steps_logged(out) == [3]
    state = torch.load(out / "last" / "state.pt", weights_only=True)
    assert state["progress"]["step"] == 3 and state["progress"]["best_step"] == 3
    assert all(torch.isfinite(t).all() for t in load_file(str(out / "model" / "model.safetensors")).values())


# ------------------------------------------------------------------------------------ the lock
HOLD_LOCK = (
    "import fcntl, os, sys, time\n"
    "f = open(sys.argv[1], 'a+')\n"
    "fcntl.flock(f, fcntl.LOCK_EX)\n"
    "f.write(f'pid {os.getpid()} on testhost (started now)\\n'); f.flush()\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


def test_a_folder_in_use_is_refused_and_freed_when_its_holder_dies(toy_model, toy_data, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(MinifreezeError) as error:
            main(args(toy_model, toy_data, out))
        assert str(error.value) == (
            f"{out} is in use by pid {holder.pid} on testhost (started now); wait for it or choose another --out"
        )
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of ours was written
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock
        holder.wait()
    assert main(args(toy_model, toy_data, out))["steps"] == 6


# ------------------------------------------------------------------------------------ the run folder path
def test_out_pointing_at_a_file_or_below_one(toy_model, toy_data, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    line = one_line_error(capsys, args(toy_model, toy_data, a_file))
    assert line == f"error: --out {a_file} is a file, not a folder: choose another --out"
    line = one_line_error(capsys, args(toy_model, toy_data, a_file / "run"))
    assert (
        line.startswith(f"error: cannot write the run folder {a_file / 'run'}") and "Not a directory" in line
    )
    assert a_file.read_text() == "keep me"


# ------------------------------------------------------------------------------------ disk errors
def test_a_full_disk_is_one_line_and_the_last_checkpoint_survives(
    finished, toy_model, toy_data, tmp_path, monkeypatch, capsys
):
    """The step-6 checkpoint hits ENOSPC: one line, the step-3 checkpoint stays whole and, once there is
    room again, --resume ends with the uninterrupted run's weights."""
    real = checkpoints.write_file
    calls = []

    def full_disk(path, data):
        calls.append(path)
        if len(calls) == 3:  # two files per checkpoint: the third write is the step-6 one
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(checkpoints, "write_file", full_disk)
    monkeypatch.setattr("minifreeze.resume.write_file", full_disk)
    out = tmp_path / "run"
    line = one_line_error(capsys, args(toy_model, toy_data, out))
    assert (
        line.startswith(f"error: cannot write the run folder {out} (") and "No space left on device" in line
    )
    assert torch.load(out / "last" / "state.pt", weights_only=True)["progress"]["step"] == 3
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".lock"]
    monkeypatch.undo()
    assert main(["--out", str(out), "--resume", "--no-progress"])["steps"] == 6
    assert_same_weights(out, finished)


def test_a_disk_error_safetensors_reports_becomes_an_os_error(tmp_path):
    """safetensors reports a full disk as SafetensorError("... (os error 28)"): callers get the errno."""

    def fill(folder):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(OSError) as error:
        write_atomically(tmp_path / "model", fill)
    assert error.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_a_read_only_folder_is_one_line(toy_model, toy_data, tmp_path, monkeypatch, capsys):
    """Root ignores chmod, so the write raises what a read-only folder makes the OS raise."""
    out = tmp_path / "readonly"
    out.mkdir()
    write_text = Path.write_text

    def refuse(path, *a, **k):
        if str(path).startswith(str(out)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return write_text(path, *a, **k)

    monkeypatch.setattr(Path, "write_text", refuse)
    line = one_line_error(capsys, args(toy_model, toy_data, out))
    assert line == (
        f"error: cannot write the run folder {out} ({out}/config.json.tmp): Permission denied; "
        "free some space, fix its permissions or choose another --out"
    )


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 500 KiB file system: room for one checkpoint of the toy run, not for two (needs root)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=500k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)  # lazy: even if a failed test holds a file


def test_a_really_full_disk_and_a_really_read_only_one(finished, tiny_tmpfs, toy_model, toy_data, capsys):
    out = tiny_tmpfs / "run"
    line = one_line_error(capsys, args(toy_model, toy_data, out, "--eval-every", "1"))
    assert line.startswith(f"error: cannot write the run folder {out} ({out}/.last.partial-"), line
    assert "No space left on device" in line, line
    assert torch.load(out / "last" / "state.pt", weights_only=True)["progress"]["step"] == 1
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".lock"]
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_tmpfs)], check=True)  # space freed
    assert main(["--out", str(out), "--resume", "--no-progress"])["steps"] == 6
    shutil.rmtree(out)
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    line = one_line_error(capsys, args(toy_model, toy_data, out))
    assert line == (
        f"error: cannot write the run folder {out} ({out}): Read-only file system; "
        "free some space, fix its permissions or choose another --out"
    )


# ------------------------------------------------------------------------------------ --resume
def test_resuming_a_finished_run_changes_nothing(old_run, capsys):
    before = snapshot(old_run)
    summary = main(["--out", str(old_run), "--resume", "--no-progress"])
    assert capsys.readouterr().out.strip() == f"{old_run} finished at step 6 (completed); nothing to resume"
    assert summary["steps"] == 6 and snapshot(old_run) == before


def test_a_run_killed_after_its_last_checkpoint_resumes_without_training_more(old_run, finished):
    (old_run / "summary.json").unlink()  # killed between the final checkpoint and the summary
    summary = main(["--out", str(old_run), "--resume", "--no-progress"])
    assert summary["steps"] == 6 and summary["stopped"] == "completed"
    assert steps_logged(old_run) == [3, 6]
    assert_same_weights(old_run, finished)


def test_resume_refuses_flags_that_would_change_the_run(old_run, toy_model, toy_data, tmp_path):
    with pytest.raises(MinifreezeError) as error:
        main(["--out", str(old_run), "--resume", "--lr", "1e-3"])
    assert str(error.value) == (
        "--resume continues with the saved options; --lr cannot change (saved 0.003, given 0.001)"
    )
    with pytest.raises(MinifreezeError, match="--max-steps cannot change"):
        main(["--out", str(old_run), "--resume", "--max-steps", "100"])
    with pytest.raises(MinifreezeError, match="--batch-size cannot change"):  # Trainer's spelling, counted
        main(["--out", str(old_run), "--resume", "--per-device-train-batch-size", "8"])
    with pytest.raises(MinifreezeError, match="--lr cannot change"):  # an alias is the same option
        main(["--out", str(old_run), "--resume", "--learning-rate", "1e-3"])
    with pytest.raises(MinifreezeError, match="drop --config"):
        (tmp_path / "c.toml").write_text("epochs = 1\n")
        main(["--out", str(old_run), "--resume", "--config", str(tmp_path / "c.toml")])
    with pytest.raises(MinifreezeError, match="pick one"):
        main(["--out", str(old_run), "--resume", "--overwrite"])
    # The command it started with, plus --resume and the flags that may change, is accepted.
    same = args(toy_model, toy_data, old_run, "--resume", "--threads", "2", "--device", "cpu")
    assert main(same)["steps"] == 6


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no checkpoint", "holds no checkpoint to resume from"),
        ("newer config", "has options this minifreeze does not know (save_delta)"),
        ("config not JSON", "config.json cannot be read"),
        ("state.pt corrupt", "cannot be read (UnpicklingError)|cannot be read (RuntimeError)"),
        ("state.pt of another version", "comes from another minifreeze version (no since_best)"),
    ],
)
def test_resume_of_a_damaged_or_foreign_folder_is_one_line(old_run, capsys, damage, message):
    (old_run / "summary.json").unlink()
    config = json.loads((old_run / "config.json").read_text())
    state_path = old_run / "last" / "state.pt"
    if damage == "no checkpoint":
        shutil.rmtree(old_run / "last")
    elif damage == "newer config":
        (old_run / "config.json").write_text(json.dumps({**config, "save_delta": True}))
    elif damage == "config not JSON":
        (old_run / "config.json").write_text("{not json")
    elif damage == "state.pt corrupt":
        state_path.write_bytes(state_path.read_bytes()[:100])
    else:
        state = torch.load(state_path, weights_only=True)
        del state["progress"]["since_best"]
        torch.save(state, state_path)
    line = one_line_error(capsys, ["--out", str(old_run), "--resume", "--no-progress"])
    assert any(m in line for m in message.split("|")), line


def test_resume_needs_an_out_folder(capsys):
    assert "--resume needs --out DIR" in one_line_error(capsys, ["--resume"])


# ------------------------------------------------------------------------------------ interrupted saves
class Killed(BaseException):
    """Stands for the process dying at this point (a BaseException, so no `except Exception` catches it)."""


def fill_with(text: str):
    def fill(folder: Path) -> None:
        for name in ("a.txt", "b.txt"):
            (folder / name).write_text(text)

    return fill


def save_killed_at(target: Path, kill_at: int, monkeypatch) -> tuple[bool, list[str]]:
    """write_atomically(target) with the process 'dying' at its kill_at-th file-system step (1-based):
    that step and every later one raise Killed, so no clean-up handler gets to run either."""
    real = {"replace": os.replace, "fsync": os.fsync, "rmtree": shutil.rmtree}
    steps: list[str] = []

    def step(name):
        def run(*a, **k):
            steps.append(name)
            if len(steps) >= kill_at:
                raise Killed
            return real[name](*a, **k)

        return run

    for name in real:
        monkeypatch.setattr(shutil if name == "rmtree" else os, name, step(name))
    try:
        write_atomically(target, fill_with("new"))
        return True, steps
    except Killed:
        return False, steps
    finally:
        monkeypatch.undo()


def test_a_save_killed_at_any_step_leaves_one_whole_copy(tmp_path, monkeypatch):
    """Kill write_atomically at each of its file-system steps in turn; recover() always finds old or new."""
    target = tmp_path / "last"
    for kill_at in range(1, 100):
        shutil.rmtree(tmp_path)
        tmp_path.mkdir()
        write_atomically(target, fill_with("old"))
        completed, steps = save_killed_at(target, kill_at, monkeypatch)
        recover(target)
        texts = {(target / n).read_text() for n in ("a.txt", "b.txt")}
        assert texts in ({"old"}, {"new"}), (kill_at, steps)
        assert [p.name for p in tmp_path.iterdir()] == ["last"], (kill_at, steps)
        if completed:
            break
    assert completed and kill_at > 5, steps  # every step was tried, through to a save that ran to its end


def test_trim_metrics_drops_redone_steps_and_a_cut_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 3}\n{"step": 6}\n{"step": 9}\n{"step": 1')
    trim_metrics(path, 6)
    assert path.read_text() == '{"step": 3}\n{"step": 6}\n'


KILL_CHILD = """
import os, random, signal, sys, time
import minifreeze.train as t
point = sys.argv[1]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "before-checkpoint":  # the step-6 evaluation is logged, its checkpoint never written
    save, calls = t.save_state, []
    def save_state(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            die()
        save(*a, **k)
    t.save_state = save_state
elif point == "between-renames":  # the step-6 save moved last/ aside and died before putting the new one in
    replace, calls = os.replace, []
    def killing_replace(src, dst):
        if os.path.basename(str(src)).startswith(".last.partial"):
            calls.append(1)
            if len(calls) == 2:
                die()
        replace(src, dst)
    os.replace = killing_replace
t.main(sys.argv[2:])
"""


def run_child(point: str, argv: list[str], kill_after: float | None = None) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, point, *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if kill_after is not None:
        time.sleep(kill_after)
        child.kill()
    return child.wait(timeout=300)


@pytest.mark.parametrize("point", ["before-checkpoint", "between-renames"])
def test_sigkill_at_the_worst_moments_then_resume_is_bit_identical(
    finished, toy_model, toy_data, tmp_path, point
):
    out = tmp_path / "killed"
    assert run_child(point, args(toy_model, toy_data, out)) == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    resumed = main(["--out", str(out), "--resume", "--no-progress"])
    assert resumed["steps"] == 6
    assert steps_logged(out) == [3, 6]  # the step-6 evaluation is not logged twice
    train_log = (out / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in train_log] == [6]  # nor its train_log line (window 4-6)
    assert_same_weights(out, finished)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".lock"]


def test_sigkill_at_a_random_moment_then_resume_is_bit_identical(finished, toy_model, toy_data, tmp_path):
    out = tmp_path / "killed"
    moment = random.uniform(1.0, 12.0)  # child start-up included; a kill after the end is fine too
    run_child("random", args(toy_model, toy_data, out), kill_after=moment)
    try:
        main(["--out", str(out), "--resume", "--no-progress"])
    except MinifreezeError as err:  # killed before its first checkpoint: start it again
        assert "holds no checkpoint" in str(err) or "needs --out" in str(err), (moment, err)
        main(args(toy_model, toy_data, out, "--overwrite"))
    assert_same_weights(out, finished, note=f"killed after {moment:.2f} s")
