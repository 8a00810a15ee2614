"""The on-disk token cache: same ids as encode_split, reused on a hit, rebuilt on any change or damage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import minifreeze
from minifreeze import data, token_cache
from minifreeze.train import main

TEXTS = ["good great film", "bad awful movie", "a film", "great great great good"]
PAIRS = ["bad movie", "good", "awful awful", "film"]


def split(texts=TEXTS, pairs=None):
    return data.Split(list(texts), [i % 2 for i in range(len(texts))], None if pairs is None else list(pairs))


def same(a: data.EncodedSplit, b: data.EncodedSplit) -> None:
    assert a.input_ids == b.input_ids and a.token_type_ids == b.token_type_ids and a.labels == b.labels
    assert np.array_equal(a.lengths, b.lengths) and a.lengths.dtype == b.lengths.dtype


def counting(tokenizer, calls):
    real = tokenizer.encode

    def encode(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    tokenizer.encode = encode
    return tokenizer


@pytest.mark.parametrize("pairs", [None, PAIRS])
@pytest.mark.parametrize("types", [True, False])
def test_equal_to_encode_split_and_hit_skips_tokenizer(toy_model, tmp_path, pairs, types):
    tokenizer = minifreeze.load_tokenizer(str(toy_model))
    tokenizer.has_token_types = types
    calls = []
    counting(tokenizer, calls)
    expected = data.encode_split(split(pairs=pairs), tokenizer, 16)
    first = token_cache.encode_cached(split(pairs=pairs), tokenizer, 16, str(tmp_path))
    second = token_cache.encode_cached(split(pairs=pairs), tokenizer, 16, str(tmp_path))
    same(first, expected)
    same(second, expected)
    assert len(calls) == 2  # encode_split + the first (miss); the second call is a hit
    assert len(list((tmp_path / "tokens").glob("*.npz"))) == 1


def test_labels_come_from_the_split(toy_model, tmp_path):
    tokenizer = minifreeze.load_tokenizer(str(toy_model))
    token_cache.encode_cached(split(), tokenizer, 16, str(tmp_path))
    relabelled = data.Split(list(TEXTS), [1, 1, 0, 0])
    assert token_cache.encode_cached(relabelled, tokenizer, 16, str(tmp_path)).labels == [1, 1, 0, 0]


def test_changes_miss(toy_model, tmp_path):
    tokenizer = minifreeze.load_tokenizer(str(toy_model))
    other_folder = tmp_path / "other-model"
    shutil.copytree(toy_model, other_folder)
    vocab = (other_folder / "vocab.txt").read_text().split("\n")
    vocab[5], vocab[6] = vocab[6], vocab[5]  # same size, two word ids swapped
    (other_folder / "vocab.txt").write_text("\n".join(vocab))
    other = minifreeze.load_tokenizer(str(other_folder))
    base = token_cache.cache_key(split(), tokenizer, 16)
    assert token_cache.cache_key(split(), tokenizer, 16) == base
    edited = [*TEXTS[:-1], TEXTS[-1] + " film"]
    assert token_cache.cache_key(split(edited), tokenizer, 16) != base
    assert token_cache.cache_key(split(pairs=PAIRS), tokenizer, 16) != base
    assert token_cache.cache_key(split(), tokenizer, 8) != base
    assert token_cache.cache_key(split(), other, 16) != base
    # the miss gives the other tokenizer's ids, not the stored ones
    token_cache.encode_cached(split(), tokenizer, 16, str(tmp_path / "c"))
    same(
        token_cache.encode_cached(split(), other, 16, str(tmp_path / "c")),
        data.encode_split(split(), other, 16),
    )


def test_failed_write_leaves_no_file(toy_model, tmp_path, monkeypatch):
    tokenizer = minifreeze.load_tokenizer(str(toy_model))

    def broken(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(token_cache.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        token_cache.encode_cached(split(), tokenizer, 16, str(tmp_path))
    assert list((tmp_path / "tokens").iterdir()) == []


def test_cache_dir_none_tokenizes_in_memory(toy_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    tokenizer = minifreeze.load_tokenizer(str(toy_model))
    same(token_cache.encode_cached(split(), tokenizer, 16, "none"), data.encode_split(split(), tokenizer, 16))
    assert list(tmp_path.rglob("*.npz")) == []


def test_train_twice_with_cache_tokens(toy_model, toy_data, tmp_path):
    cache = tmp_path / "cache"
    args = ["--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data)]
    args += ["--epochs", "1", "--batch-size", "16", "--warmup", "0", "--no-progress", "--train-size", "0"]
    args += ["--cache-tokens", "--cache-dir", str(cache), "--seed", "3"]
    main([*args, "--out", str(tmp_path / "a")])
    stored = sorted(p.name for p in (cache / "tokens").glob("*.npz"))
    assert len(stored) == 2  # train and validation
    main([*args, "--out", str(tmp_path / "b")])
    assert sorted(p.name for p in (cache / "tokens").glob("*.npz")) == stored
    a, b = (json.loads((tmp_path / x / "summary.json").read_text()) for x in "ab")
    assert a["metrics"] == b["metrics"] and a["best_metric"] == b["best_metric"]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_file_is_rebuilt_with_a_warning(toy_model, tmp_path, capsys, damage):
    tokenizer = minifreeze.load_tokenizer(str(toy_model))
    expected = token_cache.encode_cached(split(), tokenizer, 16, str(tmp_path))
    (path,) = (tmp_path / "tokens").glob("*.npz")
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:  # one byte of the stored ids (np.savez stores uncompressed: the ids sit after their header)
        ids = np.asarray([i for row in expected.input_ids for i in row], dtype=np.int32).tobytes()
        at = bytes(raw).index(ids) + 2
        raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    capsys.readouterr()
    again = token_cache.encode_cached(split(), tokenizer, 16, str(tmp_path))
    same(again, expected)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err and "tokenizing again" in err
    assert token_cache._read(path, split(), tokenizer.has_token_types) is not None  # rebuilt, whole


def test_the_key_ignores_what_the_last_encode_left_set(toy_model):
    """`encode` sets truncation on the backend per call: a key taken after it equals one taken before."""
    tokenizer = minifreeze.load_tokenizer(str(toy_model))
    before = token_cache.cache_key(split(), tokenizer, 16)
    tokenizer.backend.enable_truncation(5)
    assert token_cache.cache_key(split(), tokenizer, 16) == before
