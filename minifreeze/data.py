"""Datasets, splits, train-size subsets and batches.

Loading: a named dataset (`sst2`, `cola`, ...) comes from a local data dir (`--data-dir` or
`MINIFREEZE_DATA_DIR`, layout `<dir>/<name>/{train,validation}.tsv`) and else from its parquet files on
the Hub; any other Hub dataset id is read through its parquet files too; a local file or folder may be
TSV, CSV, JSON Lines or Parquet. Every problem with the input ends in one `MinifreezeError` line that
names the file, the line and the fix, because a traceback from deep inside a CSV reader helps nobody.

Choices worth knowing:
- TSV and CSV are read with CSV quoting (a field may be wrapped in double quotes, `""` inside is one
  quote), which is how pandas writes them; the shared rotten_tomatoes file relies on it.
- Labels: integers are kept as class ids (they must be >= 0; the number of classes is the largest + 1);
  strings are class names, numbered in sorted order. A validation/test label never seen in training is
  an error, not a new class.
- A test split without labels (a missing label column, or every label -1 as in GLUE) is dropped.
- `amazon_polarity` uses `content` as the text and ignores `title` (pass `text_pair_column="title"`
  to feed it as the second segment).
- Without a validation split, a stratified `validation_fraction` of train is held out (seeded).

Batches are cut from the encoded splits in `batching.py`.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from . import hub
from .errors import MinifreezeError

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

DATA_DIR_ENV = "MINIFREEZE_DATA_DIR"
TEXT_COLUMNS = ("sentence", "text", "content", "review")
LABEL_COLUMNS = ("label", "labels")
EXTENSIONS = (".tsv", ".csv", ".jsonl", ".parquet")
SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation"}
SPLIT_ALIASES |= {"dev": "validation", "test": "test"}
SENTIMENT = ("negative", "positive")
csv.field_size_limit(2**31 - 1)  # long reviews (IMDB) exceed the 128 KiB default


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
) -> Dataset:
    """Load a named dataset, a Hub dataset id (`org/name`, `org/name:config`) or a local file/folder.

    Lookup order: an existing path; `<data dir>/<name>`; a named dataset's Hub repo; a Hub dataset id.
    """
    columns = _Columns(text_column, label_column, text_pair_column)
    path = Path(name_or_path).expanduser()
    if path.exists():
        name = _canonical_name(path.stem)
        splits = _local_splits(path)
    else:
        name = _canonical_name(str(name_or_path))
        splits, columns = _remote_splits(name, columns, data_dir, revision)
    names = NAMED_DATASETS[name].names if name in NAMED_DATASETS else None
    return _build_dataset(splits, columns, names, name, split_seed, validation_fraction)


def _remote_splits(
    name: str, columns: _Columns, data_dir: str | Path | None, revision: str | None
) -> tuple[dict[str, list[_Table]], _Columns]:
    """A name that is not a path: the data dir, then the Hub (named datasets know their columns)."""
    if name.startswith((".", "/", "~")) or Path(name).suffix in EXTENSIONS:  # meant as a path: say so
        raise MinifreezeError(f"no such file or folder: {name}; check the path")
    if (local := _find_in_data_dir(name, data_dir)) is not None:
        return _local_splits(local), columns
    if name in NAMED_DATASETS:
        spec = NAMED_DATASETS[name]
        return _named_hub_splits(name, spec, revision, data_dir), columns.defaults(
            spec.text, spec.label, spec.pair
        )
    if _looks_like_hub_id(name):
        return _hub_splits(name, revision), columns
    if Path(name).suffix or name.startswith((".", "/", "~")):
        raise MinifreezeError(f"no such file or folder: {name}; check the path")
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


@dataclass
class _Table:
    """One file's columns, read on demand, and where each row sits in the file (for messages)."""

    source: str
    names: list[str]
    read: Callable[[str], list[Any]]
    lines: list[int] | None  # 1-based line of each row (text formats); None: count rows (parquet)
    num_rows: int

    def where(self, row: int) -> str:
        return (
            f"{self.source}, line {self.lines[row]}"
            if self.lines is not None
            else f"{self.source}, row {row + 1}"
        )


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


