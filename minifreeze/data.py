"""Datasets, splits, train-size subsets and encoding (batches are cut in `batching.py`).

Loading: a named dataset (`sst2`, `cola`, ...) comes from a local data dir (`--data-dir` or
`MINIFREEZE_DATA_DIR`, layout `<dir>/<name>/{train,validation}.tsv`) and else from its parquet files on
the Hub; any other Hub dataset id is read through its parquet files too; a local file or folder may be
TSV, CSV, JSON Lines or Parquet (read in `readers.py`). Every problem with the input ends in one
`MinifreezeError` line that names the file, the line and the fix.

Choices worth knowing:
- Split files: `train`, `validation` (also `dev`, `valid`, `val`) and `test`, with shards; names such as
  `validation_matched` or `dev_mismatched` are splits too. Training validates on `validation`, else on
  the only `validation_*` split (several: choose with `validation_split`), else on a stratified, seeded
  `validation_fraction` of train. `load_split` (evaluation) never holds out: it scores a file, or all
  files of a split, whole, and needs no train file.
- Labels: integers are class ids and must be 0..C-1 with every id present in train (a stray 7 in a 0/1
  file is a typo, not an 8-class task); whole-number floats (`1.0`) count as integers. Strings are class
  names, numbered in sorted order. Train needs two classes. Decimals and lists are refused, naming
  `--problem-type regression` / `multi_label`, whose labels `problem.py` reads (docs/tasks.md). A
  validation/test label never seen in training is an error, not a new class.
- A test split without labels (a missing label column, or every label -1 as in GLUE) is dropped.
- `amazon_polarity` uses `content` as the text and ignores `title` (pass `text_pair_column="title"`
  to feed it as the second segment).

Batches are cut from the encoded splits in `batching.py`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from . import hub, problem
from .errors import MinifreezeError
from .readers import EXTENSIONS, Table, extension, read_file, read_parquet

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

DATA_DIR_ENV = "MINIFREEZE_DATA_DIR"
TEXT_COLUMNS = ("sentence", "text", "content", "review")
LABEL_COLUMNS = ("label", "labels")
SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation"}
SPLIT_ALIASES |= {"dev": "validation", "test": "test"}
SENTIMENT = ("negative", "positive")


@dataclass(frozen=True)
class HubDataset:
    """Where a named dataset lives on the Hub and what its columns and classes are called."""

    repo_id: str
    folder: str = ""  # config folder inside the repo ("cola" in nyu-mll/glue); "" = all parquet files
    text: str = "text"
    label: str = "label"
    pair: str | None = None
    names: tuple[str, ...] = SENTIMENT


NAMED_DATASETS = {
    "sst2": HubDataset("stanfordnlp/sst2", text="sentence"),
    "cola": HubDataset("nyu-mll/glue", folder="cola", text="sentence", names=("unacceptable", "acceptable")),
    "rotten_tomatoes": HubDataset("cornell-movie-review-data/rotten_tomatoes"),
    "amazon_polarity": HubDataset("fancyzhx/amazon_polarity", text="content"),
    "imdb": HubDataset("stanfordnlp/imdb"),
}


@dataclass
class Split:
    texts: list[str]
    labels: list[int]
    pairs: list[str] | None = None
    source: str = ""  # where the examples came from, for messages and summaries

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices: Sequence[int], source: str | None = None) -> Split:
        """The examples at `indices` (e.g. a `stratified_subset`), with a new `source` note if given."""
        pairs = [self.pairs[i] for i in indices] if self.pairs is not None else None
        texts, labels = [self.texts[i] for i in indices], [self.labels[i] for i in indices]
        return Split(texts, labels, pairs, self.source if source is None else source)


@dataclass
class Dataset:
    train: Split
    validation: Split
    test: Split | None
    id2label: dict[int, str]
    name: str

    @property
    def num_labels(self) -> int:
        return len(self.id2label)


# ----------------------------------------------------------------------------------------------------
# Loading


def load_dataset(
    name_or_path: str | Path,
    *,
    data_dir: str | Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    text_pair_column: str | None = None,
    revision: str | None = None,
    split_seed: int = 0,
    validation_fraction: float = 0.2,
    validation_split: str | None = None,
    problem_type: str = problem.SINGLE,
) -> Dataset:
    """Load a named dataset, a Hub dataset id (`org/name`, `org/name:config`) or a local file/folder.

    Lookup order: an existing path; `<data dir>/<name>`; a named dataset's Hub repo; a Hub dataset id.
    `validation_split` names the split to validate on (`validation_matched`); by default `validation`
    (`dev` counts), else the only `validation_*` split, else a held-out `validation_fraction` of train.
    """
    found = _find_splits(
        name_or_path, _Columns(text_column, label_column, text_pair_column), data_dir, revision
    )
    if "train" not in found.splits:
        raise MinifreezeError(
            f"{found.origin} has no train file (found: {found.listing()}): add train.tsv (or .csv/.jsonl/"
            ".parquet); to score these files without training use `python -m minifreeze.evaluate --split NAME`"
        )
    validation = found.choose(validation_split or "validation", "--validation-split")
    if validation_split and validation is None:
        raise found.missing(validation_split, "--validation-split")
    if validation == "train":
        raise MinifreezeError(
            f"--validation-split {validation_split}: that is the training data; name another split"
        )
    tables = {"train": found.splits["train"], "test": found.splits.get("test", [])}
    tables = {split: ts for split, ts in tables.items() if ts}
    if validation is not None:
        tables["validation"] = found.splits[validation]
    names = NAMED_DATASETS[found.name].names if found.name in NAMED_DATASETS else None
    return _build_dataset(
        tables, found.columns, names, found.name, split_seed, validation_fraction, problem_type
    )


def load_split(
    name_or_path: str | Path,
    split: str,
    id2label: dict[int, str],
    *,
    data_dir: str | Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    text_pair_column: str | None = None,
    revision: str | None = None,
    validation_split: str | None = None,
    problem_type: str = problem.SINGLE,
) -> tuple[str, Split]:
    """(its name, the split) for scoring a model whose classes are `id2label`: never a held-out part.

    A file is scored whole and named by its file name; a folder or dataset gives all files of `split`
    (`validation_split` if set, for `split="validation"`). No train file is needed: labels map to the
    model's classes (integer ids directly, class names through `id2label`).
    """
    columns = _Columns(text_column, label_column, text_pair_column)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        chosen, tables = path.name, [read_file(path)]
    else:
        found = _find_splits(name_or_path, columns, data_dir, revision)
        wanted = (
            validation_split
            if validation_split and split == "validation"
            else SPLIT_ALIASES.get(split, split)
        )
        chosen = found.choose(wanted, "--validation-split" if split == "validation" else "--split")
        if chosen is None:
            raise found.missing(wanted, "--validation-split" if wanted == validation_split else "--split")
        tables, columns = found.splits[chosen], found.columns
    parts = [_extract(t, columns) for t in tables]
    if problem_type != problem.SINGLE:
        return chosen, _to_split(parts, problem.label_encoder(problem_type, parts, id2label)[0])
    return chosen, _to_split(parts, _model_label_encoder(id2label))


@dataclass
class _Found:
    """The tables of a dataset by split, and where they came from (for messages)."""

    name: str
    splits: dict[str, list[Table]]
    columns: _Columns
    origin: str

    def listing(self) -> str:
        """The files, relative to the origin (`train.tsv`, `default/train/0000.parquet`)."""
        return ", ".join(t.source.removeprefix(self.origin + "/") for ts in self.splits.values() for t in ts)

    def choose(self, wanted: str, option: str) -> str | None:
        """The split called `wanted`, else the one `wanted_*` split (MNLI: `validation_matched`); None if neither."""
        if wanted in self.splits:
            return wanted
        close = sorted(split for split in self.splits if split.startswith(wanted + "_"))
        if len(close) > 1:
            raise MinifreezeError(
                f"{self.origin} has no {wanted} split but {', '.join(close)}: choose one with {option} NAME"
            )
        return close[0] if close else None

    def missing(self, wanted: str, option: str) -> MinifreezeError:
        return MinifreezeError(
            f"{self.origin} has no {wanted} split (found: {self.listing()}); pass {option} with one of "
            f"{', '.join(sorted(self.splits))}"
        )


def _find_splits(
    name_or_path: str | Path, columns: _Columns, data_dir: str | Path | None, revision: str | None
) -> _Found:
    path = Path(name_or_path).expanduser()
    if path.exists():
        return _Found(_canonical_name(path.stem), _local_splits(path), columns, str(path))
    name = _canonical_name(str(name_or_path))
    return _Found(name, *_remote_splits(name, columns, data_dir, revision))


def _remote_splits(
    name: str, columns: _Columns, data_dir: str | Path | None, revision: str | None
) -> tuple[dict[str, list[Table]], _Columns, str]:
    """A name that is not a path: the data dir, then the Hub (named datasets know their columns)."""
    if name.startswith((".", "/", "~")) or Path(name).suffix in EXTENSIONS:  # meant as a path: say so
        raise MinifreezeError(f"no such file or folder: {name}; check the path")
    if (local := _find_in_data_dir(name, data_dir)) is not None:
        return _local_splits(local), columns, str(local)
    if name in NAMED_DATASETS:
        spec = NAMED_DATASETS[name]
        splits, uri = _named_hub_splits(name, spec, revision, data_dir)
        return splits, columns.defaults(spec.text, spec.label, spec.pair), uri
    if _looks_like_hub_id(name):
        splits, uri = _hub_splits(name, revision)
        return splits, columns, uri
    raise MinifreezeError(
        f"unknown dataset {name!r}: use one of {', '.join(sorted(NAMED_DATASETS))}, a Hub dataset id "
        f"(org/name), a local .tsv/.csv/.jsonl/.parquet file or folder, or put {name}/train.tsv in a data "
        f"dir (--data-dir or {DATA_DIR_ENV})"
    )


def _canonical_name(name: str) -> str:
    """`SST2`, `rotten-tomatoes` -> the registry's spelling; anything else unchanged."""
    key = name.lower().replace("-", "_")
    return key if key in NAMED_DATASETS else name


