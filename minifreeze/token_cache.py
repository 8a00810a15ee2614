"""Tokenized splits kept on disk under `<cache dir>/tokens/`, so a rerun does not tokenize again.

The key is a SHA-256 over everything that can change the ids: a format version, the tokenizer's full
serialization (vocabulary, normalizer such as lower-casing, post-processor, special tokens), whether it
emits token types, the effective max_length, and the texts and pairs themselves. Labels are not cached:
they always come from the split. A file is written to a temp name and `os.replace`d, and carries a
digest of its arrays; a file that fails to load or to check is ignored with one warning and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import data
from .cache.store import cache_folder

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

FORMAT = b"minifreeze-tokens-v1"


def tokens_folder(cache_dir: str | None) -> Path | None:
    """The same cache root as the frozen cache (`cache_folder`), in `tokens/`; None = memory only."""
    frozen = cache_folder(cache_dir)
    return None if frozen is None else frozen.parent / "tokens"


def tokenizer_identity(tokenizer: Tokenizer) -> str:
    """The tokenizer's serialization without its truncation and padding state, which `encode` sets per call
    (the ids depend on the max_length hashed beside it, not on what the last call left behind)."""
    spec = json.loads(tokenizer.backend.to_str())
    spec.pop("truncation", None), spec.pop("padding", None)
    return json.dumps(spec, sort_keys=True)


def cache_key(split: data.Split, tokenizer: Tokenizer, max_length: int) -> str:
    """A hex digest that changes whenever the ids could: tokenizer, options, texts or pairs."""
    digest = hashlib.sha256(FORMAT)
    digest.update(tokenizer_identity(tokenizer).encode())
    digest.update(repr((tokenizer.has_token_types, tokenizer.capped_length(max_length))).encode())
    digest.update(repr(sorted(tokenizer.special_tokens.items())).encode())
    for name, texts in (("texts", split.texts), ("pairs", split.pairs)):
        digest.update(f"\0{name}:{'none' if texts is None else len(texts)}\0".encode())
        for text in texts or ():
            raw = text.encode("utf-8", "surrogatepass")
            digest.update(len(raw).to_bytes(8, "little") + raw)
    return digest.hexdigest()


def _array_digest(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """A checksum of the stored arrays, so a damaged file is found before its ids are used."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode() + str(arrays[name].dtype).encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint8)


def _pack(encoded: data.EncodedSplit) -> dict[str, np.ndarray]:
    """Flat int32 ids (and int8 token types) with int64 offsets: example j is [offsets[j], offsets[j+1])."""
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(encoded.lengths, out=offsets[1:])
    flat = [i for row in encoded.input_ids for i in row]
    arrays = {"ids": np.asarray(flat, dtype=np.int32), "offsets": offsets}
    if encoded.token_type_ids is not None:
        arrays["types"] = np.asarray([t for row in encoded.token_type_ids for t in row], dtype=np.int8)
    return arrays


def _unpack(arrays: dict[str, np.ndarray], split: data.Split) -> data.EncodedSplit:
    """The cached ids as an EncodedSplit; labels come from the split, never from the file."""
    offsets = arrays["offsets"]
    if len(offsets) != len(split.texts) + 1 or offsets[0] != 0 or offsets[-1] != len(arrays["ids"]):
        raise ValueError("offsets do not match the split")
    bounds = offsets.tolist()
    ids = arrays["ids"].tolist()
    rows = [ids[a:b] for a, b in zip(bounds, bounds[1:])]
    types = None
    if "types" in arrays:
        flat_types = arrays["types"].tolist()
        types = [flat_types[a:b] for a, b in zip(bounds, bounds[1:])]
    lengths = np.diff(offsets).astype(np.int64)
    return data.EncodedSplit(rows, types, list(split.labels), lengths)


def _read(path: Path, split: data.Split, has_types: bool) -> data.EncodedSplit | None:
    """The cached split, or None (with one warning) when the file is damaged; missing = None, silently."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        check = arrays.pop("digest")
        if not np.array_equal(check, _array_digest(arrays)) or ("types" in arrays) != has_types:
            raise ValueError("checksum mismatch")
        return _unpack(arrays, split)
    except Exception as error:  # any damage (truncation, bad zip, bad checksum) means: rebuild
        print(
            f"token cache: warning: {path} is damaged ({error}); tokenizing again",
            file=sys.stderr,
            flush=True,
        )
        return None


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temp file in the same folder and rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, digest=_array_digest(arrays), **arrays)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def encoder_for(cfg):
    """The split encoder a training run uses: cached with --cache-tokens or any --cache-frozen, else plain."""
    if cfg.cache_tokens or cfg.cache_frozen:  # "auto" too: a run that may cache the prefix keeps its ids
        return lambda split, tokenizer, max_length: encode_cached(split, tokenizer, max_length, cfg.cache_dir)
    return data.encode_split


def encode_cached(
    split: data.Split, tokenizer: Tokenizer, max_length: int, cache_dir: str | None
) -> data.EncodedSplit:
    """`data.encode_split`, read from `<cache dir>/tokens/<key>.npz` when present, else built and stored."""
    folder = tokens_folder(cache_dir)
    if folder is None:
        return data.encode_split(split, tokenizer, max_length)
    path = folder / f"{cache_key(split, tokenizer, max_length)}.npz"
    cached = _read(path, split, tokenizer.has_token_types)
    if cached is not None:
        return cached
    encoded = data.encode_split(split, tokenizer, max_length)
    _write(path, _pack(encoded))
    return encoded
