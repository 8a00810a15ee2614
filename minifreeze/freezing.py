"""Freeze specs -> a FreezePlan: which parameters train, and how deep the no_grad prefix goes.

Specs (the `--freeze` option), with L encoder layers and blocks = [embeddings, layer 0, ..., layer L-1]:
    0            nothing frozen
    -1           the embeddings
    N (1..L)     the embeddings and the first N layers
    head         everything but the task head (the BERT pooler freezes too, as the blog posts do)
    top:K        all but the last K layers, the pooler and the head (K = 0..L)
    bitfit       only the bias terms and the task classifier train (BitFit, Ben Zaken et al. 2022): every
                 `.bias`, plus the head's weights that are created for the task; BERT's pretrained
                 pooler weight stays frozen, as in `head`
    random:P     a random fraction P of the elements of every encoder tensor is frozen (masked)
    regex:PAT    only parameters whose name matches PAT (re.search) train, e.g. regex:layers\\.(10|11)\\.

The plan's `prefix_blocks` is the number of bottom blocks in which *nothing* trains. The encoder runs
exactly those under torch.no_grad() (and eval mode, unless frozen_dropout): what makes freezing cheap.
Specs that leave something trainable at the bottom (bitfit, random, trainable embeddings) have no
prefix, and the plan says so: there only autograd's own pruning helps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import MinifreezeError

SPEC_HELP = "an integer N (-1 .. L), head, top:K, bitfit, random:P (0 <= P < 1) or regex:PATTERN"


@dataclass
class FreezePlan:
    spec: str
    trainable: list[str]
    frozen: list[str]
    prefix_blocks: int  # bottom blocks (embeddings = 1) run under no_grad
    num_layers: int
    trainable_params: int
    total_params: int
    mode: str = "no_grad"  # or "requires_grad": same trainable set, prefix left to autograd (for comparison)
    frozen_dropout: bool = False
    element_masks: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # True = trainable

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / max(self.total_params, 1)

    def prefix_description(self) -> str:
        if self.prefix_blocks == 0:
            return "nothing (no block is entirely frozen)"
        layers = self.prefix_blocks - 1
        what = "embeddings" + (f" + layers 0-{layers - 1}" if layers > 1 else " + layer 0" if layers else "")
        return what + (" (dropout kept)" if self.frozen_dropout else " (eval mode)")

    def summary(self) -> str:
        lines = [
            f"freeze {self.spec}: {self.trainable_params:,} of {self.total_params:,} parameters train "
            f"({100 * self.trainable_fraction:.2f}%)",
            f"frozen prefix: {self.prefix_blocks} of {self.num_layers + 1} blocks; "
            f"under torch.no_grad(): {self.prefix_description() if self.mode == 'no_grad' else 'nothing'}",
        ]
        touched = "trains (unmasked elements only): " if self.element_masks else "trains: "
        lines.append(touched + describe_trainable(self.trainable, self.frozen))
        if self.mode == "requires_grad":
            lines.append("mode requires_grad: frozen blocks run under autograd (for comparison only)")
        if self.element_masks:
            lines.append(
                "element-wise freezing: every encoder block has trainable elements, so no prefix can "
                "skip autograd; frozen elements are masked in the gradient and restored after each step"
            )
        elif self.prefix_blocks == 0 and self.frozen:
            lines.append("no prefix can skip autograd: a trainable part sits at the bottom of the encoder")
        return "\n".join(lines)


def describe_trainable(trainable: list[str], frozen: list[str]) -> str:
    """What trains, by block, in a line a person can check: 'layers 0-3: biases; head: classifier'."""
    train = set(trainable)
    parts: dict[str, list[str]] = {}  # block label -> names inside it, in model order
    for name in [*trainable, *frozen]:
        block = block_of(name)
        label = "head" if block is None else "embeddings" if block == 0 else f"layer {block - 1}"
        parts.setdefault(label, []).append(name)
    described: list[tuple[str, str]] = []
    for label, names in sorted(parts.items(), key=lambda item: _block_order(item[0])):
        mine = [n for n in names if n in train]
        if not mine:
            continue
        if len(mine) == len(names):
            what = "all"
        elif all(n.endswith(".bias") for n in mine) and len(mine) == sum(n.endswith(".bias") for n in names):
            what = "biases"
        else:
            prefix = "head." if label == "head" else ""
            what = ", ".join(n.removeprefix(prefix).split(".layers.")[-1] for n in mine)
        described.append((label, what))
    return "; ".join(_merge_layer_runs(described)) or "nothing"


def _block_order(label: str) -> int:
    return -1 if label == "embeddings" else 10**6 if label == "head" else int(label.split()[1])


def _merge_layer_runs(described: list[tuple[str, str]]) -> list[str]:
    """Consecutive layers that train the same way become one entry: 'layers 2-11: all'."""
    out: list[str] = []
    run: list[int] = []
    for i, (label, what) in enumerate(described):
        if label.startswith("layer "):
            run.append(int(label.split()[1]))
            following = described[i + 1] if i + 1 < len(described) else ("", "")
            if following[0] == f"layer {run[-1] + 1}" and following[1] == what:
                continue
            span = f"layer {run[0]}" if len(run) == 1 else f"layers {run[0]}-{run[-1]}"
            out.append(f"{span}: {what}")
            run = []
        else:
            out.append(f"{label}: {what}")
    return out


def parse_spec(spec: str | int, num_layers: int) -> tuple[str, object]:
    """Validate a spec against the model; returns (kind, argument)."""
    text = str(spec).strip()
    kind, _, arg = text.partition(":")
    try:
        if re.fullmatch(r"-?\d+", text):
            n = int(text)
            if not -1 <= n <= num_layers:
                raise MinifreezeError(
                    f"--freeze {n}: the model has {num_layers} layers, so N must be in -1..{num_layers} "
                    f"(-1 embeddings only, {num_layers} every layer; use 'head' to train only the head)"
                )
            return "depth", n
        if text in ("head", "bitfit"):
            return text, None
        if kind == "top":
            k = int(arg)
            if not 0 <= k <= num_layers:
                raise MinifreezeError(f"--freeze {text}: K must be in 0..{num_layers} for this model")
            return "top", k
        if kind == "random":
            p = float(arg)
            if not 0 <= p < 1:
                raise MinifreezeError(f"--freeze {text}: P is the frozen fraction and must be in [0, 1)")
            return "random", p
        if kind == "regex":
            return "regex", re.compile(arg)
    except ValueError:
        raise MinifreezeError(
            f"--freeze {text}: cannot read the number after '{kind}:'; expected {SPEC_HELP}"
        ) from None
    except re.error as err:
        raise MinifreezeError(f"--freeze {text}: invalid regular expression ({err})") from None
    raise MinifreezeError(f"--freeze {text!r}: unknown spec; expected {SPEC_HELP}")


def block_of(name: str) -> int | None:
    """Block index of an encoder parameter (0 = embeddings, i + 1 = layer i); None for the head."""
    if name.startswith("encoder.embeddings."):
        return 0
    match = re.match(r"encoder\.layers\.(\d+)\.", name)
    return int(match.group(1)) + 1 if match else None


def trains(name: str, kind: str, arg, num_layers: int) -> bool:
    """Whether parameter `name` is trainable under the spec (element-wise specs: whether it is touched)."""
    block = block_of(name)
    if kind == "depth":
        frozen_blocks = 0 if arg == 0 else 1 if arg == -1 else arg + 1
        return block is None or block >= frozen_blocks
    if kind == "head":
        return block is None and not name.startswith("head.pooler.")
    if kind == "top":
        return block is None or block > num_layers - arg
    if kind == "bitfit":
        return name.endswith(".bias") or (block is None and not name.startswith("head.pooler."))
    if kind == "random":
        return True
    return bool(arg.search(name))


def random_masks(model: nn.Module, p: float, seed: int) -> dict[str, torch.Tensor]:
    """For every encoder tensor, a bool mask with True on the (1 - p) fraction of elements that train."""
    g = torch.Generator().manual_seed(seed)
    return {
        name: (torch.rand(param.shape, generator=g) >= p).to(param.device)
        for name, param in model.named_parameters()
        if block_of(name) is not None
    }


def freeze(
    model: nn.Module, spec: str | int, *, frozen_dropout: bool = False, mode: str = "no_grad", seed: int = 0
) -> FreezePlan:
    """Apply a freeze spec to a SequenceClassifier: set requires_grad and the encoder's no_grad prefix.

    `mode="requires_grad"` sets the same trainable set but leaves the prefix to autograd, the way
    `requires_grad=False` freezing works elsewhere (used by the benchmarks to compare).
    """
    if mode not in ("no_grad", "requires_grad"):
        raise MinifreezeError(f"freeze mode {mode!r}: use no_grad or requires_grad")
    num_layers = len(model.encoder.layers)
    kind, arg = parse_spec(spec, num_layers)
    params = dict(model.named_parameters())
    trainable = [n for n in params if trains(n, kind, arg, num_layers)]
    if kind == "regex" and not trainable:
        raise MinifreezeError(
            f"--freeze {spec}: the pattern selects no parameter (names look like "
            f"'encoder.layers.0.query.weight', 'head.classifier.bias')"
        )
    for name, param in params.items():
        param.requires_grad_(name in trainable)
    masks = random_masks(model, arg, seed) if kind == "random" and arg > 0 else {}
    total = sum(p.numel() for p in params.values())
    n_trainable = sum(params[n].numel() for n in trainable) - sum(int((~m).sum()) for m in masks.values())
    prefix = 0
    if not masks:
        for block in model.encoder.blocks():
            if any(p.requires_grad for p in block.parameters()):
                break
            prefix += 1
    model.encoder.frozen_blocks = prefix if mode == "no_grad" else 0
    model.encoder.frozen_dropout = frozen_dropout
    model.train(model.training)  # re-apply eval mode to the prefix
    return FreezePlan(
        spec=str(spec),
        trainable=trainable,
        frozen=[n for n in params if n not in trainable],
        prefix_blocks=prefix,
        num_layers=num_layers,
        trainable_params=n_trainable,
        total_params=total,
        mode=mode,
        frozen_dropout=frozen_dropout,
        element_masks=masks,
    )
