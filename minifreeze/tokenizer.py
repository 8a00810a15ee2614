"""Tokenizers for BERT, RoBERTa and DistilBERT checkpoints, built on the `tokenizers` library only.

A checkpoint folder holds its tokenizer in one of three shapes: a `tokenizer.json` (the full pipeline,
what every recent checkpoint ships), a BERT `vocab.txt` (WordPiece; the pipeline is BERT's, with
lower-casing from `do_lower_case`), or a RoBERTa/GPT-2 `vocab.json` + `merges.txt` (byte-level BPE).
The two fallbacks rebuild exactly the pipeline `transformers` builds for them, so ids agree with
`AutoTokenizer` (the tests check this). `transformers` is never imported here.

Encoding returns ids without padding: the batcher pads each batch to its own longest example, which
is most of the speed on short-text tasks (see data.py).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend

from . import hub
from .config import FAMILIES, TOKENIZER_FILES, family_of, max_positions_of
from .errors import MinifreezeError
from .runtime import write_json

SPECIAL_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "bos_token", "eos_token")
BERT_SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
UNBOUNDED_LENGTH = 10**9  # transformers writes 1e30 when a checkpoint sets no limit


@dataclass
class Encoded:
    """Token ids per example, unpadded. `token_type_ids` is all zeros when the model has no token types."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.input_ids)


