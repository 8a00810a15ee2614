"""The encoder: one network for BERT, RoBERTa and DistilBERT, with a frozen prefix that runs without autograd.

    input ids -> Embeddings -> Layer 0 -> ... -> Layer L-1 -> last hidden state [B, T, H]

A "block" is the embeddings or one layer, bottom-up: blocks = [embeddings, layer 0, ..., layer L-1].
`Encoder.frozen_blocks = k` makes the bottom k blocks a frozen prefix: they run under `torch.no_grad()`,
so autograd records nothing for them (no saved activations, no backward), and by default in eval mode
(no dropout), which makes their output a pure function of the input. That is the whole trick of
minifreeze; `freezing.py` decides k, this file only honours it.

Every layer is post-LayerNorm (the original BERT recipe, shared by all three families):
    h = LayerNorm(h + Attention(h));  h = LayerNorm(h + W2 act(W1 h))

Packed layers (`Encoder.packing`): everything in a layer but attention works token by token, so the layers
can run on the real tokens only, packed as rows [N_real, H]; only attention needs the per-sequence layout,
and gets it by scattering Q, K, V into a zero-padded [B, T, 3H] and gathering its output back. Padding then
costs no GEMM, GELU or LayerNorm. The padded path (and the textbook attention) stays: "auto" packs a batch
only where padding is a large enough share to pay for the scatter and gather (measured: docs/internals.md).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ACTIVATIONS, FAMILIES, EncoderConfig

PACKINGS = ("auto", "on", "off")
# "auto" packs a batch when less than this share of its [B, T] slots are real tokens: measured, packing
# costs ~7% on a batch without padding, ties near 0.95 and wins 5% at 0.9, 20% at 0.7 (docs/internals.md)
PACK_BELOW_REAL_FRACTION = 0.9


class Packing:
    """Where the real tokens of a padded [B, T] batch sit: `pack` keeps their rows, `pad` puts them back."""

    def __init__(self, attention_mask: torch.Tensor):
        self.batch, self.length = attention_mask.shape
        self.index = attention_mask.reshape(-1).nonzero().squeeze(1)  # positions in the flat [B * T]

    def pack(self, h: torch.Tensor) -> torch.Tensor:
        """[B, T, X] -> [N_real, X]"""
        return h.reshape(-1, h.shape[-1]).index_select(0, self.index)

    def pad(self, rows: torch.Tensor) -> torch.Tensor:
        """[N_real, X] -> [B, T, X], zeros where the padding is"""
        out = rows.new_zeros(self.batch * self.length, rows.shape[-1])
        return out.index_copy(0, self.index, rows).view(self.batch, self.length, -1)


class Embeddings(nn.Module):
    """Token + position (+ token type) embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.offset_positions = FAMILIES[cfg.family].offset_positions
        self.pad_token_id = cfg.pad_token_id
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if cfg.has_token_types else None
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.offset_positions:
            # RoBERTa numbers real tokens pad+1, pad+2, ... and gives padding the pad id itself.
            real = input_ids.ne(self.pad_token_id).long()
            return torch.cumsum(real, dim=1) * real + self.pad_token_id
        return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        h = self.word(input_ids) + self.position(self.position_ids(input_ids))
        if self.token_type is not None:
            if token_type_ids is None:
                h = h + self.token_type.weight[0]
            else:
                h = h + self.token_type(token_type_ids)
        return self.dropout(self.norm(h))


