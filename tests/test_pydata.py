"""Training data from Python: train(cfg, train_data=..., eval_data=...) takes lists, dicts, DataFrames and
datasets.Dataset objects by what they look like, and reads them the way it reads files (same columns, same
labels, same held-out part), with one line for each kind of bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import toy_rows, write_tsv

import minifreeze
from minifreeze import data
from minifreeze.errors import MinifreezeError
from minifreeze.train import TrainConfig, load_training_data, train

ROWS = [("a gripping film", "positive"), ("dull and long", "negative"), ("lovely", "positive")]
ROWS += [("boring plot", "negative"), ("superb actors", "positive"), ("awful", "negative")]


class FakeFrame:
    """What train_data uses of a pandas DataFrame: `.columns` and a column by name (and no pandas)."""

    def __init__(self, columns: dict):
        self._columns = columns

    @property
    def columns(self):
        return list(self._columns)

    def __getitem__(self, name):
        return self._columns[name]

    def __len__(self):
        return len(next(iter(self._columns.values()), []))


class FakeDataset:
    """What train_data uses of a datasets.Dataset: `.column_names`, a column by name, `.features`."""

    def __init__(self, columns: dict, features: dict | None = None):
        self._columns, self.features = columns, features or {}

    @property
    def column_names(self):
        return list(self._columns)

    def __getitem__(self, name):
        return self._columns[name]

    def __len__(self):
        return len(next(iter(self._columns.values()), []))


class FakeStream:
    """datasets' IterableDataset: column names, rows one by one, no length and no column access."""

    column_names = ["text", "label"]

    def __iter__(self):
        return iter([{"text": "a", "label": 0}])


class FakeDuplicateFrame(FakeFrame):
    columns = ["text", "label", "text"]


def columns_of(rows, text="text", label="label") -> dict:
    return {text: [t for t, _ in rows], label: [y for _, y in rows]}


def load(train_data, eval_data=None, **options):
    return load_training_data(TrainConfig(**options), train_data, eval_data)[0]


def as_tuple(dataset: data.Dataset):
    split = lambda s: (s.texts, s.labels, s.pairs)  # noqa: E731
    return split(dataset.train), split(dataset.validation), dataset.id2label, dataset.name


@pytest.mark.parametrize(
    "make",
    [
        lambda rows: rows,
        lambda rows: [list(row) for row in rows],
        lambda rows: [{"text": t, "label": y} for t, y in rows],
        lambda rows: columns_of(rows),
        lambda rows: FakeFrame(columns_of(rows, text="sentence")),
        lambda rows: FakeDataset(columns_of(rows, text="review", label="labels")),
        lambda rows: iter(rows),
    ],
    ids=["tuples", "lists", "dicts", "columns", "dataframe-like", "dataset-like", "iterator"],
)
def test_every_shape_reads_like_the_same_file(make, tmp_path):
    """String labels are numbered as data.py numbers a file's (sorted names), texts and labels in order."""
    write_tsv(tmp_path / "file" / "train.tsv", ROWS)
    write_tsv(tmp_path / "file" / "validation.tsv", ROWS[:2])
    from_file = data.load_dataset(tmp_path / "file")
    dataset = load(make(ROWS), make(ROWS[:2]))
    assert as_tuple(dataset)[:3] == as_tuple(from_file)[:3] and dataset.name == "python"
    assert dataset.id2label == {0: "negative", 1: "positive"} and dataset.train.labels == [1, 0, 1, 0, 1, 0]


def test_without_eval_data_a_part_is_held_out_as_for_a_file_without_validation(tmp_path):
    rows = toy_rows(50, seed=5)
    write_tsv(tmp_path / "only_train.tsv", rows)
    from_file = data.load_dataset(tmp_path / "only_train.tsv", split_seed=3)
    dataset = load(rows, data_seed=3)
    assert as_tuple(dataset)[:3] == as_tuple(from_file)[:3]
    assert len(dataset.validation) == 10 and dataset.validation.source.startswith("train_data [20% held out")


