"""`python -m minifreeze.inspect`: where the memory of one training step goes, module by module.

For every module (embeddings, each layer, the BERT pooler, the head, and the loss) it reports what a
freeze spec does: parameters trainable and frozen, bytes of weights, of gradients and of AdamW state, and
the bytes autograd saved for backward. Nothing is estimated: the tool runs ONE real training step
(forward, loss, backward, AdamW step) on a random batch and reads the numbers off the tensors, so it
also shows the effects people forget (a `[:, 0]` slice keeps its whole `[B, T, H]` storage alive; a
`random:P` mask frees no gradient or optimizer memory, because both are allocated per tensor).

Saved bytes are attributed by forward hooks: entering a module pushes its name on a stack, leaving pops
it, and `profiling.SavedTensors` charges each storage to the name on top when autograd first saves it.
What is saved outside every module (the cross-entropy, or the fused mean-pool + loss op) is "loss".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import cli
from .config import NAMED_CONFIGS
from .errors import MinifreezeError
from .freezing import SPEC_HELP, block_of, freeze
from .model import SequenceClassifier, load_model, random_model
from .optim import make_optimizer
from .profiling import SavedTensors
from .runtime import human_bytes

COLUMNS = ("params", "trainable", "frozen", "weight_bytes", "grad_bytes", "adamw_bytes", "saved_bytes")


def build_model(
    name: str, pooling: str = "cls", attention: str = "sdpa", num_labels: int | None = None, seed: int = 0
) -> SequenceClassifier:
    """A named config (random weights: the shape is all that memory depends on), or a Hub id / folder."""
    textbook = attention == "textbook"
    if name in NAMED_CONFIGS and not Path(name).is_dir():
        return random_model(name, num_labels or 2, pooling, seed, textbook_attention=textbook)
    return load_model(name, num_labels, pooling, textbook_attention=textbook)


def row_of(name: str) -> str:
    """The report row of a parameter name: embeddings, layer i, pooler or head."""
    block = block_of(name)
    if block is not None:
        return "embeddings" if block == 0 else f"layer {block - 1}"
    return "pooler" if name.startswith("head.pooler.") else "head"


def row_modules(model: SequenceClassifier) -> dict[str, nn.Module]:
    """The report's module rows bottom-up, each with the module whose forward it measures ("loss" follows)."""
    rows: dict[str, nn.Module] = {"embeddings": model.encoder.embeddings}
    rows.update({f"layer {i}": layer for i, layer in enumerate(model.encoder.layers)})
    if isinstance(getattr(model.head, "pooler", None), nn.Module):
        rows["pooler"] = model.head.pooler  # nested in the head: the label stack handles it
    rows["head"] = model.head
    return rows


