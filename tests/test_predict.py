"""A trained model folder remembers how it reads its input; predict takes pairs and files; bad input in
the model/tokenizer/predict area is one line, never a traceback (train, evaluate, predict alike)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import toy_rows
from safetensors.torch import load_file, save_file

from minifreeze import cli, data, evaluate, predict
from minifreeze.errors import MinifreezeError
from minifreeze.train import main as train_main


def train_toy(toy_model, data_dir, out, *extra) -> Path:
    train_main(
        [
            "--model", str(toy_model), "--dataset", "toy", "--data-dir", str(data_dir), "--out", str(out),
            "--max-steps", "3", "--batch-size", "16", "--no-progress", "--train-size", "64", *extra,
        ]
    )  # fmt: skip
    return out / "model"


@pytest.fixture(scope="module")
def single_model(toy_model, toy_data, tmp_path_factory) -> Path:
    return train_toy(toy_model, toy_data, tmp_path_factory.mktemp("single") / "run", "--max-length", "24")


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory) -> Path:
    """toy/ with a second text column: the label's sentiment word sits in either text."""
    root = tmp_path_factory.mktemp("pairs")
    for split, seed in (("train", 1), ("validation", 2)):
        rows = toy_rows(64, seed)
        lines = [
            f"{t.split()[0]} plot\t{t}\t{y}" if i % 2 else f"{t}\tthe plot\t{y}"
            for i, (t, y) in enumerate(rows)
        ]
        (root / "toy").mkdir(exist_ok=True)
        (root / "toy" / f"{split}.tsv").write_text("sentence\tsecond\tlabel\n" + "\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def pair_model(toy_model, pair_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pair") / "run"
    return train_toy(toy_model, pair_data, out, "--text-pair-column", "second", "--max-length", "40")


def lengths_used(monkeypatch) -> list[int]:
    """The max_length every encode_split call gets (predict and evaluate both go through it)."""
    seen: list[int] = []
    real = data.encode_split

    def spy(split, tokenizer, max_length):
        seen.append(max_length)
        return real(split, tokenizer, max_length)

    monkeypatch.setattr(data, "encode_split", spy)
    return seen


def one_line_error(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main, argv)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_training_saves_how_the_model_reads_its_input(single_model, pair_model):
    block = json.loads((single_model / "config.json").read_text())["minifreeze"]
    assert block == {
        "pooling": "cls", "max_length": 24, "text_column": None, "text_pair_column": None,
        "label_column": None, "dataset": "toy", "pairs": False,
        "problem_type": "single_label_classification", "threshold": 0.5,
    }  # fmt: skip
    block = json.loads((pair_model / "config.json").read_text())["minifreeze"]
    assert block["pairs"] is True and block["text_pair_column"] == "second" and block["max_length"] == 40


def test_predict_and_evaluate_default_to_the_trained_max_length(single_model, toy_data, monkeypatch, capsys):
    seen = lengths_used(monkeypatch)
    predict.main(["--model", str(single_model), "a lovely story"])
    predict.main(["--model", str(single_model), "--max-length", "9", "a lovely story"])  # a flag wins
    evaluate.main(["--model", str(single_model), "--dataset", "toy", "--data-dir", str(toy_data)])
    assert seen == [24, 9, 24]


def test_predict_pairs_from_arguments(pair_model, capsys):
    results = predict.main(["--model", str(pair_model), "lovely", "the plot", "--pair", "the plot", "awful"])
    assert [(r["text"], r["text_pair"]) for r in results] == [("lovely", "the plot"), ("the plot", "awful")]
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == results
    message = one_line_error(capsys, predict.main, ["--model", str(pair_model), "lovely"])
    assert "trained on text pairs (second text: 'second')" in message and "--pair" in message
    message = one_line_error(capsys, predict.main, ["--model", str(pair_model), "a", "b", "--pair", "c"])
    assert "2 texts but 1 --pair texts" in message