def test_triples_are_text_pairs_and_the_column_options_name_dict_columns():
    dataset = load([("a man sleeps", "a person rests", 1), ("a dog runs", "a cat sleeps", 0)] * 3)
    assert dataset.train.pairs is not None and set(dataset.train.pairs) == {"a person rests", "a cat sleeps"}
    options = dict(text_column="premise", text_pair_column="hypothesis", label_column="gold")
    rows = [
        {"premise": "p1", "hypothesis": "h1", "gold": 0, "id": 7},
        {"premise": "p2", "hypothesis": "h2", "gold": 1},
    ]
    dataset = load(rows, rows, **options)
    assert dataset.train.texts == ["p1", "p2"] and dataset.train.pairs == ["h1", "h2"]
    assert dataset.train.labels == [0, 1] and dataset.id2label == {0: "0", 1: "1"}


def test_numpy_values_and_class_label_names():
    """numpy arrays (pandas hands out numpy scalars) hold ints, not 'a int64'; a ClassLabel names the ids."""
    columns = {"text": np.array(["good", "bad", "fine", "poor"]), "label": np.array([1, 0, 1, 0])}
    labels = load(columns, columns).train.labels
    assert labels == [1, 0, 1, 0] and {type(y) for y in labels} == {int}
    features = {"label": SimpleNamespace(names=["neg", "pos", "mixed"])}
    dataset = load(FakeDataset(columns, features), FakeDataset(columns, features))
    assert dataset.id2label == {0: "neg", 1: "pos", 2: "mixed"} and dataset.train.labels == [1, 0, 1, 0]


def test_train_size_takes_a_stratified_subset_of_python_data():
    dataset, train_split = load_training_data(
        TrainConfig(train_size=20), toy_rows(60, seed=1), toy_rows(8, 2)
    )
    assert len(dataset.train) == 60 and len(train_split) == 20 and sorted(set(train_split.labels)) == [0, 1]


REFUSALS = [
    ([], None, "train_data is empty: give at least two examples of each class"),
    ({}, None, "train_data is empty: give at least two examples of each class"),
    ("train.tsv", None, "train_data is of type str: to train on a file or a named dataset set cfg.dataset"),
    (42, None, r"train_data is of type int: give a list of \(text, label\) tuples"),
    (["just text", "more"], None, r"train_data, index 0: 'just text' is not a \(text, label\) tuple"),
    ([("a", 0), ("b",)], None, r"train_data, index 1: \('b',\) is not a \(text, label\) tuple like index 0"),
    ([("a", 0), {"text": "b"}], None, r"train_data, index 1: .* is not a \(text, label\) tuple like index 0"),
    (
        {"text": ["a", "b"], "label": [0]},
        None,
        r"train_data: columns of different lengths \(text 2, label 1\)",
    ),
    ({"text": "ab", "label": [0, 1]}, None, r"train_data\['text'\] is of type str, not a column"),
    (
        {"sentence": ["a", "b"]},
        None,
        "train_data: no label column one of label, labels .*columns found: sentence",
    ),
    (
        [("a", 0), ("b", 7)],
        None,
        "train_data, index 1: label 7 .* leaves a gap: training class ids must be 0..C-1",
    ),
    ([("a", 0), ("b", -1)], None, r"train_data, index 1: label -1 is out of range \(integers >= 0\)"),
    (
        [("a", 0), ("b", 1), ("c", 0.5)],
        None,
        r"train_data, index 2: .* a number with decimals; .* train with --problem-type regression",
    ),
    ([{"text": "a", "label": 0}, {"text": "b"}], None, "train_data, index 1: missing label"),
    ({"text": ["a", float("nan")], "label": [0, 1]}, None, "train_data, index 1: 'text' is empty"),
    ([("a", "x")] * 3, None, "every training label in column 'label' is 'x'; a classifier needs at least 2"),
    (ROWS, [("meh", "neutral")], "eval_data, index 0: label 'neutral' never appears in the training data"),
    (ROWS, [("a", "b", "positive")], "train_data and eval_data have tuples of different lengths"),
    (None, ROWS, "eval_data needs train_data: pass both, or neither and set cfg.dataset"),
    ({"train": FakeDataset({}), "test": FakeDataset({})}, None, r"train_data holds splits \(train, test\)"),
    (FakeStream(), None, r"train_data is a stream \(FakeStream\): pass list\(train_data\), or a Dataset"),
    (FakeDuplicateFrame({"text": ["a"], "label": [0]}), None, "train_data: column 'text' appears twice"),
]


