"""Problem types (issue 22): regression and multi-label next to single-label classification, class weights,
label smoothing and the metrics that pick a checkpoint; each through data, loss, train, evaluate and predict."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import toy_rows, write_tsv

from minifreeze import cli, evaluate, predict, problem
from minifreeze.data import load_dataset, load_split
from minifreeze.errors import MinifreezeError
from minifreeze.resume import Progress
from minifreeze.sweep import SweepOptions, make_grid, run_sweep
from minifreeze.train import main as train_main


def one_line(call, *args, **kwargs) -> str:
    with pytest.raises(MinifreezeError) as error:
        call(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message, "user-facing errors are one line"
    return message


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, records: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in records))


def train(toy_model, data_dir: Path, out: Path, *extra) -> dict:
    return train_main(
        [
            "--model", str(toy_model), "--dataset", "toy", "--data-dir", str(data_dir), "--out", str(out),
            "--batch-size", "16", "--no-progress", "--train-size", "0", "--freeze", "1", "--seed", "0",
            "--warmup", "0", "--max-length", "24", *extra,
        ]
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------
# Labels


def test_regression_labels_are_numbers_and_hold_out_without_strata(tmp_path):
    file = write(tmp_path / "train.tsv", "text\tscore\n" + "".join(f"t{i}\t{i / 4}\n" for i in range(20)))
    dataset = load_dataset(file, label_column="score", problem_type=problem.REGRESSION)
    assert dataset.id2label == {0: "LABEL_0"}  # one output, named as transformers names it
    labels = sorted(dataset.train.labels + dataset.validation.labels)
    assert labels == [i / 4 for i in range(20)] and len(dataset.validation) == 4  # a seeded 20% held out
    bad = write(tmp_path / "b" / "train.tsv", "text\tscore\na\t1.5\nb\thigh\n")
    message = one_line(load_dataset, bad, label_column="score", problem_type=problem.REGRESSION)
    assert message.startswith(f"{bad}, line 3: label column 'score' holds 'high'; --problem-type regression")


@pytest.mark.parametrize(
    "form",
    ["jsonl names", "jsonl ids", "tsv names", "tsv ids", "columns"],
)
def test_multi_label_labels_in_every_form_give_the_same_rows(tmp_path, form):
    sets = [["a"], ["a", "b"], [], ["b"]]
    ids = [[{"a": 0, "b": 1}[n] for n in s] for s in sets]
    if form == "jsonl names":
        path, column = (
            jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "labels": s} for i, s in enumerate(sets)]),
            None,
        )
    elif form == "jsonl ids":
        path, column = (
            jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "labels": s} for i, s in enumerate(ids)]),
            None,
        )
    elif form in ("tsv names", "tsv ids"):
        rows = [s or ["[]"] for s in (sets if form == "tsv names" else [[str(x) for x in s] for s in ids])]
        path, column = (
            write(
                tmp_path / "t.tsv",
                "text\tlabel\n" + "".join(f"t{i}\t{','.join(s)}\n" for i, s in enumerate(rows)),
            ),
            None,
        )
    else:
        lines = "".join(f"t{i}\t{int('a' in s)}\t{int('b' in s)}\n" for i, s in enumerate(sets))
        path, column = write(tmp_path / "t.tsv", "text\ta\tb\n" + lines), "a,b"
    _, split = load_split(path, "train", {0: "a", 1: "b"} if "ids" not in form else {0: "0", 1: "1"},
                          label_column=column, problem_type=problem.MULTI)  # fmt: skip
    assert split.labels == [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]


def test_multi_label_training_classes_and_refusals(tmp_path):
    train_file = jsonl(
        tmp_path / "d" / "train.jsonl",
        [{"text": "x", "labels": ["sports", "art"]}, {"text": "y", "labels": ["news"]}],
    )
    jsonl(tmp_path / "d" / "validation.jsonl", [{"text": "z", "labels": ["weather"]}])
    message = one_line(load_dataset, tmp_path / "d", problem_type=problem.MULTI)
    assert (
        "validation.jsonl, line 1: label 'weather' is not one of the classes (art, news, sports)" in message
    )
    (tmp_path / "d" / "validation.jsonl").unlink()
    dataset = load_dataset(train_file, problem_type=problem.MULTI, validation_fraction=0.5)
    assert dataset.id2label == {0: "art", 1: "news", 2: "sports"}  # names in sorted order
    hot = jsonl(tmp_path / "h.jsonl", [{"text": "x", "labels": [0, 1, 1]}])
    message = one_line(load_dataset, hot, problem_type=problem.MULTI)
    assert "holds [0, 1, 1]; --problem-type multi_label needs each class once per example" in message
    assert "several 0/1 columns (--label-column a,b,c)" in message  # where a 0/1 vector belongs
    cells = write(tmp_path / "c.tsv", "text\ta\tb\nx\t1\t0\ny\t1\tyes\n")
    message = one_line(load_dataset, cells, label_column="a,b", problem_type=problem.MULTI)
    assert message.startswith(f"{cells}, line 3: label column 'a,b' holds ('1', 'yes')")
    missing = one_line(load_dataset, cells, label_column="a,c", problem_type=problem.MULTI)
    assert "no label column 'c' (columns found: text, a, b)" in missing
    mixed = jsonl(tmp_path / "m.jsonl", [{"text": "x", "labels": [0]}, {"text": "y", "labels": ["art"]}])
    assert "labels mix class ids and names" in one_line(load_dataset, mixed, problem_type=problem.MULTI)
    scores = write(tmp_path / "s.tsv", "text\tlabel\nx\t3.8\ny\t1\n")  # STS-B given as multi-label
    assert "holds '3.8'; --problem-type multi_label needs" in one_line(
        load_dataset, scores, problem_type=problem.MULTI
    )
    empty = jsonl(tmp_path / "e.jsonl", [{"text": "x", "labels": []}, {"text": "y", "labels": []}])
    assert "no training example has a label" in one_line(load_dataset, empty, problem_type=problem.MULTI)


def test_problem_type_names_and_options_are_checked():
    assert problem.resolve("regression") == problem.REGRESSION and problem.resolve(None) == problem.SINGLE
    assert problem.resolve("multi_label") == problem.resolve("multi_label_classification") == problem.MULTI
    assert problem.selection_metric(problem.MULTI, None) == "f1_micro"
    assert problem.selection_metric(problem.REGRESSION, None) == "pearson"
    message = one_line(problem.selection_metric, problem.REGRESSION, "accuracy")
    assert message == "--metric accuracy: a regression model is chosen by one of pearson, spearman, mse, loss"


# ----------------------------------------------------------------------------------------------------
# Loss


def test_auto_class_weights_are_inverse_frequency_with_mean_one():
    labels = [0, 0, 0, 1, 2, 2]
    weights = problem.class_weights("auto", labels, ["a", "b", "c"])
    assert weights.tolist() == pytest.approx([6 / 9, 6 / 3, 6 / 6])  # N / (C * n_c)
    assert float(weights[torch.tensor(labels)].mean()) == pytest.approx(1.0)
    assert problem.class_weights("1,2.5,0", labels, ["a", "b", "c"]).tolist() == [1.0, 2.5, 0.0]
    for spec in ("1,2", "1,-1,1", "a,b,c", "0,0,0"):
        message = one_line(problem.class_weights, spec, labels, ["a", "b", "c"])
        assert (
            message.startswith(f"--class-weights {spec}: use auto or 3 comma-separated")
            and "0=a, 1=b, 2=c" in message
        )


def test_weights_and_smoothing_take_the_plain_path_of_the_mean_head(monkeypatch):
    """The fused kernel knows only plain cross-entropy: a weighted or smoothed loss must not go through it."""
    from minifreeze import ops
    from minifreeze.model import random_model

    model = random_model(_tiny_config().with_labels(3), pooling="mean")
    hidden, mask = torch.randn(4, 5, 32), torch.ones(4, 5, dtype=torch.long)
    labels = torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        logits = model.head(hidden, mask)
    weights = torch.tensor([1.0, 3.0, 0.5])
    fused_calls = []
    real = ops.masked_mean_cross_entropy
    monkeypatch.setattr(
        ops, "masked_mean_cross_entropy", lambda *a, **k: fused_calls.append(1) or real(*a, **k)
    )
    plain, _ = model.head.loss(hidden, mask, labels)
    assert fused_calls == [1] and plain.item() == pytest.approx(
        float(F.cross_entropy(logits, labels)), abs=1e-6
    )
    model.head.criterion = problem.criterion(problem.SINGLE, weights, 0.1)
    loss, _ = model.head.loss(hidden, mask, labels)
    expected = F.cross_entropy(logits, labels, weight=weights, label_smoothing=0.1)
    assert fused_calls == [1] and loss.item() == pytest.approx(float(expected), abs=1e-6)
    assert loss.item() != pytest.approx(plain.item(), abs=1e-3)


def _tiny_config():
    from minifreeze.config import config_from_dict

    return config_from_dict(
        dict(model_type="bert", vocab_size=40, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
             intermediate_size=48, max_position_embeddings=64)
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------
# Metrics


def test_regression_metrics_on_known_values():
    scores, targets = torch.tensor([[1.0], [2.0], [2.0], [4.0]]), torch.tensor([1.0, 2.0, 3.0, 4.0])
    result = problem.metrics(problem.REGRESSION, scores, targets)
    assert result["pearson"] == pytest.approx(np.corrcoef([1, 2, 2, 4], [1, 2, 3, 4])[0, 1])
    assert result["spearman"] == pytest.approx(
        np.corrcoef([0, 1.5, 1.5, 3], [0, 1, 2, 3])[0, 1]
    )  # ties averaged
    assert result["mse"] == result["loss"] == pytest.approx(0.25)
    constant = problem.metrics(problem.REGRESSION, torch.zeros(4, 1), targets)
    assert constant["pearson"] == constant["spearman"] == 0.0  # not NaN


def test_multi_label_metrics_on_known_values():
    logits = torch.tensor([[3.0, -3.0], [3.0, 3.0], [-3.0, 3.0], [-3.0, -3.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    result = problem.metrics(problem.MULTI, logits, labels)
    # class 0: tp 2, fp 0, fn 1 -> f1 0.8; class 1: tp 1, fp 1, fn 0 -> f1 2/3; micro: tp 3, fp 1, fn 1
    assert result["f1_micro"] == pytest.approx(0.75) and result["f1_macro"] == pytest.approx(
        (0.8 + 2 / 3) / 2
    )
    assert result["exact_match"] == pytest.approx(0.5) and result["label_counts"] == [[2, 0, 1], [1, 1, 0]]
    assert problem.metrics(problem.MULTI, logits, labels, threshold=0.999)["f1_micro"] == 0.0
    per = problem.per_class(result, ["a", "b"])
    assert per["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})


def test_single_label_per_class_and_f1_macro():
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    result = problem.metrics(problem.SINGLE, logits, torch.tensor([0, 0, 1, 1]))
    per = problem.per_class(result, ["neg", "pos"])
    assert per["neg"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert per["pos"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert result["f1_macro"] == pytest.approx((0.8 + 2 / 3) / 2) and result["f1"] == pytest.approx(2 / 3)


def test_loss_picks_the_lowest():
    progress = Progress()
    assert [progress.evaluated(v, lower_is_better=True) for v in (0.5, 0.7, 0.3)] == [True, False, True]
    assert progress.best == 0.3


# ----------------------------------------------------------------------------------------------------
# End to end: a tiny model learns each task, exports it for transformers, evaluate and predict read it


def scored_rows(n: int, seed: int) -> list[tuple[str, float]]:
    """Toy sentences scored 4.5 with a positive word, 0.5 with a negative one (plus noise)."""
    rng = random.Random(seed)
    return [(t, (4.5 if y else 0.5) + rng.uniform(-0.3, 0.3)) for t, y in toy_rows(n, seed)]


def labelled_sets(n: int, seed: int) -> list[tuple[str, list[str]]]:
    """Toy sentences labelled {nice, pos} with a positive word, {neg} with a negative one."""
    return [(t, ["nice", "pos"] if y else ["neg"]) for t, y in toy_rows(n, seed)]


def hf_logits(folder: Path, texts: list[str]):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model, batch, model(**batch).logits


def test_a_tiny_regression_run_learns_and_transformers_computes_the_same(toy_model, tmp_path, capsys):
    for split, seed in (("train", 1), ("validation", 2)):
        rows = scored_rows(96 if split == "train" else 48, seed)
        write(
            tmp_path / "data" / "toy" / f"{split}.tsv",
            "sentence\tscore\n" + "".join(f"{t}\t{y:.3f}\n" for t, y in rows),
        )
    summary = train(toy_model, tmp_path / "data", tmp_path / "run", "--problem-type", "regression",
                    "--label-column", "score", "--max-steps", "12", "--lr", "3e-3")  # fmt: skip
    assert (
        set(summary["metrics"]) == {"pearson", "spearman", "mse", "loss"} and summary["metric"] == "pearson"
    )
    assert summary["metrics"]["pearson"] > 0.5 and summary["metrics"]["spearman"] > 0.5
    folder = tmp_path / "run" / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["num_labels"] == 1
    texts = ["the plot was lovely", "awful story"]
    hf, batch, logits = hf_logits(folder, texts)
    ours = predict.main(["--model", str(folder), *texts])
    assert hf.config.problem_type == "regression"
    assert [r["score"] for r in ours] == pytest.approx(logits[:, 0].tolist(), abs=1e-4)
    assert ours[0]["score"] > ours[1]["score"] and "label" not in ours[0]
    targets = torch.tensor([4.5, 0.5])
    assert hf(**batch, labels=targets).loss.item() == pytest.approx(
        float(F.mse_loss(logits[:, 0], targets)), abs=1e-5
    )
    result = evaluate.main(["--model", str(folder), "--dataset", "toy", "--data-dir", str(tmp_path / "data")])
    assert result["problem_type"] == "regression" and result["pearson"] == pytest.approx(
        summary["metrics"]["pearson"], abs=1e-4
    )
    assert result["per_class"] is None and "confusion_matrix" not in result


def test_a_tiny_multi_label_run_learns_and_transformers_computes_the_same(toy_model, tmp_path, capsys):
    for split, seed in (("train", 1), ("validation", 2)):
        rows = labelled_sets(128 if split == "train" else 48, seed)
        jsonl(tmp_path / "data" / "toy" / f"{split}.jsonl", [{"text": t, "labels": y} for t, y in rows])
    summary = train(toy_model, tmp_path / "data", tmp_path / "run", "--problem-type", "multi_label",
                    "--max-steps", "16", "--lr", "3e-3", "--threshold", "0.45")  # fmt: skip
    assert set(summary["metrics"]) == {"f1_micro", "f1_macro", "exact_match", "loss"}
    assert (
        summary["metric"] == "f1_micro" and summary["metrics"]["f1_micro"] > 0.9
    )  # every class always: 0.67
    folder = tmp_path / "run" / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert (
        config["id2label"] == {"0": "neg", "1": "nice", "2": "pos"}
        and config["minifreeze"]["threshold"] == 0.45
    )
    texts = ["the plot was lovely", "awful story", "a really dull ending"]
    hf, batch, logits = hf_logits(folder, texts)
    assert hf.config.problem_type == "multi_label_classification"
    ours = predict.main(["--model", str(folder), *texts])
    probabilities = [r["probabilities"][name] for r in ours for name in ("neg", "nice", "pos")]
    assert probabilities == pytest.approx(torch.sigmoid(logits).flatten().tolist(), abs=1e-5)
    assert [r["labels"] for r in ours] == [["nice", "pos"], ["neg"], ["neg"]]
    targets = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    expected = F.binary_cross_entropy_with_logits(logits, targets)
    assert hf(**batch, labels=targets).loss.item() == pytest.approx(float(expected), abs=1e-5)
    result = evaluate.main(["--model", str(folder), "--dataset", "toy", "--data-dir", str(tmp_path / "data")])
    assert result["f1_micro"] == pytest.approx(summary["metrics"]["f1_micro"])
    assert set(result["per_class"]) == {"neg", "nice", "pos"} and result["per_class"]["neg"]["support"] == 24
    strict = evaluate.main(
        [
            "--model",
            str(folder),
            "--dataset",
            "toy",
            "--data-dir",
            str(tmp_path / "data"),
            "--threshold",
            "0.99",
        ]
    )
    assert strict["f1_micro"] < result["f1_micro"]


def test_class_weights_smoothing_and_loss_selection_in_a_run(toy_model, toy_data, tmp_path, capsys):
    summary = train(toy_model, toy_data, tmp_path / "run", "--class-weights", "auto", "--label-smoothing",
                    "0.1", "--metric", "loss", "--max-steps", "6", "--eval-every", "2")  # fmt: skip
    assert set(summary["metrics"]) == {"accuracy", "f1", "mcc", "loss"}  # the single-label keys, as always
    losses = [
        json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert summary["best_metric"] == min(losses) and summary["metric"] == "loss"
    result = evaluate.main(
        ["--model", str(tmp_path / "run" / "model"), "--dataset", "toy", "--data-dir", str(toy_data)]
    )
    assert set(result["per_class"]) == {"0", "1"} and result["per_class"]["0"]["support"] == 32


@pytest.mark.parametrize(
    "flags, expected",
    [
        (
            ["--problem-type", "regression", "--class-weights", "auto"],
            "--class-weights and --label-smoothing weigh a cross-entropy",
        ),
        (
            ["--metric", "pearson"],
            "--metric pearson: a single_label model is chosen by one of accuracy, f1, mcc, loss, f1_macro",
        ),
        (["--label-smoothing", "1"], "--label-smoothing 1.0: must be at least 0 and below 1"),
        (["--class-weights", "1,2,3"], "--class-weights 1,2,3: use auto or 2 comma-separated"),
        (["--problem-type", "regression"], "toy/train.tsv, line 2: label column 'label' holds '"),
    ],
)
def test_options_that_do_not_fit_the_task_are_one_line(
    toy_model, toy_data, tmp_path, capsys, flags, expected
):
    if flags == ["--problem-type", "regression"]:  # word labels are no scores
        write_tsv(
            tmp_path / "words" / "toy" / "train.tsv", [(t, "pos" if y else "neg") for t, y in toy_rows(8, 1)]
        )
        toy_data = tmp_path / "words"
    with pytest.raises(SystemExit):
        cli.run(lambda argv: train(toy_model, toy_data, tmp_path / "run", *argv), flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_sweep_forwards_pairs_and_the_problem_type(toy_model, toy_data, tmp_path):
    argv = ["--model", str(toy_model), "--dataset", "toy", "--text-pair-column", "second", "--problem-type",
            "multi_label", "--label-column", "a,b", "--threshold", "0.3", "--freeze", "0,2", "--seeds", "1"]  # fmt: skip
    grid = make_grid(cli.parse(SweepOptions, argv, "s", "t"), tmp_path)
    assert {(c.text_pair_column, c.problem_type, c.label_column, c.threshold) for c in grid} == {
        ("second", "multi_label", "a,b", 0.3)
    }


def test_a_regression_sweep_tables_its_own_metrics(toy_model, tmp_path):
    for split, seed in (("train", 1), ("validation", 2)):
        lines = "".join(f"{t}\t{y:.3f}\n" for t, y in scored_rows(32, seed))
        write(tmp_path / "data" / "toy" / f"{split}.tsv", "sentence\tscore\n" + lines)
    argv = ["--model", str(toy_model), "--dataset", "toy", "--data-dir", str(tmp_path / "data"), "--out",
            str(tmp_path / "sweep"), "--problem-type", "regression", "--label-column", "score", "--freeze", "1",
            "--train-sizes", "32", "--seeds", "1", "--epochs", "1", "--no-progress", "--max-length", "24"]  # fmt: skip
    (row,) = run_sweep(cli.parse(SweepOptions, argv, "s", "t"))
    assert row["status"] == "ok" and row["metric"] == "pearson" and row["max_spearman"] == row["spearman"]
    header = (tmp_path / "sweep" / "runs.csv").read_text().splitlines()[0].split(",")
    assert {"pearson", "spearman", "mse", "max_spearman"} <= set(header)
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "chosen by validation pearson" in summary and "### spearman" in summary


def test_a_model_without_a_recorded_type_is_read_as_transformers_reads_it(tmp_path):
    from minifreeze.model import random_model

    one_output = random_model(_tiny_config().with_labels(1))
    assert (
        problem.of(one_output) == problem.REGRESSION
        and problem.of(random_model(_tiny_config())) == problem.SINGLE
    )
    one_output.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["problem_type"] == "regression"


def test_a_threshold_that_is_no_probability_is_one_line(toy_model, capsys):
    with pytest.raises(SystemExit):
        cli.run(predict.main, ["--model", str(toy_model), "a movie", "--threshold", "1.5"])
    assert (
        capsys.readouterr().err.strip() == "error: --threshold 1.5: must be between 0 and 1 (a probability)"
    )


def test_examples_from_python_take_the_problem_type(toy_model, tmp_path):
    """train(cfg, train_data=...) reads labels as --problem-type says (scores here), like a file."""
    from minifreeze.train import TrainConfig
    from minifreeze.train import train as train_in_python

    cfg = TrainConfig(model=str(toy_model), problem_type="regression", max_steps=4, batch_size=16,
                      out=str(tmp_path / "run"), progress=False, threads=1)  # fmt: skip
    summary = train_in_python(cfg, train_data=scored_rows(64, 1), eval_data=scored_rows(32, 2))
    assert set(summary["metrics"]) == {"pearson", "spearman", "mse", "loss"}
    assert (
        json.loads((tmp_path / "run" / "model" / "config.json").read_text())["problem_type"] == "regression"
    )
