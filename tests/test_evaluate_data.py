"""What `python -m minifreeze.evaluate` scores: always a whole file or split under its real name, never a
held-out part of train; no train file is needed; labels map to the model's own classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import toy_rows, write_tsv

from minifreeze import cli, evaluate
from minifreeze.errors import MinifreezeError


@pytest.fixture(scope="module")
def neg_pos_model(toy_model, tmp_path_factory) -> Path:
    """The toy encoder with a fresh 2-class head named neg/pos (scores do not matter here, only counts)."""
    from minifreeze.model import load_model

    folder = tmp_path_factory.mktemp("neg-pos") / "model"
    model = load_model(toy_model, id2label={0: "neg", 1: "pos"}, reinit_head=True)
    model.save_pretrained(folder, tokenizer_dir=toy_model)
    return folder


def score(model: Path, *args: str) -> dict:
    return evaluate.main(["--model", str(model), "--device", "cpu", *args])


def score_error(model: Path, *args: str) -> str:
    with pytest.raises(MinifreezeError) as error:
        score(model, *args)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_a_file_is_scored_whole_under_its_own_name(neg_pos_model, tmp_path, capsys):
    """Before: 364 of 1,821 rows (a 'validation' hold-out of the file) were scored, reported as validation."""
    file = write_tsv(tmp_path / "sst2_test.tsv", toy_rows(45, seed=3))
    result = score(neg_pos_model, "--dataset", str(file))
    assert json.loads(capsys.readouterr().out) == result
    assert result["examples"] == 45 and sum(map(sum, result["confusion_matrix"])) == 45
    assert result["split"] == "sst2_test.tsv" and result["source"] == str(file)
    assert (
        score(neg_pos_model, "--dataset", str(file), "--split", "test")["examples"] == 45
    )  # --split ignored


def test_a_data_dir_folder_with_only_a_test_file(neg_pos_model, tmp_path):
    """Before: refused with 'has no train file'; scoring needs none."""
    write_tsv(tmp_path / "task" / "test.tsv", toy_rows(30, seed=4))
    result = score(neg_pos_model, "--data-dir", str(tmp_path), "--dataset", "task", "--split", "test")
    assert (result["split"], result["examples"]) == ("test", 30)
    assert result["source"] == str(tmp_path / "task" / "test.tsv")
    assert score_error(neg_pos_model, "--data-dir", str(tmp_path), "--dataset", "task") == (
        f"{tmp_path / 'task'} has no validation split (found: test.tsv); pass --split with one of test"
    )


def test_a_folder_without_validation_is_not_scored_on_a_hold_out(neg_pos_model, tmp_path):
    write_tsv(tmp_path / "train.tsv", toy_rows(40, seed=5))
    assert "has no validation split (found: train.tsv); pass --split with one of train" in score_error(
        neg_pos_model, "--dataset", str(tmp_path)
    )
    result = score(neg_pos_model, "--dataset", str(tmp_path), "--split", "train")
    assert (result["split"], result["examples"]) == ("train", 40)  # all of train, not the 80% kept


def test_validation_star_files_are_found_and_chosen(neg_pos_model, tmp_path):
    write_tsv(tmp_path / "train.tsv", toy_rows(20, seed=1))
    write_tsv(tmp_path / "validation_matched.tsv", toy_rows(12, seed=2))
    assert score(neg_pos_model, "--dataset", str(tmp_path))["split"] == "validation_matched"
    write_tsv(tmp_path / "validation_mismatched.tsv", toy_rows(8, seed=3))
    assert score_error(neg_pos_model, "--dataset", str(tmp_path)) == (
        f"{tmp_path} has no validation split but validation_matched, validation_mismatched: choose one "
        "with --validation-split NAME"
    )
    chosen = score(neg_pos_model, "--dataset", str(tmp_path), "--validation-split", "validation_mismatched")
    assert (chosen["split"], chosen["examples"]) == ("validation_mismatched", 8)
    by_split = score(neg_pos_model, "--dataset", str(tmp_path), "--split", "validation_matched")
    assert (by_split["split"], by_split["examples"]) == ("validation_matched", 12)


def test_string_labels_map_to_the_models_classes(neg_pos_model, tmp_path):
    """Before: a file holding only 'pos' made a 1-class dataset (refused, or a wrong mapping)."""
    file = tmp_path / "only_pos.csv"
    file.write_text("text,label\n" + "".join(f"good film {i},pos\n" for i in range(7)), encoding="utf-8")
    result = score(neg_pos_model, "--dataset", str(file))
    assert result["confusion_matrix"][0] == [0, 0] and sum(result["confusion_matrix"][1]) == 7
    assert result["labels"] == ["neg", "pos"]
    file.write_text("text,label\ngood,pos\nmeh,neutral\n", encoding="utf-8")
    assert score_error(neg_pos_model, "--dataset", str(file)) == (
        f"{file}, line 3: label 'neutral' is not one of the model's classes (0=neg, 1=pos); score data "
        "labelled like the training data"
    )
    hidden = write_tsv(tmp_path / "glue_test.tsv", [("good", -1), ("bad", -1)])
    assert "line 2: label '-1' is not one of the model's classes (0=neg, 1=pos); -1 marks a hidden label" in (
        score_error(neg_pos_model, "--dataset", str(hidden))
    )
    numbers = write_tsv(tmp_path / "ids.tsv", [("good", 1), ("bad", 2)])
    assert f"{numbers}, line 3: label '2' is not one of the model's classes" in score_error(
        neg_pos_model, "--dataset", str(numbers)
    )


def test_bad_evaluation_input_is_one_line_from_the_command(neg_pos_model, tmp_path, capsys):
    file = write_tsv(tmp_path / "scores.tsv", [("good", "4.5"), ("bad", "1.0")])
    with pytest.raises(SystemExit) as exit_info:
        cli.run(evaluate.main, ["--model", str(neg_pos_model), "--device", "cpu", "--dataset", str(file)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {file}, line 2: label column 'label' holds '4.5', a number with decimals")
