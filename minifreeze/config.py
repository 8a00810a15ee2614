"""One `EncoderConfig` for BERT, RoBERTa and DistilBERT, read from a Hub `config.json`.

The three families are the same network; their config files just spell the sizes differently
(DistilBERT says `dim` where BERT says `hidden_size`). Normalising them here means the encoder never
has to ask which family it is. What really differs between them is in one table, `FAMILIES`, and every
other module reads it from here: which Hub model_types belong to a family, whether its tokenizer feeds
token types (DistilBERT has no embedding for them, RoBERTa one that is always 0), where its position ids
start (RoBERTa counts from `pad_token_id + 1` and gives padding the pad id), and its pad id by default.
The activation names and the tokenizer's file names are here for the same reason: one list, read by all.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .errors import MinifreezeError


@dataclass(frozen=True)
class Family:
    """What differs between the networks; everything else is one code path."""

    model_types: tuple[str, ...]  # the Hub model_type values read as this family
    token_types: bool = False  # its tokenizer feeds token_type_ids (BERT's sentence A/B segments)
    offset_positions: bool = False  # position ids start at pad_token_id + 1, padding gets pad_token_id
    pad_token_id: int = 0  # when config.json names none: transformers' default for the family


FAMILIES = {
    # BERT-shaped checkpoints published under their own model_type have BERT's weights layout.
    "bert": Family(("bert", "minilm", "bert-generation", "megatron-bert"), token_types=True),
    "roberta": Family(("roberta", "xlm-roberta", "camembert"), offset_positions=True, pad_token_id=1),
    "distilbert": Family(("distilbert",)),  # no token-type embedding at all
}
FAMILY_OF = {model_type: name for name, family in FAMILIES.items() for model_type in family.model_types}
# The tokenizer files a model folder may hold: fetched from the Hub, read, and copied into saved models.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
# A mean-pooled classifier is exported under this model_type: transformers' *ForSequenceClassification would
# read [CLS] through a random pooler (silently near chance), so it must refuse the folder instead. The real
# model_type is kept in the "minifreeze" block; minifreeze.load_model reads both.
MEAN_POOLED_TYPE = "minifreeze-mean-pooled"
SIZE_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "type_vocab_size")
ACTIVATIONS = {  # the config's hidden_act -> the module the encoder builds for it
    "gelu": nn.GELU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "gelu_fast": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
}


@dataclass(frozen=True)
class EncoderConfig:
    family: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2  # 0 means the family has no token types (DistilBERT)
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    classifier_dropout: float = 0.1
    initializer_range: float = 0.02
    num_labels: int = 2
    id2label: dict[int, str] = field(default_factory=dict)
    # The original config.json, kept so that save_pretrained writes back every field we do not model.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def has_token_types(self) -> bool:
        """The weights hold a token-type embedding (the tokenizer may still feed none: see Family)."""
        return self.type_vocab_size > 0

    @property
    def max_positions(self) -> int:
        """How many tokens one input can have: the position table less the rows before the first token."""
        return self.max_position_embeddings - position_offset(self.family, self.pad_token_id)

    def with_labels(self, num_labels: int, id2label: dict[int, str] | None = None) -> EncoderConfig:
        labels = id2label or {i: f"LABEL_{i}" for i in range(num_labels)}
        if len(labels) != num_labels:
            raise MinifreezeError(f"id2label has {len(labels)} entries but num_labels is {num_labels}")
        return EncoderConfig(**{**self.__dict__, "num_labels": num_labels, "id2label": dict(labels)})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("raw")
        return out


def hub_model_type(raw: dict[str, Any]) -> str:
    """The transformers model_type of a config dict, also for a mean-pooled export (which hides it)."""
    model_type = str(raw.get("model_type", "")).lower()
    if model_type == MEAN_POOLED_TYPE:
        block = raw.get("minifreeze")
        return str(block.get("model_type", "")).lower() if isinstance(block, dict) else ""
    return model_type


def position_offset(family: str, pad_token_id: int) -> int:
    """The position id of the first token: RoBERTa's pad_token_id + 1, else 0."""
    return pad_token_id + 1 if FAMILIES[family].offset_positions else 0


def family_of(raw: dict[str, Any]) -> str | None:
    """The family of a config dict, None for a model_type we do not support."""
    return FAMILY_OF.get(hub_model_type(raw))


def pad_token_id_of(raw: dict[str, Any], family: str) -> int:
    """config.json's pad_token_id, else the family's (RoBERTa pads with 1: reading 0 shifts every position)."""
    pad = raw.get("pad_token_id")
    return FAMILIES[family].pad_token_id if pad is None else int(pad)


def max_positions_of(raw: dict[str, Any]) -> int | None:
    """EncoderConfig.max_positions of a config dict, without parsing the rest (None when unknown)."""
    positions, family, pad = raw.get("max_position_embeddings"), family_of(raw), raw.get("pad_token_id")
    if not isinstance(positions, int):
        return None
    if family is None:
        return positions
    return positions - position_offset(family, pad if isinstance(pad, int) else FAMILIES[family].pad_token_id)


