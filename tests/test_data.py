"""Data layer: every loader format, the Hub path (offline, from a cache the test builds), every bad-input
message, split/subset determinism and stratification, and batching (padding, coverage, waste)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _hubcache import make_hub_cache, use_offline_cache

from minifreeze.batching import (
    Batch,
    collate,
    length_grouped_batches,
    random_batches,
    real_token_fraction,
    sorted_batches,
)
from minifreeze.data import (
    DATA_DIR_ENV,
    EncodedSplit,
    Split,
    encode_split,
    load_dataset,
    load_split,
    stratified_split,
    stratified_subset,
)
from minifreeze.errors import MinifreezeError

TRAIN = [("a fine film", 1), ("dull and slow", 0), ("loved it", 1), ("not good", 0), ("great, truly", 1)]
TRAIN += [("bad acting", 0), ("superb", 1), ("boring", 0), ("a joy", 1), ("awful", 0)]
VALIDATION = [("pretty good", 1), ("meh, bad", 0)]


def write_rows(path: Path, header: list[str], rows: list[tuple]) -> Path:
    """Write rows in the format the extension names (the loader picks its reader the same way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tsv", ".csv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t" if path.suffix == ".tsv" else ",", lineterminator="\n")
            writer.writerows([header, *rows])
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(header, row))) + "\n" for row in rows), encoding="utf-8")
    else:
        pq.write_table(pa.table({name: [row[i] for row in rows] for i, name in enumerate(header)}), path)
    return path


