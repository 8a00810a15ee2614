"""minifreeze: fine-tune BERT-family classifiers with layer freezing, and measure what freezing buys."""

from .errors import MinifreezeError
from .freezing import FreezePlan, freeze
from .model import SequenceClassifier, load_model, random_model

__version__ = "0.1.0"


def load_tokenizer(name_or_path: str, revision: str | None = None):
    """The tokenizer of a Hub id or local folder (see minifreeze.tokenizer)."""
    from .tokenizer import load_tokenizer as _load

    return _load(name_or_path, revision=revision)


__all__ = [
    "FreezePlan",
    "MinifreezeError",
    "freeze",
    "SequenceClassifier",
    "load_model",
    "load_tokenizer",
    "random_model",
]
