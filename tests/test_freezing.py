"""Freeze specs pick the right parameters, the prefix runs without autograd, frozen things never change."""

from __future__ import annotations

import pytest
import torch

import minifreeze
from minifreeze import MinifreezeError
from minifreeze.freezing import freeze
from minifreeze.optim import make_optimizer
from minifreeze.profiling import saved_bytes

SPECS = [
    "0",
    "-1",
    "2",
    "4",
    "head",
    "top:1",
    "top:0",
    "bitfit",
    "random:0.5",
    r"regex:layers\.3\.|classifier",
]


def tiny(seed=0):
    return minifreeze.random_model("tiny", num_labels=3, seed=seed)  # 4 layers, H=64


def batch(seed=0, b=6, t=16):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (b, t), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[4, 3:] = 0
    return ids, mask, torch.randint(0, 3, (b,), generator=g)


@pytest.mark.parametrize(
    "spec, prefix, trains",
    [
        ("0", 0, ["encoder.embeddings.word.weight", "head.classifier.weight"]),
        ("-1", 1, ["encoder.layers.0.query.weight"]),
        ("2", 3, ["encoder.layers.2.query.weight", "head.pooler.weight"]),
        ("4", 5, ["head.pooler.weight", "head.classifier.bias"]),
        ("head", 5, ["head.classifier.weight"]),
        ("top:1", 4, ["encoder.layers.3.ffn_out.bias", "head.pooler.weight"]),
        (
            "bitfit",
            0,
            ["encoder.embeddings.norm.bias", "encoder.layers.0.query.bias", "head.classifier.weight"],
        ),
        ("random:0.3", 0, ["encoder.embeddings.word.weight"]),
        (r"regex:layers\.(2|3)\.", 3, ["encoder.layers.2.ffn_in.weight"]),
    ],
)
def test_spec_selects_parameters_and_prefix(spec, prefix, trains):
    model = tiny()
    plan = freeze(model, spec)
    params = dict(model.named_parameters())
    assert plan.prefix_blocks == prefix and model.encoder.frozen_blocks == prefix
    for name in trains:
        assert params[name].requires_grad, name
    assert set(plan.trainable) == {n for n, p in params.items() if p.requires_grad}
    assert plan.total_params == sum(p.numel() for p in params.values())
    assert str(prefix) in plan.summary()


def test_head_spec_freezes_the_pooler_too():
    plan = freeze(tiny(), "head")
    assert "head.pooler.weight" in plan.frozen and plan.trainable == [
        "head.classifier.weight",
        "head.classifier.bias",
    ]


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_bitfit_trains_exactly_the_biases_and_the_task_classifier(family):
    """BitFit (Ben Zaken et al.): bias terms + the task classifier; BERT's pretrained pooler weight stays."""
    from conftest import TINY

    from minifreeze.config import config_from_dict

    model = minifreeze.random_model(config_from_dict({"model_type": family, **TINY[family]}), seed=0)
    plan = freeze(model, "bitfit")
    head_weights = {n for n, _ in model.head.named_parameters() if not n.endswith(".bias")}
    created = {f"head.{n}" for n in head_weights if not n.startswith("pooler.")}
    expected = {n for n, _ in model.named_parameters() if n.endswith(".bias")} | created
    assert set(plan.trainable) == expected
    assert "head.pooler.weight" not in plan.trainable
    assert "biases" in plan.summary() and "layers 0-" in plan.summary()


def test_summary_lists_what_trains():
    assert "trains: layers 2-3: all; head: all" in freeze(tiny(), "2").summary()
    assert "trains: head: classifier.weight, classifier.bias" in freeze(tiny(), "head").summary()
    assert "trains (unmasked elements only)" in freeze(tiny(), "random:0.5").summary()


def test_bitfit_and_random_say_no_prefix_can_skip_autograd():
    assert "no prefix can skip autograd" in freeze(tiny(), "bitfit").summary()
    plan = freeze(tiny(), "random:0.25")
    assert "element-wise" in plan.summary()
    masked = sum(int((~m).sum()) for m in plan.element_masks.values())
    body = sum(m.numel() for m in plan.element_masks.values())
    assert 0.2 < masked / body < 0.3
    assert plan.trainable_params == plan.total_params - masked


