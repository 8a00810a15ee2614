"""How each data file format becomes a `Table`: TSV, CSV, JSON Lines and Parquet.

A `Table` is one file's column names, a reader per column and the line of each row, so that every
problem found later (a missing label, an empty text) names the file and line people can fix. Every
problem found here ends in one `MinifreezeError` line too: a traceback from inside a CSV reader or
pyarrow helps nobody.

Quoting: a CSV field may be quoted (`""` inside is one quote) and may then hold commas and line breaks.
A TSV example is one line; its quotes are text (SST-2-style sentences open quotes they never close)
unless the whole file was written by a CSV writer, see `_tsv_records`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MinifreezeError

EXTENSIONS = (".tsv", ".csv", ".jsonl", ".parquet")
csv.field_size_limit(2**31 - 1)  # long reviews (IMDB) exceed the 128 KiB default


@dataclass
class Table:
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


def extension(path: Path) -> str:
    return path.suffix.lower()


def read_file(path: Path) -> Table:
    readers = {
        ".tsv": _read_delimited,
        ".csv": _read_delimited,
        ".jsonl": _read_jsonl,
        ".parquet": read_parquet,
    }
    reader = readers.get(extension(path))
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


def _read_delimited(path: Path) -> Table:
    """A TSV or CSV file with a header line, one `Table` row per example."""
    text = _read_text(path)
    if extension(path) == ".tsv":
        records = _tsv_records(text)
        hint = "a TSV example is one line with one tab between fields: check for a stray tab or a line break"
    else:
        records = _csv_records(path, text)
        hint = "check for a stray comma or an unclosed quote"
    header = next(records, None)
    if header is None:
        raise MinifreezeError(
            f"{path} is empty: expected a header line (e.g. sentence<TAB>label) and examples"
        )
    names = [name.strip() for name in header[1]]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise MinifreezeError(f"{path}, line 1: column {twice[0]!r} appears twice in the header; rename one")
    rows, lines = [], []
    for line, record in records:
        if len(record) != len(names):
            raise MinifreezeError(
                f"{path}, line {line}: {len(record)} fields but the header has {len(names)}; {hint}"
            )
        rows.append(record)
        lines.append(line)
    by_name = {name: i for i, name in enumerate(names)}
    return Table(str(path), names, lambda name: [row[by_name[name]] for row in rows], lines, len(rows))


_QUOTED_FIELD = r'"(?:[^"]|"")*"'  # wrapped in quotes, every inner quote doubled
_QUOTED_LINE = re.compile(rf'(?:{_QUOTED_FIELD}|[^"\t]*)(?:\t(?:{_QUOTED_FIELD}|[^"\t]*))*')


def _tsv_records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line: a TSV example never spans lines.

    Quotes are text (SST-2-style sentences open quotes they never close), unless the file was written by
    a CSV writer: when every line holding a quote consists of whole quoted fields (`"a "" b"`, as pandas
    writes them), those fields are unquoted. One stray quote anywhere keeps every quote as text.
    """
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    quoted = [line for line in lines if '"' in line]
    unquote = bool(quoted) and all(_QUOTED_LINE.fullmatch(line) for line in quoted)
    for number, line in enumerate(lines, start=1):
        if line.strip():  # blank lines carry no example
            fields = next(csv.reader([line], delimiter="\t")) if unquote and '"' in line else line.split("\t")
            yield number, fields


def _csv_records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each CSV record; a quoted field may hold commas, quotes and line breaks.

    Strict quoting: a quote that closes a field must be followed by a comma or the line end, so a stray
    quote is an error on its line instead of silently swallowing the lines that follow it.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for record in reader:
            if record:
                yield start, record
            start = reader.line_num + 1
    except csv.Error as error:
        raise MinifreezeError(f"{path}, line {start}: {error}; fix the quoting of that record") from None


def _read_jsonl(path: Path) -> Table:
    """JSON Lines: one object per line; every key of any object is a column (absent: None)."""
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
    names = list(dict.fromkeys(key for record in records for key in record))  # every key, first-seen order
    return Table(str(path), names, lambda name: [r.get(name) for r in records], lines, len(records))


def read_parquet(path: Path, source: str | None = None) -> Table:
    import pyarrow.parquet as pq  # pyarrow is heavy; only parquet users pay for the import

    def parquet(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except Exception as error:  # pyarrow raises ArrowInvalid/OSError subclasses for corrupt files
            raise MinifreezeError(
                f"cannot read {source or path} as parquet ({' '.join(str(error).split())}); re-download or re-export it"
            ) from None

    meta = parquet(lambda: pq.ParquetFile(path))
    names, num_rows = parquet(lambda: (list(meta.schema_arrow.names), meta.metadata.num_rows))
    return Table(
        source or str(path),
        names,
        lambda name: parquet(lambda: pq.read_table(path, columns=[name]).column(0).to_pylist()),
        None,
        num_rows,
    )
