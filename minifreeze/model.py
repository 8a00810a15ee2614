"""The classifier users hold: `load_model()` returns encoder + head, loaded from a Hub checkpoint.

logits = head(encoder(input_ids, attention_mask, token_type_ids), attention_mask)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import checkpoints, delta, hub
from .config import EncoderConfig, load_config, named_config
from .encoder import Encoder
from .errors import MinifreezeError
from .heads import make_head
from .task import TASK_KEYS

POOLINGS = ("cls", "mean")


class SequenceClassifier(nn.Module):
    def __init__(
        self,
        cfg: EncoderConfig,
        pooling: str = "cls",
        textbook_attention: bool = False,
        fused_head: str = "auto",
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise MinifreezeError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
        self.config = cfg
        self.pooling = pooling
        self.encoder = Encoder(cfg, textbook_attention)
        self.head = make_head(cfg, pooling, fused_head)
        self.source: Path | None = None  # the folder it came from; its tokenizer files travel with saves
        self.task: dict = {}  # how it was trained to read its input (see task.py); saved with it
        self.max_positions = cfg.max_positions  # the family table's rule, as the tokenizer reads it

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.from_prefix(None, input_ids, attention_mask, token_type_ids)

    def loss(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean cross-entropy, logits) for a batch; the head may fuse pooling and loss."""
        return self.from_prefix(None, input_ids, attention_mask, token_type_ids, labels)

    def from_prefix(self, prefix_hidden, input_ids, attention_mask, token_type_ids, labels=None):
        """The one path from the frozen prefix's output to logits (or, given labels, to (loss, logits)).

        `prefix_hidden` is what `encoder.prefix` returned (or the cache holds); None runs the whole encoder.
        Training, DDP, the frozen cache, evaluation and the benchmarks all go through here, so what is
        measured is what trains.
        """
        if input_ids.shape[-1] > self.max_positions:
            raise MinifreezeError(
                f"{input_ids.shape[-1]} tokens is more than the model's {self.max_positions} positions: "
                f"truncate the texts (tokenizer(..., truncation=True, max_length={self.max_positions}))"
            )
        if prefix_hidden is None:
            hidden = self.encoder(input_ids, attention_mask, token_type_ids)
        else:
            hidden = self.encoder.suffix(prefix_hidden, attention_mask)
        if labels is None:
            return self.head(hidden, attention_mask)
        return self.head.loss(hidden, attention_mask, labels)

    def save_pretrained(self, folder: str | Path, tokenizer_dir: str | Path | None = None) -> None:
        """Write the Hub layout (transformers loads it); atomically, so a reader never sees half of it."""
        source = tokenizer_dir or self.source
        checkpoints.save_model(self, Path(folder), Path(source) if source else None)

    def init_weights(self, modules: list[nn.Module] | None = None) -> None:
        """Initialise like transformers: N(0, initializer_range) weights, zero biases, unit LayerNorms."""
        std = self.config.initializer_range
        for module in modules if modules is not None else self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


class TrainablePart(nn.Module):
    """What trains, as one module (`model.from_prefix`): the unit DDP wraps and torch.compile compiles.
    Its parameters are the whole model's, but only the suffix and head are reached by autograd."""

    def __init__(self, model: SequenceClassifier):
        super().__init__()
        self.model = model

    def forward(self, prefix_hidden, input_ids, attention_mask, token_type_ids, labels=None):
        return self.model.from_prefix(prefix_hidden, input_ids, attention_mask, token_type_ids, labels)


def random_model(
    name_or_config: str | EncoderConfig, num_labels: int = 2, pooling: str = "cls", seed: int = 0, **kwargs
) -> SequenceClassifier:
    """A model with random weights and a named architecture ("bert-base", "minilm", ...): for benchmarks."""
    cfg = named_config(name_or_config, num_labels) if isinstance(name_or_config, str) else name_or_config
    torch.manual_seed(seed)
    model = SequenceClassifier(cfg, pooling, **kwargs)
    model.init_weights()
    return model


def load_model(
    name_or_path: str | Path = hub.DEFAULT_MODEL,
    num_labels: int | None = None,
    pooling: str = "cls",
    revision: str | None = None,
    id2label: dict[int, str] | None = None,
    reinit_head: bool | str = False,
    textbook_attention: bool = False,
    fused_head: str = "auto",
    dtype: torch.dtype = torch.float32,
    trust_base: bool = False,
) -> SequenceClassifier:
    """A classifier from a Hub id or a local folder (base or fine-tuned checkpoint).

    A fine-tuned head is kept with its labels; a missing head is created and initialised like
    transformers does. Asking for another number of labels than the checkpoint's head has is an
    error unless `reinit_head=True` (always a new head) or `"mismatch"` (a new head only if it differs).
    A delta folder (delta.py) loads its base, checks its hashes (`trust_base=True` skips that) and applies.
    """
    if delta.is_delta(name_or_path):
        base, head = delta.base_and_task(name_or_path, trust_base)
        model = load_model(base, **head, textbook_attention=textbook_attention, fused_head=fused_head)
        delta.apply_delta(model, name_or_path)
        return model.to(dtype)
    folder = hub.resolve_model(str(name_or_path), revision)
    cfg = load_config(folder)
    saved = cfg.raw.get("minifreeze") if isinstance(cfg.raw.get("minifreeze"), dict) else {}
    if saved.get("pooling") in POOLINGS and pooling == "cls":
        pooling = saved["pooling"]  # a model we saved remembers its pooling
    hint = " (config.json and the weights disagree on the labels: re-save or re-train the model)"
    if id2label is not None or (num_labels is not None and num_labels != cfg.num_labels):
        cfg = cfg.with_labels(len(id2label) if id2label else num_labels, id2label)
        hint = " (pass num_labels to match, or reinit_head=True)"
    model = SequenceClassifier(cfg, pooling, textbook_attention, fused_head)
    model.task = {k: v for k, v in saved.items() if k in TASK_KEYS}
    missing = checkpoints.load_weights(
        model, checkpoints.read_state_dict(folder), str(folder), reinit_head, head_hint=hint
    )
    fresh = [
        m
        for n, m in model.named_modules()
        if any(p.startswith(n + ".") for p in missing) and isinstance(m, nn.Linear)
    ]
    if fresh:
        model.init_weights(fresh)
    model.source = folder
    return model.to(dtype)
