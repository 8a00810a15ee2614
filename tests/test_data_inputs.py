"""Data files as people really have them: quotes in TSV text, labels that are not classes, split names
other than train/validation/test, and hostile files. Each bad input is one MinifreezeError line naming
the file (and line where there is one) and the fix; each good one loads exactly what is in the file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minifreeze.data import load_dataset, load_split
from minifreeze.errors import MinifreezeError

HEADER = "sentence\tlabel\n"


def tsv(path: Path, body: str, header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body, encoding="utf-8")
    return path


def rows_tsv(path: Path, rows: list[tuple[str, object]]) -> Path:
    return tsv(path, "".join(f"{text}\t{label}\n" for text, label in rows))


def parquet(path: Path, columns: dict[str, list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def load_error(path, **kwargs) -> str:
    with pytest.raises(MinifreezeError) as error:
        load_dataset(path, **kwargs)
    message = str(error.value)
    assert "\n" not in message, "user-facing errors are one line"
    return message


BINARY = [(f"example number {i}", i % 2) for i in range(10)]


# ----------------------------------------------------------------------------------------------------
# TSV quoting: a quote is text unless the whole file was written by a CSV writer


def sst2_style_rows(n: int = 82) -> list[tuple[str, int]]:
    """Sentences that open quotes they never close, close quotes never opened, or quote a title."""
    shapes = [
        '" the movie is a mess',
        'a "great" film , truly',
        '"',
        'she said " no way',
        '" cremaster 3 " should come with a warning',
        'ends with a quote "',
        "plain sentence without quotes",
        '""double opening',
    ]
    return [(f"{shapes[i % len(shapes)]} {i}", i % 2) for i in range(n)]


def test_tsv_quotes_in_text_are_kept_exactly_and_no_row_spans_lines(tmp_path):
    """Before: a field opening with `"` swallowed the following lines (82 rows read as far fewer)."""
    rows = sst2_style_rows()
    file = rows_tsv(tmp_path / "train.tsv", rows)
    rows_tsv(tmp_path / "validation.tsv", rows[:4])
    data = load_dataset(tmp_path)
    assert data.train.texts == [text for text, _ in rows] and len(data.train) == 82
    assert data.train.labels == [label for _, label in rows]
    name, split = load_split(file, "validation", {0: "0", 1: "1"})
    assert (name, split.texts) == ("train.tsv", [text for text, _ in rows])


def test_the_shared_rotten_tomatoes_file_is_still_unquoted(data_dir):
    """Its 230 texts with quotes are CSV-quoted fields (pandas wrote it): read as Python's csv reads them."""
    data = load_dataset("rotten_tomatoes", data_dir=data_dir)
    with (data_dir / "rotten_tomatoes" / "train.tsv").open(newline="", encoding="utf-8") as file:
        expected = [row[0] for row in csv.reader(file, delimiter="\t")][1:]
    assert data.train.texts == expected and sum('"' in t for t in expected) == 230


def test_tsv_line_break_inside_a_quoted_field_is_an_error_on_its_line(tmp_path):
    """pandas quotes a text with a line break; a TSV example must stay on one line, so say which one."""
    file = tsv(tmp_path / "train.tsv", 'fine\t1\n"line one\nline two"\t0\n')
    message = load_error(file)
    assert message.startswith(f"{file}, line 3: 1 fields but the header has 2;") and "line break" in message


def test_csv_stray_quote_is_an_error_not_a_merged_row(tmp_path):
    """Before: `"oops...` swallowed the next lines up to a quote and the row count still matched."""
    file = tmp_path / "train.csv"
    file.write_text('text,label\n"oops, the start,0\nb,1\nc" end,1\nd,0\n', encoding="utf-8")
    message = load_error(file)
    assert message.startswith(f"{file}, line 2: ") and "fix the quoting" in message


def test_crlf_line_endings_and_a_byte_order_mark(tmp_path):
    body = "".join(f"{text}\t{label}\r\n" for text, label in BINARY)
    (tmp_path / "train.tsv").write_bytes(b"\xef\xbb\xbf" + (HEADER.replace("\n", "\r\n") + body).encode())
    csv_body = "".join(f'"{text}, ok",{label}\r\n' for text, label in BINARY[:4])
    (tmp_path / "validation.csv").write_bytes(b"\xef\xbb\xbftext,label\r\n" + csv_body.encode())
    data = load_dataset(tmp_path, text_column=None)
    assert data.train.texts == [text for text, _ in BINARY] and data.train.labels == [y for _, y in BINARY]
    assert data.validation.texts == [f"{text}, ok" for text, _ in BINARY[:4]]
    jsonl = tmp_path / "j" / "train.jsonl"
    jsonl.parent.mkdir()
    lines = "".join(json.dumps({"text": t, "label": y}) + "\r\n" for t, y in BINARY)
    jsonl.write_bytes(b"\xef\xbb\xbf" + lines.encode())
    assert load_dataset(jsonl).num_labels == 2