class BatchEncoding(dict):
    """What `tokenizer(...)` returns, as in transformers: a dict (for `model(**batch)`) with attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: Any) -> BatchEncoding:
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})


class Tokenizer:
    """A `tokenizers` pipeline plus what the rest of minifreeze needs to know about it.

    `has_token_types` is a property of the model, not of the tokenizer file: BERT feeds segment ids to
    its token-type embedding, RoBERTa and DistilBERT have none. The loader infers it; a model loader
    that knows better may set it. `max_positions` is how many tokens the model beside it can take (its
    position table; None when unknown): every encoding caps its length there, so too long a max_length
    is one warning instead of an IndexError deep in the embedding.

    Calling it (`tokenizer(texts, pairs, padding=True, truncation=True, max_length=64, return_tensors="pt")`)
    gives what transformers' tokenizers give; `encode` is the unpadded form the batcher uses.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        special_tokens: dict[str, str],
        model_max_length: int = 512,
        has_token_types: bool = True,
        config: dict[str, Any] | None = None,
        max_positions: int | None = None,
    ) -> None:
        self.backend = backend
        self.backend.no_padding()
        self.backend.no_truncation()
        self.special_tokens = dict(special_tokens)
        self.model_max_length = int(model_max_length)
        self.has_token_types = has_token_types
        self.max_positions = max_positions
        self.config = dict(config or {})  # the source tokenizer_config.json, written back by save()
        self._truncation: int | None = None
        self._capped: set[int] = set()
        pad = self.special_tokens.get("pad_token")
        pad_id = backend.token_to_id(pad) if pad else None
        if pad_id is None:
            raise MinifreezeError(
                f"tokenizer has no padding token (pad_token={pad!r} is not in its vocabulary): "
                'add "pad_token" to tokenizer_config.json'
            )
        self.pad_id: int = pad_id

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (the embedding matrix needs at least this many rows)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def pad_token_id(self) -> int:
        return self.pad_id

    def capped_length(self, max_length: int | None = None) -> int:
        """`max_length`, or the model's number of positions when that is smaller (with a warning).

        None means the model's limit: `model_max_length`, within the positions."""
        if max_length is None:
            return min(self.model_max_length, self.max_positions or self.model_max_length)
        if max_length < 1:
            raise MinifreezeError(f"max_length must be at least 1, got {max_length}")
        if self.max_positions is not None and max_length > self.max_positions:
            if max_length not in self._capped:  # once per tokenizer: train encodes two splits
                self._capped.add(max_length)
                warnings.warn(
                    f"max_length {max_length} is more than the model's {self.max_positions} positions; "
                    f"texts are truncated to {self.max_positions} tokens",
                    stacklevel=3,
                )
            return self.max_positions
        return max_length

    def encode(
        self, texts: str | list[str], pairs: str | list[str] | None = None, max_length: int | None = None
    ) -> Encoded:
        """Token ids (with special tokens) per example, truncated to `max_length` (default: the model's
        limit), longest-first for pairs. A bare string is one text (not a list of characters)."""
        return self._encode(texts, pairs, self.capped_length(max_length))

    def _encode(
        self, texts: str | list[str], pairs: str | list[str] | None, max_length: int | None
    ) -> Encoded:
        texts = [texts] if isinstance(texts, str) else list(texts)
        pairs = [pairs] if isinstance(pairs, str) else pairs
        if pairs is not None and len(pairs) != len(texts):
            raise MinifreezeError(
                f"encode: got {len(texts)} texts but {len(pairs)} pairs; pass one pair per text"
            )
        self._set_truncation(max_length)
        inputs = texts if pairs is None else list(zip(texts, pairs))
        try:
            encodings = self.backend.encode_batch(inputs)
        except Exception as error:  # tokenizers raises bare Exceptions (too-short max_length, non-str input)
            raise MinifreezeError(f"cannot tokenize (max_length={max_length}): {error}") from error
        ids = [e.ids for e in encodings]
        if self.has_token_types:
            types = [e.type_ids for e in encodings]
        else:
            types = [[0] * len(e.ids) for e in encodings]
        return Encoded(input_ids=ids, token_type_ids=types)

    def _set_truncation(self, max_length: int | None) -> None:
        if self._truncation != max_length:  # re-configuring the Rust side every call costs time
            if max_length is None:
                self.backend.no_truncation()
            else:
                self.backend.enable_truncation(max_length, strategy="longest_first")
            self._truncation = max_length

    def __call__(
        self,
        text: str | list[str] | list[tuple[str, str]],
        text_pair: str | list[str] | None = None,
        *,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool = True,
    ) -> BatchEncoding:
        """transformers' calling convention: one text, a list of texts, or pairs (`text_pair`, or a list of
        2-tuples). `truncation=True` cuts at `max_length`, else at the model's limit (None: only when
        `max_length` comes without padding, as in transformers); `padding` is False, True/"longest" or
        "max_length"; `return_tensors="pt"` gives tensors, None lists."""
        single = isinstance(text, str)
        texts, pairs = _split_pairs([text] if single else list(text), text_pair)
        if truncation not in (None, True, False, "longest_first", "do_not_truncate"):
            raise MinifreezeError(f"truncation={truncation!r}: use True (longest first) or False")
        if truncation is None:  # transformers: max_length alone truncates, unless padding is asked for too
            truncation = max_length is not None and padding in (False, "do_not_pad")
        truncate = truncation not in (False, "do_not_truncate")
        limit = self.capped_length(max_length) if truncate else None
        encoded = self._encode(texts, pairs, limit)
        rows = {"input_ids": encoded.input_ids}
        if return_token_type_ids or (return_token_type_ids is None and self.has_token_types):
            rows["token_type_ids"] = encoded.token_type_ids
        if return_attention_mask:
            rows["attention_mask"] = [[1] * len(ids) for ids in encoded.input_ids]
        width = _padded_width(padding, encoded.input_ids, max_length or self.model_max_length)
        if width is not None:
            fill = {"input_ids": self.pad_id, "token_type_ids": 0, "attention_mask": 0}
            rows = {k: [row + [fill[k]] * (width - len(row)) for row in v] for k, v in rows.items()}
        return BatchEncoding({k: _as_output(v, return_tensors, single) for k, v in rows.items()})

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        """Text of one sequence of ids (a list or a 1-D tensor), as transformers' `decode` gives it."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, rows: Any, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(row, skip_special_tokens) for row in rows]

    def save(self, directory: str | Path) -> Path:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json: `load_tokenizer` and
        transformers' `AutoTokenizer` both load the folder back with the same ids."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.backend.no_truncation()
        self._truncation = None
        self.backend.save(str(out / "tokenizer.json"))
        config = {
            k: v for k, v in self.config.items() if k not in SPECIAL_KEYS and k != "added_tokens_decoder"
        }
        config.update(self.special_tokens)
        config["model_max_length"] = self.model_max_length
        # The generic class loads tokenizer.json as-is; a model-specific class could rebuild the pipeline.
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        names = (
            ["input_ids", "token_type_ids", "attention_mask"]
            if self.has_token_types
            else ["input_ids", "attention_mask"]
        )
        config["model_input_names"] = names
        write_json(out / "tokenizer_config.json", config)
        write_json(out / "special_tokens_map.json", self.special_tokens)
        return out

    save_pretrained = save  # transformers' name


def load_tokenizer(
    name_or_path: str | Path, revision: str | None = None, *, has_token_types: bool | None = None
) -> Tokenizer:
    """Load the tokenizer of a local checkpoint folder or a Hub model id.

    `has_token_types=None` infers it: from `model_input_names` in tokenizer_config.json, else from a
    config.json beside it (RoBERTa/DistilBERT or `type_vocab_size < 2` mean none), else from whether the
    pair template assigns segment 1.
    """
    folder = _resolve_folder(name_or_path, revision)
    config = _read_json(folder / "tokenizer_config.json")
    model_config = _read_json(folder / "config.json")
    kind = _tokenizer_kind(folder)
    if kind == "json":
        backend = _load_tokenizer_json(folder / "tokenizer.json")
    elif kind == "wordpiece":
        backend = _wordpiece_from_vocab(folder / "vocab.txt", config)
    else:
        backend = _bpe_from_vocab(folder / "vocab.json", folder / "merges.txt", config)
    is_bert = kind == "wordpiece" or (kind == "json" and backend.token_to_id("[CLS]") is not None)
    specials = _special_tokens(folder, config, backend, BERT_SPECIALS if is_bert else ROBERTA_SPECIALS)
    _add_missing_specials(backend, specials, config)
    if kind != "json":  # a tokenizer.json carries its own template
        _set_template(backend, specials, bpe=kind == "bpe")
    if has_token_types is None:
        has_token_types = _infer_token_types(config, model_config, backend)
    tokenizer = Tokenizer(
        backend,
        special_tokens=specials,
        model_max_length=_model_max_length(config, model_config),
        has_token_types=has_token_types,
        config=config,
        max_positions=max_positions_of(model_config),
    )
    rows = model_config.get("vocab_size")
    if isinstance(rows, int) and tokenizer.vocab_size > rows:
        raise MinifreezeError(
            f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model's embedding only {rows} "
            "rows (config.json vocab_size): tokenizer and model do not belong together"
        )
    return tokenizer


def _tokenizer_kind(folder: Path) -> str:
    """Which of the three tokenizer shapes the folder holds, in order of preference."""
    if (folder / "tokenizer.json").is_file():
        return "json"
    if (folder / "vocab.txt").is_file():
        return "wordpiece"
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return "bpe"
    raise MinifreezeError(
        f"no tokenizer in {folder}: expected tokenizer.json, vocab.txt or vocab.json+merges.txt; "
        "point to the model's checkpoint folder (or save one with Tokenizer.save)"
    )


def _resolve_folder(name_or_path: str | Path, revision: str | None) -> Path:
    """A local folder as-is; anything else goes to hub.py (Hub id, cache, or the bundled MiniLM)."""
    path = Path(name_or_path).expanduser()
    if (path / "delta.json").is_file():  # a freeze delta reads text with its base's tokenizer
        from .delta import base_folder

        return base_folder(path, trust_base=True)
    if path.is_dir():
        hub.refuse_run_folder(path)
        return path
    if path.is_file():
        raise MinifreezeError(
            f"tokenizer path {path} is a file: pass the folder that holds it, or a Hub model id"
        )
    files = [*TOKENIZER_FILES, "config.json"]  # the model's limits (positions, vocabulary) are in config.json
    return Path(hub.resolve_files(str(name_or_path), files, revision=revision))


def _load_tokenizer_json(path: Path) -> Backend:
    try:
        return Backend.from_file(str(path))
    except Exception as error:  # tokenizers raises bare Exceptions on malformed files
        raise MinifreezeError(f"cannot read {path}: {error}; re-download or re-save the tokenizer") from error


def _wordpiece_from_vocab(vocab: Path, config: dict[str, Any]) -> Backend:
    """BERT's pipeline, as transformers' BertTokenizer builds it from a vocab.txt."""
    unk = _token_text(config.get("unk_token")) or BERT_SPECIALS["unk_token"]
    backend = Backend(models.WordPiece.from_file(str(vocab), unk_token=unk))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"),
        lowercase=config.get("do_lower_case", True),  # transformers' default: BERT checkpoints are uncased
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def _bpe_from_vocab(vocab: Path, merges: Path, config: dict[str, Any]) -> Backend:
    """RoBERTa's byte-level BPE, as transformers' RobertaTokenizer builds it (add_prefix_space=False)."""
    try:
        bpe = models.BPE.from_file(str(vocab), str(merges))
    except Exception as error:
        raise MinifreezeError(
            f"cannot read {vocab} + {merges}: {error}; re-download the tokenizer files"
        ) from error
    backend = Backend(bpe)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=config.get("add_prefix_space", False))
    backend.decoder = decoders.ByteLevel()
    return backend


def _set_template(backend: Backend, specials: dict[str, str], *, bpe: bool) -> None:
    """`[CLS] A [SEP] B [SEP]` with segment ids 0/1 (BERT); `<s> A </s></s> B </s>`, all 0 (RoBERTa)."""
    cls, sep = specials["cls_token"], specials["sep_token"]
    ids = [(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))]
    pair = f"{cls} $A {sep} {sep} $B:0 {sep}" if bpe else f"{cls} $A {sep} $B:1 {sep}:1"
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=pair, special_tokens=ids
    )


def _special_tokens(
    folder: Path, config: dict[str, Any], backend: Backend, defaults: dict[str, str]
) -> dict[str, str]:
    """Special tokens from special_tokens_map.json over tokenizer_config.json over the family defaults.

    A default is kept only when the vocabulary has it, so a tokenizer.json without e.g. a mask token
    does not gain one.
    """
    found = _read_json(folder / "special_tokens_map.json")
    specials: dict[str, str] = {}
    for key in SPECIAL_KEYS:
        text = _token_text(found.get(key)) or _token_text(config.get(key))
        if text is None and key in defaults and backend.token_to_id(defaults[key]) is not None:
            text = defaults[key]
        if text is not None:
            specials[key] = text
    if "pad_token" not in specials and backend.padding:
        specials["pad_token"] = backend.padding["pad_token"]
    return specials


def _add_missing_specials(backend: Backend, specials: dict[str, str], config: dict[str, Any]) -> None:
    """Register special tokens as added tokens so text like "[MASK]" is never split, as transformers does."""
    known = {t.content for t in backend.get_added_tokens_decoder().values()}
    missing = [text for text in dict.fromkeys(specials.values()) if text not in known]
    lstrip = _token_lstrip(config.get("mask_token"))
    backend.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False, lstrip=lstrip and t == specials.get("mask_token"))
            for t in missing
        ]
    )


def _infer_token_types(config: dict[str, Any], model_config: dict[str, Any], backend: Backend) -> bool:
    names = config.get("model_input_names")
    if isinstance(names, list):
        return "token_type_ids" in names
    if model_config:
        family = family_of(model_config)
        if family is not None and not FAMILIES[family].token_types:
            return False
        return int(model_config.get("type_vocab_size", 2)) >= 2
    backend.no_truncation()
    return any(backend.encode("a", "b").type_ids)


def _model_max_length(config: dict[str, Any], model_config: dict[str, Any]) -> int:
    """tokenizer_config's limit; else the model's positions; else 512."""
    limit = config.get("model_max_length")
    if isinstance(limit, (int, float)) and limit < UNBOUNDED_LENGTH:
        return int(limit)
    return max_positions_of(model_config) or 512


def _split_pairs(texts: list, text_pair: str | list[str] | None) -> tuple[list[str], list[str] | None]:
    """(texts, pairs) from transformers' spellings: a `text_pair` argument, or a list of 2-tuples."""
    if text_pair is not None:
        return texts, [text_pair] if isinstance(text_pair, str) else list(text_pair)
    if texts and all(isinstance(t, (tuple, list)) and len(t) == 2 for t in texts):
        return [a for a, _ in texts], [b for _, b in texts]
    return texts, None


