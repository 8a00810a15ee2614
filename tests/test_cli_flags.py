"""The command line as a transformers Trainer user meets it (issue 22): each default shown once in --help,
an unknown flag answered with the closest known one, Trainer's spellings as aliases that parse to the same
TrainConfig, --schedule cosine, --eval-every none, and the console scripts of the installed package."""

from __future__ import annotations

import configparser
import importlib
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from minifreeze import cli, run_options
from minifreeze.errors import MinifreezeError
from minifreeze.optim import make_scheduler
from minifreeze.train import DESCRIPTION, PROG, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "train": "minifreeze.train",
    "evaluate": "minifreeze.evaluate",
    "predict": "minifreeze.predict",
    "sweep": "minifreeze.sweep",
    "inspect": "minifreeze.inspect",
    "cache": "minifreeze.cache.__main__",
}


def parser_of(command: str, monkeypatch, capsys):
    """The parser `command`'s main builds, caught on its way to print --help."""
    built = []
    real = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda *a: built.append(real(*a)) or built[-1])
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(COMMANDS[command]).main(["--help"])
    assert exit_.value.code == 0
    return built[0], capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_prints_each_default_once(command, monkeypatch, capsys):
    parser, text = parser_of(command, monkeypatch, capsys)
    formatter = parser._get_formatter()
    helps = [formatter._expand_help(a) for a in parser._actions if a.help and a.option_strings]
    twice = [h for h in helps if h.lower().count("default") > 1]
    assert not twice, twice
    assert text.count("(default:") >= 5  # the defaults are still shown
    if command == "train":
        assert "(default: $MINIFREEZE_DATA_DIR) (default" not in " ".join(text.split())


def run_train(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        cli.run(importlib.import_module("minifreeze.train").main, argv)
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "typo, line",
    [
        ("--learnig-rate", "error: unknown option --learnig-rate: did you mean --learning-rate?"),
        ("--bach-size=8", "error: unknown option --bach-size: did you mean --batch-size?"),
        ("--num-train-epoks", "error: unknown option --num-train-epoks: did you mean --num-train-epochs?"),
        ("--zzzz", "error: unknown option --zzzz: see python -m minifreeze.train --help"),
    ],
)
def test_an_unknown_flag_suggests_the_closest_one_in_one_line(typo, line, capsys):
    code, err = run_train([typo, "1"], capsys)
    assert code == 2 and err.splitlines() == [line]


