"""Classify texts with a trained model: `python -m minifreeze.predict --model DIR "text" ...`.

Texts come from the arguments, from `--file` (one per line), or from standard input; each gets one
JSON line with the predicted label and every label's probability, in input order.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import torch

from . import cli, data
from .errors import MinifreezeError


@dataclass(frozen=True)
class PredictConfig:
    texts: list[str] = cli.option([], "texts to classify (else --file, else standard input)", positional=True)
    model: str = cli.option(None, "folder of a trained model (a run's DIR/model) or a Hub id")
    file: str | None = cli.option(None, "read texts from this file, one per line")
    max_length: int = cli.option(128, "truncate texts to this many tokens")
    batch_size: int = cli.option(64, "texts per batch")
    device: str = cli.option("auto", "cpu, cuda, or auto")


def read_texts(cfg: PredictConfig) -> list[str]:
    if cfg.texts:
        return list(cfg.texts)
    if cfg.file:
        try:
            with open(cfg.file, encoding="utf-8") as handle:
                return [line.rstrip("\n") for line in handle if line.strip()]
        except FileNotFoundError:
            raise MinifreezeError(f"--file {cfg.file}: no such file") from None
        except UnicodeDecodeError as err:
            raise MinifreezeError(
                f"--file {cfg.file} is not UTF-8 text ({err.reason}); re-save it as UTF-8"
            ) from None
    if sys.stdin.isatty():
        raise MinifreezeError(
            'no texts: pass them as arguments ("a text"), with --file FILE, or on standard input'
        )
    return [line.rstrip("\n") for line in sys.stdin if line.strip()]


def predict(
    model,
    tokenizer,
    texts: list[str],
    max_length: int = 128,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> list[dict]:
    """One dict per text: label, label id, and the probability of every label."""
    from .evaluate import predict_logits

    split = data.Split(texts=texts, labels=[0] * len(texts))
    encoded = data.encode_split(split, tokenizer, max_length)
    probs = predict_logits(model, encoded, tokenizer.pad_id, batch_size, torch.device(device)).softmax(-1)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    results = []
    for text, row in zip(texts, probs.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        results.append(
            {
                "text": text,
                "label": names[best],
                "label_id": best,
                "probabilities": {name: round(p, 6) for name, p in zip(names, row)},
            }
        )
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    from .model import load_model
    from .tokenizer import load_tokenizer
    from .train import pick_device

    cfg = cli.parse(
        PredictConfig, argv, "python -m minifreeze.predict", "Classify texts with a trained model."
    )
    if not cfg.model:
        raise MinifreezeError("--model is required: pass a trained model folder (a run's DIR/model)")
    texts = read_texts(cfg)
    device = pick_device(cfg.device)
    model = load_model(cfg.model).to(device).eval()
    results = predict(model, load_tokenizer(cfg.model), texts, cfg.max_length, cfg.batch_size, device)
    for result in results:
        print(json.dumps(result, ensure_ascii=False))
    return results


if __name__ == "__main__":
    cli.run(main)
