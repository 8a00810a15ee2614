"""Classify texts with a trained model: `python -m minifreeze.predict --model DIR "text" ...`.

Texts come from the arguments (with `--pair` for a model trained on text pairs), from `--file` (plain
text, one per line; or a .tsv/.csv/.jsonl table), or from standard input; each gets one JSON line with the
predicted label and every label's probability, in input order (regression: a score; multi-label: the
labels over the threshold and every label's probability; docs/tasks.md). Unset options (max length, columns) take
the values the model was trained with, which training saves in its config.json.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from . import cli, data, delta
from .errors import MinifreezeError

TABLES = (".tsv", ".csv", ".jsonl")


@dataclass(frozen=True)
class PredictConfig:
    texts: list[str] = cli.option([], "texts to classify (else --file, else standard input)", positional=True)
    model: str = cli.option(
        None,
        "folder of a trained model (a run's DIR/model or DIR/delta) or a Hub id; several deltas of one base "
        'as DELTA1,DELTA2: the base loads once, each text gets a line per delta (with its "model")',
    )
    pair: list[str] = cli.option(
        [], "second texts, for a model trained on pairs: one per text, in order (TEXT... --pair PAIR...)"
    )
    file: str | None = cli.option(
        None,
        "read texts from a file: .txt one per line; .tsv/.csv/.jsonl rows, with the text (and pair) "
        "column the model was trained with or --text-column/--text-pair-column",
    )
    text_column: str | None = cli.option(None, "text column of a --file table (unset: as trained, else auto)")
    text_pair_column: str | None = cli.option(
        None, "second text column of a --file table (unset: as trained)"
    )
    max_length: int | None = cli.option(
        None, "truncate texts to this many tokens (unset: as trained, else 128)"
    )
    threshold: float | None = cli.option(
        None, "multi-label: probability above which a class is predicted (unset: as trained)"
    )
    batch_size: int = cli.option(64, "texts per batch")
    device: str = cli.option("auto", "cpu, cuda, or auto")


def read_inputs(cfg: PredictConfig) -> tuple[list[str], list[str] | None]:
    """(texts, pairs or None) from the arguments, --file or standard input; never empty."""
    if cfg.texts or cfg.pair:
        if len(cfg.pair) not in (0, len(cfg.texts)):
            raise MinifreezeError(
                f"got {len(cfg.texts)} texts but {len(cfg.pair)} --pair texts: give one per text"
            )
        texts, pairs, where = list(cfg.texts), list(cfg.pair) or None, "the arguments"
    elif cfg.file and Path(cfg.file).suffix.lower() in TABLES:
        (texts, pairs), where = read_table(Path(cfg.file), cfg.text_column, cfg.text_pair_column), cfg.file
    elif cfg.file:
        texts, pairs, where = [line for line in read_lines(Path(cfg.file)) if line.strip()], None, cfg.file
    elif sys.stdin.isatty():
        raise MinifreezeError(
            'no texts: pass them as arguments ("a text"), with --file FILE, or on standard input'
        )
    else:
        texts, pairs, where = (
            [line.rstrip("\n") for line in sys.stdin if line.strip()],
            None,
            "standard input",
        )
    if not texts:
        raise MinifreezeError(f"no texts to classify in {where}")
    return texts, pairs


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise MinifreezeError(f"--file {path}: no such file") from None
    except UnicodeDecodeError as err:
        raise MinifreezeError(
            f"--file {path} is not UTF-8 text ({err.reason}); re-save it as UTF-8"
        ) from None
    except OSError as err:
        raise MinifreezeError(f"--file {path}: cannot read it ({err.strerror or err})") from None


def read_table(path: Path, text_column: str | None, pair_column: str | None):
    """The text (and pair) column of a .tsv/.csv/.jsonl file, read as training reads its data files."""
    if not path.is_file():
        raise MinifreezeError(f"--file {path}: no such file")
    table = data.read_file(path)
    texts = data._texts(table, data._column(table, text_column, data.TEXT_COLUMNS, "text", "--text-column"))
    if pair_column is None:
        return texts, None
    return texts, data._texts(table, data._column(table, pair_column, (), "text pair", "--text-pair-column"))


def predict(
    model,
    tokenizer,
    texts: str | list[str],
    max_length: int | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    pairs: list[str] | None = None,
    threshold: float | None = None,
) -> list[dict]:
    """One dict per text (a bare string is one text): label, label id, and the probability of every label
    (regression: the score; multi-label: the labels over `threshold` and every label's probability).

    `max_length` and `threshold` default to what the model was trained with (else 128 and 0.5)."""
    from . import problem
    from .scoring import predict_logits
    from .task import DEFAULT_MAX_LENGTH

    max_length = max_length or getattr(model, "task", {}).get("max_length") or DEFAULT_MAX_LENGTH

    texts = [texts] if isinstance(texts, str) else list(texts)
    split = data.Split(texts=texts, labels=[0] * len(texts), pairs=pairs)
    encoded = data.encode_split(split, tokenizer, max_length)
    logits = predict_logits(model, encoded, tokenizer.pad_id, batch_size, torch.device(device))
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    kind, threshold = problem.of(model), problem.threshold_of(model, threshold)
    results = []
    for i, row in enumerate(logits):
        if not torch.isfinite(row).all():
            raise MinifreezeError(
                f"the model scores text {i + 1} as NaN/inf: its weights are broken (or overflow in this dtype)"
            )
        pair = {"text_pair": pairs[i]} if pairs is not None else {}
        results.append({"text": texts[i], **pair, **problem.prediction(kind, row, names, threshold)})
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    from .backbone import Backbone
    from .model import load_model
    from .runtime import pick_device
    from .task import check_pairs, with_task_defaults
    from .tokenizer import load_tokenizer

    cfg = cli.parse(
        PredictConfig,
        argv,
        "python -m minifreeze.predict",
        'Classify texts with a trained model: --model DIR "text" ... [--pair "second text" ...], or --file '
        "texts.txt|rows.tsv|rows.csv|rows.jsonl, or lines on standard input. One JSON line per text.",
    )
    if not cfg.model:
        raise MinifreezeError("--model is required: pass a trained model folder (a run's DIR/model)")
    device = pick_device(cfg.device)
    names = model_names(cfg.model)
    if len(names) == 1:
        models = iter([load_model(cfg.model)])
    else:  # one base in memory; each delta swapped in after the last one is taken out
        backbone = Backbone(delta.base_folder(names[0]))
        backbone.model.to(device)
        models = (backbone.use(name) for name in names)
    results, texts = [], None
    for name, model in zip(names, models):
        model = model.to(device).eval()
        task_cfg = with_task_defaults(cfg, model)
        if texts is None:  # read once (standard input can be read once), with the first model's columns
            texts, pairs = read_inputs(task_cfg)
        check_pairs(
            model, pairs is not None, "give each text its pair with --pair, or a --file table with both"
        )
        tokenizer = load_tokenizer(name)
        found = predict(
            model, tokenizer, texts, task_cfg.max_length, cfg.batch_size, device, pairs, cfg.threshold
        )
        for result in found:
            result = result if len(names) == 1 else {"model": name, **result}
            print(json.dumps(result, ensure_ascii=False, allow_nan=False))
            results.append(result)
    return results


def model_names(model: str) -> list[str]:
    """--model as one name, or DELTA1,DELTA2,... (a folder whose name holds a comma is one name); several
    must all be deltas of one base."""
    if "," not in model or Path(model).expanduser().exists():
        return [model]
    names = [name for name in model.split(",") if name]
    not_deltas = [name for name in names if not delta.is_delta(name)]
    if not_deltas:
        raise MinifreezeError(
            f"--model {not_deltas[0]}: several models must all be deltas (DIR/delta, with delta.json) of one base"
        )
    bases = {delta.read_record(name)["base"]["name"] for name in names}
    if len(bases) > 1:
        raise MinifreezeError(
            f"--model: these deltas have different bases ({', '.join(sorted(bases))}); predict with each alone"
        )
    return names


def entry() -> None:
    """The console script minifreeze-predict: `main` as the command line runs it."""
    cli.run(main)


if __name__ == "__main__":
    cli.run(main)