def test_an_unknown_flag_of_another_command_gets_a_suggestion_too(capsys):
    from minifreeze import evaluate

    with pytest.raises(SystemExit) as exit_:
        cli.run(evaluate.main, ["--batch-sise", "8"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().endswith("did you mean --batch-size?")


def parse(argv: list[str]) -> TrainConfig:
    return cli.parse(TrainConfig, argv, PROG, DESCRIPTION)


def test_trainer_spellings_parse_to_the_same_config(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    trainer = parse(
        "--learning-rate 2e-5 --num-train-epochs 3 --output-dir runs/x --warmup-ratio 0.1 --eval-steps 50 "
        "--weight-decay 0.1 --max-grad-norm 0.5 --seed 7 --per-device-train-batch-size 8 "
        "--gradient-accumulation-steps 4".split()
    )
    ours = parse(
        "--lr 2e-5 --epochs 3 --out runs/x --warmup 0.1 --eval-every 50 --weight-decay 0.1 "
        "--max-grad-norm 0.5 --seed 7 --batch-size 32 --grad-accum 4".split()
    )
    assert trainer == ours
    assert parse(["--warmup-steps", "200"]) == parse(["--warmup", "200"])
    assert parse(["--per-device-train-batch-size", "16"]) == parse(["--batch-size", "16"])


def test_per_device_batch_counts_every_device_as_trainer_does(monkeypatch):
    """Under torchrun (WORLD_SIZE=2) a step sees B x G x 2 examples and each forward pass holds B."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = parse(["--per-device-train-batch-size", "8", "--gradient-accumulation-steps", "2"])
    assert (cfg.batch_size, cfg.grad_accum) == (32, 4)
    assert cfg.batch_size // cfg.grad_accum == 8  # the micro-batch: what one device's forward pass holds
    typed = cli.given_only(TrainConfig, PROG, DESCRIPTION, ["--per-device-train-batch-size", "8"])
    assert vars(typed) == {"batch_size": 16, "grad_accum": 2}  # what --resume compares with the saved run


def test_toml_does_not_override_trainer_batch_flags(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    (tmp_path / "c.toml").write_text("batch_size = 64\ngrad_accum = 2\nlr = 1e-4\n")
    cfg = parse(["--config", str(tmp_path / "c.toml"), "--per-device-train-batch-size", "8"])
    assert (cfg.batch_size, cfg.grad_accum, cfg.lr) == (8, 1, 1e-4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--gradient-accumulation-steps", "4"], "--gradient-accumulation-steps needs --per-device-train"),
        (["--per-device-train-batch-size", "8", "--batch-size", "32"], "both set the batch: pick one"),
        (["--per-device-train-batch-size", "8", "--grad-accum", "2"], "--grad-accum both set the batch"),
        (["--per-device-train-batch-size", "0"], "--per-device-train-batch-size 0: must be at least 1"),
        (["--warmup-ratio", "1"], "--warmup-ratio 1: use a fraction of all steps, 0 <= R < 1"),
        (["--warmup-ratio", "nan"], "--warmup-ratio nan: use a fraction"),
    ],
)
def test_trainer_flags_that_cannot_mean_what_they_say_are_refused(argv, message, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(MinifreezeError, match=message.replace("+", r"\+")):
        parse(argv)


def test_help_lists_the_aliases_and_says_how_trainer_counts(monkeypatch, capsys):
    _, text = parser_of("train", monkeypatch, capsys)
    text = " ".join(text.split())
    for alias in (
        "--lr LR, --learning-rate LR",
        "--epochs EPOCHS, --num-train-epochs EPOCHS",
        "--out OUT, --output-dir OUT",
        "--eval-every EVAL_EVERY, --eval-steps EVAL_EVERY",
    ):
        assert alias in text
    assert "a step sees B x G x world size examples" in text and "multiplies the batch" in text


def factors(kind: str, total: int, warmup: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = make_scheduler(optimizer, total, warmup, kind)
    values = []
    for _ in range(total):
        values.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return values + [scheduler.get_last_lr()[0]]


def test_cosine_schedule_warms_up_then_falls_to_zero_on_a_half_cosine():
    values = factors("cosine", total=10, warmup=2)
    assert values[:3] == [0.5, 1.0, 1.0]
    for step in range(2, 11):  # Trainer's get_cosine_schedule_with_warmup, half a period
        assert values[step] == pytest.approx(0.5 * (1 + math.cos(math.pi * (step - 2) / 8)), abs=1e-12)
    assert values[6] == pytest.approx(0.5) and values[10] == pytest.approx(0.0, abs=1e-12)
    assert factors("linear", 10, 2)[6] == pytest.approx(0.5)  # linear and cosine meet half-way only
    assert factors("linear", 10, 2)[4] < values[4]


def test_eval_every_none_evaluates_once_after_the_last_step():
    cfg = TrainConfig(eval_every="none")
    run_options.check(cfg)
    assert run_options.check_steps(cfg, steps_per_epoch=10, total_steps=30) == (2, 30)
    with pytest.raises(MinifreezeError, match="--eval-every 'never'"):
        run_options.check(TrainConfig(eval_every="never"))


def test_a_run_with_eval_every_none_still_saves_its_model(toy_model, toy_data, tmp_path):
    from minifreeze.train import main

    out = tmp_path / "run"
    summary = main(
        f"--model {toy_model} --dataset toy --data-dir {toy_data} --output-dir {out} --max-steps 3 "
        "--per-device-train-batch-size 16 --eval-every none --schedule cosine --no-progress --freeze 1".split()
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3] and summary["best_step"] == 3
    assert (out / "model" / "config.json").is_file()
    assert json.loads((out / "config.json").read_text())["schedule"] == "cosine"


def console_scripts() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


def test_every_command_has_a_console_script_that_runs_it(monkeypatch, capsys):
    scripts = console_scripts()
    assert set(scripts) >= {f"minifreeze-{c}" for c in (*COMMANDS, "prefetch")}
    for name, target in scripts.items():
        module, function = target.split(":")
        monkeypatch.setattr(sys, "argv", [name, "--help"])
        with pytest.raises(SystemExit) as exit_:
            getattr(importlib.import_module(module), function)()
        assert exit_.value.code == 0, name
        assert "usage:" in capsys.readouterr().out


def test_installed_console_scripts_match_setup_cfg():
    """Where this checkout is the installed one (pip install -e . in CI), its metadata has the scripts."""
    from importlib import metadata

    try:
        dist = metadata.distribution("minifreeze")
    except metadata.PackageNotFoundError:
        pytest.skip("minifreeze is not installed (pip install -e .)")
    installed = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
    if not installed:
        pytest.skip("the installed minifreeze predates its console scripts: pip install -e . again")
    assert installed == console_scripts()


def test_license_file_is_the_mit_license_the_metadata_names():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 minifreeze authors" in text
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["license"] == "MIT" and config["metadata"]["license_files"] == "LICENSE"


def test_scripts_prefetch_is_the_package_prefetcher():
    text = (ROOT / "scripts" / "prefetch.py").read_text()
    assert "from minifreeze.prefetch import main" in text
    assert importlib.import_module("minifreeze.prefetch").main.__module__ == "minifreeze.prefetch"