# ----------------------------------------------------------------------------------------------------
# Labels that are not classes


def test_decimal_labels_are_refused_as_regression(tmp_path):
    """Before: STS-B scores 0.0..5.0 became one class per distinct value (221 classes)."""
    file = rows_tsv(tmp_path / "train.tsv", [("a", "0.0"), ("b", "3.8"), ("c", "5.0")])
    message = load_error(file)
    assert message.startswith(f"{file}, line 3: label column 'label' holds '3.8', a number with decimals")
    assert "integer class ids 0..C-1 or string class names" in message
    assert message.endswith("for scores train with --problem-type regression")
    floats = parquet(tmp_path / "p" / "train.parquet", {"text": ["a", "b"], "score": [1.0, 2.5]})
    assert "row 2: label column 'score' holds 2.5, a number with decimals" in load_error(
        floats, label_column="score"
    )


def test_list_labels_are_refused_as_multi_label(tmp_path):
    """Before: JSONL `[0, 1]` became a class named '[0, 1]'."""
    file = tmp_path / "train.jsonl"
    file.write_text(
        "".join(json.dumps({"text": t, "labels": y}) + "\n" for t, y in [("a", [0]), ("b", [0, 1])]),
        encoding="utf-8",
    )
    message = load_error(file)
    assert message.startswith(f"{file}, line 1: label column 'labels' holds [0], a list;")
    assert message.endswith("for several classes per example train with --problem-type multi_label")
    text_list = rows_tsv(tmp_path / "t" / "train.tsv", [("a", "[0, 1]"), ("b", "[1]")])
    assert "holds '[0, 1]', a list;" in load_error(text_list)


def test_whole_number_float_labels_are_class_ids(tmp_path):
    """pandas writes an int column with a gap as 1.0 / 0.0: those are the classes 1 and 0, not names."""
    file = rows_tsv(tmp_path / "train.tsv", [(f"t{i}", f"{i % 2}.0") for i in range(6)] + [("x", "1")])
    data = load_dataset(file)
    assert data.id2label == {0: "0", 1: "1"} and sorted(set(data.train.labels + data.validation.labels)) == [
        0,
        1,
    ]
    floats = parquet(tmp_path / "p" / "train.parquet", {"text": ["a", "b", "c"], "label": [0.0, 1.0, None]})
    assert "row 3: missing label" in load_error(floats)
    nan = parquet(
        tmp_path / "n" / "train.parquet", {"text": ["a", "b", "c"], "label": [0.0, 1.0, float("nan")]}
    )
    assert "row 3: missing label" in load_error(nan)


def test_a_single_class_training_set_is_refused(tmp_path):
    """Before: it trained to accuracy 1.000 and loss 0."""
    file = rows_tsv(tmp_path / "train.tsv", [(f"t{i}", 1) for i in range(8)])
    message = load_error(file)
    assert message.startswith(f"{file}: every training label in column 'label' is 1;")
    assert "needs at least 2 classes" in message
    names = rows_tsv(tmp_path / "s" / "train.tsv", [(f"t{i}", "pos") for i in range(8)])
    assert "is 'pos'; a classifier needs at least 2 classes" in load_error(names)


def test_a_label_typo_that_leaves_a_gap_is_named_with_its_line(tmp_path):
    """Before: a 7 in a 0/1 file silently made an 8-class model."""
    rows = [*BINARY, ("typo", 7), *BINARY, ("typo again", 7)]
    file = rows_tsv(tmp_path / "train.tsv", rows)
    assert load_error(file) == (
        f"{file}, line 12: label 7 (2 rows, the first here) leaves a gap: training class ids must be 0..C-1, "
        "but no example has label 2..6 (labels: 0, 1, 7); fix the typo, or renumber the classes from 0"
    )
    one_based = rows_tsv(tmp_path / "b" / "train.tsv", [(f"t{i}", 1 + i % 3) for i in range(9)])
    assert "line 2: label 1 (3 rows, the first here) leaves a gap" in load_error(one_based)
    assert "no example has label 0 (labels: 1, 2, 3)" in load_error(one_based)


def test_validation_may_lack_a_class_and_string_labels_still_map(tmp_path):
    rows_tsv(tmp_path / "train.tsv", [(f"t{i}", i % 3) for i in range(9)])
    rows_tsv(tmp_path / "validation.tsv", [("v0", 0), ("v2", 2)])
    data = load_dataset(tmp_path)
    assert data.num_labels == 3 and data.validation.labels == [0, 2]
    named = rows_tsv(tmp_path / "s" / "train.tsv", [("a", "pos"), ("b", "neg"), ("c", " pos ")])
    assert load_dataset(named, validation_fraction=0.3).id2label == {0: "neg", 1: "pos"}


