"""The encoder: one network for BERT, RoBERTa and DistilBERT, with a frozen prefix that runs without autograd.

    input ids -> Embeddings -> Layer 0 -> ... -> Layer L-1 -> last hidden state [B, T, H]

A "block" is the embeddings or one layer, bottom-up: blocks = [embeddings, layer 0, ..., layer L-1].
`Encoder.frozen_blocks = k` makes the bottom k blocks a frozen prefix: they run under `torch.no_grad()`,
so autograd records nothing for them (no saved activations, no backward), and by default in eval mode
(no dropout), which makes their output a pure function of the input. That is the whole trick of
minifreeze; `freezing.py` decides k, this file only honours it.

Every layer is post-LayerNorm (the original BERT recipe, shared by all three families):
    h = LayerNorm(h + Attention(h));  h = LayerNorm(h + W2 act(W1 h))
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ACTIVATIONS, FAMILIES, EncoderConfig


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
        return x.view(b, t, self.num_heads, -1).transpose(1, 2)  # [B, heads, T, head_dim]

    def attention(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Multi-head self-attention; `mask` is bool [B, 1, 1, T], True where a key may be attended."""
        q, k, v = (
            self.split_heads(self.query(h)),
            self.split_heads(self.key(h)),
            self.split_heads(self.value(h)),
        )
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
        return self.attn_out(ctx.transpose(1, 2).reshape(b, t, -1))

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.attn_norm(h + self.dropout(self.attention(h, mask)))
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

    def prefix(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embeddings plus the frozen layers: the part whose output never needs a gradient.

        With frozen_blocks = 0 the embeddings are trainable and run with autograd like everything else.
        """
        mask = self.key_mask(attention_mask)
        grad = contextlib.nullcontext() if self.frozen_blocks == 0 else torch.no_grad()
        with grad:
            h = self.embeddings(input_ids, token_type_ids)
            for layer in self.layers[: self.frozen_layers]:
                h = layer(h, mask)
        return h

    def suffix(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The trainable layers on top of the prefix output (also what a cached prefix feeds)."""
        mask = self.key_mask(attention_mask)
        for layer in self.layers[self.frozen_layers :]:
            h = layer(h, mask)
        return h

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden state [B, T, H]."""
        return self.suffix(self.prefix(input_ids, attention_mask, token_type_ids), attention_mask)
