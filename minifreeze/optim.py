"""AdamW over what trains, the learning-rate schedule, and element-wise masks that really freeze.

No weight decay on biases and LayerNorm weights (the BERT recipe). Element-wise freezing (`random:P`)
needs more than a zeroed gradient: AdamW's decoupled weight decay moves every parameter it holds, so the
frozen elements are put back, bit for bit, after every step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .freezing import FreezePlan, block_of


def no_decay(name: str) -> bool:
    return name.endswith(".bias") or "norm." in name


def lr_depth(name: str, num_layers: int) -> int:
    """How many blocks below the head a parameter sits: the head 0, layer l L - l, the embeddings L + 1."""
    block = block_of(name)
    return 0 if block is None else num_layers + 1 - block if block else num_layers + 1


def fused_supported(params: list[torch.Tensor]) -> bool:
    """torch's fused AdamW runs on CUDA and (since 2.4) CPU for floating-point tensors."""
    devices = {p.device.type for p in params}
    return len(devices) == 1 and devices <= {"cuda", "cpu"} and all(p.is_floating_point() for p in params)


def make_optimizer(
    model: nn.Module,
    plan: FreezePlan,
    lr: float,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    fused: bool | None = None,
    lr_decay: float = 1.0,
) -> torch.optim.AdamW:
    """AdamW over what trains. `lr_decay` F < 1 gives each block its own learning rate (layer-wise decay,
    the "soft freezing" of BERT fine-tuning): the head lr, layer l of L lr * F^(L-l), the embeddings
    lr * F^(L+1); the groups run from the head down, so the first is the head's (what logs show)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    num_layers = len(model.encoder.layers)

    def scale(name: str) -> float:
        return lr_decay ** lr_depth(name, num_layers)

    groups = []
    for s in sorted({scale(n) for n, _ in named}, reverse=True):
        for decays, wd in ((True, weight_decay), (False, 0.0)):
            params = [p for n, p in named if scale(n) == s and no_decay(n) != decays]
            if params:
                groups.append({"params": params, "weight_decay": wd, "lr": lr * s})
    params = [p for _, p in named]
    if fused is None:
        fused = fused_supported(params)
    optimizer = torch.optim.AdamW(
        groups, lr=lr, betas=betas, eps=eps, fused=fused or None, foreach=None if fused else True
    )
    if plan.element_masks:
        attach_element_masks(model, plan, optimizer)
    return optimizer


def attach_element_masks(model: nn.Module, plan: FreezePlan, optimizer: torch.optim.Optimizer) -> None:
    """Zero the gradient of frozen elements (so clipping sees the true norm) and restore them after a step."""
    params = dict(model.named_parameters())
    frozen_values = {}
    for name, trainable in plan.element_masks.items():
        param = params[name]
        param.register_hook(lambda grad, m=trainable: grad * m)
        frozen_values[name] = (param, ~trainable, param.detach()[~trainable].clone())

    def restore(opt, args, kwargs):
        with torch.no_grad():
            for param, frozen, values in frozen_values.values():
                param.masked_scatter_(frozen, values)

    optimizer.register_step_post_hook(restore)


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, kind: str = "linear"
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak, then linear decay to zero ("linear"), half a cosine down to zero
    ("cosine", Trainer's cosine schedule) or a flat line ("constant")."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        left = max(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))  # 1 -> 0 after warm-up
        return 0.5 * (1 - math.cos(math.pi * left)) if kind == "cosine" else left

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