def random_batch(model: SequenceClassifier, batch: int, seq: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Ids drawn above the special-token range, ragged lengths padded with the pad id, random labels.

    Memory does not depend on which tokens these are, only on the shapes; the padding is there so that
    the mask takes the same code path as in real training. Row 0 is full length, so T really is T.
    """
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(1000, cfg.vocab_size // 4), cfg.vocab_size, (batch, seq), generator=g)
    lengths = torch.randint(max(seq // 4, 1), seq + 1, (batch,), generator=g)
    lengths[0] = seq
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    return {
        "input_ids": ids.masked_fill(mask == 0, cfg.pad_token_id),
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids) if cfg.has_token_types else None,
        "labels": torch.randint(0, cfg.num_labels, (batch,), generator=g),
    }


def training_step(model: SequenceClassifier, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Forward + loss + backward, exactly as the training loop does it (model.loss, then backward)."""
    loss, _ = model.loss(**inputs)
    if loss.requires_grad:  # a spec can leave nothing that reaches the loss (e.g. regex:pooler, mean head)
        loss.backward()
    return loss


def attributed_step(model: SequenceClassifier, inputs: dict[str, torch.Tensor]) -> SavedTensors:
    """One training step under a SavedTensors meter whose label follows the module being run."""
    meter = SavedTensors(list(model.parameters()))
    stack = ["loss"]
    modules = row_modules(model)

    def enter(label: str):
        def hook(module, args):
            stack.append(label)
            meter.label = label

        return hook

    def leave(module, args, output):
        stack.pop()
        meter.label = stack[-1]

    meter.label = stack[-1]
    handles = [m.register_forward_pre_hook(enter(label)) for label, m in modules.items()]
    handles += [m.register_forward_hook(leave) for m in modules.values()]
    try:
        with meter.active():
            training_step(model, inputs)  # only forward saves; backward consumes what forward saved
    finally:
        for handle in handles:
            handle.remove()
    return meter


def report(
    model: SequenceClassifier,
    spec: str,
    batch: int = 32,
    seq: int = 64,
    mode: str = "no_grad",
    seed: int = 0,
) -> dict[str, Any]:
    """Freeze `model` with `spec`, run one real training step, and return the per-module numbers.

    The model is changed (frozen, stepped once): build a fresh one per report, as `run` does.
    """
    plan = freeze(model, spec, mode=mode, seed=seed)
    model.train()
    model.zero_grad(set_to_none=True)
    meter = attributed_step(model, random_batch(model, batch, seq, seed))
    optimizer = make_optimizer(model, plan, lr=1e-5)
    optimizer.step()  # AdamW allocates its two moments lazily, on the first step: measure the real thing
    names = [*row_modules(model), "loss"]
    rows = {name: dict.fromkeys(COLUMNS, 0) for name in names}
    for name, param in model.named_parameters():
        row = rows[row_of(name)]
        mask = plan.element_masks.get(name)  # random:P: only the unmasked elements train
        trainable = int(mask.sum()) if mask is not None else param.numel() if param.requires_grad else 0
        state = optimizer.state.get(param, {})
        row["params"] += param.numel()
        row["trainable"] += trainable
        row["frozen"] += param.numel() - trainable
        row["weight_bytes"] += param.nbytes
        row["grad_bytes"] += param.grad.nbytes if param.grad is not None else 0
        row["adamw_bytes"] += sum(state[k].nbytes for k in ("exp_avg", "exp_avg_sq") if k in state)
    for label, nbytes in meter.by_label.items():
        rows[label]["saved_bytes"] += nbytes
    prefix = model.encoder.frozen_blocks  # what the encoder really runs under no_grad
    for i, name in enumerate(names):
        rows[name]["runs"] = "no_grad" if i < prefix else "autograd"
    cfg = model.config
    return {
        "family": cfg.family,
        "layers": cfg.num_layers,
        "hidden": cfg.hidden_size,
        "batch": batch,
        "seq": seq,
        "attention": "textbook" if model.encoder.layers[0].textbook_attention else "sdpa",
        "pooling": model.pooling,
        "freeze": {"spec": str(spec), "mode": mode, "prefix_blocks": plan.prefix_blocks},
        "summary": plan.summary(),
        "rows": [{"module": name, **row} for name, row in rows.items()],
        "total": {key: sum(row[key] for row in rows.values()) for key in COLUMNS},
    }


def format_table(rep: dict[str, Any]) -> str:
    """One report as a fixed-width table, with the freeze plan's summary above it."""
    head = f"{'module':<11}{'params':>12}{'trainable':>12}{'frozen':>12}"
    head += f"{'weights':>12}{'grads':>12}{'AdamW':>12}{'saved':>12}  runs"
    lines = [rep["summary"], "", head]
    for row in [*rep["rows"], {"module": "total", **rep["total"], "runs": ""}]:
        counts = "".join(f"{row[k]:>12,}" for k in ("params", "trainable", "frozen"))
        sizes = "".join(f"{human_bytes(row[k]):>12}" for k in COLUMNS[3:])
        lines.append(f"{row['module']:<11}{counts}{sizes}  {row['runs']}")
    return "\n".join(lines)


def optimizer_side(row: dict[str, Any]) -> int:
    return row["grad_bytes"] + row["adamw_bytes"]


def format_compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Two reports side by side (columns A and B): trainable parameters, gradient + AdamW bytes, saved bytes."""
    lines = [f"{key}: " + r["summary"].replace("\n", "\n   ") for key, r in (("A", a), ("B", b))] + [""]
    lines.append(f"{'':<11}{'trainable params':>24}{'grads + AdamW':>24}{'saved for backward':>24}")
    lines.append(f"{'module':<11}" + f"{'A':>12}{'B':>12}" * 3)
    for ra, rb in zip([*a["rows"], {"module": "total", **a["total"]}], [*b["rows"], b["total"]]):
        train = f"{ra['trainable']:>12,}{rb['trainable']:>12,}"
        state = "".join(f"{human_bytes(optimizer_side(r)):>12}" for r in (ra, rb))
        saved = "".join(f"{human_bytes(r['saved_bytes']):>12}" for r in (ra, rb))
        lines.append(f"{ra['module']:<11}{train}{state}{saved}")
    ta, tb = a["total"], b["total"]
    saved = tb["saved_bytes"] / max(ta["saved_bytes"], 1)
    state = optimizer_side(tb) / max(optimizer_side(ta), 1)
    lines.append(f"\nB / A: saved for backward x{saved:.2f}, grads + AdamW x{state:.2f}")
    return "\n".join(lines)


@dataclass(frozen=True)
class InspectConfig:
    model: str = cli.option(
        "bundled:minilm",
        f"Hub id, model folder, bundled:minilm, or a named config built with random weights "
        f"({', '.join(NAMED_CONFIGS)})",
    )
    freeze: str = cli.option("0", f"freeze spec: {SPEC_HELP}")
    compare: str | None = cli.option(None, "a second freeze spec, shown side by side with --freeze")
    batch: int = cli.option(32, "batch size B of the random batch")
    seq: int = cli.option(64, "sequence length T of the random batch")
    mode: str = cli.option(
        "no_grad",
        "no_grad: the frozen prefix runs without autograd; requires_grad: requires_grad=False only, as in "
        "transformers, and autograd prunes what it can",
        choices=("no_grad", "requires_grad"),
    )
    attention: str = cli.option("sdpa", "attention path", choices=("sdpa", "textbook"))
    pooling: str = cli.option("cls", "head pooling", choices=("cls", "mean"))
    labels: int | None = cli.option(None, "number of classes (None: the checkpoint's, or 2)")
    seed: int = cli.option(0, "seed of the batch, of random weights and of random:P masks")
    json: bool = cli.option(False, 'print {"reports": [one per spec]} as JSON instead of tables')


DESCRIPTION = (
    "Per module: parameters, bytes of weights, gradients, AdamW state and activations saved for backward, "
    "measured in one real training step at a freeze spec (or two side by side, with --compare). "
    "Example: python -m minifreeze.inspect --model bundled:minilm --freeze 3 --compare 0"
)


def run(cfg: InspectConfig) -> list[dict[str, Any]]:
    """One report per spec, each on a freshly built model (no hooks, gradients or optimizer state carry over)."""
    if cfg.batch < 1 or cfg.seq < 1:
        raise MinifreezeError(f"--batch {cfg.batch} --seq {cfg.seq}: both must be at least 1")
    reports = []
    for spec in [cfg.freeze] + ([cfg.compare] if cfg.compare else []):
        model = build_model(cfg.model, cfg.pooling, cfg.attention, cfg.labels, cfg.seed)
        config = model.config
        if cfg.seq > config.max_positions:
            raise MinifreezeError(f"--seq {cfg.seq} exceeds the model's {config.max_positions} positions")
        reports.append({"model": cfg.model, **report(model, spec, cfg.batch, cfg.seq, cfg.mode, cfg.seed)})
    return reports


def main(argv: list[str] | None = None) -> None:
    cfg = cli.parse(InspectConfig, argv, "python -m minifreeze.inspect", DESCRIPTION)
    reports = run(cfg)
    if cfg.json:
        print(json.dumps({"reports": reports}, indent=2))
        return
    first = reports[0]
    shape = f"batch {cfg.batch} x {cfg.seq}, attention {cfg.attention}, pooling {cfg.pooling}"
    print(f"model {cfg.model}: {first['family']}, {first['layers']} layers, H={first['hidden']}, {shape}\n")
    print(format_compare(*reports) if cfg.compare else format_table(first))


def entry() -> None:
    """The console script minifreeze-inspect: `main` as the command line runs it."""
    cli.run(main)


if __name__ == "__main__":
    cli.run(main)
