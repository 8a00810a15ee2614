"""Real Hub files carry quirks that must load, and broken inputs must fail with one clear line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _hubcache import copy_folder_files, make_hub_cache, use_offline_cache
from conftest import padded_batch, save_hf_classifier
from safetensors.torch import load_file, save_file

import minifreeze
from minifreeze import MinifreezeError


def rewrite(folder, edit):
    """Apply `edit(state) -> state` to a checkpoint folder's model.safetensors."""
    path = folder / "model.safetensors"
    save_file(edit(load_file(str(path))), str(path))


def logits(model, ids, mask):
    with torch.no_grad():
        return model.eval()(ids, mask)


def test_legacy_names_stray_buffers_and_mlm_heads_load(hf_checkpoint):
    """bert-base-uncased style: LayerNorm.gamma/beta, position_ids, an MLM head; all of it must load."""
    folder, _, family = hf_checkpoint
    model = minifreeze.load_model(folder)
    ids, mask, _ = padded_batch(pad_id=model.config.pad_token_id)
    expected = logits(model, ids, mask)

    def quirks(state):
        out = {}
        for name, t in state.items():
            name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            )
            out[name] = t
        prefix = {"bert": "bert.", "roberta": "roberta.", "distilbert": "distilbert."}[family]
        out[prefix + "embeddings.position_ids"] = torch.arange(40)[None]
        out["cls.predictions.bias"] = torch.zeros(211)
        out["lm_head.dense.weight"] = torch.zeros(36, 36)
        out["vocab_projector.bias"] = torch.zeros(211)
        return out

    if family == "distilbert":  # DistilBERT names its LayerNorms differently; only embeddings say LayerNorm
        assert any("LayerNorm" in k for k in load_file(str(folder / "model.safetensors")))
    rewrite(folder, quirks)
    torch.testing.assert_close(logits(minifreeze.load_model(folder), ids, mask), expected, atol=0, rtol=0)


def test_base_checkpoint_without_prefix_or_pooler(tmp_path):
    """MiniLM files have no 'bert.' prefix; roberta-base style files lack a pooler for our head."""
    from conftest import hf_config
    from transformers import BertModel

    base = BertModel(hf_config("bert"), add_pooling_layer=False)
    base.save_pretrained(tmp_path / "nopool")
    model = minifreeze.load_model(tmp_path / "nopool", num_labels=2)
    torch.testing.assert_close(model.encoder.embeddings.word.weight, base.embeddings.word_embeddings.weight)
    assert model.head.pooler.weight.abs().sum() > 0  # created fresh, not left empty


def test_roberta_pooler_is_ignored(tmp_path):
    from conftest import hf_config
    from transformers import RobertaModel

    RobertaModel(hf_config("roberta"), add_pooling_layer=True).save_pretrained(tmp_path / "rb")
    assert any("pooler" in k for k in load_file(str(tmp_path / "rb" / "model.safetensors")))
    minifreeze.load_model(tmp_path / "rb")


def test_pytorch_bin_only_checkpoint_loads_safely(hf_checkpoint):
    folder, _, _ = hf_checkpoint
    model = minifreeze.load_model(folder)
    ids, mask, _ = padded_batch(pad_id=model.config.pad_token_id)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.warns(UserWarning, match="weights_only=True"):
        again = minifreeze.load_model(folder)
    torch.testing.assert_close(logits(again, ids, mask), logits(model, ids, mask), atol=0, rtol=0)


def test_pickle_with_code_is_refused(tmp_path, hf_checkpoint):
    folder, _, _ = hf_checkpoint
    (folder / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1), "evil": shutil.rmtree}, folder / "pytorch_model.bin")
    with pytest.warns(UserWarning), pytest.raises(MinifreezeError, match="is a pickle checkpoint") as error:
        minifreeze.load_model(folder)
    message = str(error.value)
    assert "\n" not in message and "cannot be loaded safely" in message and "safetensors" in message
    assert "weights_only=False" not in message  # torch's advice to turn the safety off is not repeated


def test_truncated_pytorch_bin_is_one_line(hf_checkpoint):
    folder, _, _ = hf_checkpoint
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning), pytest.raises(MinifreezeError, match="corrupted or truncated") as error:
        minifreeze.load_model(folder)
    assert "\n" not in str(error.value)


