"""The encoder is the same network transformers runs: parity per family, interop both ways, real MiniLM."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import padded_batch, save_hf_classifier

import minifreeze
from minifreeze.encoder import Encoder

TOL = dict(atol=1e-5, rtol=0)  # the bar: max abs diff <= 1e-5 in fp32


def hf_outputs(hf_model, ids, mask, types, family):
    kwargs = dict(input_ids=ids, attention_mask=mask)
    if family == "bert":
        kwargs["token_type_ids"] = types
    with torch.no_grad():
        out = hf_model(**kwargs, output_hidden_states=True)
    return out.hidden_states[-1], out.logits


def our_outputs(model, ids, mask, types, family):
    types = types if family == "bert" else None
    with torch.no_grad():
        hidden = model.encoder(ids, mask, types)
        return hidden, model.head(hidden, mask)


def test_parity_with_transformers(hf_checkpoint):
    folder, hf_model, family = hf_checkpoint
    ours = minifreeze.load_model(folder).eval()
    ids, mask, types = padded_batch(pad_id=ours.config.pad_token_id)
    hf_hidden, hf_logits = hf_outputs(hf_model, ids, mask, types, family)
    hidden, logits = our_outputs(ours, ids, mask, types, family)
    real = mask.bool()
    torch.testing.assert_close(hidden[real], hf_hidden[real], **TOL)
    torch.testing.assert_close(logits, hf_logits, **TOL)
    assert ours.config.num_labels == 3 and ours.config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


def test_textbook_attention_agrees_with_sdpa(hf_checkpoint):
    folder, _, family = hf_checkpoint
    fast = minifreeze.load_model(folder).eval()
    slow = minifreeze.load_model(folder, textbook_attention=True).eval()
    ids, mask, types = padded_batch(pad_id=fast.config.pad_token_id)
    real = mask.bool()
    a, _ = our_outputs(fast, ids, mask, types, family)
    b, _ = our_outputs(slow, ids, mask, types, family)
    torch.testing.assert_close(a[real], b[real], **TOL)
    assert all(layer.textbook_attention for layer in slow.encoder.layers)


def test_sharded_checkpoint_loads(tmp_path, family):
    hf_model = save_hf_classifier(tmp_path / "sharded", family, max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    ours = minifreeze.load_model(tmp_path / "sharded").eval()
    ids, mask, types = padded_batch(pad_id=ours.config.pad_token_id)
    torch.testing.assert_close(
        our_outputs(ours, ids, mask, types, family)[1],
        hf_outputs(hf_model, ids, mask, types, family)[1],
        **TOL,
    )


def test_ours_to_theirs_roundtrip(hf_checkpoint, tmp_path):
    """save_pretrained writes a folder transformers loads, with the same logits and labels."""
    from transformers import AutoModelForSequenceClassification

    folder, _, family = hf_checkpoint
    ours = minifreeze.load_model(folder, id2label={0: "neg", 1: "neu", 2: "pos"}).eval()
    with torch.no_grad():
        for p in ours.parameters():  # move away from the loaded values so the test sees our weights
            p.add_(0.01)
    ours.save_pretrained(tmp_path / "saved")
    theirs = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    assert theirs.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    ids, mask, types = padded_batch(pad_id=ours.config.pad_token_id)
    torch.testing.assert_close(
        our_outputs(ours, ids, mask, types, family)[1], hf_outputs(theirs, ids, mask, types, family)[1], **TOL
    )
    again = minifreeze.load_model(tmp_path / "saved").eval()
    assert again.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    torch.testing.assert_close(
        our_outputs(again, ids, mask, types, family)[1],
        our_outputs(ours, ids, mask, types, family)[1],
        atol=0,
        rtol=0,
    )


def test_mean_pooling_saves_and_reloads(hf_checkpoint, tmp_path):
    folder, _, family = hf_checkpoint
    ours = minifreeze.load_model(folder, pooling="mean", reinit_head=True).eval()
    ids, mask, types = padded_batch(pad_id=ours.config.pad_token_id)
    hidden, logits = our_outputs(ours, ids, mask, types, family)
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(logits, ours.head.classifier(pooled), **TOL)
    ours.save_pretrained(tmp_path / "mean")
    again = minifreeze.load_model(tmp_path / "mean").eval()
    assert again.pooling == "mean"
    torch.testing.assert_close(our_outputs(again, ids, mask, types, family)[1], logits, atol=0, rtol=0)


def test_missing_head_is_initialised_like_transformers(tmp_path):
    """A base checkpoint (no head): the head is created, N(0, initializer_range), zero bias."""
    from conftest import hf_config
    from transformers import BertModel

    cfg = hf_config("bert", initializer_range=0.5)
    BertModel(cfg).save_pretrained(tmp_path / "base")
    model = minifreeze.load_model(tmp_path / "base", num_labels=5)
    w = model.head.classifier.weight
    assert w.shape == (5, 36)
    assert 0.35 < w.std().item() < 0.65  # 180 samples of N(0, 0.5)
    assert torch.count_nonzero(model.head.classifier.bias) == 0


def test_real_minilm_matches_transformers(minilm_dir):
    from transformers import AutoModel, AutoTokenizer

    texts = ["a gripping , funny film .", "the plot never quite comes together", "ok"]
    hf_tok = AutoTokenizer.from_pretrained(str(minilm_dir))
    tok = minifreeze.load_tokenizer(str(minilm_dir))
    encoded = hf_tok(texts, padding=True, return_tensors="pt")
    ours_ids = tok.encode(texts, max_length=128).input_ids
    assert ours_ids == [
        row[row_mask.bool()].tolist()
        for row, row_mask in zip(encoded["input_ids"], encoded["attention_mask"])
    ]
    ours = minifreeze.load_model(minilm_dir).eval()
    theirs = AutoModel.from_pretrained(str(minilm_dir)).eval()
    with torch.no_grad():
        expected = theirs(**encoded).last_hidden_state
        got = ours.encoder(encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"])
    real = encoded["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], **TOL)


def test_frozen_prefix_does_not_change_the_output(hf_checkpoint):
    """Running the bottom blocks under no_grad changes what autograd records, never the numbers."""
    folder, _, family = hf_checkpoint
    model = minifreeze.load_model(folder).eval()
    ids, mask, types = padded_batch(pad_id=model.config.pad_token_id)
    reference = model.encoder(ids, mask)
    for blocks in range(model.config.num_layers + 2):
        model.encoder.frozen_blocks = blocks
        out = model.encoder(ids, mask)
        assert torch.equal(out, reference)
        assert out.requires_grad == (blocks <= model.config.num_layers)


def test_frozen_prefix_stays_in_eval_mode():
    model = minifreeze.random_model("tiny")
    encoder: Encoder = model.encoder
    encoder.frozen_blocks = 2
    model.train()
    assert [b.training for b in encoder.blocks()] == [False, False, True, True, True]
    encoder.frozen_dropout = True
    model.train()
    assert all(b.training for b in encoder.blocks())


def test_config_json_written_for_transformers(hf_checkpoint, tmp_path):
    folder, _, family = hf_checkpoint
    minifreeze.load_model(folder).save_pretrained(tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["architectures"][0].endswith("ForSequenceClassification")
    assert cfg["num_labels"] == 3 and cfg["label2id"] == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    assert not list(tmp_path.glob(".out.*")), "no temporary folder may be left behind"


@pytest.mark.parametrize("name", ["bert-base", "roberta-base", "distilbert", "minilm"])
def test_named_configs_match_transformers_parameter_counts(name):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from minifreeze.config import NAMED_CONFIGS

    raw = dict(NAMED_CONFIGS[name])
    hf_cfg = AutoConfig.for_model(raw.pop("model_type"), **raw)
    with torch.device("meta"):
        theirs = AutoModelForSequenceClassification.from_config(hf_cfg)
        ours = minifreeze.SequenceClassifier(minifreeze.config.named_config(name))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs)


def test_mean_pooled_export_is_refused_by_transformers_and_loads_here(hf_checkpoint, tmp_path):
    """transformers has no mean-pooled head: it would read [CLS] through a random pooler and predict at
    chance without a word. The export must be refused there (one clear error) and still load here."""
    from transformers import AutoModelForSequenceClassification, pipeline

    folder, _, family = hf_checkpoint
    ours = minifreeze.load_model(folder, pooling="mean", reinit_head=True).eval()
    ours.save_pretrained(tmp_path / "mean")
    for load in (
        lambda: AutoModelForSequenceClassification.from_pretrained(tmp_path / "mean"),
        lambda: pipeline("text-classification", model=str(tmp_path / "mean")),
    ):
        with pytest.raises(ValueError, match="model type `minifreeze-mean-pooled`"):
            load()
    again = minifreeze.load_model(tmp_path / "mean").eval()
    assert again.pooling == "mean" and again.config.family == family
    ids, mask, types = padded_batch(pad_id=ours.config.pad_token_id)
    torch.testing.assert_close(
        our_outputs(again, ids, mask, types, family)[1],
        our_outputs(ours, ids, mask, types, family)[1],
        atol=0,
        rtol=0,
    )
    saved = json.loads((tmp_path / "mean" / "config.json").read_text())
    assert saved["minifreeze"]["model_type"] == family and "load_model" in saved["minifreeze"]["note"]
    # the same encoder under a [CLS] head is transformers' own model again: model_type comes back
    cls = minifreeze.SequenceClassifier(again.config, "cls")
    cls.encoder.load_state_dict(again.encoder.state_dict())
    cls.save_pretrained(tmp_path / "cls")
    assert json.loads((tmp_path / "cls" / "config.json").read_text())["model_type"] == family
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")


def test_mean_pooled_export_keeps_its_tokenizer_loadable_by_transformers(toy_model, tmp_path):
    """AutoTokenizer falls back to config.json's model_type, which the mean export hides: the export names
    the tokenizer class instead (the toy folder's tokenizer_config.json has none), so the ids stay equal."""
    from transformers import AutoTokenizer

    model = minifreeze.load_model(toy_model, pooling="mean", reinit_head=True)
    model.save_pretrained(tmp_path / "mean")
    texts = ["the movie was great", "awful plot"]
    theirs = AutoTokenizer.from_pretrained(tmp_path / "mean")(texts)["input_ids"]
    assert theirs == minifreeze.load_tokenizer(str(tmp_path / "mean")).encode(texts).input_ids
    assert json.loads((tmp_path / "mean" / "tokenizer_config.json").read_text())["do_lower_case"] is True


def test_saved_model_remembers_its_task(toy_model, tmp_path):
    model = minifreeze.load_model(toy_model)
    model.task = {"max_length": 24, "text_column": "review", "text_pair_column": None, "pairs": False}
    model.save_pretrained(tmp_path / "m")
    block = json.loads((tmp_path / "m" / "config.json").read_text())["minifreeze"]
    assert block == {**model.task, "pooling": "cls"}
    assert minifreeze.load_model(tmp_path / "m").task == model.task
    assert minifreeze.load_model(toy_model).task == {}  # nothing saved, nothing assumed


def test_too_long_input_is_one_line_not_an_index_error(hf_checkpoint):
    folder, _, family = hf_checkpoint
    model = minifreeze.load_model(folder)
    positions = {"bert": 40, "roberta": 40, "distilbert": 40}[family]  # RoBERTa: 42 less pad_id + 1
    assert model.max_positions == positions
    with torch.no_grad():
        model(torch.full((1, positions), 7))
        with pytest.raises(
            minifreeze.MinifreezeError, match=f"{positions + 1} tokens is more than the model's"
        ):
            model(torch.full((1, positions + 1), 7))
