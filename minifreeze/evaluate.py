"""Evaluate a saved model on a dataset split: `python -m minifreeze.evaluate --model DIR --dataset D`.

Prints one JSON object: the metrics of the model's problem type (single-label: accuracy, f1, f1_macro,
mcc, loss, the confusion matrix and `per_class` precision/recall/f1/support; regression: pearson,
spearman, mse; multi-label: f1_micro, f1_macro, exact_match, `per_class`; docs/tasks.md), samples/s,
`examples` and the split's real name and source. What is scored is always whole: a file given as --dataset is all of it; a
folder or named dataset gives its --split file(s), never a held-out part of train (a training run's own
held-out score is in its summary.json). Labels map to the model's classes, so no train file is needed.
The scoring itself (`scoring.evaluate_split`) is shared with the training loop.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass

from . import cli, data, problem
from .errors import MinifreezeError
from .scoring import evaluate_split, predict_logits  # noqa: F401 - also importable from here, as before


@dataclass(frozen=True)
class EvaluateConfig:
    model: str = cli.option(None, "folder of a trained model (a run's DIR/model) or a Hub id")
    dataset: str = cli.option("sst2", "named dataset, Hub dataset id, data file (scored whole) or folder")
    split: str = cli.option(
        "validation",
        "which split to score, whole: train, validation (dev), test or a name such as "
        "validation_matched; ignored when --dataset is a file",
    )
    validation_split: str | None = cli.option(
        None, "the split that --split validation means, when a folder has several (validation_matched)"
    )
    data_dir: str | None = cli.option(
        None, "folder with <dataset>/train.tsv etc. (default: $MINIFREEZE_DATA_DIR)"
    )
    text_column: str | None = cli.option(None, "text column (unset: as trained, else auto)")
    text_pair_column: str | None = cli.option(None, "second text column, for pair tasks (unset: as trained)")
    label_column: str | None = cli.option(None, "label column (unset: as trained, else auto)")
    max_length: int | None = cli.option(
        None, "truncate texts to this many tokens (unset: as trained, else 128)"
    )
    threshold: float | None = cli.option(
        None, "multi-label: probability above which a class is predicted (unset: as trained)"
    )
    batch_size: int = cli.option(64, "examples per batch")
    amp: str = cli.option("off", "autocast dtype", choices=("off", "bf16", "fp16"))
    device: str = cli.option("auto", "cpu, cuda, or auto")


def main(argv: list[str] | None = None) -> dict:
    from .model import load_model
    from .runtime import autocast, pick_device
    from .task import check_pairs, with_task_defaults
    from .tokenizer import load_tokenizer

    cfg = cli.parse(
        EvaluateConfig, argv, "python -m minifreeze.evaluate", "Score a trained model on a split."
    )
    if not cfg.model:
        raise MinifreezeError("--model is required: pass a trained model folder (a run's DIR/model)")
    device = pick_device(cfg.device)
    model = load_model(cfg.model).to(device).eval()
    cfg = with_task_defaults(cfg, model)  # the columns and max length it was trained with, unless given
    name, split = data.load_split(
        cfg.dataset,
        cfg.split,
        model.config.id2label,
        data_dir=cfg.data_dir,
        text_column=cfg.text_column,
        label_column=cfg.label_column,
        text_pair_column=cfg.text_pair_column,
        validation_split=cfg.validation_split,
        problem_type=problem.of(model),
    )
    check_pairs(model, split.pairs is not None, "name the second text's column with --text-pair-column")
    tokenizer = load_tokenizer(cfg.model)
    encoded = data.encode_split(split, tokenizer, cfg.max_length)
    with autocast(cfg.amp, device) if cfg.amp != "off" else nullcontext():
        result = evaluate_split(
            model, encoded, tokenizer.pad_id, cfg.batch_size, device, threshold=cfg.threshold
        )
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    result = {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "split": name,
        "source": split.source,
        "problem_type": problem.of(model),
        **result,
        "per_class": problem.per_class(result, names),
        "labels": names,
    }
    print(json.dumps(result))
    return result


def entry() -> None:
    """The console script minifreeze-evaluate: `main` as the command line runs it."""
    cli.run(main)


if __name__ == "__main__":
    cli.run(main)
