"""What a trained model remembers about its input, so that scoring reads texts the way training did.

Training records its max length, its columns and whether it saw text pairs in `model.task`, which
`save_pretrained` writes into config.json's "minifreeze" block and `load_model` reads back. evaluate and
predict take those as defaults (a flag given on the command line wins) and refuse to score a pair model
on single texts, or the other way round, instead of printing a quietly wrong number.
"""

from __future__ import annotations

import dataclasses

from . import problem
from .errors import MinifreezeError

# Options that say how a model reads its input (fields of TrainConfig, EvaluateConfig and PredictConfig).
TASK_OPTIONS = ("max_length", "text_column", "text_pair_column", "label_column", "problem_type", "threshold")
TASK_KEYS = (*TASK_OPTIONS, "dataset", "pairs")
DEFAULT_MAX_LENGTH = 128


def task_record(cfg, dataset, tokenizer) -> dict:
    """What a training run tells its saved model about its input: the TASK_OPTIONS of `cfg` (max_length as
    the tokenizer applied it), the dataset's name, and whether it trained on text pairs."""
    record = {k: getattr(cfg, k) for k in TASK_OPTIONS}
    record.update(
        max_length=tokenizer.capped_length(cfg.max_length),
        dataset=dataset.name,
        pairs=dataset.train.pairs is not None,
        problem_type=problem.resolve(cfg.problem_type),  # transformers' name, also config.json's problem_type
    )
    return record


def with_task_defaults(cfg, model):
    """`cfg` (a command's frozen config) with the options left unset (None) taken from what the model was
    trained with; a flag given on the command line always wins. max_length falls back to 128."""
    given = {k: model.task[k] for k in TASK_OPTIONS if getattr(cfg, k, 0) is None and model.task.get(k)}
    cfg = dataclasses.replace(cfg, **given)
    return cfg if cfg.max_length is not None else dataclasses.replace(cfg, max_length=DEFAULT_MAX_LENGTH)


def check_pairs(model, has_pairs: bool, fix: str) -> None:
    """Refuse to score single texts with a model trained on pairs, or pairs with one trained on single texts."""
    trained_on_pairs = model.task.get("pairs")
    if trained_on_pairs is None or trained_on_pairs == has_pairs:
        return  # a model saved without a record (or by an older version) is taken as it comes
    if trained_on_pairs:
        column = model.task.get("text_pair_column")
        raise MinifreezeError(
            f"the model was trained on text pairs{f' (second text: {column!r})' if column else ''} "
            f"but got single texts: {fix}"
        )
    raise MinifreezeError("the model was trained on single texts but got text pairs: give single texts")