@dataclass(frozen=True)
class _Columns:
    """The user's column choices; None means auto-detect (text/label) or no pair."""

    text: str | None
    label: str | None
    pair: str | None

    def defaults(self, text: str, label: str, pair: str | None) -> _Columns:
        return _Columns(self.text or text, self.label or label, self.pair or pair)


def _find_in_data_dir(name: str, data_dir: str | Path | None) -> Path | None:
    """`<data dir>/<name>` when the data dir (argument, else env) holds that dataset."""
    root = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not root:
        return None
    root = Path(root).expanduser()
    if not root.is_dir():
        origin = "--data-dir" if data_dir is not None else DATA_DIR_ENV
        raise MinifreezeError(
            f"data dir {root} ({origin}) is not a folder: point it at the folder holding {name}/"
        )
    folder = root / name
    return folder if folder.is_dir() else None


def _local_splits(path: Path) -> dict[str, list[Table]]:
    """A file is a train split; a folder holds a file (or shards) per split: train, validation, test, ..."""
    if path.is_file():
        return {"train": [read_file(path)]}
    files = [p for p in sorted(path.rglob("*")) if p.is_file() and extension(p) in EXTENSIONS]
    grouped = _group_by_split(files, path)
    if not grouped:
        found = (
            ", ".join(p.relative_to(path).as_posix() for p in files) or "no .tsv/.csv/.jsonl/.parquet files"
        )
        raise MinifreezeError(
            f"{path} has no train, validation or test file (found: {found}): name them train.tsv (or .csv/"
            ".jsonl/.parquet), validation.* and test.*"
        )
    for split, paths in grouped.items():
        if len({extension(p) for p in paths}) > 1:
            listed = ", ".join(p.name for p in paths)
            raise MinifreezeError(f"{path} has several {split} files ({listed}): keep one format per split")
    return {split: [read_file(p) for p in paths] for split, paths in grouped.items()}


