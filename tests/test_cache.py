"""The frozen-prefix cache: same training as without it, a key that cannot go stale, clear refusals.

Exactness, measured on this CPU and stated here once:
  * The suffix's real-token outputs do not depend on what padded positions hold (their keys are masked,
    so they get softmax weight exactly 0 and gradient exactly 0): feeding the suffix zeros at padding
    instead of the prefix's padded outputs is bit-identical, loss and gradients included.
  * The prefix itself is not batch-invariant: the same example's output can differ by ~1 ulp depending
    on the padded batch it is computed in (BLAS picks other blockings for other shapes). A run without
    the cache already recomputes each example in a different batch every epoch, so a cached run can
    match it bit for bit only where the prefix is per-token (embeddings only: `--freeze -1`), and within
    float noise otherwise (observed: weights within 4e-6 after 36 steps at lr 3e-3; asserted: 2e-5).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch._dynamo
import torch._inductor.config
from safetensors.torch import load_file

import minifreeze
from minifreeze import MinifreezeError, batching, data
from minifreeze import cache as frozen_cache
from minifreeze.freezing import freeze
from minifreeze.train import main


@pytest.fixture(autouse=True)
def fresh_registry():
    """Each test starts with an empty in-process registry (runs inside one test share it on purpose)."""
    frozen_cache.REGISTRY.clear()
    yield
    frozen_cache.REGISTRY.clear()


def run(toy_model, toy_data, out, *extra, epochs: int = 3):
    args = [
        *("--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data), "--out", str(out)),
        *("--epochs", str(epochs), "--batch-size", "16", "--lr", "3e-3", "--warmup", "0"),
        *("--no-progress", "--train-size", "0"),
        *extra,
    ]
    return main(args)


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "last" / "model.safetensors"))


def toy_setup(toy_model, toy_data, spec="1", max_length=64, data_dir=None):
    model = minifreeze.load_model(toy_model, num_labels=2, reinit_head=True)
    freeze(model, spec)
    tokenizer = minifreeze.load_tokenizer(str(toy_model))
    dataset = data.load_dataset("toy", data_dir=data_dir or toy_data)
    splits = {
        "train": data.encode_split(dataset.train, tokenizer, max_length),
        "validation": data.encode_split(dataset.validation, tokenizer, max_length),
    }
    return model, tokenizer, splits


def build(model, tokenizer, splits, cache_dir, **kwargs):
    return frozen_cache.build(
        model, splits, pad_id=tokenizer.pad_id, batch_size=32, device=torch.device("cpu"),
        cache_dir=str(cache_dir), **kwargs,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- (1) same run


def test_embeddings_only_prefix_is_bit_identical(toy_model, toy_data, tmp_path):
    """A per-token prefix (embeddings only) is batch-invariant: the cached run is the same run, bit for bit."""
    plain = run(toy_model, toy_data, tmp_path / "plain", "--freeze", "-1")
    cached = run(
        toy_model, toy_data, tmp_path / "cached", "--freeze", "-1", "--cache-frozen",
        "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    wa, wb = weights(tmp_path / "plain"), weights(tmp_path / "cached")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert plain["metrics"] == cached["metrics"]
    assert cached["cache"]["computed"] == cached["cache"]["examples"] == 256 and cached["cache"]["hits"] == 0
    assert plain["cache"] is None


def test_cached_run_matches_plain_run_and_is_reused(toy_model, toy_data, tmp_path):
    """Depth 1, fp32, dropout off in the prefix (on in the suffix): same weights and metrics within float noise.

    Then another seed in the same process hits every example in memory, and after forgetting the
    process's registry a third run hits every example on disk.
    """
    cache = ("--cache-frozen", "--cache-dir", str(tmp_path / "cache"))
    plain = run(toy_model, toy_data, tmp_path / "plain", "--freeze", "1")
    cached = run(toy_model, toy_data, tmp_path / "cached", "--freeze", "1", *cache)
    wa, wb = weights(tmp_path / "plain"), weights(tmp_path / "cached")
    for name in wa:  # not bit-identical: the prefix is not batch-invariant (module docstring)
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=2e-5)
    assert cached["metrics"]["accuracy"] == plain["metrics"]["accuracy"]
    assert cached["metrics"]["loss"] == pytest.approx(plain["metrics"]["loss"], abs=1e-5)
    saved = json.loads((tmp_path / "cached" / "summary.json").read_text())["cache"]
    assert saved["computed"] == 256 and saved["in_memory"] and saved["bytes"] > 0

    again = run(toy_model, toy_data, tmp_path / "seed1", "--freeze", "1", "--seed", "1", *cache, epochs=1)
    assert again["cache"]["hits"] == 256 and again["cache"]["computed"] == 0
    frozen_cache.REGISTRY.clear()
    from_disk = run(toy_model, toy_data, tmp_path / "disk", "--freeze", "1", "--seed", "1", *cache, epochs=1)
    assert from_disk["cache"]["hits"] == 256 and from_disk["cache"]["key"] == cached["cache"]["key"]
    assert from_disk["metrics"] == again["metrics"]


def test_suffix_ignores_what_padding_holds(toy_model, toy_data):
    """Zeros at padded positions (the cache) vs the prefix's own padded outputs: bit-identical loss and grads."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    model.train()
    lengths = splits["train"].lengths
    indices = [int(np.argmax(lengths)), int(np.argmin(lengths)), 3, 4, 5]
    batch = batching.collate(splits["train"], indices, tokenizer.pad_id)
    assert batch.num_real_tokens < batch.num_padded_tokens
    prefix = model.encoder.prefix(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    results = []
    for hidden in (prefix, prefix * batch.attention_mask[..., None]):
        torch.manual_seed(0)  # the suffix's dropout draws the same masks both times
        loss, logits = model.head.loss(
            model.encoder.suffix(hidden, batch.attention_mask), batch.attention_mask, batch.labels
        )
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
        results.append((loss, logits, grads))
    (la, ga, gra), (lb, gb, grb) = results
    assert torch.equal(la, lb) and torch.equal(ga, gb)
    assert all(torch.equal(x, y) for x, y in zip(gra, grb))


def test_cached_rows_are_the_prefix_output(toy_model, toy_data, tmp_path):
    """What `hidden()` hands the suffix is the prefix output at real tokens and zeros at padding."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    cache = build(model, tokenizer, splits, tmp_path, dtype="fp32")
    batch = batching.collate(splits["validation"], list(range(0, 40, 3)), tokenizer.pad_id)
    mask = batch.attention_mask[..., None].bool()
    with torch.no_grad():
        want = model.encoder.prefix(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    got = cache.hidden("validation", batch)
    assert got.shape == want.shape and not got.masked_select(~mask).any()
    torch.testing.assert_close(got * mask, want * mask, rtol=0, atol=1e-5)  # ~1 ulp batch variance
    half = build(model, tokenizer, splits, tmp_path, dtype="bf16").hidden("validation", batch)
    torch.testing.assert_close(half * mask, want * mask, rtol=2**-7, atol=1e-2)  # bf16 keeps 8 bits


def test_shards_move_to_the_training_device_when_they_fit(toy_model, toy_data, tmp_path, monkeypatch):
    """On CUDA an in-memory cache that fits in a quarter of the free GPU memory is moved there once, so
    batches are assembled on the device. Here: the decision with a faked free-memory query, and the
    forced move on CPU, which must hand the suffix exactly the same rows."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    cache = build(model, tokenizer, splits, tmp_path / "a")
    moved = build(model, tokenizer, splits, tmp_path / "b", on_device=True)
    batch = batching.collate(splits["train"], list(range(0, 60, 5)), tokenizer.pad_id)
    assert torch.equal(cache.hidden("train", batch), moved.hidden("train", batch))
    assert moved.stats["device"] == "cpu" and "in cpu memory" in moved.report()
    free = {"bytes": 4 * cache.stats["bytes"]}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free["bytes"], 2 * free["bytes"]))
    assert frozen_cache.gpu_can_hold(cache.stats["bytes"], torch.device("cuda"))
    free["bytes"] -= 8
    assert not frozen_cache.gpu_can_hold(cache.stats["bytes"], torch.device("cuda"))


