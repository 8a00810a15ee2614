"""benchmarks/bound.py: the analytic limit adds up exactly the per-block times a trainable set needs.

Block times here are made up, each a distinct power of two, so a sum that takes a wrong term (or misses
one) cannot land on the right total by accident. The expected sums are written out per freeze spec from
DESIGN.md's definition: forward of everything (no autograd below the first trainable block) + backward of
what trains and of what lies between it and the head, + the optimizer step; the cache removes the frozen
forward.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

bound = pytest.importorskip("benchmarks.bound")
import minifreeze  # noqa: E402
from minifreeze.freezing import freeze  # noqa: E402

FIELDS = ("fwd_nograd", "fwd_grad", "bwd_full", "bwd_input", "bwd_weights")
OPTIMIZER_S = 2.0**-3


def fake_blocks(num_layers: int) -> dict:
    """Block i (0 = embeddings, L + 1 = head) gets 2^(5 i + j) for its j-th field: every sum is unique."""

    def times(i: int):
        return bound.BlockTimes(**{f: 2.0 ** (5 * i + j) for j, f in enumerate(FIELDS)})

    return {
        "embeddings": times(0),
        "layers": [times(i + 1) for i in range(num_layers)],
        "head": times(num_layers + 1),
    }


def by_hand(blocks: dict, frozen: int, cached: bool = False, frozen_input_grads: int = 0) -> float:
    """The sum for `frozen` encoder blocks under no_grad (embeddings first), then `frozen_input_grads`
    frozen blocks that gradients must cross, then trainable blocks, then the head."""
    encoder = [blocks["embeddings"], *blocks["layers"]]
    total = 0.0 if cached else sum(b.fwd_nograd for b in encoder[:frozen])
    graph = encoder[frozen:]
    crossed = graph[1 : 1 + frozen_input_grads]
    for i, b in enumerate(graph):
        total += b.fwd_grad
        if i == 0:
            total += b.bwd_weights  # the lowest trainable block: nothing below it needs a gradient
        else:
            total += b.bwd_input if b in crossed else b.bwd_full
    head = blocks["head"]
    return total + head.fwd_grad + (head.bwd_full if graph else head.bwd_weights) + OPTIMIZER_S


@pytest.fixture(scope="module")
def tiny():
    return minifreeze.random_model("tiny")


# spec -> encoder blocks under no_grad (embeddings = 1; "head" freezes all L + 1 of the tiny model's 4 layers)
@pytest.mark.parametrize(
    "spec, frozen", [("0", 0), ("-1", 1), ("1", 2), ("2", 3), ("3", 4), ("4", 5), ("head", 5)]
)
def test_bound_of_a_depth_is_the_sum_it_claims(tiny, spec, frozen):
    blocks = fake_blocks(tiny.config.num_layers)
    freeze(tiny, spec)
    assert bound.bound_seconds(tiny, blocks, OPTIMIZER_S) == by_hand(blocks, frozen)
    cached = bound.bound_seconds(tiny, blocks, OPTIMIZER_S, cached=True)
    assert cached == by_hand(blocks, frozen, cached=True)  # the suffix alone: the frozen forward is gone


def test_trainable_embeddings_make_every_frozen_layer_pay_its_input_gradient(tiny):
    layers = tiny.config.num_layers
    blocks = fake_blocks(layers)
    freeze(tiny, r"regex:^(encoder\.embeddings\.|encoder\.layers\.3\.|head\.)")  # layers 0-2 frozen
    expected = by_hand(blocks, 0, frozen_input_grads=3)
    assert bound.bound_seconds(tiny, blocks, OPTIMIZER_S) == expected
    assert bound.bound_seconds(tiny, blocks, OPTIMIZER_S, cached=True) == expected  # nothing to cache


def test_block_times_record_keeps_every_measured_time(tiny):
    blocks = fake_blocks(tiny.config.num_layers)
    record = bound.block_times_record(blocks)
    assert record["kind"] == "block_times" and record["head"]["bwd_full"] == blocks["head"].bwd_full
    assert [layer["fwd_grad"] for layer in record["layers"]] == [b.fwd_grad for b in blocks["layers"]]