def config_from_dict(raw: dict[str, Any], source: str = "config.json") -> EncoderConfig:
    """Normalise a Hub config dict of any supported family into an EncoderConfig."""
    if not isinstance(raw, dict):
        raise MinifreezeError(f"{source} does not hold a JSON object; re-download or fix the file")
    model_type = hub_model_type(raw)
    raw = {
        **raw,
        "model_type": model_type,
    }  # what we save next time (checkpoints.hub_config) starts from this
    family = FAMILY_OF.get(model_type)
    if family is None and not model_type:
        raise MinifreezeError(f"{source} has no model_type: it is not the config.json of a Hub model folder")
    if family is None:
        raise MinifreezeError(
            f"{source}: unknown model_type {model_type!r}; minifreeze supports bert (and BERT-shaped "
            f"checkpoints such as MiniLM), roberta and distilbert"
        )
    try:
        id2label = {int(k): str(v) for k, v in (raw.get("id2label") or {}).items()}
        num_labels = len(id2label) or int(raw.get("num_labels", 2))
        if sorted(id2label) != list(range(len(id2label))):
            raise ValueError(f"id2label keys must be 0..{len(id2label) - 1}")
        if family == "distilbert":
            fields = dict(
                hidden_size=raw["dim"],
                num_layers=raw["n_layers"],
                num_heads=raw["n_heads"],
                intermediate_size=raw["hidden_dim"],
                hidden_act=raw.get("activation", "gelu"),
                type_vocab_size=0,
                hidden_dropout=raw.get("dropout", 0.1),
                attention_dropout=raw.get("attention_dropout", 0.1),
                classifier_dropout=raw.get("seq_classif_dropout", 0.2),
            )
        else:
            hidden_dropout = raw.get("hidden_dropout_prob", 0.1)
            classifier_dropout = raw.get("classifier_dropout")
            fields = dict(
                hidden_size=raw["hidden_size"],
                num_layers=raw["num_hidden_layers"],
                num_heads=raw["num_attention_heads"],
                intermediate_size=raw["intermediate_size"],
                hidden_act=raw.get("hidden_act", "gelu"),
                type_vocab_size=raw.get("type_vocab_size", 2),
                layer_norm_eps=raw.get("layer_norm_eps", 1e-12),
                hidden_dropout=hidden_dropout,
                attention_dropout=raw.get("attention_probs_dropout_prob", 0.1),
                classifier_dropout=hidden_dropout if classifier_dropout is None else classifier_dropout,
            )
        fields.update({k: int(fields[k]) for k in SIZE_FIELDS})
        config = EncoderConfig(
            family=family,
            vocab_size=int(raw["vocab_size"]),
            max_position_embeddings=int(raw.get("max_position_embeddings", 512)),
            pad_token_id=pad_token_id_of(raw, family),
            initializer_range=float(raw.get("initializer_range", 0.02)),
            num_labels=num_labels,
            id2label=id2label or {i: f"LABEL_{i}" for i in range(num_labels)},
            raw=dict(raw),
            **fields,
        )
    except KeyError as missing:
        raise MinifreezeError(
            f"{source}: {family} config lacks the field {missing}; is this a complete config.json?"
        ) from None
    except (TypeError, ValueError, AttributeError) as err:  # "vocab_size": "many", id2label as a list, ...
        raise MinifreezeError(f"{source}: a field has the wrong type ({err}); fix the file") from None
    if min(config.vocab_size, *(getattr(config, k) for k in SIZE_FIELDS if k != "type_vocab_size")) < 1:
        raise MinifreezeError(
            f"{source}: sizes must be positive (vocab, hidden, layers, heads); fix the file"
        )
    if config.hidden_act not in ACTIVATIONS:
        raise MinifreezeError(
            f"{source}: unsupported activation {config.hidden_act!r}; supported: {', '.join(ACTIVATIONS)}"
        )
    if config.hidden_size % config.num_heads:
        raise MinifreezeError(
            f"{source}: hidden size {config.hidden_size} is not divisible by {config.num_heads} heads"
        )
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise MinifreezeError(f"{source}: only absolute position embeddings are supported")
    return config


def load_config(folder: str | Path) -> EncoderConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise MinifreezeError(f"no config.json in {folder}: point --model at a Hub model folder or id")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MinifreezeError(f"{path} is not valid JSON ({err}); re-download or fix the file") from None
    return config_from_dict(raw, source=str(path))


def _sizes(model_type: str, vocab: int, hidden: int, layers: int, heads: int, ffn: int, **more) -> dict:
    """A BERT/RoBERTa config.json's size fields: vocabulary, hidden size, layers, heads, feed-forward."""
    names = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    return dict(model_type=model_type, **dict(zip(names, (vocab, hidden, layers, heads, ffn))), **more)


# RoBERTa-base beyond its sizes: 512 positions after the pad_token_id + 1 offset, one token type.
ROBERTA_BASE = dict(max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5)
# Architectures by name, for benchmarks and tests that need the shape of a model but not its weights.
NAMED_CONFIGS: dict[str, dict[str, Any]] = {
    "bert-base": _sizes("bert", 30522, 768, 12, 12, 3072),
    "roberta-base": _sizes("roberta", 50265, 768, 12, 12, 3072, **ROBERTA_BASE),
    "distilbert": dict(
        model_type="distilbert", vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072
    ),
    "minilm": _sizes("bert", 30522, 384, 6, 12, 1536),
    "tiny": _sizes("bert", 1000, 64, 4, 4, 128),
}


def named_config(name: str, num_labels: int = 2) -> EncoderConfig:
    if name not in NAMED_CONFIGS:
        raise MinifreezeError(f"unknown model config {name!r}; known: {', '.join(NAMED_CONFIGS)}")
    return config_from_dict(dict(NAMED_CONFIGS[name], num_labels=num_labels), source=name)
