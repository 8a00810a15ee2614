"""Classification heads: the three Hugging Face heads, weight for weight, and a masked-mean head.

Each head maps the last hidden state [B, T, H] (and the padding mask) to logits [B, C]. The BERT pooler
lives here, not in the encoder: for freezing it belongs with the head (`top:K` trains "the last K layers
+ pooler + head"), even though Hub checkpoints store it under the encoder's name.

`loss()` is what the training loop calls; only the mean head overrides it, to use the fused
masked-mean + linear + cross-entropy op from kernels/ (never materialising the pooled vectors' graph).
Another loss (regression, multi-label, class weights, label smoothing: `problem.criterion`) is set as
the head's `criterion`, and then the plain path computes it (the fused op knows only plain cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig


class Head(nn.Module):
    criterion = None  # loss(logits, labels) instead of plain cross-entropy (problem.py); None: plain

    def pooled_logits(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.pooled_logits(hidden, attention_mask)

    def loss(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean cross-entropy or the `criterion`, logits); labels equal to -100 are ignored."""
        logits = self(hidden, attention_mask)
        if self.criterion is not None:
            return self.criterion(logits, labels), logits
        return F.cross_entropy(logits.float(), labels, ignore_index=-100), logits


class BertHead(Head):
    """[CLS] -> pooler (dense + tanh) -> dropout -> classifier, as BertForSequenceClassification."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.classifier_dropout)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def pooled_logits(self, hidden, attention_mask):
        return self.classifier(self.dropout(torch.tanh(self.pooler(hidden[:, 0]))))


class RobertaHead(Head):
    """<s> -> dropout -> dense + tanh -> dropout -> out_proj, as RobertaClassificationHead."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dropout = nn.Dropout(cfg.classifier_dropout)
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def pooled_logits(self, hidden, attention_mask):
        x = torch.tanh(self.dense(self.dropout(hidden[:, 0])))
        return self.out_proj(self.dropout(x))


class DistilBertHead(Head):
    """[CLS] -> pre_classifier + ReLU -> dropout -> classifier, as DistilBertForSequenceClassification."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.pre_classifier = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.classifier_dropout)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def pooled_logits(self, hidden, attention_mask):
        return self.classifier(self.dropout(F.relu(self.pre_classifier(hidden[:, 0]))))


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Average of the real tokens' vectors; a row with no real token pools to zeros."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MeanHead(Head):
    """Masked mean over real tokens -> dropout -> classifier (sentence-transformers style pooling).

    No dropout by default: an average over tokens is already smooth, and without dropout between the
    pooling and the classifier the loss can go through the fused kernel path. `fused` is
    "auto" | "on" | "off" (see minifreeze.ops).
    """

    def __init__(self, cfg: EncoderConfig, fused: str = "auto", dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)
        self.fused = fused

    def pooled_logits(self, hidden, attention_mask):
        return self.classifier(self.dropout(masked_mean(hidden, attention_mask)))

    def loss(self, hidden, attention_mask, labels):
        dropout_active = self.training and self.dropout.p > 0
        if self.fused == "off" or dropout_active or attention_mask is None or self.criterion is not None:
            return super().loss(hidden, attention_mask, labels)
        from .ops import masked_mean_cross_entropy

        impl = {"auto": "auto", "on": "triton"}[self.fused]
        return masked_mean_cross_entropy(
            hidden,
            attention_mask,
            self.classifier.weight,
            self.classifier.bias,
            labels,
            return_logits=True,
            impl=impl,
        )


HEADS = {"bert": BertHead, "roberta": RobertaHead, "distilbert": DistilBertHead}


def make_head(cfg: EncoderConfig, pooling: str = "cls", fused: str = "auto") -> Head:
    if pooling == "mean":
        return MeanHead(cfg, fused)
    return HEADS[cfg.family](cfg)
