"""The peer every benchmark compares against: transformers' AutoModelForSequenceClassification.

Same config and weights as ours (ours is saved with `save_pretrained`, the peer `from_pretrained`s that
folder, and `check_parity` compares the logits before anything is timed), same batch, same threads,
frozen the way everyone else freezes: `requires_grad=False` on the same parameters (`freeze_peer`),
trained by torch's AdamW with our groups and hyper-parameters (`peer_optimizer`). transformers is an
optional benchmark dependency: `peer_available()` says why the peer is missing when it is.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import LR, WEIGHT_DECAY, disable_dropout, load_ours, resolve_model_name
from minifreeze.batching import Batch
from minifreeze.checkpoints import name_table
from minifreeze.freezing import FreezePlan


def peer_available() -> str | None:
    """None when transformers can be imported, else the reason (the peer is optional)."""
    try:
        import transformers  # noqa: F401
    except ImportError as err:
        return f"transformers is not installed ({err}); the peer columns are skipped"
    return None


def load_peer(folder: Path) -> nn.Module:
    """transformers' classifier for a folder we saved (ImportError without transformers)."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()
    with contextlib.suppress(AttributeError):
        transformers.utils.logging.disable_progress_bar()
    peer = AutoModelForSequenceClassification.from_pretrained(folder)
    # transformers sets this on the first forward with labels; setting it up front keeps the first call
    # from changing the module (under torch.compile that change would force a recompile in a timed step).
    peer.config.problem_type = peer.config.problem_type or "single_label_classification"
    return peer


def build_pair(name: str, dropout: bool = True, with_peer: bool = True) -> tuple[nn.Module, nn.Module | None]:
    """Our model and (optionally) the peer loaded from our saved weights, both in train mode."""
    ours = load_ours(resolve_model_name(name))
    peer = None
    if with_peer:
        with tempfile.TemporaryDirectory() as folder:
            ours.save_pretrained(folder)
            peer = load_peer(Path(folder))
    for model in (ours, peer):
        if model is not None:
            if not dropout:
                disable_dropout(model)
            model.train()
    return ours, peer


def peer_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    """The keyword arguments transformers takes (no token_type_ids for families that have none)."""
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    if batch.token_type_ids is not None:
        inputs["token_type_ids"] = batch.token_type_ids
    return inputs


def peer_loss(peer: nn.Module) -> Callable[[Batch], torch.Tensor]:
    return lambda b: peer(**peer_inputs(b), labels=b.labels).loss


def check_parity(ours: nn.Module, peer: nn.Module, batch: Batch) -> float:
    """Max |logit difference| in eval mode: proves both sides compute the same function before timing."""
    ours.eval()
    peer.eval()
    with torch.no_grad():
        a = ours(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        b = peer(**peer_inputs(batch)).logits
    ours.train()
    peer.train()
    diff = (a - b).abs().max().item()
    if diff > 1e-3 * max(1.0, b.abs().max().item()):
        raise RuntimeError(f"ours and the peer disagree (max |logit diff| {diff:.2e}): not the same model")
    return diff


def freeze_peer(peer: nn.Module, ours: nn.Module, plan: FreezePlan) -> int:
    """requires_grad=False on the peer's parameters exactly where ours are frozen; returns trainable count."""
    table = name_table(ours.config, ours.pooling)  # Hub name (the peer's) -> our name
    trainable = set(plan.trainable)
    count = 0
    for name, param in peer.named_parameters():
        if name not in table:
            raise RuntimeError(f"the peer's parameter {name} has no counterpart in our model")
        param.requires_grad_(table[name] in trainable)
        count += param.numel() if param.requires_grad else 0
    return count


def no_decay_peer(name: str) -> bool:
    """transformers' names for what `minifreeze.optim.no_decay` exempts: biases and LayerNorm weights."""
    return name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name


def peer_optimizer(peer: nn.Module, impl: str = "fused", lr: float = LR) -> torch.optim.Optimizer:
    """torch AdamW over the peer's trainable parameters, same groups and hyper-parameters as ours.

    impl: `fused` (fused=True), `foreach` (foreach=True) or `default` (torch picks; on CPU the for-loop).
    """
    named = [(n, p) for n, p in peer.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not no_decay_peer(n)], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in named if no_decay_peer(n)], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    kwargs = {"fused": dict(fused=True), "foreach": dict(foreach=True), "default": {}}[impl]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, **kwargs)