def test_unknown_model_type(hf_checkpoint):
    folder, _, _ = hf_checkpoint
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(MinifreezeError, match="unknown model_type 'gpt2'.*supports bert"):
        minifreeze.load_model(folder)


def test_folder_without_weights(hf_checkpoint):
    folder, _, _ = hf_checkpoint
    (folder / "model.safetensors").unlink()
    with pytest.raises(MinifreezeError, match="no weights in .*model.safetensors"):
        minifreeze.load_model(folder)


def test_missing_folder_and_config(tmp_path):
    with pytest.raises(MinifreezeError, match="does not exist"):
        minifreeze.load_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MinifreezeError, match="no config.json"):
        minifreeze.load_model(tmp_path / "empty")


def test_shape_mismatch_names_parameter_and_shapes(hf_checkpoint):
    folder, _, family = hf_checkpoint
    key = {
        "bert": "bert.encoder.layer.1.intermediate.dense.weight",
        "roberta": "roberta.encoder.layer.1.intermediate.dense.weight",
        "distilbert": "distilbert.transformer.layer.1.ffn.lin1.weight",
    }[family]
    rewrite(folder, lambda s: {**s, key: torch.zeros(51, 36)})
    with pytest.raises(
        MinifreezeError, match=rf"shape mismatch for {key}: checkpoint \(51, 36\), model \(52, 36\)"
    ):
        minifreeze.load_model(folder)


def test_head_size_mismatch_suggests_the_fix(hf_checkpoint):
    folder, _, _ = hf_checkpoint
    with pytest.raises(MinifreezeError, match="num_labels"):
        minifreeze.load_model(folder, num_labels=5)
    assert minifreeze.load_model(folder, num_labels=5, reinit_head=True).config.num_labels == 5


def test_missing_and_unexpected_keys_are_listed(hf_checkpoint):
    folder, _, family = hf_checkpoint
    prefix = {"bert": "bert.", "roberta": "roberta.", "distilbert": "distilbert."}[family]
    word = prefix + "embeddings.word_embeddings.weight"
    rewrite(folder, lambda s: {k: v for k, v in s.items() if k != word})
    with pytest.raises(MinifreezeError, match=rf"missing keys: {word}"):
        minifreeze.load_model(folder)
    rewrite(
        folder, lambda s: {**s, word: torch.zeros(211, 36), prefix + "encoder.extra.weight": torch.zeros(2)}
    )
    with pytest.raises(MinifreezeError, match=r"unexpected keys .*encoder.extra.weight"):
        minifreeze.load_model(folder)


def test_truncated_safetensors(hf_checkpoint):
    folder, _, _ = hf_checkpoint
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MinifreezeError, match="corrupted or truncated"):
        minifreeze.load_model(folder)


def test_hub_id_through_offline_cache(tmp_path, monkeypatch):
    save_hf_classifier(tmp_path / "src", "bert")
    make_hub_cache(tmp_path / "cache", "someone/tiny-bert", copy_folder_files(tmp_path / "src"))
    use_offline_cache(monkeypatch, tmp_path / "cache")
    model = minifreeze.load_model("someone/tiny-bert")
    assert model.config.num_layers == 3
    with pytest.raises(MinifreezeError, match="cannot get model 'someone/other'.*connect once"):
        minifreeze.load_model("someone/other")


def test_default_model_falls_back_to_the_bundled_copy(tmp_path, monkeypatch, minilm_dir):
    use_offline_cache(monkeypatch, tmp_path / "empty-cache")
    with pytest.warns(UserWarning, match="bundled copy"):
        model = minifreeze.load_model("sentence-transformers/all-MiniLM-L6-v2")
    assert model.source == minilm_dir


def test_save_is_atomic_when_writing_fails(hf_checkpoint, tmp_path, monkeypatch):
    """A failed save leaves the previous model intact and no partial folder behind."""
    from minifreeze import checkpoints

    folder, _, _ = hf_checkpoint
    model = minifreeze.load_model(folder)
    model.save_pretrained(tmp_path / "best")
    before = (tmp_path / "best" / "model.safetensors").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "best")
    assert (tmp_path / "best" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
