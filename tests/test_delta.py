"""Freeze deltas (issue 19): only what trained is saved, and base + delta gives the full export's logits."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from minifreeze import load_model
from minifreeze.delta import INDEX, MASK, apply_delta, save_delta, stored_as_elements
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
    stored = sum(v.numel() for k, v in tensors.items() if not stored_as_elements(k))
    assert stored == plan.trainable_params
    if spec == "bitfit":
        assert all(k.endswith(".bias") or k.startswith("classifier.") for k in tensors)
    if spec == "random:0.5":  # which elements: one bit each (32 x 32 weight -> 128 bytes)
        assert tensors["bert.encoder.layer.0.attention.self.query.weight" + MASK].shape == (128,)


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


def scores(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("model", "samples_per_second")}


def test_train_save_both_then_evaluate_and_predict_the_delta_like_the_model(toy_model, toy_data, tmp_path):
    from minifreeze import evaluate, predict
    from minifreeze.train import main as train_main

    out = tmp_path / "run"
    args = ["--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data), "--out", str(out)]
    args += ["--epochs", "1", "--batch-size", "16", "--lr", "3e-3", "--no-progress", "--train-size", "0"]
    train_main([*args, "--freeze", "random:0.5", "--save", "both"])
    full, delta = out / "model", out / "delta"
    assert json.loads((delta / "delta.json").read_text())["base"]["name"] == str(toy_model.resolve())
    data = ["--dataset", "toy", "--data-dir", str(toy_data)]
    assert scores(evaluate.main(["--model", str(delta), *data])) == scores(
        evaluate.main(["--model", str(full), *data])
    )
    texts = ["the movie was great", "awful and boring"]
    assert predict.main(["--model", str(delta), *texts]) == predict.main(["--model", str(full), *texts])


def test_train_save_delta_writes_no_full_model(toy_model, toy_data, tmp_path):
    from minifreeze.train import main as train_main

    out = tmp_path / "run"
    args = ["--model", str(toy_model), "--dataset", "toy", "--data-dir", str(toy_data), "--out", str(out)]
    train_main(
        [*args, "--epochs", "1", "--no-progress", "--train-size", "64", "--freeze", "head", "--save", "delta"]
    )
    assert (out / "delta" / "delta.safetensors").is_file() and not (out / "model").exists()
    with pytest.raises(MinifreezeError, match="use --model .*delta"):
        load_model(out)


def test_export_merges_a_delta_into_a_folder_transformers_loads(toy_model, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    from minifreeze import export

    model, plan = trained(toy_model, "random:0.5")
    model.save_pretrained(tmp_path / "model")
    save_delta(model, plan, tmp_path / "delta")
    export.main([str(tmp_path / "delta"), "--out", str(tmp_path / "merged")])
    theirs = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    ids = torch.tensor([[2, 5, 9, 20, 3, 0], [2, 7, 3, 0, 0, 0]])
    with torch.no_grad():
        their_logits = theirs(input_ids=ids, attention_mask=(ids != 0).long()).logits
    assert (their_logits - logits(model)).abs().max() <= 1e-5
    assert torch.equal(
        logits(load_model(tmp_path / "merged").eval()), logits(load_model(tmp_path / "model").eval())
    )
    assert (tmp_path / "merged" / "vocab.txt").is_file()  # the base's tokenizer travels with it


def test_export_refuses_a_non_delta_and_an_existing_folder(toy_model, tmp_path):
    from minifreeze import export

    with pytest.raises(MinifreezeError, match="pass one delta folder"):
        export.main([str(toy_model), "--out", str(tmp_path / "x")])
    model, plan = trained(toy_model, "head")
    save_delta(model, plan, tmp_path / "delta")
    (tmp_path / "x").mkdir()
    with pytest.raises(MinifreezeError, match="exists"):
        export.main([str(tmp_path / "delta"), "--out", str(tmp_path / "x")])


def test_export_allow_other_base(toy_model, tmp_path):
    from minifreeze import export

    base = tmp_path / "base"
    shutil.copytree(toy_model, base)
    model, plan = trained(base, "bitfit")
    save_delta(model, plan, tmp_path / "delta")
    other = load_model(base)
    with torch.no_grad():
        other.head.classifier.weight.zero_()
    other.save_pretrained(base)  # only the head differs, which the delta overwrites anyway
    with pytest.raises(MinifreezeError, match="MINIFREEZE_TRUST_BASE"):
        export.main([str(tmp_path / "delta"), "--out", str(tmp_path / "a")])
    export.main([str(tmp_path / "delta"), "--out", str(tmp_path / "b"), "--allow-other-base"])
    assert torch.equal(logits(load_model(tmp_path / "b").eval()), logits(model))


def test_export_bad_input_exits_2_with_one_line(tmp_path):
    import subprocess
    import sys

    argv = [sys.executable, "-m", "minifreeze.export", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: pass one delta folder"), result.stderr
    assert result.stderr.count("\n") == 1


def test_inspect_takes_a_delta_folder(toy_model, tmp_path):
    from minifreeze.inspect import build_model

    model, plan = trained(toy_model, "bitfit")
    save_delta(model, plan, tmp_path / "delta")
    assert torch.equal(logits(build_model(str(tmp_path / "delta")).eval()), logits(model))


def test_a_delta_json_of_another_format_is_refused(toy_model, tmp_path):
    model, plan = trained(toy_model, "head")
    save_delta(model, plan, tmp_path / "delta")
    (tmp_path / "delta" / "delta.json").write_text('{"format": "something-else"}')
    with pytest.raises(MinifreezeError, match="is not a minifreeze-delta/1 delta"):
        load_model(tmp_path / "delta")
    (tmp_path / "delta" / "delta.json").write_text("{not json")
    with pytest.raises(MinifreezeError, match="delta.json cannot be read"):
        load_model(tmp_path / "delta")


def rewrite_delta(folder, change) -> None:
    """Apply `change` to a delta's tensors and make delta.json consistent again (a well-formed delta)."""
    from safetensors.torch import save_file

    from minifreeze.delta import sha256

    path, meta = folder / "delta.safetensors", folder / "delta.json"
    tensors = change(load_file(str(path)))
    save_file(tensors, str(path))
    record = json.loads(meta.read_text())
    meta.write_text(json.dumps({**record, "keys": sorted(tensors), "sha256": sha256(path)}))