def test_single_text_model_refuses_pairs(single_model, capsys):
    message = one_line_error(capsys, predict.main, ["--model", str(single_model), "a", "--pair", "b"])
    assert "trained on single texts" in message


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_predict_a_table_file_one_line_per_row_in_order(pair_model, tmp_path, capsys, suffix):
    rows = [("lovely", "the plot"), ("the plot", "awful"), ('a "quoted", text', "dull\tone")]
    file = tmp_path / f"in{suffix}"
    if suffix == ".jsonl":
        file.write_text("".join(json.dumps({"sentence": a, "second": b}) + "\n" for a, b in rows))
    else:
        import csv

        with open(file, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t" if suffix == ".tsv" else ",")
            writer.writerows([("sentence", "second"), *rows])
    results = predict.main(["--model", str(pair_model), "--file", str(file)])
    assert [(r["text"], r["text_pair"]) for r in results] == rows
    expected = predict.main(
        ["--model", str(pair_model), *[a for a, _ in rows], "--pair", *[b for _, b in rows]]
    )
    assert results == expected


def test_a_table_without_the_trained_columns_names_them(pair_model, single_model, tmp_path, capsys):
    file = tmp_path / "in.tsv"
    file.write_text("comment\nlovely\n")
    message = one_line_error(capsys, predict.main, ["--model", str(pair_model), "--file", str(file)])
    assert "no text column one of sentence" in message and "--text-column" in message
    results = predict.main(["--model", str(single_model), "--file", str(file), "--text-column", "comment"])
    assert [r["text"] for r in results] == ["lovely"]


def test_evaluate_scores_a_pair_model_with_its_saved_columns(pair_model, pair_data, toy_data, capsys):
    result = evaluate.main(["--model", str(pair_model), "--dataset", "toy", "--data-dir", str(pair_data)])
    assert sum(map(sum, result["confusion_matrix"])) == 64
    message = one_line_error(
        capsys, evaluate.main, ["--model", str(pair_model), "--dataset", "toy", "--data-dir", str(toy_data)]
    )
    assert "no text pair column 'second'" in message


def test_evaluate_refuses_single_texts_for_a_pair_model(pair_model, toy_data, tmp_path, capsys):
    """A pair model whose pair column is not known (saved as None): refused, not scored on half its input."""
    folder = tmp_path / "model"
    shutil.copytree(pair_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["minifreeze"]["text_pair_column"] = None
    (folder / "config.json").write_text(json.dumps(config))
    argv = ["--model", str(folder), "--dataset", "toy", "--data-dir", str(toy_data)]
    message = one_line_error(capsys, evaluate.main, argv)
    assert "trained on text pairs but got single texts" in message and "--text-pair-column" in message


def test_max_length_beyond_the_positions_is_capped_everywhere(
    single_model, toy_model, toy_data, tmp_path, capsys
):
    """The toy model has 128 positions; --max-length 600 with a long text used to be an IndexError."""
    long_text = "the movie was really quite good " * 40
    with pytest.warns(UserWarning, match="max_length 600 is more than the model's 128 positions"):
        [result] = predict.main(["--model", str(single_model), "--max-length", "600", long_text])
    assert result["label"] in ("0", "1")
    with pytest.warns(UserWarning, match="max_length 600 is more than the model's 128 positions"):
        evaluate.main(
            [
                "--model",
                str(single_model),
                "--dataset",
                "toy",
                "--data-dir",
                str(toy_data),
                "--max-length",
                "600",
            ]
        )
    long_data = tmp_path / "long"
    (long_data / "toy").mkdir(parents=True)
    for split in ("train", "validation"):
        (long_data / "toy" / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + f"{long_text}\t1\ngood\t0\n" * 8
        )
    with pytest.warns(UserWarning, match="max_length 600 is more than the model's 128 positions"):
        model = train_toy(toy_model, long_data, tmp_path / "run", "--max-length", "600", "--max-steps", "1")
    assert json.loads((model / "config.json").read_text())["minifreeze"]["max_length"] == 128


def test_predict_with_no_texts_is_one_line(single_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n  \n"))
    assert one_line_error(capsys, predict.main, ["--model", str(single_model)]).endswith(
        "no texts to classify in standard input"
    )
    (tmp_path / "empty.txt").write_text("")
    message = one_line_error(
        capsys, predict.main, ["--model", str(single_model), "--file", str(tmp_path / "empty.txt")]
    )
    assert "no texts to classify in" in message
    message = one_line_error(
        capsys, predict.main, ["--model", str(single_model), "--file", str(tmp_path / "no.tsv")]
    )
    assert "no such file" in message


def test_an_empty_text_still_gets_a_prediction(single_model, capsys):
    [result] = predict.main(["--model", str(single_model), ""])
    assert result["text"] == "" and abs(sum(result["probabilities"].values()) - 1) < 1e-5


def test_broken_weights_give_an_error_not_nan_json(single_model, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(single_model, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["classifier.weight"] = torch.full_like(state["classifier.weight"], float("nan"))
    save_file(state, str(folder / "model.safetensors"))
    message = one_line_error(capsys, predict.main, ["--model", str(folder), "lovely"])
    assert "NaN/inf" in message and capsys.readouterr().out == ""


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_a_run_folder_points_at_its_model(single_model, toy_data, tmp_path, capsys, command):
    run = single_model.parent
    argv = {
        "train": [
            "--dataset",
            "toy",
            "--data-dir",
            str(toy_data),
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ],
        "evaluate": ["--dataset", "toy", "--data-dir", str(toy_data)],
        "predict": ["lovely"],
    }[command]
    main = {"train": train_main, "evaluate": evaluate.main, "predict": predict.main}[command]
    message = one_line_error(capsys, main, ["--model", str(run), *argv])
    assert message == f"error: {run} is a training run folder; use --model {run / 'model'}"


def test_config_and_weights_that_disagree_on_labels_name_the_tensor(single_model, toy_data, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(single_model, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["classifier.weight"] = torch.zeros(3, state["classifier.weight"].shape[1])
    state["classifier.bias"] = torch.zeros(3)
    save_file(state, str(folder / "model.safetensors"))
    argv = ["--model", str(folder), "--dataset", "toy", "--data-dir", str(toy_data)]
    message = one_line_error(capsys, evaluate.main, argv)
    assert "shape mismatch for classifier.bias: checkpoint (3,), model (2,)" in message
    assert "config.json and the weights disagree" in message


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda f: (f / "config.json").unlink(), "no config.json in"),
        (lambda f: (f / "config.json").write_text("{not json"), "is not valid JSON"),
        (lambda f: (f / "config.json").write_text("[1, 2]"), "does not hold a JSON object"),
        (lambda f: edit_config(f, model_type="gpt2"), "unknown model_type 'gpt2'"),
        (lambda f: edit_config(f, hidden_size="wide"), "a field has the wrong type"),
        (lambda f: edit_config(f, id2label={"0": "a", "2": "b"}), "id2label keys must be 0..1"),
        (lambda f: edit_config(f, num_attention_heads=0), "sizes must be positive"),
        (lambda f: (f / "vocab.txt").unlink(), "no tokenizer in"),
        (lambda f: add_words(f / "vocab.txt", 3), "the tokenizer has 30 tokens but the model's embedding only 27"),
        (lambda f: truncate(f / "model.safetensors"), "corrupted or truncated"),
    ],
    ids=["no-config", "config-not-json", "config-a-list", "model-type", "field-type", "labels", "zero-heads",
         "no-tokenizer", "vocab-larger", "truncated-weights"],
)  # fmt: skip
def test_broken_model_folders_are_one_line_in_predict(single_model, tmp_path, capsys, damage, expected):
    folder = tmp_path / "model"
    shutil.copytree(single_model, folder)
    damage(folder)
    assert expected in one_line_error(capsys, predict.main, ["--model", str(folder), "lovely"])


def edit_config(folder: Path, **fields) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **fields}))


def add_words(vocab: Path, n: int) -> None:
    vocab.write_text(vocab.read_text() + "".join(f"extra{i}\n" for i in range(n)))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def test_predict_a_missing_model_or_an_unreachable_hub_id(tmp_path, capsys, monkeypatch):
    from _hubcache import use_offline_cache

    message = one_line_error(capsys, predict.main, ["--model", str(tmp_path / "nope"), "x"])
    assert "does not exist" in message
    use_offline_cache(monkeypatch, tmp_path / "empty-cache")
    message = one_line_error(capsys, predict.main, ["--model", "someone/not-cached", "x"])
    assert "cannot get model 'someone/not-cached'" in message and "offline" in message


def test_predict_function_takes_a_bare_string(single_model):
    from minifreeze import load_model, load_tokenizer

    model, tokenizer = load_model(single_model).eval(), load_tokenizer(single_model)
    assert [r["text"] for r in predict.predict(model, tokenizer, "lovely story")] == ["lovely story"]
    with pytest.raises(MinifreezeError, match="2 texts but 1 pairs"):
        predict.predict(model, tokenizer, ["a", "b"], pairs=["c"])


def test_a_mean_pooled_run_works_with_every_command(toy_model, toy_data, tmp_path, capsys):
    """The mean-pooled export hides its model_type from transformers; our commands still read it."""
    from minifreeze import inspect

    model = train_toy(toy_model, toy_data, tmp_path / "run", "--pooling", "mean")
    assert json.loads((model / "config.json").read_text())["model_type"] == "minifreeze-mean-pooled"
    [result] = predict.main(["--model", str(model), "lovely"])
    assert result["label"] in ("0", "1")
    evaluated = evaluate.main(["--model", str(model), "--dataset", "toy", "--data-dir", str(toy_data)])
    assert sum(map(sum, evaluated["confusion_matrix"])) == 64
    inspect.main(["--model", str(model), "--freeze", "1", "--batch", "2", "--seq", "8", "--json"])
    assert "head" in capsys.readouterr().out
