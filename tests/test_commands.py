"""evaluate and predict on a trained model, --help everywhere, and one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minifreeze import cli, evaluate, predict
from minifreeze.train import main as train_main


@pytest.fixture(scope="module")
def trained(toy_model, toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    train_main(
        [
            "--model",
            str(toy_model),
            "--dataset",
            "toy",
            "--data-dir",
            str(toy_data),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--lr",
            "3e-3",
            "--no-progress",
            "--train-size",
            "0",
        ]
    )
    return out / "model"


def test_evaluate_prints_metrics_and_confusion_matrix(trained, toy_data, capsys):
    result = evaluate.main(["--model", str(trained), "--dataset", "toy", "--data-dir", str(toy_data)])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    for key in ("accuracy", "f1", "mcc", "loss", "samples_per_second", "confusion_matrix"):
        assert key in result
    assert sum(map(sum, result["confusion_matrix"])) == 64
    assert result["accuracy"] >= 0.9


def test_predict_texts_file_and_stdin(trained, tmp_path, capsys, monkeypatch):
    results = predict.main(["--model", str(trained), "the movie was great", "awful and boring"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == results and [r["label"] for r in results] == ["1", "0"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in results)
    texts = tmp_path / "texts.txt"
    texts.write_text("lovely story\n\nthe plot was dull\n")
    assert [r["label"] for r in predict.main(["--model", str(trained), "--file", str(texts)])] == ["1", "0"]
    texts.write_bytes(b"caf\xe9\n")
    with pytest.raises(Exception, match="not UTF-8"):
        predict.main(["--model", str(trained), "--file", str(texts)])


@pytest.mark.parametrize(
    "module", ["train", "evaluate", "predict", "inspect", "sweep", "cache", "export", "plot"]
)
def test_help_shows_defaults(module):
    result = subprocess.run(
        [sys.executable, "-m", f"minifreeze.{module}", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr
    assert "default" in result.stdout


@pytest.mark.parametrize("module, argv", [("cache", ["wipe"]), ("inspect", ["--model", "./no/such/dir"])])
def test_bad_input_exits_2_with_one_line(module, argv, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", f"minifreeze.{module}", *argv, "--cache-dir" if module == "cache" else "--seq",
         str(tmp_path) if module == "cache" else "8"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--freeze", "99"], "the model has 2 layers"),
        (["--dataset", "nope_such_dataset"], "unknown dataset 'nope_such_dataset'"),
        (["--amp", "fp16"], "--amp fp16 needs a CUDA device"),
        (["--batch-size", "10", "--grad-accum", "3"], "not divisible"),
        (["--warmup", "soon"], "--warmup 'soon'"),
    ],
)
def test_bad_input_is_one_line_on_stderr(toy_model, toy_data, tmp_path, capsys, args, message):
    base = [
        "--model",
        str(toy_model),
        "--dataset",
        "toy",
        "--data-dir",
        str(toy_data),
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
        "--epochs",
        "1",
        "--max-length",
        "64",  # the toy model's positions: no warning line before the error
    ]
    with pytest.raises(SystemExit) as exit_info:
        cli.run(train_main, [*base, *args])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], errors


def test_the_real_entry_point_prints_one_line_not_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "minifreeze.evaluate", "--model", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: model folder {tmp_path / 'none'} does not exist: pass a model folder or a Hub id"
    ]


@pytest.mark.parametrize(
    "config", sorted((Path(__file__).parents[1] / "scripts" / "configs").glob("*.toml")), ids=lambda p: p.stem
)
def test_ready_configs_parse_into_valid_runs(config):
    """Every shipped recipe names real options and a freeze spec the parser accepts."""
    from minifreeze.freezing import parse_spec
    from minifreeze.train import TrainConfig

    cfg = cli.parse(TrainConfig, ["--config", str(config)], "train", "")
    parse_spec(cfg.freeze, 12)
    assert cfg.model and cfg.dataset