@pytest.mark.parametrize("train_data, eval_data, message", REFUSALS, ids=[m[:40] for *_, m in REFUSALS])
def test_bad_python_data_is_one_line(train_data, eval_data, message):
    with pytest.raises(MinifreezeError, match=message) as error:
        load(train_data, eval_data)
    assert "\n" not in str(error.value)


def test_file_options_that_python_data_would_ignore_are_refused():
    for option in ("data_dir", "validation_split"):
        with pytest.raises(MinifreezeError, match=f"{option} applies to cfg.dataset, not to train_data"):
            load(ROWS, **{option: "x"})


def test_a_python_data_run_resumed_without_its_data_says_how(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder called python here
    with pytest.raises(MinifreezeError, match=r"dataset 'python' means the examples came from Python: pass"):
        load_training_data(TrainConfig(dataset="python"))


def test_a_run_on_python_data_learns_and_says_where_its_data_came_from(toy_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run folder is runs/python-freeze0-<time>
    named = lambda rows: [(t, "positive" if y else "negative") for t, y in rows]  # noqa: E731
    cfg = TrainConfig(
        model=str(toy_model), epochs=3, batch_size=16, lr=3e-3, warmup="0", freeze="0", progress=False
    )
    summary = train(cfg, train_data=named(toy_rows(192, 1)), eval_data=named(toy_rows(64, 2)))
    assert (
        summary["best_metric"] >= 0.9 and summary["dataset"] == "python" and summary["train_examples"] == 192
    )
    [out] = (tmp_path / "runs").glob("python-freeze0-*")
    assert json.loads((out / "config.json").read_text())["dataset"] == "python"
    assert json.loads((out / "summary.json").read_text())["dataset"] == "python"
    model = minifreeze.load_model(out / "model")
    assert model.config.id2label == {0: "negative", 1: "positive"} and model.task["dataset"] == "python"


def test_a_real_pandas_dataframe():
    pd = pytest.importorskip("pandas", reason="pandas is not installed (an optional input type)")
    frame = pd.DataFrame({"text": [t for t, _ in ROWS], "label": [y for _, y in ROWS], "score": range(6)})
    frame.loc[6] = ["so so", None, 6]  # pandas' missing value
    assert as_tuple(load(frame.iloc[:6], frame.iloc[:2]))[:3] == as_tuple(load(ROWS, ROWS[:2]))[:3]
    with pytest.raises(MinifreezeError, match="train_data, index 6: missing label"):
        load(frame)
    numbers = pd.DataFrame({"sentence": ["a", "b", "c", "d"], "label": [0, 1, 1, 0]})  # int64 labels
    assert load(numbers, numbers).train.labels == [0, 1, 1, 0]


def test_a_real_datasets_dataset():
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (an optional input type)")
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    split = datasets.Dataset.from_dict(
        {"sentence": ["good", "bad", "fine", "poor"], "label": [1, 0, 1, 0]}, features
    )
    dataset = load(split, split)
    assert dataset.id2label == {0: "neg", 1: "pos"} and dataset.train.labels == [1, 0, 1, 0]
    with pytest.raises(MinifreezeError, match=r"train_data holds splits \(train, validation\)"):
        load(datasets.DatasetDict(train=split, validation=split))


def test_load_training_data_is_unchanged_for_files(toy_data):
    cfg = TrainConfig(dataset="toy", data_dir=str(toy_data))
    dataset = load_training_data(cfg)[0]
    assert dataset.name == "toy" and len(dataset.train) == 192 and len(dataset.validation) == 64