def test_an_empty_label_cell_names_its_line(tmp_path):
    file = rows_tsv(tmp_path / "train.tsv", [*BINARY[:3], ("no label", "")])
    assert load_error(file) == f"{file}, line 5: missing label; give every example a label"


# ----------------------------------------------------------------------------------------------------
# Split names: dev, validation_matched, several candidates


def test_dev_file_is_the_validation_split(tmp_path):
    rows_tsv(tmp_path / "train.tsv", BINARY)
    rows_tsv(tmp_path / "dev.tsv", BINARY[:4])
    data = load_dataset(tmp_path)
    assert len(data.train) == 10 and data.validation.source.endswith("dev.tsv")


def test_a_single_validation_star_file_is_picked_up_not_replaced_by_a_hold_out(tmp_path):
    """Before: validation_matched.tsv was ignored and 20% of train was held out instead."""
    rows_tsv(tmp_path / "train.tsv", BINARY)
    rows_tsv(tmp_path / "validation_matched.tsv", BINARY[:4])
    data = load_dataset(tmp_path)
    assert len(data.train) == 10 and data.validation.source.endswith("validation_matched.tsv")


def test_several_validation_files_must_be_chosen(tmp_path):
    rows_tsv(tmp_path / "train.tsv", BINARY)
    rows_tsv(tmp_path / "dev_matched.tsv", BINARY[:4])
    rows_tsv(tmp_path / "validation_mismatched.tsv", BINARY[:2])
    assert load_error(tmp_path) == (
        f"{tmp_path} has no validation split but validation_matched, validation_mismatched: "
        "choose one with --validation-split NAME"
    )
    chosen = load_dataset(tmp_path, validation_split="validation_mismatched")
    assert len(chosen.validation) == 2 and len(chosen.train) == 10
    assert len(load_dataset(tmp_path, validation_split="validation_matched").validation) == 4
    assert load_error(tmp_path, validation_split="nope") == (
        f"{tmp_path} has no nope split (found: dev_matched.tsv, train.tsv, validation_mismatched.tsv); "
        "pass --validation-split with one of train, validation_matched, validation_mismatched"
    )
    assert "that is the training data; name another split" in load_error(tmp_path, validation_split="train")


# ----------------------------------------------------------------------------------------------------
# Hostile files


def test_a_folder_without_split_files_lists_what_it_found(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "has no train, validation or test file (found: no .tsv/.csv/.jsonl/.parquet files)" in load_error(
        tmp_path / "empty"
    )
    rows_tsv(tmp_path / "odd" / "reviews.tsv", BINARY)
    (tmp_path / "odd" / "notes.txt").write_text("hi", encoding="utf-8")
    message = load_error(tmp_path / "odd")
    assert message.startswith(
        f"{tmp_path / 'odd'} has no train, validation or test file (found: reviews.tsv)"
    )


def test_a_truncated_or_damaged_parquet_file_is_one_line(tmp_path):
    good = parquet(tmp_path / "good.parquet", {"text": [f"t{i}" for i in range(200)], "label": [0, 1] * 100})
    data = good.read_bytes()
    truncated = tmp_path / "truncated" / "train.parquet"
    truncated.parent.mkdir()
    truncated.write_bytes(data[: len(data) // 2])
    assert f"cannot read {truncated} as parquet (" in load_error(truncated)
    damaged = tmp_path / "damaged" / "train.parquet"  # footer intact, column pages garbage
    damaged.parent.mkdir()
    damaged.write_bytes(data[:4] + b"\x55" * (len(data) // 2 - 4) + data[len(data) // 2 :])
    assert f"cannot read {damaged} as parquet (" in load_error(damaged)


def test_jsonl_columns_come_from_every_line_not_just_the_first(tmp_path):
    file = tmp_path / "train.jsonl"
    lines = [{"text": "a"}, *({"text": t, "label": y} for t, y in BINARY)]
    file.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert load_error(file) == f"{file}, line 1: missing label; give every example a label"


def test_whitespace_only_lines_are_blank(tmp_path):
    file = tsv(tmp_path / "train.tsv", "  \n\n")
    assert load_error(file) == f"{file} has no examples: add rows below the header (or remove the file)"
    only_blank = tmp_path / "b" / "train.tsv"
    only_blank.parent.mkdir()
    only_blank.write_text("\n \n", encoding="utf-8")
    assert f"{only_blank} is empty" in load_error(only_blank)


def test_a_header_naming_a_column_twice(tmp_path):
    """Before: the second `sentence` column silently won."""
    file = tsv(tmp_path / "train.tsv", "a\tb\t1\n", header="sentence\tsentence\tlabel\n")
    assert load_error(file) == f"{file}, line 1: column 'sentence' appears twice in the header; rename one"
