"""The family table in config.py: what differs between BERT, RoBERTa and DistilBERT, read from one place."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, padded_batch, save_hf_classifier

import minifreeze
from minifreeze import MinifreezeError, checkpoints, hub
from minifreeze.config import (
    ACTIVATIONS,
    FAMILIES,
    FAMILY_OF,
    TOKENIZER_FILES,
    config_from_dict,
    max_positions_of,
)


def test_a_roberta_config_without_pad_token_id_pads_with_1_like_transformers(tmp_path):
    """transformers' RobertaConfig defaults pad_token_id to 1; we used to read 0, which treats <s> (id 0) as
    padding and numbers every position one too low: logits far from the model's."""
    folder = tmp_path / "roberta"
    theirs = save_hf_classifier(folder, "roberta")
    raw = json.loads((folder / "config.json").read_text())
    del raw["pad_token_id"]
    (folder / "config.json").write_text(json.dumps(raw))
    ours = minifreeze.load_model(folder).eval()
    assert ours.config.pad_token_id == 1
    ids, mask, _ = padded_batch(pad_id=1)
    ids[:, 0] = 0  # <s>, as the tokenizer writes it
    with torch.no_grad():
        torch.testing.assert_close(
            ours(ids, mask), theirs(input_ids=ids, attention_mask=mask).logits, atol=1e-5, rtol=0
        )
    assert (
        ours.config.max_positions == max_positions_of(raw) == TINY["roberta"]["max_position_embeddings"] - 2
    )


@pytest.mark.parametrize("pad", [None, 0, 1, 5])
@pytest.mark.parametrize("model_type", sorted(FAMILY_OF))
def test_the_tokenizer_and_the_model_agree_on_the_positions(model_type, pad):
    """The tokenizer reads a raw config.json (max_positions_of), the model an EncoderConfig: one rule."""
    family = FAMILY_OF[model_type]
    sizes = {**TINY[family], "model_type": model_type}
    if pad is not None:
        sizes["pad_token_id"] = pad
    config = config_from_dict(sizes)
    assert config.family == family and config.max_positions == max_positions_of(sizes)
    offset = FAMILIES[family].offset_positions
    want = (pad if pad is not None else FAMILIES[family].pad_token_id) + 1 if offset else 0
    assert config.max_position_embeddings - config.max_positions == want


def test_token_types_follow_the_table():
    assert [name for name, family in FAMILIES.items() if family.token_types] == ["bert"]
    assert config_from_dict({**TINY["distilbert"], "model_type": "distilbert"}).has_token_types is False
    assert config_from_dict(
        {**TINY["roberta"], "model_type": "camembert"}
    ).has_token_types  # one row, always 0


def test_every_activation_builds_and_an_unknown_one_lists_the_names():
    x = torch.linspace(-3, 3, 7)
    for name, build in ACTIVATIONS.items():
        assert build()(x).shape == x.shape, name
    with pytest.raises(MinifreezeError, match="unsupported activation 'mish'; supported: gelu, gelu_new, "):
        config_from_dict({**TINY["bert"], "model_type": "bert", "hidden_act": "mish"})


def test_the_tokenizer_files_are_fetched_and_copied_as_one_list(tmp_path, toy_model):
    assert set(TOKENIZER_FILES) <= set(hub.MODEL_FILES)
    source = tmp_path / "tokenizer"
    source.mkdir()
    for name in TOKENIZER_FILES:
        (source / name).write_text("{}")
    checkpoints.save_model(minifreeze.load_model(toy_model), tmp_path / "saved", tokenizer_dir=source)
    assert {name for name in TOKENIZER_FILES if (tmp_path / "saved" / name).is_file()} == set(TOKENIZER_FILES)
