"""The analytic limit of a training step: what the blocks it needs cost when each is timed on its own.

DESIGN.md ("Measuring performance"): the bound for depth k is the forward of everything + the backward of
the trainable suffix and head (+ the optimizer step), from measured per-block times; with the cache,
the forward of the suffix only. `measure_blocks` times every block once per run in the five ways a step
can need it (`BlockTimes`); `bound_terms` says which of them the model's current trainable set needs,
and `bound_seconds` adds them up. A step that costs about its bound has no overhead beyond its parts.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from benchmarks.common import autocast, timed
from minifreeze.batching import Batch


@dataclass
class BlockTimes:
    """Median seconds of one block: forward without autograd (eval) and with it (train), and backward
    with weight and input gradients (`full`), input gradients only (frozen weights, something below
    trains) and weight gradients only (the lowest trainable block: its input needs none)."""

    fwd_nograd: float
    fwd_grad: float
    bwd_full: float
    bwd_input: float
    bwd_weights: float


def measure_block(block: nn.Module, forward, x: torch.Tensor, reps: int, device: str, amp) -> BlockTimes:
    """Time `forward(x)` of one block in the five ways the bound needs; rep 0 is a warm-up."""
    params = list(block.parameters())
    grad_out = {}

    def run(inp: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return forward(inp)

    def graph_input(weights: bool, inputs: bool) -> torch.Tensor:
        """Which gradients autograd is to compute: the weights' and/or the input's (never token ids')."""
        for p in params:
            p.requires_grad_(weights)
        return x.detach().requires_grad_(inputs and x.is_floating_point())

    def forward_time(graph: bool) -> float:
        block.train(graph)
        if not graph:
            with torch.no_grad():
                return timed(lambda: run(x), device)
        inp = graph_input(True, True)
        return timed(lambda: run(inp), device)  # the graph is dropped right after

    def backward_time(weights: bool, inputs: bool) -> float:
        inp = graph_input(weights, inputs)
        if not (weights or inp.requires_grad):
            return 0.0
        out = run(inp)
        if out.dim() > 0:
            grad_out.setdefault("g", torch.randn_like(out))
        seconds = timed(lambda: out.backward(grad_out.get("g")), device)
        for p in params:
            p.grad = None
        return seconds

    samples: dict[str, list[float]] = {f.name: [] for f in fields(BlockTimes)}
    for rep in range(reps + 1):
        row = {
            "fwd_nograd": forward_time(graph=False),
            "fwd_grad": forward_time(graph=True),
            "bwd_full": backward_time(True, True),
            "bwd_input": backward_time(False, True),
            "bwd_weights": backward_time(True, False),
        }
        for key, value in row.items():
            if rep:
                samples[key].append(value)
    for p in params:
        p.requires_grad_(True)
    return BlockTimes(**{k: statistics.median(v) for k, v in samples.items()})


def measure_blocks(model: nn.Module, batch: Batch, reps: int, device: str, amp) -> dict[str, object]:
    """Per-block times of embeddings, every layer and the head on this run's batch."""
    enc = model.encoder
    mask = enc.key_mask(batch.attention_mask)
    with torch.no_grad():
        hidden = [enc.embeddings.eval()(batch.input_ids, batch.token_type_ids)]
        for layer in enc.layers:
            hidden.append(layer.eval()(hidden[-1], mask))

    def embeddings(ids):
        return enc.embeddings(ids, batch.token_type_ids)

    def head(h):
        return model.head.loss(h, batch.attention_mask, batch.labels)[0]

    times = {
        "embeddings": measure_block(enc.embeddings, embeddings, batch.input_ids, reps, device, amp),
        "layers": [
            measure_block(layer, lambda h, layer=layer: layer(h, mask), hidden[i], reps, device, amp)
            for i, layer in enumerate(enc.layers)
        ],
        "head": measure_block(model.head, head, hidden[-1], reps, device, amp),
    }
    model.train()
    return times


def block_times_record(blocks: dict[str, object] | None) -> dict:
    """The JSON line of a run's block times (`kind: block_times`): what its bounds were added up from."""
    if blocks is None:
        return {"kind": "block_times", "layers": None}
    return {
        "kind": "block_times",
        "embeddings": asdict(blocks["embeddings"]),
        "head": asdict(blocks["head"]),
        "layers": [asdict(b) for b in blocks["layers"]],
    }


def bound_terms(model: nn.Module, cached: bool = False) -> list[tuple[str, str]]:
    """(block, BlockTimes field) for every time a step of the model's current trainable set needs.

    A block runs without autograd when neither it nor anything below it trains (`fwd_nograd`; nothing
    at all with `cached`: its output comes from the cache); otherwise with autograd (`fwd_grad`), and its
    backward computes weight gradients if a matrix in it trains (bias and LayerNorm gradients are
    reductions, ignored here) and input gradients if anything below trains.
    """
    blocks = [("embeddings", model.encoder.embeddings)]
    blocks += [(f"layers.{i}", layer) for i, layer in enumerate(model.encoder.layers)]
    blocks.append(("head", model.head))
    terms, below_trains = [], False
    for name, block in blocks:
        trainable = [p for p in block.parameters() if p.requires_grad]
        matrices = any(p.dim() >= 2 for p in trainable)
        if not (trainable or below_trains or name == "head"):
            terms += [] if cached else [(name, "fwd_nograd")]
            continue
        terms.append((name, "fwd_grad"))
        if matrices:
            terms.append((name, "bwd_full" if below_trains else "bwd_weights"))
        elif below_trains:
            terms.append((name, "bwd_input"))
        below_trains = below_trains or bool(trainable)
    return terms


def bound_seconds(
    model: nn.Module, blocks: dict[str, object], optimizer_s: float, cached: bool = False
) -> float:
    """The least a step can cost for the model's current trainable set: its `bound_terms` + the optimizer."""

    def block(name: str) -> BlockTimes:
        return blocks["layers"][int(name.split(".")[1])] if name.startswith("layers.") else blocks[name]

    return sum(getattr(block(name), term) for name, term in bound_terms(model, cached)) + optimizer_s