def _local_splits(path: Path) -> dict[str, list[_Table]]:
    """A file is a train split; a folder holds train/validation/test files (shards allowed)."""
    if path.is_file():
        return {"train": [_read_file(path)]}
    files = [p for p in sorted(path.rglob("*")) if p.is_file() and _extension(p) in EXTENSIONS]
    grouped = _group_by_split(files, path)
    if "train" not in grouped:
        found = ", ".join(p.relative_to(path).as_posix() for p in files) or "no data files"
        raise MinifreezeError(
            f"{path} has no train file (found: {found}): add train.tsv (or .csv/.jsonl/.parquet), "
            "optionally validation.* and test.*"
        )
    for split, paths in grouped.items():
        if len({_extension(p) for p in paths}) > 1:
            listed = ", ".join(p.name for p in paths)
            raise MinifreezeError(f"{path} has several {split} files ({listed}): keep one format per split")
    return {split: [_read_file(p) for p in paths] for split, paths in grouped.items()}


def _group_by_split(files: list[Path], root: Path) -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = {}
    for file in files:
        split = _split_of(PurePosixPath(file.relative_to(root).as_posix()))
        if split is not None:
            grouped.setdefault(split, []).append(file)
    return grouped


def _split_of(relative: PurePosixPath) -> str | None:
    """The split a file holds: `train.tsv`, `train-00000-of-00002.parquet`, `train/0000.parquet`, `imdb-train.parquet`."""
    tokens = relative.name.split(".")[0].split("-")
    parent = relative.parent.name.removeprefix("partial-")  # the parquet export of big splits
    for candidate in (tokens[0], parent, tokens[-1]):
        if candidate.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[candidate.lower()]
    return None


def _extension(path: Path) -> str:
    return path.suffix.lower()


# --- file readers ---------------------------------------------------------------------------------


def _read_file(path: Path) -> _Table:
    readers = {
        ".tsv": _read_delimited,
        ".csv": _read_delimited,
        ".jsonl": _read_jsonl,
        ".parquet": _read_parquet,
    }
    reader = readers.get(_extension(path))
    if reader is None:
        raise MinifreezeError(
            f"{path}: unsupported file type {path.suffix or '(none)'!r}; use .tsv, .csv, .jsonl or .parquet"
        )
    return reader(path)


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; a bad byte is reported with its line, since that is what people can fix."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MinifreezeError(
            f"cannot read {path}: {error.strerror or error}; check the path and permissions"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise MinifreezeError(
            f"{path}, line {line}: not valid UTF-8 (byte 0x{data[error.start]:02x}); re-save the file as UTF-8"
        ) from None


def _read_delimited(path: Path) -> _Table:
    """TSV or CSV with a header line; quoted fields may hold delimiters, quotes and newlines."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if _extension(path) == ".tsv" else ",")
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    start = 1
    try:
        for record in reader:
            if header is None:
                header = [name.strip() for name in record]
            elif record:  # blank lines carry no example
                if len(record) != len(header):
                    raise MinifreezeError(
                        f"{path}, line {start}: {len(record)} fields but the header has {len(header)}; "
                        "check for a stray delimiter or an unclosed quote"
                    )
                rows.append(record)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as error:
        raise MinifreezeError(f"{path}, line {start}: {error}; fix the quoting on that line") from None
    if header is None:
        raise MinifreezeError(
            f"{path} is empty: expected a header line (e.g. sentence<TAB>label) and examples"
        )
    by_name = {name: i for i, name in enumerate(header)}
    return _Table(str(path), header, lambda name: [row[by_name[name]] for row in rows], lines, len(rows))


def _read_jsonl(path: Path) -> _Table:
    """JSON Lines: one object per line; the first object's keys are the columns."""
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise MinifreezeError(
                f"{path}, line {number}: not valid JSON ({error.msg}); one object per line"
            ) from None
        if not isinstance(record, dict):
            raise MinifreezeError(
                f'{path}, line {number}: expected a JSON object like {{"text": ..., "label": ...}}'
            )
        records.append(record)
        lines.append(number)
    names = list(records[0]) if records else []
    return _Table(str(path), names, lambda name: [r.get(name) for r in records], lines, len(records))