@pytest.mark.parametrize(
    "spec, message",
    [
        ("5", "the model has 4 layers, so N must be in -1..4"),
        ("-2", "N must be in -1..4"),
        ("top:-1", "K must be in 0..4"),
        ("top:9", "K must be in 0..4"),
        ("random:1.0", r"must be in \[0, 1\)"),
        ("random:-0.1", r"must be in \[0, 1\)"),
        ("random:x", "cannot read the number"),
        ("regex:nothing_matches_this", "selects no parameter"),
        ("regex:(", "invalid regular expression"),
        ("freeze-all", "unknown spec"),
    ],
)
def test_impossible_specs_fail_clearly(spec, message):
    with pytest.raises(MinifreezeError, match=message):
        freeze(tiny(), spec)


@pytest.mark.parametrize("spec", SPECS)
def test_frozen_parameters_stay_bit_identical_after_training(spec):
    """AdamW with weight decay, several steps: every frozen tensor and frozen element is unchanged."""
    model = tiny()
    plan = freeze(model, spec, seed=3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = make_optimizer(model, plan, lr=1e-2, weight_decay=0.1)
    model.train()
    for step in range(3):
        ids, mask, labels = batch(step)
        loss, _ = model.loss(ids, mask, None, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    after = dict(model.named_parameters())
    for name in plan.frozen:
        assert torch.equal(after[name], before[name]), name
    for name, trainable in plan.element_masks.items():
        assert torch.equal(after[name][~trainable], before[name][~trainable]), name
        assert not torch.equal(after[name][trainable], before[name][trainable]), name
    assert any(not torch.equal(after[n], before[n]) for n in plan.trainable)


def step_saved_bytes(model, ids, mask):
    return saved_bytes(
        lambda: model.loss(ids, mask, None, torch.zeros(len(ids), dtype=torch.long)), list(model.parameters())
    )


def test_saved_activations_shrink_with_depth():
    """Bytes saved for backward at depth k are about (L - k) / L of depth 0 (plus the head's share)."""
    model = tiny()
    model.train()
    ids, mask, _ = batch(b=8, t=32)
    saved = {}
    for depth in range(5):
        freeze(model, depth)
        saved[depth] = step_saved_bytes(model, ids, mask)
    layers = 4
    for depth in range(1, 5):
        assert saved[depth] < saved[depth - 1]
        assert saved[depth] <= (layers - depth) / layers * saved[0] + saved[4] + 1024
    assert saved[4] < 0.02 * saved[0]  # only the head's few tensors remain


def test_no_grad_prefix_beats_requires_grad_when_embeddings_train():
    """regex keeps embeddings trainable with layers 0-1 frozen: requires_grad=False alone must keep the
    frozen layers' activations (gradients flow through them to the embeddings); the plan says no prefix."""
    model = tiny()
    model.train()
    ids, mask, _ = batch(b=8, t=32)
    plan = freeze(model, r"regex:embeddings|layers\.(2|3)\.|head")
    assert plan.prefix_blocks == 0  # nothing to skip: the embeddings below must get gradients
    with_embeddings = step_saved_bytes(model, ids, mask)
    freeze(model, 2)  # same layers frozen, embeddings frozen too: the prefix goes under no_grad
    prefix = step_saved_bytes(model, ids, mask)
    freeze(model, 2, mode="requires_grad")  # requires_grad=False alone, embeddings frozen as well
    autograd_only = step_saved_bytes(model, ids, mask)
    assert prefix < 0.6 * with_embeddings
    # with nothing trainable below, autograd already prunes the frozen layers: the honest finding
    assert autograd_only <= 1.25 * prefix


def test_frozen_dropout_keeps_prefix_in_train_mode():
    model = tiny()
    freeze(model, 2, frozen_dropout=True)
    model.train()
    assert all(b.training for b in model.encoder.blocks())
    freeze(model, 2)
    assert [b.training for b in model.encoder.blocks()] == [False, False, False, True, True]