def _group_by_split(files: list[Path], root: Path) -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = {}
    for file in files:
        split = _split_of(PurePosixPath(file.relative_to(root).as_posix()))
        if split is not None:
            grouped.setdefault(split, []).append(file)
    return grouped


def _split_of(relative: PurePosixPath) -> str | None:
    """The split a file holds: `train.tsv`, `train-00000-of-00002.parquet`, `train/0000.parquet`,
    `imdb-train.parquet`; `dev_matched.tsv` and `validation_matched-0000.parquet` hold `validation_matched`."""
    tokens = relative.name.split(".")[0].split("-")
    parent = relative.parent.name.removeprefix("partial-")  # the parquet export of big splits
    for candidate in (tokens[0], parent, tokens[-1]):
        head, underscore, tail = candidate.lower().partition("_")
        if head in SPLIT_ALIASES:
            return SPLIT_ALIASES[head] + underscore + tail
    return None


# --- the Hub ----------------------------------------------------------------------------------------


def _looks_like_hub_id(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.-]+)?", name) is not None


def _named_hub_splits(
    name: str, spec: HubDataset, revision: str | None, data_dir: str | Path | None
) -> tuple[dict[str, list[Table]], str]:
    try:
        return _hub_splits(spec.repo_id, revision, folder=spec.folder)
    except hub.HubUnreachable as error:
        searched = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
        where = f"in data dir {searched}" if searched else "in a data dir"
        raise MinifreezeError(
            f"dataset {name!r} not found {where} and the Hub is unreachable ({error.reason}): pass --data-dir DIR "
            f"or set {DATA_DIR_ENV} to a folder holding {name}/train.tsv and {name}/validation.tsv, or connect to the Hub"
        ) from None


