"""`--cache-frozen auto`: the cache is built exactly where the prefix would otherwise make >= 1.5 passes."""

from __future__ import annotations

import dataclasses

import pytest

from minifreeze import MinifreezeError, cli
from minifreeze import cache as frozen_cache
from minifreeze.cache.auto import MIN_PASSES, prefix_passes
from minifreeze.train import TrainConfig, main


@pytest.fixture(autouse=True)
def fresh_registry():
    frozen_cache.REGISTRY.clear()
    yield
    frozen_cache.REGISTRY.clear()


def config(**changes) -> TrainConfig:
    return dataclasses.replace(TrainConfig(), **changes)


def test_prefix_passes_count_epochs_and_evaluations():
    # 100 train / 20 validation, batch 10: 10 steps an epoch
    assert prefix_passes(config(epochs=3, batch_size=10, eval_every="1ep"), 100, 20) == pytest.approx(
        (3 * 100 + 3 * 20) / 120
    )
    assert prefix_passes(config(epochs=1, batch_size=10, eval_every="none"), 100, 20) == pytest.approx(1.0)
    half = prefix_passes(config(epochs=1, batch_size=10, eval_every="0.5ep"), 100, 20)
    assert half == pytest.approx((100 + 2 * 20) / 120) and half < MIN_PASSES
    steps = prefix_passes(config(epochs=9, max_steps=15, batch_size=10, eval_every="none"), 100, 20)
    assert steps == pytest.approx((150 + 20) / 120)  # --max-steps wins over --epochs


def run(toy_model, toy_data, out, *extra):
    args = ["--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data), "--out", str(out)]
    args += ["--batch-size", "16", "--lr", "3e-3", "--no-progress", "--train-size", "64"]
    args += ["--cache-dir", str(out.parent / "cache"), *extra]
    return main(args)


def test_auto_caches_a_multi_epoch_run_with_a_frozen_prefix(toy_model, toy_data, tmp_path, capsys):
    summary = run(
        toy_model, toy_data, tmp_path / "a", "--freeze", "1", "--epochs", "3", "--cache-frozen", "auto"
    )
    assert summary["cache"] is not None and summary["cache"]["computed"] > 0
    assert "--cache-frozen auto: on" in capsys.readouterr().out


def test_auto_caches_a_deep_prefix_even_for_one_pass(toy_model, toy_data, tmp_path, capsys):
    """Measured (benchmarks/cache_payoff.py): with half of the layers frozen or more one pass already pays."""
    one_pass = ["--epochs", "1", "--eval-every", "none", "--cache-frozen", "auto"]
    deep = run(toy_model, toy_data, tmp_path / "deep", "--freeze", "1", *one_pass)  # 1 of the toy's 2 layers
    assert deep["cache"] is not None and "--cache-frozen auto: on" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, why",
    [
        (["--freeze", "-1", "--epochs", "1", "--eval-every", "none"], "1.0 passes"),  # embeddings only
        (["--freeze", "0", "--epochs", "3"], "no deterministic frozen prefix"),
        (["--freeze", "1", "--epochs", "3", "--frozen-dropout"], "no deterministic frozen prefix"),
    ],
)
def test_auto_leaves_the_cache_off_where_it_cannot_pay(toy_model, toy_data, tmp_path, capsys, extra, why):
    summary = run(toy_model, toy_data, tmp_path / "b", *extra, "--cache-frozen", "auto")
    assert summary["cache"] is None
    out = capsys.readouterr().out
    assert "--cache-frozen auto: off" in out and why in out


def test_the_flag_takes_auto_on_off_and_the_old_spellings(tmp_path):
    def parsed(*argv):
        return cli.parse(TrainConfig, list(argv), "train", "").cache_frozen

    assert parsed() is False
    assert parsed("--cache-frozen") is True
    assert parsed("--cache-frozen", "auto") == "auto"
    assert parsed("--cache-frozen", "off") is False and parsed("--cache-frozen", "on") is True
    assert parsed("--cache-frozen", "--no-cache-frozen") is False
    with pytest.raises(SystemExit):
        parsed("--cache-frozen", "sometimes")
    toml = tmp_path / "c.toml"
    toml.write_text('cache_frozen = "auto"\n')
    assert parsed("--config", str(toml)) == "auto"
    toml.write_text("cache_frozen = true\n")
    assert parsed("--config", str(toml)) is True
    toml.write_text('cache_frozen = "maybe"\n')
    with pytest.raises(MinifreezeError, match="cache_frozen = 'maybe': use auto, on or off"):
        parsed("--config", str(toml))
