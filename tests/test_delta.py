"""Freeze deltas (issue 19): only what trained is saved, and base + delta gives the full export's logits."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from minifreeze import load_model
from minifreeze.delta import INDEX, apply_delta, save_delta
from minifreeze.errors import MinifreezeError
from minifreeze.freezing import freeze

SPECS = ["1", "head", "bitfit", "random:0.5"]


def fake_training(model, plan, seed=0):
    """Change every trainable element (and only those), the way an optimizer step with masks does."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            step = torch.randn(param.shape, generator=g) * 0.1
            mask = plan.element_masks.get(name)
            param += step if mask is None else step * mask


def trained(toy_model, spec):
    model = load_model(toy_model, num_labels=2, reinit_head="mismatch")
    plan = freeze(model, spec)
    fake_training(model, plan)
    return model.eval(), plan


def logits(model):
    ids = torch.tensor([[2, 5, 9, 20, 3, 0], [2, 7, 3, 0, 0, 0]])
    with torch.no_grad():
        return model(ids, (ids != 0).long())


@pytest.mark.parametrize("spec", SPECS)
def test_base_plus_delta_equals_the_full_export_bit_for_bit(toy_model, tmp_path, spec):
    model, plan = trained(toy_model, spec)
    model.task = {"max_length": 64, "text_column": "sentence"}
    model.save_pretrained(tmp_path / "model")
    save_delta(model, plan, tmp_path / "delta", base=str(toy_model))
    full, from_delta = load_model(tmp_path / "model").eval(), load_model(tmp_path / "delta").eval()
    assert torch.equal(logits(full), logits(from_delta))
    assert from_delta.task == full.task and from_delta.config.id2label == full.config.id2label
    for (name, a), (_, b) in zip(full.state_dict().items(), from_delta.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("spec", SPECS)
def test_the_delta_holds_only_what_trained(toy_model, tmp_path, spec):
    model, plan = trained(toy_model, spec)
    save_delta(model, plan, tmp_path / "delta")
    tensors = load_file(str(tmp_path / "delta" / "delta.safetensors"))
    record = json.loads((tmp_path / "delta" / "delta.json").read_text())
    assert record["keys"] == sorted(tensors) and record["freeze"] == spec
    assert list(record["base"]["sha256"]) == ["model.safetensors"]
    stored = sum(v.numel() for k, v in tensors.items() if not k.endswith(INDEX))
    assert stored == plan.trainable_params
    if spec == "bitfit":
        assert all(k.endswith(".bias") or k.startswith("classifier.") for k in tensors)
    if spec == "random:0.5":
        assert tensors["bert.encoder.layer.0.attention.self.query.weight" + INDEX].dtype == torch.int64


def test_a_delta_applied_to_another_base_names_the_file_and_the_override(toy_model, tmp_path, monkeypatch):
    base = tmp_path / "base"
    shutil.copytree(toy_model, base)
    model, plan = trained(base, "bitfit")
    save_delta(model, plan, tmp_path / "delta")
    other = load_model(base)
    with torch.no_grad():
        other.encoder.embeddings.word.weight[0, 0] += 1
    other.save_pretrained(base)
    with pytest.raises(
        MinifreezeError, match=r"another base: .*model.safetensors differs.*MINIFREEZE_TRUST_BASE"
    ):
        load_model(tmp_path / "delta")
    assert load_model(tmp_path / "delta", trust_base=True).config.num_labels == 2
    monkeypatch.setenv("MINIFREEZE_TRUST_BASE", "1")
    load_model(tmp_path / "delta")


def test_a_base_that_cannot_be_found(toy_model, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(toy_model, base)
    model, plan = trained(base, "head")
    save_delta(model, plan, tmp_path / "delta")
    shutil.rmtree(base)
    with pytest.raises(MinifreezeError, match=r"its base .*base cannot be found"):
        load_model(tmp_path / "delta")


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_a_truncated_or_edited_delta_is_refused(toy_model, tmp_path, damage):
    model, plan = trained(toy_model, "bitfit")
    save_delta(model, plan, tmp_path / "delta")
    path = tmp_path / "delta" / "delta.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(MinifreezeError, match="edited or truncated"):
        load_model(tmp_path / "delta")


def test_delta_keys_that_the_model_does_not_have_are_named(toy_model, tmp_path):
    model, plan = trained(toy_model, "bitfit")
    save_delta(model, plan, tmp_path / "delta")
    one_layer = load_model(toy_model)
    one_layer.config = one_layer.config.__class__(**{**vars(one_layer.config), "num_layers": 1})
    with pytest.raises(MinifreezeError, match=r"does not have: bert\.encoder\.layer\.1\."):
        apply_delta(one_layer, tmp_path / "delta")


def test_a_delta_and_its_tokenizer_read_the_base(toy_model, tmp_path):
    from minifreeze import load_tokenizer

    model, plan = trained(toy_model, "head")
    save_delta(model, plan, tmp_path / "delta")
    assert load_model(tmp_path / "delta").source == toy_model
    assert (
        load_tokenizer(tmp_path / "delta")("good movie")["input_ids"]
        == load_tokenizer(toy_model)("good movie")["input_ids"]
    )