def _hub_splits(
    dataset_id: str, revision: str | None, folder: str = ""
) -> tuple[dict[str, list[Table]], str]:
    """The parquet files of a Hub dataset by split, and the `hf://` address they share: the given
    revision, else main, else the parquet export."""
    repo_id, _, config = dataset_id.partition(":")
    folder = folder or config
    pattern = f"{folder}/*.parquet" if folder else "*.parquet"
    revisions = [revision] if revision else ["main", "refs/convert/parquet"]
    failures: list[MinifreezeError] = []
    for rev in revisions:
        try:
            snapshot = hub.snapshot(repo_id, [pattern], rev, repo_type="dataset")
        except (hub.HubUnreachable, hub.HubNoRevision) as error:
            failures.append(error)
            continue
        files = [
            p for p in sorted(snapshot.rglob("*.parquet")) if fnmatch.fnmatch(_relative(p, snapshot), pattern)
        ]
        grouped = _group_by_split(files, snapshot)
        if grouped:
            uri = f"hf://datasets/{repo_id}@{rev}"
            return {
                split: [read_parquet(p, f"{uri}/{_relative(p, snapshot)}") for p in paths]
                for split, paths in _one_config(repo_id, grouped, snapshot).items()
            }, uri
    if len(failures) == len(revisions):  # nothing was reached: say why
        raise failures[0]
    raise MinifreezeError(
        f"Hub dataset {repo_id} has no parquet files of a split{' under ' + folder if folder else ''}: "
        "pass ORG/NAME:CONFIG for a config folder, or download the data and pass a local file"
    )


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _one_config(repo_id: str, grouped: dict[str, list[Path]], root: Path) -> dict[str, list[Path]]:
    """Refuse to mix configs (`glue/cola` with `glue/sst2`): the user must pick one."""
    tops = {p.relative_to(root).parts for paths in grouped.values() for p in paths}
    configs = {parts[0] for parts in tops if len(parts) > 1 and parts[0] not in ("data", *SPLIT_ALIASES)}
    if len(configs) > 1:
        raise MinifreezeError(
            f"Hub dataset {repo_id} has several configs ({', '.join(sorted(configs))}): pass {repo_id}:CONFIG"
        )
    return grouped


# --- from tables to a Dataset ------------------------------------------------------------------------


@dataclass
class _Part:
    """The examples of one file with their raw labels (before they become class ids)."""

    table: Table
    texts: list[str]
    pairs: list[str] | None
    labels: list[Any]
    label_column: str


def _build_dataset(
    tables: dict[str, list[Table]],
    columns: _Columns,
    names: tuple[str, ...] | None,
    name: str,
    split_seed: int,
    validation_fraction: float,
    problem_type: str = problem.SINGLE,  # a default: pydata.py calls this too
) -> Dataset:
    parts = {
        split: [_extract(t, columns) for t in ts]
        for split, ts in tables.items()
        if not _unlabeled_test(split, ts, columns)
    }
    if problem_type == problem.SINGLE:
        encode, id2label = _label_encoder(parts["train"], names)
    else:
        encode, id2label = problem.label_encoder(problem_type, parts["train"])
    splits = {split: _to_split(ps, encode) for split, ps in parts.items()}
    if "validation" not in splits:
        splits["train"], splits["validation"] = _hold_out(splits["train"], validation_fraction, split_seed)
    return Dataset(splits["train"], splits["validation"], splits.get("test"), id2label, name)