class Layer(nn.Module):
    """One transformer layer: self-attention and a feed-forward block, each with residual + LayerNorm."""

    def __init__(self, cfg: EncoderConfig, textbook_attention: bool = False):
        super().__init__()
        h = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.textbook_attention = textbook_attention
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.attn_out = nn.Linear(h, h)
        self.attn_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(h, cfg.intermediate_size)
        self.act = ACTIVATIONS[cfg.hidden_act]()
        self.ffn_out = nn.Linear(cfg.intermediate_size, h)
        self.ffn_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        self.attention_dropout = cfg.attention_dropout

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # [B, heads, T, head_dim]

    def attention(
        self, h: torch.Tensor, mask: torch.Tensor | None, packing: Packing | None = None
    ) -> torch.Tensor:
        """Multi-head self-attention; `mask` is bool [B, 1, 1, T], True where a key may be attended.
        With `packing`, `h` is the packed real tokens [N, H] (and so is the result)."""
        q, k, v = self.query(h), self.key(h), self.value(h)
        if packing is not None:  # one scatter for all three: [N, 3H] -> [B, T, 3H]
            q, k, v = packing.pad(torch.cat((q, k, v), dim=-1)).split(q.shape[-1], dim=-1)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        p_drop = self.attention_dropout if self.training else 0.0
        if self.textbook_attention:
            # softmax(Q K^T / sqrt(d) + mask) V, spelled out: the same numbers SDPA computes.
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            ctx = F.dropout(scores.softmax(dim=-1), p_drop, self.training) @ v
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop)
        b, _, t, _ = ctx.shape
        ctx = ctx.transpose(1, 2).reshape(b, t, -1)
        return self.attn_out(ctx if packing is None else packing.pack(ctx))

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor | None, packing: Packing | None = None
    ) -> torch.Tensor:
        h = self.attn_norm(h + self.dropout(self.attention(h, mask, packing)))
        return self.ffn_norm(h + self.dropout(self.ffn_out(self.act(self.ffn_in(h)))))


class Encoder(nn.Module):
    """Embeddings + L layers; the bottom `frozen_blocks` blocks run under no_grad (see the module doc)."""

    def __init__(self, cfg: EncoderConfig, textbook_attention: bool = False):
        super().__init__()
        self.config = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg, textbook_attention) for _ in range(cfg.num_layers))
        self.frozen_blocks = 0  # set by freezing.freeze(); 0 = everything runs with autograd
        self.frozen_dropout = (
            False  # True keeps dropout active in the frozen prefix (like requires_grad=False)
        )
        self.packing = "auto"  # run the layers on the real tokens only: auto, on or off (module doc)

    def blocks(self) -> list[nn.Module]:
        return [self.embeddings, *self.layers]

    @property
    def frozen_layers(self) -> int:
        """How many encoder layers (not counting the embeddings) belong to the frozen prefix."""
        return max(self.frozen_blocks - 1, 0)

    def train(self, mode: bool = True) -> Encoder:
        """Like nn.Module.train, but the frozen prefix stays in eval mode unless frozen_dropout is set."""
        super().train(mode)
        if not self.frozen_dropout:
            for block in self.blocks()[: self.frozen_blocks]:
                block.train(False)
        return self

    def set_textbook_attention(self, enabled: bool) -> None:
        for layer in self.layers:
            layer.textbook_attention = enabled

    @staticmethod
    def key_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """[B, T] 1/0 padding mask -> bool [B, 1, 1, T] for attention (no data-dependent branch: compiles)."""
        if attention_mask is None:
            return None
        return attention_mask.bool()[:, None, None, :]

    def packing_for(self, attention_mask: torch.Tensor | None) -> Packing | None:
        """The packing this batch's layers run with, or None for the padded path (module doc)."""
        if attention_mask is None or self.packing == "off" or torch.compiler.is_compiling():
            return None  # compiled graphs keep static shapes: N_real changes every batch
        if self.packing == "auto":
            real = int(attention_mask.sum())
            if real >= PACK_BELOW_REAL_FRACTION * attention_mask.numel():
                return None
        return Packing(attention_mask)

    def run_layers(self, layers, h: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """`layers` on the padded h [B, T, H], packed inside when `packing_for` says so."""
        mask = self.key_mask(attention_mask)
        packing = self.packing_for(attention_mask) if layers else None
        if packing is None:
            for layer in layers:
                h = layer(h, mask)
            return h
        rows = packing.pack(h)
        for layer in layers:
            rows = layer(rows, mask, packing)
        return packing.pad(rows)

    def prefix(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embeddings plus the frozen layers: the part whose output never needs a gradient.

        With frozen_blocks = 0 the embeddings are trainable and run with autograd like everything else.
        """
        grad = contextlib.nullcontext() if self.frozen_blocks == 0 else torch.no_grad()
        with grad:
            h = self.embeddings(input_ids, token_type_ids)
            return self.run_layers(self.layers[: self.frozen_layers], h, attention_mask)

    def suffix(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The trainable layers on top of the prefix output (also what a cached prefix feeds)."""
        return self.run_layers(self.layers[self.frozen_layers :], h, attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden state [B, T, H]."""
        return self.suffix(self.prefix(input_ids, attention_mask, token_type_ids), attention_mask)