def parquet_bytes(columns: dict[str, list]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue().to_pybytes()


def load_error(path, load=load_dataset, **kwargs) -> str:
    with pytest.raises(MinifreezeError) as error:
        load(path, **kwargs)
    message = str(error.value)
    assert "\n" not in message, "user-facing errors are one line"
    return message


# ----------------------------------------------------------------------------------------------------
# Local files


@pytest.mark.parametrize("ext", [".tsv", ".csv", ".jsonl", ".parquet"])
def test_every_format_loads_a_train_validation_folder(tmp_path, ext):
    write_rows(tmp_path / f"train{ext}", ["sentence", "label"], TRAIN)
    write_rows(tmp_path / f"validation{ext}", ["sentence", "label"], VALIDATION)
    data = load_dataset(tmp_path)
    assert data.train.texts == [t for t, _ in TRAIN] and data.train.labels == [y for _, y in TRAIN]
    assert data.validation.texts == [t for t, _ in VALIDATION] and data.validation.labels == [1, 0]
    assert data.test is None and data.train.pairs is None
    assert data.id2label == {0: "0", 1: "1"} and data.num_labels == 2
    assert data.train.source.endswith(f"train{ext}")


@pytest.mark.parametrize("ext", [".tsv", ".csv", ".jsonl", ".parquet"])
def test_a_single_file_is_train_split_into_train_and_validation(tmp_path, ext):
    file = write_rows(tmp_path / f"reviews{ext}", ["text", "label"], TRAIN * 4)
    data = load_dataset(file)
    assert len(data.train) == 32 and len(data.validation) == 8
    assert Counter(data.validation.labels) == {0: 4, 1: 4}  # stratified
    assert "held out" in data.validation.source and data.name == "reviews"
    again = load_dataset(file)
    assert again.validation.texts == data.validation.texts and again.train.texts == data.train.texts
    other_seed = load_dataset(file, split_seed=1, validation_fraction=0.25)
    assert len(other_seed.validation) == 10


def test_csv_quoting_and_string_labels(tmp_path):
    rows = [('he said "hi", then left', "pos"), ("line one\nline two", "neg"), ("plain", "neutral")]
    write_rows(tmp_path / "train.csv", ["review", "labels"], rows)
    write_rows(tmp_path / "validation.csv", ["review", "labels"], [("ok", "neutral"), ("x", "pos")])
    data = load_dataset(tmp_path)
    assert data.train.texts == [r[0] for r in rows]
    assert data.id2label == {0: "neg", 1: "neutral", 2: "pos"}  # sorted class names
    assert data.train.labels == [2, 0, 1] and data.validation.labels == [1, 2]


def test_tsv_reads_quoted_fields_like_the_shared_rotten_tomatoes(tmp_path):
    """A TSV whose every quote sits in a whole quoted field (as pandas writes it) is unquoted; one stray
    quote anywhere means quotes are text, everywhere in the file (see test_data_inputs.py)."""
    write_rows(tmp_path / "validation.tsv", ["sentence", "label"], VALIDATION)
    quoted = 'sentence\tlabel\n"a big "" shut up "" to them"\t1\nno quotes here\t0\n"""x"" y"\t1\n'
    (tmp_path / "train.tsv").write_text(quoted, encoding="utf-8")
    assert load_dataset(tmp_path).train.texts == ['a big " shut up " to them', "no quotes here", '"x" y']
    (tmp_path / "train.tsv").write_text(quoted + 'no "quotes" here\t0\n', encoding="utf-8")
    texts = load_dataset(tmp_path).train.texts
    assert texts == ['"a big "" shut up "" to them"', "no quotes here", '"""x"" y"', 'no "quotes" here']


def test_pairs_and_explicit_columns(tmp_path):
    rows = [(f"premise {i}", f"hypothesis {i}", ["yes", "no"][i % 2], i) for i in range(10)]
    write_rows(tmp_path / "train.jsonl", ["p", "h", "gold", "idx"], rows)
    data = load_dataset(tmp_path, text_column="p", text_pair_column="h", label_column="gold")
    together = sorted(zip(data.train.texts + data.validation.texts, data.train.pairs + data.validation.pairs))
    assert together == sorted((r[0], r[1]) for r in rows)
    assert data.id2label == {0: "no", 1: "yes"}


def test_labelled_test_split_is_kept_and_unlabelled_one_dropped(tmp_path):
    write_rows(tmp_path / "a" / "train.tsv", ["sentence", "label"], TRAIN)
    write_rows(tmp_path / "a" / "validation.tsv", ["sentence", "label"], VALIDATION)
    write_rows(tmp_path / "a" / "test.tsv", ["sentence", "label"], [("t1", 0), ("t2", 1)])
    assert load_dataset(tmp_path / "a").test.labels == [0, 1]
    (tmp_path / "a" / "test.tsv").unlink()
    write_rows(tmp_path / "a" / "test.tsv", ["sentence", "label"], [("t1", -1), ("t2", -1)])
    assert load_dataset(tmp_path / "a").test is None
    (tmp_path / "a" / "test.tsv").unlink()
    write_rows(tmp_path / "a" / "test.tsv", ["idx", "sentence"], [(0, "t1")])
    assert load_dataset(tmp_path / "a").test is None


def test_named_dataset_from_data_dir_argument_and_environment(tmp_path, monkeypatch):
    write_rows(tmp_path / "cola" / "train.tsv", ["sentence", "label"], TRAIN)
    write_rows(tmp_path / "cola" / "validation.tsv", ["sentence", "label"], VALIDATION)
    data = load_dataset("cola", data_dir=tmp_path)
    assert data.id2label == {0: "unacceptable", 1: "acceptable"} and data.name == "cola"
    assert len(data.train) == 10 and len(data.validation) == 2
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert load_dataset("CoLA").validation.texts == data.validation.texts
    write_rows(tmp_path / "mytask" / "train.csv", ["text", "label"], TRAIN)  # any name works in a data dir
    assert load_dataset("mytask").num_labels == 2


# ----------------------------------------------------------------------------------------------------
# Bad input: one line that names the file, the line (header = line 1) and the fix


def test_missing_column_lists_the_columns_found(tmp_path):
    file = write_rows(tmp_path / "train.tsv", ["body", "label"], TRAIN)
    message = load_error(file)
    assert str(file) in message and "no text column" in message and "columns found: body, label" in message
    assert "--text-column" in message
    assert "no label column 'y'" in load_error(file, text_column="body", label_column="y")


def test_negative_label_is_out_of_range_with_its_line(tmp_path):
    file = write_rows(tmp_path / "train.tsv", ["sentence", "label"], [*TRAIN[:3], ("oops", -1)])
    assert f"{file}, line 5: label -1 is out of range" in load_error(file)


def test_named_dataset_label_outside_its_classes(tmp_path):
    write_rows(tmp_path / "sst2" / "train.tsv", ["sentence", "label"], [*TRAIN, ("three?", 2)])
    assert "line 12: label 2 is out of range (0..1)" in load_error("sst2", data_dir=tmp_path)


def test_validation_label_never_seen_in_train(tmp_path):
    write_rows(tmp_path / "train.tsv", ["sentence", "label"], TRAIN)
    val = write_rows(tmp_path / "validation.tsv", ["sentence", "label"], [("fine", 1), ("new class", 2)])
    assert f"{val}, line 3: label 2 never appears in the training data (0, 1)" in load_error(tmp_path)


def test_integer_and_name_labels_do_not_mix(tmp_path):
    file = write_rows(tmp_path / "train.csv", ["text", "label"], [("a", "0"), ("b", "1"), ("c", "pos")])
    assert f"{file}, line 4: label 'pos' mixes with earlier integers" in load_error(file)
    jsonl = write_rows(tmp_path / "train.jsonl", ["text", "label"], [("a", "neg"), ("b", None)])
    assert f"{jsonl}, line 2: missing label" in load_error(jsonl)


def test_empty_files_and_header_only_files(tmp_path):
    empty = tmp_path / "train.tsv"
    empty.write_bytes(b"")
    assert f"{empty} is empty" in load_error(empty)
    header_only = write_rows(tmp_path / "h" / "train.csv", ["text", "label"], [])
    assert f"{header_only} has no examples" in load_error(header_only)
    blank_jsonl = tmp_path / "j" / "train.jsonl"
    blank_jsonl.parent.mkdir()
    blank_jsonl.write_text("\n\n", encoding="utf-8")
    assert f"{blank_jsonl} has no examples" in load_error(blank_jsonl)
    no_rows = write_rows(tmp_path / "p" / "train.parquet", ["text", "label"], [])
    assert f"{no_rows} has no examples" in load_error(no_rows)


def test_empty_text_names_its_line(tmp_path):
    file = write_rows(tmp_path / "train.tsv", ["sentence", "label"], [("fine", 1), ("   ", 0)])
    assert f"{file}, line 3: 'sentence' is empty" in load_error(file)
    jsonl = write_rows(tmp_path / "train.jsonl", ["text", "label"], [("fine", 1), (None, 0)])
    assert f"{jsonl}, line 2: 'text' is empty" in load_error(jsonl)
    parquet = write_rows(tmp_path / "train.parquet", ["text", "label"], [("fine", 1), ("ok", 0), ("", 1)])
    assert f"{parquet}, row 3: 'text' is empty" in load_error(parquet)


def test_non_utf8_text_names_its_line(tmp_path):
    file = tmp_path / "train.tsv"
    file.write_bytes(b"sentence\tlabel\ngood\t1\n" + "caf\xe9\t0\n".encode("latin-1"))
    assert f"{file}, line 3: not valid UTF-8 (byte 0xe9); re-save the file as UTF-8" in load_error(file)


def test_wrong_field_count_and_bad_json(tmp_path):
    tsv = tmp_path / "train.tsv"
    tsv.write_text("sentence\tlabel\ngood\t1\nstray\ttab\t0\n", encoding="utf-8")
    assert f"{tsv}, line 3: 3 fields but the header has 2" in load_error(tsv)
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text('{"text": "a", "label": 0}\n\n{"text": "b", label: 1}\n', encoding="utf-8")
    assert f"{jsonl}, line 3: not valid JSON" in load_error(jsonl)


def test_unknown_dataset_extension_and_unreadable_files(tmp_path):
    message = load_error(
        "no_such_dataset", data_dir=tmp_path
    )  # a data dir that exists, with or without ../shared
    assert "unknown dataset 'no_such_dataset'" in message and "sst2" in message and DATA_DIR_ENV in message
    txt = tmp_path / "train.txt"
    txt.write_text("hello\n", encoding="utf-8")
    assert "unsupported file type '.txt'; use .tsv, .csv, .jsonl or .parquet" in load_error(txt)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    assert f"cannot read {broken} as parquet" in load_error(broken)
    assert "no such file or folder" in load_error(str(tmp_path / "missing.tsv"))


def test_folder_without_train_file_and_bad_data_dir(tmp_path):
    write_rows(tmp_path / "d" / "validation.tsv", ["sentence", "label"], VALIDATION)
    assert "has no train file (found: validation.tsv)" in load_error(tmp_path / "d")
    assert "is not a folder" in load_error("sst2", data_dir=tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------------
# The Hub, offline, from a cache built here


def sst2_hub_files() -> dict[str, bytes]:
    train = {"idx": list(range(10)), "sentence": [t for t, _ in TRAIN], "label": [y for _, y in TRAIN]}
    validation = {"idx": [0, 1], "sentence": [t for t, _ in VALIDATION], "label": [1, 0]}
    test = {"idx": [0, 1, 2], "sentence": ["u1", "u2", "u3"], "label": [-1, -1, -1]}  # GLUE hides test labels
    return {
        "data/train-00000-of-00001.parquet": parquet_bytes(train),
        "data/validation-00000-of-00001.parquet": parquet_bytes(validation),
        "data/test-00000-of-00001.parquet": parquet_bytes(test),
        "README.md": b"# sst2\n",
    }


def test_named_dataset_from_an_offline_hub_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    make_hub_cache(tmp_path / "hub", "stanfordnlp/sst2", sst2_hub_files(), repo_type="dataset")
    use_offline_cache(monkeypatch, tmp_path / "hub")
    data = load_dataset("sst2")
    assert data.train.texts == [t for t, _ in TRAIN] and data.validation.labels == [1, 0]
    assert data.test is None  # all -1: unlabelled, dropped
    assert data.id2label == {0: "negative", 1: "positive"}
    assert data.train.source == "hf://datasets/stanfordnlp/sst2@main/data/train-00000-of-00001.parquet"


def test_hub_env_is_read_at_call_time_not_import(tmp_path, monkeypatch):
    """huggingface_hub froze HF_HUB_CACHE at import; setting only the environment must still work."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    from huggingface_hub import constants  # imported now, so its constants are already frozen

    make_hub_cache(tmp_path / "hub", "stanfordnlp/sst2", sst2_hub_files(), repo_type="dataset")
    assert constants.HF_HUB_CACHE != str(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert len(load_dataset("sst2").train) == 10


def test_glue_config_folder_and_config_choice(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    cola = {"sentence": [t for t, _ in TRAIN], "label": [y for _, y in TRAIN], "idx": list(range(10))}
    files = {
        "cola/train-00000-of-00001.parquet": parquet_bytes(cola),
        "cola/validation-00000-of-00001.parquet": parquet_bytes({**cola, "label": [0] * 10}),
        "sst2/train-00000-of-00001.parquet": parquet_bytes({**cola, "sentence": ["other"] * 10}),
        "sst2/validation-00000-of-00001.parquet": parquet_bytes(cola),
    }
    make_hub_cache(tmp_path / "hub", "nyu-mll/glue", files, repo_type="dataset")
    use_offline_cache(monkeypatch, tmp_path / "hub")
    data = load_dataset("cola")
    assert data.train.texts == cola["sentence"] and data.validation.labels == [0] * 10
    assert data.id2label[0] == "unacceptable"
    assert "several configs (cola, sst2): pass nyu-mll/glue:CONFIG" in load_error("nyu-mll/glue")
    assert load_dataset("nyu-mll/glue:sst2").train.texts == ["other"] * 10


def test_any_hub_dataset_through_the_parquet_export(tmp_path, monkeypatch):
    """No parquet on main (a script dataset): fall back to refs/convert/parquet, with named columns."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    make_hub_cache(
        tmp_path / "hub", "someone/reviews", {"reviews.py": b"# a loading script"}, repo_type="dataset"
    )
    rows = {"body": [f"review {i}" for i in range(20)], "stars": ["good", "bad"] * 10}
    export = {
        "default/train/0000.parquet": parquet_bytes(rows),
        "default/unsupervised/0000.parquet": parquet_bytes({"body": ["x"], "stars": [None]}),
    }
    make_hub_cache(
        tmp_path / "hub", "someone/reviews", export, repo_type="dataset", revision="refs/convert/parquet"
    )
    use_offline_cache(monkeypatch, tmp_path / "hub")
    name, whole = load_split(
        "someone/reviews", "train", {0: "bad", 1: "good"}, label_column="stars", text_column="body"
    )
    assert (name, len(whole)) == ("train", 20)
    assert load_error("someone/reviews", load=load_split, split="validation", id2label={}) == (
        "hf://datasets/someone/reviews@refs/convert/parquet has no validation split "
        "(found: default/train/0000.parquet); pass --split "
        "with one of train"
    )
    data = load_dataset("someone/reviews", text_column="body", label_column="stars", split_seed=3)
    assert (
        len(data.train) == 16
        and len(data.validation) == 4
        and Counter(data.validation.labels) == {0: 2, 1: 2}
    )
    assert data.id2label == {0: "bad", 1: "good"}
    assert data.train.source.startswith("hf://datasets/someone/reviews@refs/convert/parquet/default/train/")


def test_named_dataset_offline_without_data_says_how_to_get_data(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    use_offline_cache(monkeypatch, tmp_path / "empty-hub")
    assert load_error("sst2") == (
        "dataset 'sst2' not found in a data dir and the Hub is unreachable (offline): pass --data-dir DIR or "
        "set MINIFREEZE_DATA_DIR to a folder holding sst2/train.tsv and sst2/validation.tsv, or connect to the Hub"
    )
    (tmp_path / "data").mkdir()
    assert f"not found in data dir {tmp_path / 'data'} and the Hub is unreachable" in load_error(
        "imdb", data_dir=tmp_path / "data"
    )
    assert (
        "cannot get dataset 'someone/not-cached' (revision main) from the Hub or its cache (offline); "
        "connect once to download it (or run python -m minifreeze.prefetch someone/not-cached)"
        in load_error("someone/not-cached")
    )


# ----------------------------------------------------------------------------------------------------
# The shared real data


def test_shared_data_matches_its_readme(data_dir):
    expected = {
        "sst2": (67_349, 872, 0.51),
        "rotten_tomatoes": (8_530, 1_066, 0.50),
        "cola": (8_551, 1_043, 0.69),
    }
    for name, (n_train, n_val, positive) in expected.items():
        data = load_dataset(name, data_dir=data_dir)
        assert (len(data.train), len(data.validation), data.num_labels) == (n_train, n_val, 2), name
        assert abs(np.mean(data.validation.labels) - positive) < 0.01, name


# ----------------------------------------------------------------------------------------------------
# Splits and subsets


def skewed_labels(n: int = 1000, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).choice(3, size=n, p=[0.6, 0.3, 0.1]).tolist()


def test_stratified_split_is_deterministic_disjoint_and_proportional():
    labels = skewed_labels()
    train, val = stratified_split(labels, 0.2, seed=0)
    assert sorted(train + val) == list(range(len(labels))) and not set(train) & set(val)
    counts, val_counts = Counter(labels), Counter(labels[i] for i in val)
    assert all(abs(val_counts[c] - 0.2 * counts[c]) <= 1 for c in counts)
    assert stratified_split(labels, 0.2, seed=0) == (train, val)
    assert stratified_split(labels, 0.2, seed=1)[1] != val
    with pytest.raises(MinifreezeError, match="between 0 and 1"):
        stratified_split(labels, 1.0, seed=0)


def test_stratified_subsets_are_nested_proportional_and_repeatable():
    labels = skewed_labels()
    counts = Counter(labels)
    previous: set[int] = set()
    for n in [1, 2, 3, 10, 37, 100, 333, 999, 1000]:
        subset = stratified_subset(labels, n, seed=0)
        assert len(subset) == len(set(subset)) == n and subset == sorted(subset)
        assert previous <= set(subset), f"subset({n}) must contain the smaller subsets"
        got = Counter(labels[i] for i in subset)
        assert all(abs(got[c] - n * counts[c] / len(labels)) <= 1 for c in counts), (n, got)
        assert stratified_subset(labels, n, seed=0) == subset
        previous = set(subset)
    assert stratified_subset(labels, 100, seed=1) != stratified_subset(labels, 100, seed=0)
    split = Split([f"t{i}" for i in range(len(labels))], labels, source="x")
    chosen = split.select(stratified_subset(labels, 10), "x [10]")
    assert chosen.labels == [labels[i] for i in stratified_subset(labels, 10)] and chosen.source == "x [10]"
    for bad in (0, 1001):
        with pytest.raises(MinifreezeError, match="between 1 and the 1000"):
            stratified_subset(labels, bad)


# ----------------------------------------------------------------------------------------------------
# Batching


def encoded_with_lengths(lengths, token_types=True) -> EncodedSplit:
    ids = [[100 + (i + j) % 50 for j in range(n)] for i, n in enumerate(lengths)]
    types = [[j % 2 for j in range(n)] for n in lengths] if token_types else None
    return EncodedSplit(ids, types, [i % 2 for i in range(len(lengths))], np.asarray(lengths))


def test_collate_pads_to_a_multiple_of_8_with_masks_and_indices():
    encoded = encoded_with_lengths([3, 17, 9, 1])
    batch = collate(encoded, [1, 3, 0], pad_id=7)
    assert batch.input_ids.shape == (3, 24) and batch.input_ids.dtype == torch.long
    assert batch.attention_mask.sum(1).tolist() == [17, 1, 3]
    assert batch.input_ids[0, :17].tolist() == encoded.input_ids[1] and (batch.input_ids[0, 17:] == 7).all()
    assert batch.token_type_ids[2, :3].tolist() == [0, 1, 0] and (batch.token_type_ids[:, 17:] == 0).all()
    assert batch.labels.tolist() == [1, 1, 0] and batch.index.tolist() == [1, 3, 0]
    assert (batch.num_real_tokens, batch.num_padded_tokens, len(batch)) == (21, 72, 3)
    assert collate(encoded, [1], pad_id=0, max_length=20).input_ids.shape == (1, 20)  # capped
    assert collate(encoded_with_lengths([5], token_types=False), [0], pad_id=0).token_type_ids is None


def test_batch_to_moves_every_tensor():
    batch = collate(encoded_with_lengths([4, 6]), [0, 1], pad_id=0).to("meta")
    assert isinstance(batch, Batch) and batch.num_real_tokens == 10
    assert {
        t.device.type for t in (batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.labels)
    } == {"meta"}


def skewed_lengths(n: int = 4000) -> np.ndarray:
    """Mostly short texts with a long tail, like SST-2 (median ~20 tokens, a few over 60)."""
    return np.clip(np.random.default_rng(0).lognormal(3.0, 0.6, size=n).astype(int), 3, 128)


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_index_once_per_epoch(drop_last):
    lengths = skewed_lengths(1003)
    for batches in (
        length_grouped_batches(lengths, 32, seed=0, epoch=0, drop_last=drop_last),
        random_batches(len(lengths), 32, seed=0, epoch=0, drop_last=drop_last),
    ):
        flat = [i for b in batches for i in b]
        assert len(flat) == len(set(flat))
        assert len(flat) == (1003 // 32 * 32 if drop_last else 1003)
        assert sorted(len(b) for b in batches) == ([] if drop_last else [1003 % 32]) + [32] * (1003 // 32)
    assert sorted(i for b in sorted_batches(lengths, 32) for i in b) == list(range(1003))


def test_length_grouping_wastes_much_less_padding_than_random_batches():
    lengths = skewed_lengths()
    grouped = real_token_fraction(length_grouped_batches(lengths, 32, seed=0, epoch=0), lengths, 8)
    shuffled = real_token_fraction(random_batches(len(lengths), 32, seed=0, epoch=0), lengths, 8)
    assert 1 - grouped < (1 - shuffled) / 3, (grouped, shuffled)  # here: 18% of positions wasted vs 69%
    exact = real_token_fraction(length_grouped_batches(lengths, 32, seed=0, epoch=0), lengths, 1)
    assert exact > 0.9  # without rounding to 8, grouped batches are nearly padding-free (0.94 here)
    encoded = encoded_with_lengths(lengths[:64])
    batch = collate(encoded, list(range(32)), pad_id=0)
    assert batch.num_real_tokens / batch.num_padded_tokens == pytest.approx(
        real_token_fraction([list(range(32))], lengths[:64], 8)
    )


def test_batch_order_is_deterministic_per_seed_and_epoch_and_changes_across_epochs():
    lengths = skewed_lengths(2000)
    epoch0 = length_grouped_batches(lengths, 16, seed=5, epoch=0)
    assert length_grouped_batches(lengths, 16, seed=5, epoch=0) == epoch0
    assert length_grouped_batches(lengths, 16, seed=5, epoch=1) != epoch0
    assert length_grouped_batches(lengths, 16, seed=6, epoch=0) != epoch0
    one_mega_batch = length_grouped_batches(lengths[:500], 10, seed=5, epoch=0, mega_batch_factor=50)
    maxima = [max(lengths[b]) for b in one_mega_batch]
    assert maxima != sorted(maxima, reverse=True)  # the batch order is shuffled, not left sorted by length
    assert random_batches(100, 8, seed=1, epoch=2) == random_batches(100, 8, seed=1, epoch=2)
    assert random_batches(100, 8, seed=1, epoch=2) != random_batches(100, 8, seed=1, epoch=3)


def test_sorted_batches_go_from_longest_to_shortest():
    lengths = skewed_lengths(500)
    maxima = [int(max(lengths[b])) for b in sorted_batches(lengths, 50)]
    assert maxima == sorted(maxima, reverse=True) and maxima[0] == lengths.max()


def test_encode_split_with_the_real_tokenizer(minilm_dir):
    from minifreeze.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(minilm_dir)
    split = Split(["a fine film", "dull"], [1, 0], pairs=["really", "very dull indeed"])
    encoded = encode_split(split, tokenizer, max_length=6)
    assert encoded.input_ids[0][0] == 101 and encoded.lengths.tolist() == [6, 6]
    assert encoded.token_type_ids[1] == [0, 0, 0, 1, 1, 1] and encoded.labels == [1, 0]
    tokenizer.has_token_types = False
    assert encode_split(split, tokenizer, max_length=6).token_type_ids is None


def test_prefetch_finds_what_a_run_finds(tmp_path, monkeypatch, capsys):
    """python -m minifreeze.prefetch fetches through the same code as the commands: a cached dataset and a
    cached model are found (rc 0); a missing one is one error line naming it (rc 1)."""
    from _hubcache import copy_folder_files
    from conftest import save_hf_classifier

    from minifreeze import prefetch

    make_hub_cache(tmp_path / "hub", "stanfordnlp/sst2", sst2_hub_files(), repo_type="dataset")
    save_hf_classifier(tmp_path / "src", "bert")
    vocab = b"\n".join([b"[PAD]", b"[UNK]", b"[CLS]", b"[SEP]", b"[MASK]", b"good", b"bad"])
    files = {**copy_folder_files(tmp_path / "src"), "vocab.txt": vocab}
    make_hub_cache(tmp_path / "hub", "someone/tiny-bert", files)
    use_offline_cache(monkeypatch, tmp_path / "hub")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "no-such-data-dir"))  # prefetch must not look there
    assert prefetch.main(["sst2", "someone/tiny-bert"]) == 0
    out = capsys.readouterr().out
    assert "dataset sst2: 10 train, 2 validation" in out and "model someone/tiny-bert:" in out
    assert prefetch.main(["someone/missing"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: someone/missing: cannot get model") and err.count("\n") == 1