def _unlabeled_test(split: str, tables: list[Table], columns: _Columns) -> bool:
    """GLUE-style test files have no labels (column absent or all -1): they cannot be evaluated on."""
    if split != "test":
        return False
    for table in tables:
        label = columns.label or _first_present(LABEL_COLUMNS, table.names)
        values = table.read(label) if label in table.names else []
        if any(v is not None and _as_number(v) != -1 for v in values):
            return False
    return True


def _extract(table: Table, columns: _Columns) -> _Part:
    if table.num_rows == 0:
        raise MinifreezeError(
            f"{table.source} has no examples: add rows below the header (or remove the file)"
        )
    text = _column(table, columns.text, TEXT_COLUMNS, "text", "--text-column")
    texts = _texts(table, text)
    if columns.label and "," in columns.label:  # several 0/1 columns (multi-label): a tuple per row
        for name in columns.label.split(","):
            _column(table, name, (), "label", "--label-column")
        labels = list(zip(*(table.read(name) for name in columns.label.split(","))))
        return _Part(table, texts, _pairs(table, columns), labels, columns.label)
    label = _column(table, columns.label, LABEL_COLUMNS, "label", "--label-column")
    return _Part(table, texts, _pairs(table, columns), table.read(label), label)


def _pairs(table: Table, columns: _Columns) -> list[str] | None:
    if not columns.pair:
        return None
    return _texts(table, _column(table, columns.pair, (), "text pair", "--text-pair-column"))


def _column(table: Table, given: str | None, candidates: Sequence[str], role: str, option: str) -> str:
    name = given or _first_present(candidates, table.names)
    if name is None or name not in table.names:
        wanted = repr(given) if given else "one of " + ", ".join(candidates)
        found = ", ".join(table.names) or "none"
        raise MinifreezeError(
            f"{table.source}: no {role} column {wanted} (columns found: {found}); name it with {option}"
        )
    return name


def _first_present(candidates: Sequence[str], names: list[str]) -> str | None:
    return next((c for c in candidates if c in names), None)


def _texts(table: Table, column: str) -> list[str]:
    values = table.read(column)
    for row, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            shown = (
                "empty" if value is None or isinstance(value, str) else f"not text ({type(value).__name__})"
            )
            raise MinifreezeError(
                f"{table.where(row)}: {column!r} is {shown}; give every example a text or drop the row"
            )
    return values


def _label_encoder(
    train: list[_Part], names: tuple[str, ...] | None
) -> tuple[Callable[[_Part], list[int]], dict[int, str]]:
    """Decide from the training labels how labels become ids; return the mapping and the class names.

    Integer labels are class ids already and must be 0..C-1 with none missing (a typo such as 7 in a 0/1
    file would otherwise add classes nobody meant); string labels are class names, numbered in sorted
    order. A classifier needs at least two classes in train.
    """
    integer = isinstance(_label_value(train[0], 0), int)
    first: dict[Any, tuple[Table, int]] = {}  # each label's first file and row, for messages
    counts: Counter[Any] = Counter()
    for part in train:
        for row in range(len(part.labels)):
            label = _check_label(part, row, integer, names)
            first.setdefault(label, (part.table, row))
            counts[label] += 1
    _check_classes(train[0], counts, first, integer)
    if integer:
        id2label = {i: names[i] if names else str(i) for i in range(len(names) if names else len(counts))}
    else:
        id2label = dict(enumerate(sorted(counts)))
    to_id = {label: i for i, label in id2label.items()} if not integer else None

    def encode(part: _Part) -> list[int]:
        ids = []
        for row in range(len(part.labels)):
            label = _check_label(part, row, integer, names)
            if label not in counts:
                shown = ", ".join(map(str, sorted(counts)))
                raise MinifreezeError(
                    f"{part.table.where(row)}: label {label!r} never appears in the training data ({shown}); "
                    "fix the label or add training examples of that class"
                )
            ids.append(label if to_id is None else to_id[label])
        return ids

    return encode, id2label