def test_amp_bf16_runs_from_the_cache(toy_model, toy_data, tmp_path):
    cache = ("--cache-frozen", "--cache-dir", str(tmp_path / "cache"), "--cache-dtype", "bf16")
    amp = run(toy_model, toy_data, tmp_path / "amp", "--freeze", "1", "--amp", "bf16", *cache)
    assert amp["best_metric"] >= 0.8 and amp["cache"]["dtype"] == "bf16"


@pytest.fixture
def fresh_dynamo():
    """Compiled graphs, guards and graph counters are process-wide: later tests start from none of ours."""
    yield
    torch._dynamo.reset()


def test_compiled_suffix_matches_eager(toy_model, toy_data, tmp_path, fresh_dynamo):
    """--compile compiles the suffix path (training loss included); inductor's own dropout RNG would
    draw other masks than eager, so the comparison asks it to fall back to eager's RNG.

    Through inductor's own `config.patch`, which restores the option on exit: pytest's monkeypatch writes
    the module `__dict__` and its undo then *deletes* the config entry, which broke every later compile test
    ("torch._inductor.config.fallback_random does not exist")."""
    short = ("--freeze", "1", "--max-length", "16", "--cache-frozen", "--cache-dir", str(tmp_path / "cache"))
    with torch._inductor.config.patch(fallback_random=True):
        # compiled graphs stay padded (their shapes are static): eager too, so dropout draws the same masks
        eager = run(toy_model, toy_data, tmp_path / "eager", *short, "--packing", "off", epochs=1)
        compiled = run(toy_model, toy_data, tmp_path / "compiled", *short, "--compile", epochs=1)
    assert not torch._inductor.config.fallback_random
    assert compiled["compiled_graphs"] >= 1 and compiled["cache"]["hits"] == compiled["cache"]["examples"]
    assert compiled["metrics"]["loss"] == pytest.approx(eager["metrics"]["loss"], abs=2e-4)