QUERY = "bert.encoder.layer.0.attention.self.query.weight"


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: {**t, QUERY + MASK: t[QUERY + MASK][:-1]},  # a mask of another length
        lambda t: {**t, QUERY + MASK: torch.full_like(t[QUERY + MASK], 255)},  # marks every element
        lambda t: {**t, QUERY + INDEX: torch.arange(t[QUERY].numel()) + 10**6},  # old form, out of range
    ],
)
def test_positions_that_do_not_fit_the_tensor_are_refused(toy_model, tmp_path, damage):
    model, plan = trained(toy_model, "random:0.5")
    save_delta(model, plan, tmp_path / "delta")

    def change(tensors):
        tensors = damage(tensors)
        if QUERY + INDEX in tensors:
            tensors.pop(QUERY + MASK)
        return tensors

    rewrite_delta(tmp_path / "delta", change)
    with pytest.raises(MinifreezeError, match=f"positions of {QUERY} do not fit"):
        load_model(tmp_path / "delta")


def test_a_delta_with_int64_positions_from_before_still_loads_bit_equal(toy_model, tmp_path):
    model, plan = trained(toy_model, "random:0.5")
    save_delta(model, plan, tmp_path / "delta")
    model.save_pretrained(tmp_path / "full")

    def to_positions(tensors):
        for key in [k for k in tensors if k.endswith(MASK)]:
            bits = (tensors.pop(key).unsqueeze(1) >> torch.arange(8, dtype=torch.uint8)) & 1
            tensors[key.removesuffix(MASK) + INDEX] = bits.flatten().nonzero().flatten()
        return tensors

    rewrite_delta(tmp_path / "delta", to_positions)
    assert torch.equal(
        logits(load_model(tmp_path / "delta").eval()), logits(load_model(tmp_path / "full").eval())
    )


def test_a_delta_for_other_labels_names_the_shape_mismatch(toy_model, tmp_path):
    model, plan = trained(toy_model, "head")  # a 2-label head
    save_delta(model, plan, tmp_path / "delta")
    three_labels = load_model(toy_model)
    before = {k: v.clone() for k, v in three_labels.state_dict().items()}
    with pytest.raises(
        MinifreezeError, match=r"shape mismatch for classifier.bias: delta \(2,\), model \(3,\)"
    ):
        apply_delta(three_labels, tmp_path / "delta")
    assert all(torch.equal(before[k], v) for k, v in three_labels.state_dict().items())  # left untouched