def _check_classes(
    part: _Part, counts: Counter[Any], first: dict[Any, tuple[Table, int]], integer: bool
) -> None:
    """At least two classes; integer ids without gaps (the first id after a gap is the suspect)."""
    if len(counts) < 2:
        (only,) = counts
        raise MinifreezeError(
            f"{part.table.source}: every training label in column {part.label_column!r} is {only!r}; a "
            "classifier needs at least 2 classes: check the label column and the file"
        )
    if integer and max(counts) >= len(counts):  # some id below the largest never appears
        low = next(i for i in range(len(counts)) if i not in counts)
        suspect = min(label for label in counts if label > low)
        gap = f"{low}" if suspect == low + 1 else f"{low}..{suspect - 1}"
        rows = f"{counts[suspect]} row{'s' if counts[suspect] > 1 else ''}"
        table, row = first[suspect]
        raise MinifreezeError(
            f"{table.where(row)}: label {suspect} ({rows}, the first here) leaves a gap: training class ids "
            f"must be 0..C-1, but no example has label {gap} (labels: {', '.join(map(str, sorted(counts)))}); "
            "fix the typo, or renumber the classes from 0"
        )


def _check_label(part: _Part, row: int, integer: bool, names: tuple[str, ...] | None) -> Any:
    """The label as an int (integer datasets) or a class name; anything else is an error."""
    label = _label_value(part, row)
    if integer != isinstance(label, int):
        kind = "integers" if integer else "class names"
        raise MinifreezeError(
            f"{part.table.where(row)}: label {part.labels[row]!r} mixes with earlier {kind}; use integer ids "
            "0..C-1 or class names throughout"
        )
    if integer and (label < 0 or (names is not None and label >= len(names))):
        allowed = f"0..{len(names) - 1}" if names else "integers >= 0"
        raise MinifreezeError(
            f"{part.table.where(row)}: label {label} is out of range ({allowed}); fix the label"
        )
    return label


_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _label_value(part: _Part, row: int) -> int | str:
    """A label as an int class id or a stripped class name; missing, decimal and list labels are refused.

    Whole-number floats (`1.0`, as pandas writes an int column that had a gap) are class ids.
    """
    value = part.labels[row]
    if value is None or value != value or (isinstance(value, str) and not value.strip()):  # None, NaN, ""
        raise MinifreezeError(f"{part.table.where(row)}: missing label; give every example a label")
    number = _as_number(value)
    if number is not None and float(number).is_integer():
        return int(number)
    if number is not None:
        kind, fix = "a number with decimals", "for scores train with --problem-type regression"
    elif isinstance(value, (list, tuple)) or (isinstance(value, str) and value.strip().startswith("[")):
        kind, fix = "a list", "for several classes per example train with --problem-type multi_label"
    elif not isinstance(value, (str, bool)):
        kind, fix = f"a {type(value).__name__}", "use integer class ids 0..C-1 or string class names"
    else:
        return str(value).strip()
    raise MinifreezeError(
        f"{part.table.where(row)}: label column {part.label_column!r} holds {value!r}, {kind}; single-label "
        f"classification needs integer class ids 0..C-1 or string class names: {fix}"
    )


def _as_number(value: Any) -> int | float | None:
    """Labels arrive as ints or floats (parquet, JSON) or as digit strings (TSV/CSV); bools are names."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and value.isdigit():  # the common case, fast
        return int(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return int(value) if value.strip().lstrip("+-").isdigit() else float(value)
    return None


def _model_label_encoder(id2label: dict[int, str]) -> Callable[[_Part], list[int]]:
    """Labels as the model's class ids: integers are ids (0..C-1), names go through `id2label`."""
    to_id = {name: i for i, name in id2label.items()}

    def encode(part: _Part) -> list[int]:
        ids = []
        for row in range(len(part.labels)):
            label = _label_value(part, row)
            label = to_id.get(label, label) if isinstance(label, str) else label
            if not isinstance(label, int) or not 0 <= label < len(id2label):
                classes = ", ".join(f"{i}={name}" for i, name in sorted(id2label.items()))
                fix = "score data labelled like the training data"
                if label == -1:
                    fix = "-1 marks a hidden label (GLUE test sets): score a labelled split"
                raise MinifreezeError(
                    f"{part.table.where(row)}: label {part.labels[row]!r} is not one of the model's classes "
                    f"({classes}); {fix}"
                )
            ids.append(label)
        return ids

    return encode


