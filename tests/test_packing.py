"""Packed layers (encoder.Packing): the same numbers as the padded path, chosen by `--packing` and its rule."""

from __future__ import annotations

import json

import pytest
import torch

import minifreeze
from minifreeze import encoder as enc
from minifreeze.freezing import freeze
from minifreeze.model import random_model
from minifreeze.train import main
from tests.conftest import padded_batch
from tests.test_model import TOL, hf_outputs, our_outputs


@pytest.mark.parametrize("packing", ["on", "off"])
def test_both_paths_match_transformers(hf_checkpoint, packing):
    folder, hf_model, family = hf_checkpoint
    ours = minifreeze.load_model(folder).eval()
    ours.encoder.packing = packing
    ids, mask, types = padded_batch(pad_id=ours.config.pad_token_id)
    hf_hidden, hf_logits = hf_outputs(hf_model, ids, mask, types, family)
    hidden, logits = our_outputs(ours, ids, mask, types, family)
    real = mask.bool()
    torch.testing.assert_close(hidden[real], hf_hidden[real], **TOL)
    torch.testing.assert_close(logits, hf_logits, **TOL)
    if packing == "on":
        assert hidden[~real].abs().max() == 0  # the packed path writes zeros where the padding is


@pytest.mark.parametrize("textbook", [False, True])
@pytest.mark.parametrize("depth", [0, 2])
def test_packed_loss_and_gradients_equal_the_padded_ones(hf_checkpoint, depth, textbook):
    folder, _, family = hf_checkpoint
    model = minifreeze.load_model(folder, textbook_attention=textbook).eval()  # no dropout: same numbers
    freeze(model, depth)
    model.eval()
    ids, mask, types = padded_batch(pad_id=model.config.pad_token_id)
    types = types if family == "bert" else None  # RoBERTa has one token type, DistilBERT none
    labels = torch.tensor([0, 1, 2, 1])
    results = {}
    for packing in ("off", "on"):
        model.encoder.packing = packing
        model.zero_grad(set_to_none=True)
        loss, logits = model.loss(ids, mask, types, labels)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[packing] = (loss.detach(), logits.detach(), grads)
    (loss_a, logits_a, grads_a), (loss_b, logits_b, grads_b) = results["off"], results["on"]
    torch.testing.assert_close(loss_b, loss_a, **TOL)
    torch.testing.assert_close(logits_b, logits_a, **TOL)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], **TOL, msg=name)


def test_auto_packs_only_batches_with_enough_padding(toy_model):
    model = minifreeze.load_model(toy_model)
    encoder = model.encoder
    full = torch.ones(4, 10, dtype=torch.long)
    padded = full.clone()
    padded[1:, 5:] = 0  # 25 of 40 slots real: 0.625 < the threshold
    assert encoder.packing == "auto"
    assert encoder.packing_for(full) is None and encoder.packing_for(None) is None
    assert encoder.packing_for(padded).index.numel() == 25
    almost = full.clone()
    almost[0, -1] = 0  # 39 of 40 real: padding too small to pay for the scatter and gather
    assert encoder.packing_for(almost) is None
    encoder.packing = "on"
    assert encoder.packing_for(almost).index.numel() == 39
    encoder.packing = "off"
    assert encoder.packing_for(padded) is None
    assert 0.5 < enc.PACK_BELOW_REAL_FRACTION <= 1.0


def test_compiled_graphs_keep_the_padded_path(monkeypatch):
    model = random_model("tiny").eval()
    model.encoder.packing = "on"
    ids, mask, _ = padded_batch(vocab=500, pad_id=model.config.pad_token_id)
    built = []

    class CountingPacking(enc.Packing):
        def __init__(self, attention_mask):
            built.append(attention_mask.shape)
            super().__init__(attention_mask)

    monkeypatch.setattr(enc, "Packing", CountingPacking)
    eager = model(ids, mask)
    assert len(built) == 1  # eager: packed
    torch._dynamo.reset()
    try:
        compiled = torch.compile(model, backend="eager")
        torch.testing.assert_close(compiled(ids, mask), eager, **TOL)
    finally:
        torch._dynamo.reset()
    assert len(built) == 1  # compiled: N_real would change the graph every batch, so padded


def test_training_runs_agree_across_packing(dropout_free_model, toy_data, tmp_path):
    """Whole runs, without dropout (the two paths draw their dropout masks over other shapes)."""
    base = [
        "--model",
        str(dropout_free_model),
        "--dataset",
        str(toy_data),
        "--epochs",
        "1",
        "--batch-size",
        "8",
    ]
    base += ["--train-size", "48", "--max-length", "24", "--lr", "1e-3", "--freeze", "1", "--threads", "1"]
    base += ["--eval-every", "none"]
    summaries = {}
    for packing in ("on", "off"):
        main([*base, "--packing", packing, "--out", str(tmp_path / packing)])
        summaries[packing] = json.loads((tmp_path / packing / "summary.json").read_text())
    on, off = summaries["on"], summaries["off"]
    assert on["metrics"]["loss"] == pytest.approx(off["metrics"]["loss"], abs=1e-4)
    assert on["metrics"]["accuracy"] == off["metrics"]["accuracy"]
    assert on["packing"] == "on" and off["packing"] == "off"


def test_unknown_packing_is_refused_in_one_line(toy_model, toy_data, tmp_path):
    with pytest.raises(SystemExit):
        main(["--model", str(toy_model), "--dataset", str(toy_data), "--packing", "sometimes"])