def _read_parquet(path: Path, source: str | None = None) -> _Table:
    import pyarrow.parquet as pq  # pyarrow is heavy; only parquet users pay for the import

    try:
        meta = pq.ParquetFile(path)
        names, num_rows = list(meta.schema_arrow.names), meta.metadata.num_rows
    except Exception as error:  # pyarrow raises ArrowInvalid/OSError subclasses for corrupt files
        raise MinifreezeError(
            f"cannot read {source or path} as parquet ({error}); re-download or re-export it"
        ) from None
    return _Table(
        source or str(path),
        names,
        lambda name: pq.read_table(path, columns=[name]).column(0).to_pylist(),
        None,
        num_rows,
    )


# --- the Hub ----------------------------------------------------------------------------------------


def _looks_like_hub_id(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.-]+)?", name) is not None


def _named_hub_splits(
    name: str, spec: HubDataset, revision: str | None, data_dir: str | Path | None
) -> dict[str, list[_Table]]:
    try:
        return _hub_splits(spec.repo_id, revision, folder=spec.folder)
    except hub.HubUnreachable as error:
        searched = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
        where = f"in data dir {searched}" if searched else "in a data dir"
        raise MinifreezeError(
            f"dataset {name!r} not found {where} and the Hub is unreachable ({error.reason}): pass --data-dir DIR "
            f"or set {DATA_DIR_ENV} to a folder holding {name}/train.tsv and {name}/validation.tsv, or connect to the Hub"
        ) from None


