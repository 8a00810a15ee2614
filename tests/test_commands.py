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


SHIPPED_CONFIGS = sorted((Path(__file__).parents[1] / "minifreeze" / "configs").glob("*.toml"))


def test_the_configs_ship_with_the_package():
    assert len(SHIPPED_CONFIGS) == 5, "minifreeze/configs/ lost its recipes (an empty list would test none)"


@pytest.mark.parametrize("config", SHIPPED_CONFIGS, ids=lambda p: p.stem)
def test_ready_configs_parse_into_valid_runs(config):
    """Every shipped recipe names real options and a freeze spec the parser accepts, by its bare name."""
    from minifreeze.freezing import parse_spec
    from minifreeze.train import TrainConfig

    cfg = cli.parse(TrainConfig, ["--config", config.stem], "train", "")
    assert cfg == cli.parse(TrainConfig, ["--config", str(config)], "train", "")
    parse_spec(cfg.freeze, 12)
    assert cfg.model and cfg.dataset


def config_error(capsys, value: str) -> list[str]:
    """The stderr lines of `train --config VALUE` (which fails before anything trains)."""
    with pytest.raises(SystemExit) as exit_:
        cli.run(train_main, ["--config", value])
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


def test_an_unknown_config_name_lists_the_shipped_ones(capsys):
    shipped = "bitfit_sst2, distilbert_sst2, head_only_rotten_tomatoes, random_sst2, top2_amazon_polarity"
    assert config_error(capsys, "bitfit") == [
        f"error: --config bitfit: no such file, nor a shipped config (shipped: {shipped})"
    ]
    # a path is never looked up among the shipped configs, even when its file name is one of them
    assert config_error(capsys, "elsewhere/bitfit_sst2.toml")[0].startswith(
        "error: --config elsewhere/bitfit_sst2.toml: no such file"
    )


def test_a_config_that_is_a_folder_or_unreadable_is_one_line(tmp_path, capsys):
    assert config_error(capsys, str(tmp_path))[0].startswith(f"error: --config {tmp_path}: no such file")
    (tmp_path / "c.toml").write_bytes(b"\xff\xfe epochs = 1")
    assert config_error(capsys, str(tmp_path / "c.toml")) == [
        f"error: --config {tmp_path / 'c.toml'}: not UTF-8 text; re-save it as UTF-8"
    ]


def test_a_file_in_the_working_directory_wins_over_a_shipped_config(tmp_path, monkeypatch):
    from minifreeze.train import TrainConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bitfit_sst2").write_text('freeze = "head"\n')
    assert cli.parse(TrainConfig, ["--config", "bitfit_sst2"], "train", "").freeze == "head"
    assert cli.parse(TrainConfig, ["--config", "bitfit_sst2.toml"], "train", "").freeze == "bitfit"