def test_the_compiled_test_leaves_inductor_config_as_it_found_it():
    """Runs after the compiled test (file order): the option it set still exists, back at its default
    (with monkeypatch it was gone: reading it raised AttributeError in every later compile test)."""
    assert torch._inductor.config.fallback_random is False


def test_larger_than_memory_bound_is_memory_mapped(toy_model, toy_data, tmp_path):
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    in_memory = build(model, tokenizer, splits, tmp_path / "a")
    frozen_cache.REGISTRY.clear()
    mapped = build(model, tokenizer, splits, tmp_path / "b", max_gb=0)
    assert in_memory.stats["in_memory"] and not mapped.stats["in_memory"]
    batch = batching.collate(splits["train"], list(range(16)), tokenizer.pad_id)
    assert torch.equal(in_memory.hidden("train", batch), mapped.hidden("train", batch))
    frozen_cache.REGISTRY.clear()
    with pytest.raises(MinifreezeError, match="raise --cache-max-gb or give a --cache-dir"):
        build(model, tokenizer, splits, "none", max_gb=0)


# ------------------------------------------------------------------------------------------ (2) stale keys


def test_changed_inputs_do_not_hit_the_old_cache(toy_model, toy_data, tmp_path):
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    first = build(model, tokenizer, splits, tmp_path)
    n = first.stats["examples"]
    assert first.stats["computed"] == n and build(model, tokenizer, splits, tmp_path).stats["hits"] == n

    deeper, _, _ = toy_setup(toy_model, toy_data, "2")
    assert build(deeper, tokenizer, splits, tmp_path).stats["computed"] == n
    for other in ("bf16", "fp16"):
        assert build(model, tokenizer, splits, tmp_path, dtype=other).stats["computed"] == n
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert build(model, tokenizer, splits, tmp_path).stats["computed"] == n
    bias = model.encoder.layers[0].ffn_out.bias
    original = bias.detach().clone()
    with torch.no_grad():
        bias[0] += 1e-3  # other weights (a frozen tensor)
    assert build(model, tokenizer, splits, tmp_path).stats["computed"] == n
    with torch.no_grad():
        bias.copy_(original)  # exactly (x + 1e-3 - 1e-3 need not be x in floats)
    model.encoder.set_textbook_attention(True)
    assert build(model, tokenizer, splits, tmp_path).stats["computed"] == n
    model.encoder.set_textbook_attention(False)
    assert build(model, tokenizer, splits, tmp_path).stats["hits"] == n  # back to the first key