def test_one_backbone_swaps_deltas_in_place_with_each_tasks_logits(toy_model, tmp_path):
    from minifreeze.backbone import Backbone

    model, plan = trained(toy_model, "bitfit")  # 2 labels
    save_delta(model, plan, tmp_path / "two")
    three = load_model(toy_model).eval()
    plan3 = freeze(three, "top:1")
    fake_training(three, plan3, seed=5)
    save_delta(three, plan3, tmp_path / "three")
    random_model_, random_plan = trained(toy_model, "random:0.5")
    save_delta(random_model_, random_plan, tmp_path / "random")
    backbone = Backbone(toy_model)
    held = backbone.model
    for folder, expected in [("two", model), ("three", three), ("random", random_model_), ("two", model)]:
        assert backbone.use(tmp_path / folder) is held
        assert torch.equal(logits(held), logits(expected)), folder
        assert held.config.num_labels == expected.config.num_labels
    backbone.restore()
    assert torch.equal(logits(held), logits(load_model(toy_model).eval()))


def test_a_backbone_refuses_a_delta_of_another_base(toy_model, tmp_path):
    from minifreeze.backbone import Backbone

    base = tmp_path / "base"
    shutil.copytree(toy_model, base)
    model, plan = trained(base, "bitfit")
    save_delta(model, plan, tmp_path / "delta")
    other = load_model(base)
    with torch.no_grad():
        other.encoder.embeddings.word.weight[0, 0] += 1
    other.save_pretrained(tmp_path / "other")
    backbone = Backbone(tmp_path / "other")
    before = logits(backbone.model)
    with pytest.raises(MinifreezeError, match="another base"):
        backbone.use(tmp_path / "delta")
    assert torch.equal(logits(backbone.model), before)


def test_a_real_base_saved_without_the_family_prefix(minilm_dir, tmp_path):
    """MiniLM's file names its tensors without `bert.`: the delta must still see them as the base's."""
    model = load_model("bundled:minilm", num_labels=2)
    plan = freeze(model, "bitfit")
    fake_training(model, plan)
    save_delta(model, plan, tmp_path / "delta", base="bundled:minilm")
    tensors = load_file(str(tmp_path / "delta" / "delta.safetensors"))
    assert sum(v.numel() for v in tensors.values()) == plan.trainable_params  # no base tensor stored
    assert json.loads((tmp_path / "delta" / "delta.json").read_text())["base"]["name"] == "bundled:minilm"
    ids = torch.tensor([[101, 2204, 3185, 102]])
    with torch.no_grad():
        assert torch.equal(model.eval()(ids), load_model(tmp_path / "delta").eval()(ids))


def test_predict_with_several_deltas_loads_one_base_and_matches_each_delta_alone(
    toy_model, tmp_path, monkeypatch
):
    from minifreeze import backbone, predict

    for name, spec, seed in [("a", "bitfit", 0), ("b", "top:1", 5)]:
        model = load_model(toy_model, num_labels=2 + (name == "b"), reinit_head="mismatch")
        plan = freeze(model, spec)
        fake_training(model, plan, seed=seed)
        save_delta(model, plan, tmp_path / name)
    texts = ["the movie was great", "awful and boring"]
    alone = [
        {"model": str(tmp_path / n), **r}
        for n in "ab"
        for r in predict.main(["--model", str(tmp_path / n), *texts])
    ]
    loads = []
    monkeypatch.setattr(backbone, "load_model", lambda *a, **k: loads.append(a) or load_model(*a, **k))
    together = predict.main(["--model", f"{tmp_path / 'a'},{tmp_path / 'b'}", *texts])
    assert together == alone and len(loads) == 1
    assert {len(r["probabilities"]) for r in together} == {2, 3}


def test_predict_with_several_models_refuses_non_deltas_and_mixed_bases(toy_model, tmp_path):
    from minifreeze import predict

    model, plan = trained(toy_model, "bitfit")
    save_delta(model, plan, tmp_path / "a")
    with pytest.raises(MinifreezeError, match=f"--model {toy_model}: several models must all be deltas"):
        predict.main(["--model", f"{tmp_path / 'a'},{toy_model}", "text"])
    other = tmp_path / "other"
    shutil.copytree(toy_model, other)
    model, plan = trained(other, "bitfit")
    save_delta(model, plan, tmp_path / "b")
    with pytest.raises(MinifreezeError, match="these deltas have different bases"):
        predict.main(["--model", f"{tmp_path / 'a'},{tmp_path / 'b'}", "text"])
