"""Training data from Python: `train(cfg, train_data=..., eval_data=...)` in place of `cfg.dataset`.

Taken by what it looks like (pandas and datasets are never imported): a list of (text, label) tuples or
(text, pair, label) triples, a list of dicts, a dict of columns, a DataFrame (`.columns` and column
access: pandas, polars) or a datasets.Dataset (`.column_names`; its ClassLabel names name the classes).
Each becomes a `readers.Table`, and from there it takes the path files take (data.py): the same column
options and defaults, the same label encoding and checks, the same held-out validation part when no
eval_data is given. Messages count rows from 0, as Python and pandas do: `train_data, index 4`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import data, problem
from .errors import MinifreezeError
from .readers import Table

NAME = "python"  # what a run on Python data records as its dataset (config.json, summary, saved model)
KINDS = (
    "a list of (text, label) tuples, (text, pair, label) triples or dicts, a dict of columns, "
    "a pandas DataFrame or a datasets.Dataset"
)


class PythonTable(Table):
    """A Table whose rows are named by their 0-based index; `class_names` from a datasets ClassLabel,
    `width` 2 or 3 for tuples."""

    class_names: tuple[str, ...] | None = None
    width: int | None = None

    def where(self, row: int) -> str:
        return f"{self.source}, index {row}"


def dataset(cfg, train_data: Any = None, eval_data: Any = None) -> data.Dataset | None:
    """The Dataset of examples given in Python, or None when there are none (cfg.dataset names the data)."""
    if train_data is None and eval_data is None:
        if cfg.dataset == NAME and not Path(NAME).exists():
            raise MinifreezeError(
                f"dataset {NAME!r} means the examples came from Python: pass them again, as "
                "train(cfg, train_data=..., eval_data=...), or name a dataset"
            )
        return None
    if train_data is None:
        raise MinifreezeError("eval_data needs train_data: pass both, or neither and set cfg.dataset")
    for option in ("data_dir", "validation_split"):
        if getattr(cfg, option) is not None:
            raise MinifreezeError(
                f"{option} applies to cfg.dataset, not to train_data: unset it (pass eval_data to choose "
                "the validation examples)"
            )
    columns = data._Columns(cfg.text_column, cfg.label_column, cfg.text_pair_column)
    tables = {"train": table(train_data, "train_data", columns)}
    if eval_data is not None:
        tables["validation"] = table(eval_data, "eval_data", columns)
    widths = {split: t.width for split, t in tables.items() if t.width}
    if len(set(widths.values())) > 1:
        raise MinifreezeError(
            "train_data and eval_data have tuples of different lengths: give both (text, label) or both "
            "(text, pair, label)"
        )
    if 3 in widths.values():
        columns = data._Columns(columns.text, columns.label, columns.pair or "text_pair")
    return data._build_dataset(
        {split: [t] for split, t in tables.items()},
        columns,
        tables["train"].class_names,
        NAME,
        cfg.data_seed,
        validation_fraction=0.2,
        problem_type=problem.resolve(cfg.problem_type),
    )


def table(examples: Any, source: str, columns: data._Columns) -> PythonTable:
    """One argument's examples as a Table (see the module docstring for what is taken)."""
    if isinstance(examples, (str, bytes, Path)):
        raise MinifreezeError(
            f"{source} is of type {type(examples).__name__}: to train on a file or a named dataset set "
            f"cfg.dataset; {source} takes {KINDS}"
        )
    if isinstance(examples, Mapping) and any(_is_table(v) for v in examples.values()):
        raise MinifreezeError(
            f"{source} holds splits ({', '.join(map(str, examples))}), not examples: pass "
            "train_data=splits['train'], eval_data=splits['validation']"
        )
    if _is_table(examples):  # a datasets.Dataset, or a DataFrame
        if not hasattr(examples, "__len__"):  # datasets' IterableDataset: no columns to read
            raise MinifreezeError(
                f"{source} is a stream ({type(examples).__name__}): pass list({source}), or a Dataset"
            )
        names = list(examples.column_names if hasattr(examples, "column_names") else examples.columns)
        if twice := sorted({str(name) for name in names if names.count(name) > 1}):
            raise MinifreezeError(f"{source}: column {twice[0]!r} appears twice; rename one")
        result = _columns_table({name: examples[name] for name in names}, source)
        result.class_names = _class_names(examples, columns)
        return result
    if isinstance(examples, Mapping):
        return _columns_table(examples, source)
    try:
        rows = list(examples)
    except TypeError:
        raise MinifreezeError(f"{source} is of type {type(examples).__name__}: give {KINDS}") from None
    if not rows:
        raise MinifreezeError(f"{source} is empty: give at least two examples of each class")
    return _rows_table(rows, source, columns)