def test_other_max_length_and_edited_data_miss_exactly_the_changed_examples(toy_model, toy_data, tmp_path):
    """Examples are keyed by their token ids: what changed misses, what did not is (correctly) reused."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    build(model, tokenizer, splits, tmp_path)
    _, _, short = toy_setup(toy_model, toy_data, "1", max_length=8)
    truncated = sum(int(n) > 8 for s in splits.values() for n in s.lengths)
    assert 0 < truncated < 256
    cache = build(model, tokenizer, short, tmp_path)
    assert cache.stats["computed"] == truncated
    batch = batching.collate(short["train"], list(range(16)), tokenizer.pad_id)
    with torch.no_grad():
        want = model.encoder.prefix(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    mask = batch.attention_mask[..., None].bool()
    torch.testing.assert_close(cache.hidden("train", batch) * mask, want * mask, rtol=0, atol=1e-5)

    edited = tmp_path / "edited"
    (edited / "toy").mkdir(parents=True)
    (edited / "toy" / "validation.tsv").write_text((toy_data / "toy" / "validation.tsv").read_text())
    lines = (toy_data / "toy" / "train.tsv").read_text().splitlines(keepends=True)
    lines[5] = "the ending was superb and the plot lovely\t1\n"
    (edited / "toy" / "train.tsv").write_text("".join(lines))
    _, _, changed = toy_setup(toy_model, toy_data, "1", data_dir=edited)
    assert build(model, tokenizer, changed, tmp_path).stats["computed"] == 1


def test_other_model_weights_miss(toy_model, toy_data, tmp_path):
    """A model with the same architecture but other (random) weights shares no key with the toy model."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    build(model, tokenizer, splits, tmp_path)
    other = minifreeze.random_model(model.config, seed=5)
    freeze(other, "1")
    assert build(other, tokenizer, splits, tmp_path).stats["computed"] == 256


# ------------------------------------------------------------------------------------------- (3) refusals


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--freeze", "1", "--frozen-dropout"), "drop --frozen-dropout or --cache-frozen"),
        (("--freeze", "0"), "--freeze 0 leaves no frozen prefix"),
        (("--freeze", "bitfit"), "--freeze bitfit leaves no frozen prefix"),
        (("--freeze", "random:0.5"), "--freeze random:0.5 leaves no frozen prefix"),
        (("--freeze", r"regex:embeddings|head"), "leaves no frozen prefix.*use --freeze N"),
    ],
)
def test_refuses_where_the_cache_would_be_wrong(toy_model, toy_data, tmp_path, extra, message):
    with pytest.raises(MinifreezeError, match=message) as err:
        run(
            toy_model,
            toy_data,
            tmp_path / "run",
            *extra,
            "--cache-frozen",
            "--cache-dir",
            str(tmp_path),
            epochs=1,
        )
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------ (4) looking after the disk


def test_list_clear_and_prune_the_disk_cache(toy_model, toy_data, tmp_path, capsys):
    """Two keys on disk; prune removes the least recently used first; clear takes a key prefix."""
    from minifreeze.cache import __main__ as cache_admin

    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    build(model, tokenizer, splits, tmp_path, dtype="fp32")
    build(model, tokenizer, splits, tmp_path, dtype="bf16")  # another storage dtype: another key
    root = tmp_path / "frozen"
    old, new = sorted(root.iterdir())
    os.utime(old, (1e9, 1e9))  # used long ago
    admin = lambda *argv: cache_admin.main([*argv, "--cache-dir", str(tmp_path)])  # noqa: E731
    listed = admin("list")
    examples = len(splits["train"]) + len(splits["validation"])
    assert [k.folder for k in listed] == [old, new]
    assert all(k.examples == examples and k.bytes > 0 for k in listed)
    assert "bert L2" in capsys.readouterr().out
    (new / ".tmp-killed-build").mkdir()  # a build killed half-way, long ago
    os.utime(new / ".tmp-killed-build", (1e9, 1e9))

    keep = (listed[1].bytes + 1) / 2**30
    assert [k.folder for k in admin("prune", "--max-gb", str(keep), "--dry-run")] == [old] and old.is_dir()
    assert [k.folder for k in admin("prune", "--max-gb", str(keep))] == [old]
    assert not old.exists() and new.is_dir() and not (new / ".tmp-killed-build").exists()
    assert admin("clear", new.name[:6]) and not new.exists()
    # a fresh process (empty in-process registry) recomputes what was cleared
    frozen_cache.REGISTRY.clear()
    assert build(model, tokenizer, splits, tmp_path, dtype="fp32").stats["computed"] == examples


@pytest.mark.parametrize(
    "argv, message",
    [
        (["clear", "ffff"], "no key starts with 'ffff'"),
        (["prune"], "prune needs --max-gb"),
        (["list", "abc"], "list takes no keys"),
        (["wipe"], "unknown command 'wipe'"),
        (["list", "--cache-dir", "none"], "memory-only cache"),
    ],
)
def test_cache_admin_bad_input_is_one_line(toy_model, toy_data, tmp_path, argv, message):
    from minifreeze.cache import __main__ as cache_admin

    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    build(model, tokenizer, splits, tmp_path)
    argv = argv if "--cache-dir" in argv else [*argv, "--cache-dir", str(tmp_path)]
    with pytest.raises(MinifreezeError, match=message) as err:
        cache_admin.main(argv)
    assert "\n" not in str(err.value)