def _padded_width(padding: bool | str, ids: list[list[int]], max_length: int) -> int | None:
    """The length to pad every row to, or None for no padding."""
    if padding in (False, "do_not_pad"):
        return None
    if padding in (True, "longest"):
        return max(map(len, ids), default=0)
    if padding == "max_length":
        return max_length
    raise MinifreezeError(f"padding={padding!r}: use True (to the longest), 'max_length' or False")


def _as_output(rows: list[list[int]], return_tensors: str | None, single: bool) -> Any:
    """Lists (one row for a single text, as transformers does), or a [batch, length] tensor."""
    if return_tensors is None:
        return rows[0] if single else rows
    if return_tensors not in ("pt", "np"):
        raise MinifreezeError(f"return_tensors={return_tensors!r}: use 'pt' (torch), 'np' or None (lists)")
    if len({len(row) for row in rows}) > 1:
        raise MinifreezeError("texts of different lengths make no tensor: pass padding=True")
    import numpy as np

    array = np.array(rows, dtype=np.int64) if rows else np.zeros((0, 0), dtype=np.int64)
    if return_tensors == "np":
        return array
    import torch

    return torch.from_numpy(array)


def _token_text(value: Any) -> str | None:
    """Special tokens are saved as plain strings or as serialized AddedTokens ({"content": ...})."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _token_lstrip(value: Any) -> bool:
    return bool(value.get("lstrip", False)) if isinstance(value, dict) else False


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MinifreezeError(f"cannot read {path}: {error}; fix or delete the file") from error
    if not isinstance(data, dict):
        raise MinifreezeError(f"{path} does not hold a JSON object; fix or delete the file")
    return data