def _is_table(value: Any) -> bool:
    return hasattr(value, "column_names") or (hasattr(value, "columns") and hasattr(value, "__getitem__"))


def _class_names(examples: Any, columns: data._Columns) -> tuple[str, ...] | None:
    """A datasets.Dataset's ClassLabel names for the label column (`features['label'].names`), if any."""
    features = getattr(examples, "features", None)
    if not isinstance(features, Mapping):
        return None
    label = columns.label or data._first_present(data.LABEL_COLUMNS, list(features))
    names = getattr(features.get(label), "names", None)
    return tuple(map(str, names)) if names else None


def _rows_table(rows: list, source: str, columns: data._Columns) -> PythonTable:
    """A list of dicts (a key is a column, absent keys are None) or of (text, [pair,] label) tuples."""
    first = rows[0]
    if isinstance(first, Mapping):
        _same_kind(rows, source, lambda row: isinstance(row, Mapping), "a dict")
        names = list(dict.fromkeys(key for row in rows for key in row))  # every key, first-seen order
        return _columns_table({name: [row.get(name) for row in rows] for name in names}, source)
    if not isinstance(first, (tuple, list)) or len(first) not in (2, 3):
        raise MinifreezeError(
            f"{source}, index 0: {first!r} is not a (text, label) tuple, a (text, pair, label) triple or a "
            f"dict; {source} takes {KINDS}"
        )
    width = len(first)
    shape = "a (text, label) tuple" if width == 2 else "a (text, pair, label) triple"
    _same_kind(rows, source, lambda row: isinstance(row, (tuple, list)) and len(row) == width, shape)
    text, label = columns.text or "text", columns.label or "label"
    names = [text, label] if width == 2 else [text, columns.pair or "text_pair", label]
    result = _columns_table({name: [row[i] for row in rows] for i, name in enumerate(names)}, source)
    result.width = width
    return result


def _same_kind(rows: list, source: str, fits, kind: str) -> None:
    bad = next((i for i, row in enumerate(rows) if not fits(row)), None)
    if bad is not None:
        raise MinifreezeError(
            f"{source}, index {bad}: {rows[bad]!r} is not {kind} like index 0; fix that row"
        )


def _columns_table(columns: Mapping, source: str) -> PythonTable:
    """Columns by name (lists, arrays, Series); every column must have one value per example."""
    values = {}
    for name, column in columns.items():
        if isinstance(column, (str, bytes)) or not hasattr(column, "__len__"):
            raise MinifreezeError(
                f"{source}[{name!r}] is of type {type(column).__name__}, not a column: give a list of values"
            )
        values[str(name)] = [_native(value) for value in column]
    lengths = {name: len(column) for name, column in values.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise MinifreezeError(f"{source}: columns of different lengths ({shown}); give one value per example")
    num_rows = next(iter(lengths.values()), 0)
    if num_rows == 0:
        raise MinifreezeError(f"{source} is empty: give at least two examples of each class")
    return PythonTable(source, list(values), values.__getitem__, None, num_rows)


def _native(value: Any) -> Any:
    """numpy scalars (from arrays and pandas) as Python values; NaN and pandas' NA (a missing value) as None."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    if type(value).__name__ == "NAType" or (isinstance(value, float) and value != value):
        return None
    return value
