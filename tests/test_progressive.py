"""Progressive freezing (issue 20): schedules, the auto rule, growing the depth mid-run, the grown cache,
layer-wise lr decay, resume across a freeze event. Tiny models on the toy task (CPU, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import run

from minifreeze import MinifreezeError, batching, data, load_tokenizer, progressive, train
from minifreeze import cache as frozen_cache
from minifreeze.freezing import freeze
from minifreeze.model import load_model
from minifreeze.optim import make_optimizer
from minifreeze.train import main

# --------------------------------------------------------------------------- schedules


def test_linear_schedule_freezes_one_block_per_equal_share_of_the_run():
    schedule = progressive.parse("linear:0-4", "2", None, 6)
    assert schedule.start == 0
    # 0 -> -1 -> 1 -> 2 -> 3 -> 4 is five growths; the run splits into six equal shares
    assert schedule.resolve(10, 60) == [(10, -1), (20, 1), (30, 2), (40, 3), (50, 4)]


def test_points_take_steps_and_epochs():
    schedule = progressive.parse("0@0,2@1ep,4@150", "0", None, 6)
    assert schedule.start == 0
    assert schedule.resolve(steps_per_epoch=100, total_steps=300) == [(100, 2), (150, 4)]


def test_auto_starts_at_the_freeze_depth_and_stops_below_the_top_layer():
    schedule = progressive.parse("auto:5:0.2", "1", None, 6)
    assert (schedule.kind, schedule.start, schedule.every, schedule.tolerance) == ("auto", 1, 5, 0.2)
    assert schedule.max_depth == 5
    assert progressive.parse("auto", "0", 3, 6).max_depth == 3


@pytest.mark.parametrize(
    "text, freeze_spec, max_freeze, message",
    [
        ("linear:0-4", "bitfit", None, "--freeze bitfit is not one"),
        ("auto", "random:0.5", None, "--freeze random:0.5 is not one"),
        ("linear:0-7", "0", None, "depth 7 is past the model's 6 layers"),
        ("0@0,3@10,2@20", "0", None, "the depths must grow"),
        ("linear:4-2", "0", None, "the depths must grow"),
        ("linear:2-2", "0", None, "the depths must grow"),
        ("2@5,4@10", "0", None, "the first point must be at step 0"),
        ("lineal:0-4", "0", None, "cannot read it"),
        ("auto:0", "0", None, "cannot read it"),
        ("auto:5:-1", "0", None, "cannot read it"),
        ("linear:0-4", "0", 2, "goes past --max-freeze 2"),
        ("auto", "0", 9, "--max-freeze 9: must be in -1..6"),
        ("auto", "6", None, "the depths must grow"),  # already at the cap: nothing to freeze
        (None, "2", 3, "--max-freeze bounds a --freeze-schedule"),  # would silently do nothing
    ],
)
def test_impossible_schedules_fail_in_one_line(text, freeze_spec, max_freeze, message):
    with pytest.raises(MinifreezeError, match=message) as err:
        progressive.parse(text, freeze_spec, max_freeze, 6)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, total, message",
    [("0@0,2@10,4@10", 40, "must increase"), ("0@0,2@2ep", 40, "below the run's 40 steps")],
)
def test_points_out_of_order_or_past_the_run_fail(text, total, message):
    schedule = progressive.parse(text, "0", None, 6)
    with pytest.raises(MinifreezeError, match=message):
        schedule.resolve(steps_per_epoch=20, total_steps=total)


def test_linear_too_short_a_run_fails():
    with pytest.raises(MinifreezeError, match="must increase"):
        progressive.parse("linear:0-4", "0", None, 6).resolve(1, 3)


# --------------------------------------------------------------------------- the auto rule


def test_auto_rule_waits_while_the_norm_falls_and_freezes_once_it_is_flat():
    rule, state = progressive.AutoRule(every=4, tolerance=0.1), {}
    falling = [1.0, 0.9, 0.8, 0.7, 0.5, 0.45, 0.4, 0.35, 0.25, 0.24, 0.22, 0.2]  # means .85 .425 .2275
    assert not any(rule.update(state, g) for g in falling)
    flat = [0.21, 0.19, 0.2, 0.22]  # mean 0.205: 9.9% below the last mean
    decisions = [rule.update(state, g) for g in flat]
    assert decisions == [False, False, False, True]
    assert state["means"] == []  # the next block starts its own history
    assert not any(rule.update(state, g) for g in [0.2] * 4)  # one window is no rate of change


def test_auto_rule_leaves_out_a_non_finite_norm():
    """An fp16 overflow step: inf would make the change NaN, and NaN >= TOL is False (a freeze)."""
    rule, state = progressive.AutoRule(every=2, tolerance=0.1), {}
    decisions = [rule.update(state, g) for g in [1.0, 1.0, float("inf"), 0.5, float("nan"), 0.5]]
    assert not any(decisions) and state["means"] == [1.0, 0.5]


def test_auto_rule_ignores_noise_only_within_the_tolerance():
    rule, state = progressive.AutoRule(every=2, tolerance=0.05), {}
    decisions = [rule.update(state, g) for g in [1.0, 1.2, 1.0, 0.9, 1.05, 0.95]]  # means 1.1 .95 1.0
    assert not any(decisions)  # 13.6% and 5.3%: both still changing


# --------------------------------------------------------------------------- growing the depth


def toy_args(toy_model, toy_data, out, *extra):
    return [
        "--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data), "--out", str(out),
        "--epochs", "3", "--batch-size", "16", "--lr", "3e-3", "--warmup", "0", "--no-progress",
        "--train-size", "0", "--threads", "1", *extra,
    ]  # fmt: skip


def weights_at_each_step(monkeypatch) -> list[dict]:
    """Record every parameter after every optimizer step (and the optimizer) of the next run."""
    import minifreeze.train as train_module

    seen, make = [], train_module.make_optimizer

    def hooked(model, *args, **kwargs):
        optimizer = make(model, *args, **kwargs)

        def post(opt, a, k):
            state = {id(p) for p in opt.state}
            grouped = {id(p) for g in opt.param_groups for p in g["params"]}
            seen.append(
                {
                    n: (p.detach().clone(), id(p) in state, id(p) in grouped)
                    for n, p in model.named_parameters()
                }
            )

        optimizer.register_step_post_hook(post)
        return optimizer

    monkeypatch.setattr(train_module, "make_optimizer", hooked)
    return seen


def test_a_frozen_layer_never_changes_again_and_leaves_the_optimizer(
    toy_model, toy_data, tmp_path, monkeypatch
):
    seen = weights_at_each_step(monkeypatch)
    out = tmp_path / "run"
    # 12 steps an epoch, 36 in all: depth 0 -> -1 at step 12 -> 1 at step 24
    summary = main(
        toy_args(toy_model, toy_data, out, "--freeze-schedule", "0@0,-1@12,1@24", "--eval-every", "6")
    )
    assert summary["freeze_events"] == [{"step": 12, "depth": -1}, {"step": 24, "depth": 1}]
    assert summary["steps"] == 36
    embedding, layer0, layer1 = (
        "encoder.embeddings.word.weight",
        "encoder.layers.0.query.weight",
        "encoder.layers.1.query.weight",
    )
    # seen[i] is after step i + 1: trained up to its freeze step, bit-equal after it
    assert not torch.equal(seen[10][embedding][0], seen[11][embedding][0])  # step 12 still trained it
    for i in range(11, 36):
        assert torch.equal(seen[i][embedding][0], seen[11][embedding][0]), i
        assert not seen[i + 1 if i < 35 else i][embedding][1]  # no AdamW state ...
        assert not seen[i + 1 if i < 35 else i][embedding][2]  # ... and in no group
    assert not torch.equal(seen[22][layer0][0], seen[23][layer0][0])
    for i in range(23, 36):
        assert torch.equal(seen[i][layer0][0], seen[23][layer0][0]), i
    assert not torch.equal(seen[34][layer1][0], seen[35][layer1][0])  # the top layer kept training
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["freeze_depth"] for r in records] == [0, -1, -1, 1, 1, 1]
    assert summary["best_metric"] > 0.8  # training went on and learned


def test_weight_decay_cannot_move_a_frozen_layer(toy_model, toy_data, tmp_path, monkeypatch):
    """A frozen parameter left in AdamW with a zero (None) gradient would be skipped, but one whose grad was
    zeroed would still decay: the freeze takes it out of the optimizer, so even a huge decay moves nothing."""
    seen = weights_at_each_step(monkeypatch)
    main(
        toy_args(
            toy_model,
            toy_data,
            tmp_path / "run",
            "--freeze-schedule",
            "0@0,2@6",
            "--weight-decay",
            "0.5",
            "--max-steps",
            "12",
        )
    )
    for name in seen[5]:
        if name.startswith("encoder."):
            assert torch.equal(seen[5][name][0], seen[11][name][0]), name


def test_a_schedule_and_a_fixed_depth_agree_up_to_the_first_event(toy_model, toy_data, tmp_path):
    common = ["--eval-every", "6", "--schedule", "constant"]
    run(toy_model, toy_data, tmp_path / "fixed", "--max-steps", "6", *common)
    run(toy_model, toy_data, tmp_path / "sched", "--max-steps", "12", *common, "--freeze-schedule", "0@0,1@6")
    fixed, sched = (
        json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0])
        for name in ("fixed", "sched")
    )
    assert (fixed.pop("freeze_depth"), sched.pop("freeze_depth")) == (0, 1)  # it froze after step 6 ...
    for record in (fixed, sched):  # the clock's fields differ from run to run
        record.pop("samples_per_second"), record.pop("wall_seconds"), record.pop("time")
    assert sched == fixed  # ... and nothing before it differed


def test_linear_schedule_with_the_cache_matches_without(dropout_free_model, toy_data, tmp_path, monkeypatch):
    monkeypatch.setattr(frozen_cache.REGISTRY, "stores", {})
    common = ["--freeze-schedule", "linear:0-2", "--eval-every", "12", "--cache-dir", "none"]
    plain = main(toy_args(dropout_free_model, toy_data, tmp_path / "plain", *common))
    cached = main(toy_args(dropout_free_model, toy_data, tmp_path / "cached", *common, "--cache-frozen"))
    assert cached["freeze_events"] == plain["freeze_events"] == [{"step": 9, "depth": -1}, {"step": 18, "depth": 1}, {"step": 27, "depth": 2}]  # fmt: skip
    assert cached["cache"]["frozen_blocks"] == 3 and cached["cache"]["grown_from"] == 2
    assert len(frozen_cache.REGISTRY.stores) == 1  # the grown caches before the last were let go
    a = load_file(str(tmp_path / "plain" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "cached" / "last" / "model.safetensors"))
    for name in a:  # same math; the cached suffix sees the prefix output padded with zeros, not pad rows
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4, msg=name)


def test_compiled_graphs_follow_the_growth(dropout_free_model, toy_data, tmp_path, monkeypatch):
    """The known trap: graphs compiled for the old trainable set. After the growth the compiled run must
    keep the newly frozen layer bit-still and end where eager does."""
    seen = weights_at_each_step(monkeypatch)
    common = ["--max-steps", "8", "--freeze-schedule", "0@0,1@4", "--max-length", "16", "--eval-every", "8"]
    eager = main(toy_args(dropout_free_model, toy_data, tmp_path / "eager", *common))
    compiled = main(toy_args(dropout_free_model, toy_data, tmp_path / "compiled", *common, "--compile"))
    layer0 = "encoder.layers.0.ffn_in.weight"
    steps = seen[8:]  # the compiled run's
    assert not torch.equal(steps[2][layer0][0], steps[3][layer0][0])
    assert all(torch.equal(steps[3][layer0][0], steps[i][layer0][0]) for i in range(4, 8))
    assert compiled["freeze_events"] == eager["freeze_events"] == [{"step": 4, "depth": 1}]
    assert compiled["metrics"]["loss"] == pytest.approx(eager["metrics"]["loss"], abs=1e-4)


def test_a_rounded_cache_is_computed_again_not_grown(toy_model, toy_data, tmp_path):
    summary = run(toy_model, toy_data, tmp_path / "bf16", "--freeze-schedule", "linear:0-1", "--cache-frozen",
                  "--cache-dtype", "bf16", "--cache-dir", "none", "--max-steps", "6")  # fmt: skip
    assert summary["cache"]["frozen_blocks"] == 2 and summary["cache"]["grown_from"] is None


def test_auto_freezes_on_a_flat_signal_and_records_it(toy_model, toy_data, tmp_path):
    # a tolerance of 1000% calls any change flat: a freeze every two windows of 3 steps, up to --max-freeze
    summary = run(
        toy_model, toy_data, tmp_path / "auto", "--freeze-schedule", "auto:3:10", "--max-freeze", "1"
    )
    assert summary["freeze_events"] == [{"step": 6, "depth": -1}, {"step": 12, "depth": 1}]
    assert (
        json.loads((tmp_path / "auto" / "summary.json").read_text())["freeze_events"]
        == summary["freeze_events"]
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--freeze", "bitfit", "--freeze-schedule", "linear:0-2"], "--freeze bitfit is not one"),
        (["--freeze-schedule", "linear:0-2", "--cache-frozen", "--frozen-dropout"], "--frozen-dropout keeps"),
        (["--freeze-schedule", "0@0,1@40"], "below the run's 36 steps"),
        (["--freeze-schedule", "linear:0-2", "--max-steps", "3"], "must increase"),
    ],
)
def test_cli_refuses_impossible_schedules_before_writing(toy_model, toy_data, tmp_path, flags, message):
    with pytest.raises(MinifreezeError, match=message):
        run(toy_model, toy_data, tmp_path / "x", *flags)
    assert not (tmp_path / "x").exists()  # refused before anything is written


# --------------------------------------------------------------------------- resume across a freeze event


@pytest.mark.parametrize(
    "schedule, cut_events",
    [
        # cut at step 12: one event (step 8) behind it, one (step 20) ahead
        (["0@0,-1@8,1@20", "--eval-every", "12"], [{"step": 8, "depth": -1}]),
        (
            ["0@0,-1@8,1@20", "--eval-every", "12", "--cache-frozen", "--cache-dir", "none"],
            [{"step": 8, "depth": -1}],
        ),
        # auto: cut at step 9, mid-history (one window mean since the step-6 freeze): the next freeze, at
        # step 12, needs the rule's state back from the checkpoint (without it, it would come at 15)
        (
            ["auto:3:10", "--freeze", "0", "--max-freeze", "1", "--eval-every", "9"],
            [{"step": 6, "depth": -1}],
        ),
    ],
    ids=["points", "points-cached", "auto"],
)
def test_resume_after_a_freeze_event_comes_back_at_its_depth_bit_identical(
    toy_model, toy_data, tmp_path, monkeypatch, schedule, cut_events
):
    args = ["--freeze-schedule", *schedule]
    whole = main(toy_args(toy_model, toy_data, tmp_path / "whole", *args))
    import minifreeze.train as train_module

    original, calls = train_module.log_and_save, []

    def stop_after_first_checkpoint(*a, **k):
        result = original(*a, **k)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(train_module, "log_and_save", stop_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        main(toy_args(toy_model, toy_data, tmp_path / "cut", *args))
    monkeypatch.setattr(train_module, "log_and_save", original)
    state = torch.load(tmp_path / "cut" / "last" / "state.pt", weights_only=True)
    assert state["progress"]["freeze_events"] == cut_events
    with pytest.raises(MinifreezeError, match="--freeze-schedule cannot change"):
        main(["--out", str(tmp_path / "cut"), "--resume", "--freeze-schedule", "linear:0-2"])
    resumed = main(["--out", str(tmp_path / "cut"), "--resume", "--no-progress"])
    assert resumed["freeze_events"] == whole["freeze_events"] and len(whole["freeze_events"]) == 2
    a = load_file(str(tmp_path / "whole" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "last" / "model.safetensors"))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert resumed["metrics"] == whole["metrics"]


# --------------------------------------------------------------------------- the grown cache


def encoded_toy(toy_model, toy_data):
    tokenizer = load_tokenizer(str(toy_model))
    dataset = data.load_dataset("toy", data_dir=str(toy_data))
    splits = {
        "train": data.encode_split(dataset.train, tokenizer, 64),
        "validation": data.encode_split(dataset.validation, tokenizer, 64),
    }
    return splits, tokenizer.pad_id


def test_a_grown_cache_equals_one_built_at_the_new_depth(toy_model, toy_data, monkeypatch):
    splits, pad_id = encoded_toy(toy_model, toy_data)
    model = load_model(toy_model, num_labels=2, reinit_head=True)
    build = dict(pad_id=pad_id, batch_size=16, device=torch.device("cpu"), cache_dir="none")
    monkeypatch.setattr(frozen_cache.REGISTRY, "stores", {})
    freeze(model, "2")
    direct = frozen_cache.build(model, splits, **build)
    monkeypatch.setattr(frozen_cache.REGISTRY, "stores", {})  # nothing to hit: the grown one is computed
    freeze(model, "-1")
    shallow = frozen_cache.build(model, splits, **build)
    freeze(model, "2")
    grown = frozen_cache.build(model, splits, **build, grow_from=shallow)
    assert grown.stats["computed"] == direct.stats["computed"] > 0 and grown.stats["grown_from"] == 1
    for name, split in splits.items():
        for indices in batching.sorted_batches(split.lengths, 16):
            batch = batching.collate(split, indices, pad_id, 8)
            assert torch.equal(grown.hidden(name, batch), direct.hidden(name, batch))  # bit for bit


# --------------------------------------------------------------------------- layer-wise lr decay


def test_lr_decay_gives_each_block_its_rate(toy_model):
    model = load_model(toy_model, num_labels=2, reinit_head=True)  # 2 layers
    plan = freeze(model, "0")
    optimizer = make_optimizer(model, plan, lr=1.0, weight_decay=0.01, lr_decay=0.5)
    lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    decays = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert optimizer.param_groups[0]["lr"] == 1.0  # the head's group comes first (what the log shows)
    assert lrs[id(named["head.classifier.weight"])] == 1.0
    assert lrs[id(named["encoder.layers.1.query.weight"])] == 0.5  # F^(L-l), L = 2, l = 1
    assert lrs[id(named["encoder.layers.0.ffn_out.bias"])] == 0.25
    assert lrs[id(named["encoder.embeddings.word.weight"])] == 0.125  # F^(L+1)
    assert decays[id(named["encoder.layers.0.ffn_out.bias"])] == 0.0
    assert decays[id(named["encoder.layers.0.ffn_out.weight"])] == 0.01
    assert len(lrs) == len(named)
    assert len(make_optimizer(model, plan, lr=1.0).param_groups) == 2  # no decay: the two usual groups


@pytest.mark.parametrize("value", ["0", "1.5", "-0.9"])
def test_lr_decay_out_of_range_fails(toy_model, toy_data, tmp_path, value):
    with pytest.raises(MinifreezeError, match=r"--lr-decay .*: must be in \(0, 1\]"):
        run(toy_model, toy_data, tmp_path / "x", "--lr-decay", value)


def test_lr_decay_trains_and_logs_the_head_lr(toy_model, toy_data, tmp_path):
    summary = run(toy_model, toy_data, tmp_path / "d", "--lr-decay", "0.9", "--schedule", "constant")
    records = [json.loads(line) for line in (tmp_path / "d" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["lr"] == pytest.approx(3e-3) and summary["best_metric"] > 0.8


# --------------------------------------------------------------------------- the sweep


def test_the_sweep_takes_schedules_beside_fixed_specs(toy_model, toy_data, tmp_path):
    from minifreeze import cli
    from minifreeze.sweep import SweepOptions, make_grid, run_sweep

    argv = [
        "--model",
        str(toy_model),
        "--dataset",
        "toy",
        "--data-dir",
        str(toy_data),
        "--out",
        str(tmp_path),
    ]
    argv += ["--epochs", "1", "--warmup", "0", "--lr", "3e-3", "--no-progress", "--train-sizes", "64"]
    argv += ["--freeze", "1", "--schedules", "linear:0-1; 0@0,-1@2", "--seeds", "0,", "--cache-frozen"]
    opts = cli.parse(SweepOptions, argv, "sweep", "test")
    grid = make_grid(opts, tmp_path)
    assert [(c.freeze, c.freeze_schedule, c.cache_frozen) for c in grid] == [
        ("1", None, True),
        ("0", "linear:0-1", True),  # the cache starts at the first freeze
        ("0", "0@0,-1@2", True),
    ]
    assert [Path(c.out).name for c in grid] == [
        "freeze1-n64-s0",
        "schedulelinear_0-1-n64-s0",
        "schedule0_0_-1_2-n64-s0",
    ]
    rows = run_sweep(opts, train.train)
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert [r["freeze"] for r in rows] == ["1", "schedule:linear:0-1", "schedule:0@0,-1@2"]
    assert "schedule:linear:0-1" in (tmp_path / "summary.md").read_text()