def _to_split(parts: list[_Part], encode: Callable[[_Part], list[int]]) -> Split:
    texts = [t for p in parts for t in p.texts]
    pairs = [t for p in parts for t in p.pairs] if parts[0].pairs is not None else None
    labels = [i for p in parts for i in encode(p)]
    source = parts[0].table.source + (f" (+{len(parts) - 1} more files)" if len(parts) > 1 else "")
    return Split(texts, labels, pairs, source)


def _hold_out(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """No validation split given: hold out a stratified fraction of train (same seed, same split)."""
    keep, held = stratified_split(train.labels, fraction, seed)
    pct, note = round(100 * fraction), f"stratified, seed {seed}"
    kept = train.select(keep, f"{train.source} [{100 - pct}% kept, {note}]")
    return kept, train.select(held, f"{train.source} [{pct}% held out, {note}]")


# ----------------------------------------------------------------------------------------------------
# Splits and subsets


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, validation), each sorted, holding out about `fraction` of every class.

    Every class keeps at least one training example; a class with one example stays in train.
    """
    if not 0 < fraction < 1:
        raise MinifreezeError(f"validation fraction must be between 0 and 1, got {fraction}")
    labels = _strata(labels)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = min(int(round(len(members) * fraction)), len(members) - 1)
        held.append(members[:count])
    validation = np.sort(np.concatenate(held))
    if len(validation) == 0:
        raise MinifreezeError(
            f"too few examples ({len(labels)}) to hold out a validation split: add a validation file or more data"
        )
    train = np.setdiff1d(np.arange(len(labels)), validation)
    return train.tolist(), validation.tolist()


def stratified_subset(labels: Sequence[int], n: int, seed: int = 0) -> list[int]:
    """Sorted indices of `n` examples whose class proportions match the whole set as closely as possible.

    Subsets are nested: for the same labels and seed, the subset of size n is contained in the subset of
    any larger size, so a learning curve adds examples instead of redrawing them. `seed` is the *data*
    seed and stays fixed while training seeds vary, so every run of a study sees the same examples.
    `n` must be in 1..len(labels); when n is smaller than the number of classes some classes are absent.

    How: shuffle each class, then give its k-th example the due time (k + 1/2) / class_size and order
    all examples by due time (Webster apportionment). Every prefix of that order is then within one
    example of proportional for every class, and a subset of size n is the first n of the order.
    """
    labels = np.asarray(labels)
    if not 1 <= n <= len(labels):
        raise MinifreezeError(f"train size {n} must be between 1 and the {len(labels)} training examples")
    labels = _strata(labels)
    rng = np.random.default_rng(seed)
    order, due, classes = [], [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        order.append(members)
        due.append((np.arange(len(members)) + 0.5) / len(members))
        classes.append(np.full(len(members), label))
    ranked = np.lexsort((np.concatenate(classes), np.concatenate(due)))
    return np.sort(np.concatenate(order)[ranked[:n]]).tolist()


def _strata(labels: Sequence) -> np.ndarray:
    """Class ids stratify; scores (regression) and label sets (multi-label) form one stratum: a seeded shuffle."""
    ids = len(labels) == 0 or isinstance(labels[0], (int, np.integer))
    return np.asarray(labels) if ids else np.zeros(len(labels), dtype=int)


# ----------------------------------------------------------------------------------------------------
# Tokenized splits (batches are cut from them in batching.py)


@dataclass
class EncodedSplit:
    """Token ids of a split, unpadded; `token_type_ids` is None when the model has no token types."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[int]
    lengths: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_split(split: Split, tokenizer: Tokenizer, max_length: int) -> EncodedSplit:
    """Tokenize a split once; batches are cut from it every epoch."""
    encoded = tokenizer.encode(split.texts, split.pairs, max_length=max_length)
    types = encoded.token_type_ids if tokenizer.has_token_types else None
    lengths = np.fromiter(
        (len(ids) for ids in encoded.input_ids), dtype=np.int64, count=len(encoded.input_ids)
    )
    return EncodedSplit(encoded.input_ids, types, list(split.labels), lengths)