def _hub_splits(dataset_id: str, revision: str | None, folder: str = "") -> dict[str, list[_Table]]:
    """The parquet files of a Hub dataset by split: the given revision, else main, else the parquet export."""
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
        if "train" in grouped:
            uri = f"hf://datasets/{repo_id}@{rev}"
            return {
                split: [_read_parquet(p, f"{uri}/{_relative(p, snapshot)}") for p in paths]
                for split, paths in _one_config(repo_id, grouped, snapshot).items()
            }
    if len(failures) == len(revisions):  # nothing was reached: say why
        raise failures[0]
    raise MinifreezeError(
        f"Hub dataset {repo_id} has no train parquet files{' under ' + folder if folder else ''}: "
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

    table: _Table
    texts: list[str]
    pairs: list[str] | None
    labels: list[Any]


def _build_dataset(
    tables: dict[str, list[_Table]],
    columns: _Columns,
    names: tuple[str, ...] | None,
    name: str,
    split_seed: int,
    validation_fraction: float,
) -> Dataset:
    parts = {
        split: [_extract(t, columns) for t in ts]
        for split, ts in tables.items()
        if not _unlabeled_test(split, ts, columns)
    }
    encode, id2label = _label_encoder(parts["train"], names)
    splits = {split: _to_split(ps, encode) for split, ps in parts.items()}
    if "validation" not in splits:
        splits["train"], splits["validation"] = _hold_out(splits["train"], validation_fraction, split_seed)
    return Dataset(splits["train"], splits["validation"], splits.get("test"), id2label, name)


def _unlabeled_test(split: str, tables: list[_Table], columns: _Columns) -> bool:
    """GLUE-style test files have no labels (column absent or all -1): they cannot be evaluated on."""
    if split != "test":
        return False
    for table in tables:
        label = columns.label or _first_present(LABEL_COLUMNS, table.names)
        values = table.read(label) if label in table.names else []
        if any(v is not None and _as_int(v) != -1 for v in values):
            return False
    return True


def _extract(table: _Table, columns: _Columns) -> _Part:
    if table.num_rows == 0:
        raise MinifreezeError(
            f"{table.source} has no examples: add rows below the header (or remove the file)"
        )
    text = _column(table, columns.text, TEXT_COLUMNS, "text", "--text-column")
    label = _column(table, columns.label, LABEL_COLUMNS, "label", "--label-column")
    texts = _texts(table, text)
    pairs = (
        _texts(table, _column(table, columns.pair, (), "text pair", "--text-pair-column"))
        if columns.pair
        else None
    )
    return _Part(table, texts, pairs, table.read(label))


def _column(table: _Table, given: str | None, candidates: Sequence[str], role: str, option: str) -> str:
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


def _texts(table: _Table, column: str) -> list[str]:
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

    Integer labels are class ids already; string labels are class names, numbered in sorted order.
    """
    first = train[0].labels[0]
    integer = _as_int(first) is not None
    seen: set[Any] = set()
    for part in train:
        for row, value in enumerate(part.labels):
            seen.add(_check_label(part.table, row, value, integer, names))
    if integer:
        classes = list(range(max(seen) + 1)) if names is None else list(range(len(names)))
        id2label = {i: names[i] if names else str(i) for i in classes}
    else:
        id2label = dict(enumerate(sorted(seen)))
    to_id = {label: i for i, label in id2label.items()} if not integer else None

    def encode(part: _Part) -> list[int]:
        ids = []
        for row, value in enumerate(part.labels):
            label = _check_label(part.table, row, value, integer, names)
            if label not in seen:
                shown = ", ".join(map(str, sorted(seen)))
                raise MinifreezeError(
                    f"{part.table.where(row)}: label {label!r} never appears in the training data ({shown}); "
                    "fix the label or add training examples of that class"
                )
            ids.append(label if to_id is None else to_id[label])
        return ids

    return encode, id2label


def _check_label(table: _Table, row: int, value: Any, integer: bool, names: tuple[str, ...] | None) -> Any:
    """The label as an int (integer datasets) or a stripped string; anything else is an error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MinifreezeError(f"{table.where(row)}: missing label; give every example a label")
    number = _as_int(value)
    if integer != (number is not None):
        kind = "integers" if integer else "class names"
        raise MinifreezeError(
            f"{table.where(row)}: label {value!r} mixes with earlier {kind}; use integer ids 0..C-1 or class "
            "names throughout"
        )
    if not integer:
        return str(value).strip()
    limit = len(names) if names else None
    if number < 0 or (limit is not None and number >= limit):
        allowed = f"0..{limit - 1}" if limit else "integers >= 0"
        raise MinifreezeError(
            f"{table.where(row)}: label {number} is out of range ({allowed}); fix the label"
        )
    return number


def _as_int(value: Any) -> int | None:
    """Integer labels arrive as ints (parquet, JSON), integral floats, or digit strings (TSV/CSV)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


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


def _select(split: Split, indices: Sequence[int], source: str) -> Split:
    """Kept for train.py, which called this before `Split.select` existed; use `split.select`."""
    return split.select(indices, source)


# ----------------------------------------------------------------------------------------------------
# Splits and subsets


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, validation), each sorted, holding out about `fraction` of every class.

    Every class keeps at least one training example; a class with one example stays in train.
    """
    if not 0 < fraction < 1:
        raise MinifreezeError(f"validation fraction must be between 0 and 1, got {fraction}")
    labels = np.asarray(labels)
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
    rng = np.random.default_rng(seed)
    order, due, classes = [], [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        order.append(members)
        due.append((np.arange(len(members)) + 0.5) / len(members))
        classes.append(np.full(len(members), label))
    ranked = np.lexsort((np.concatenate(classes), np.concatenate(due)))
    return np.sort(np.concatenate(order)[ranked[:n]]).tolist()


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
