"""Frozen-prefix cache: compute the frozen layers once per example, then train only the suffix.

With the frozen prefix in eval mode, its output for an example is a pure function of that example's token
ids (and the frozen weights). So `--cache-frozen` runs the prefix once per training and validation example,
keeps each output unpadded ([len_i, H] in `--cache-dtype`), and every epoch and evaluation after that
feeds the cached rows (padded exactly as `batching.collate` pads the batch) straight into
`model.from_prefix(...)`, the path training always takes. An epoch then costs the trainable suffix only.

Key, in two levels, so that nothing can go stale and as much as possible is reused:
  * the *prefix key* names everything the prefix computes with: the frozen tensors' bytes (a hash of
    the embeddings' and frozen layers' parameters and buffers, so fine-tuned, edited or random weights
    all differ), the encoder config (labels excluded), the depth, the attention implementation, the
    active autocast dtype, the storage dtype, the device type and the torch version;
  * inside it, every example is keyed by a hash of its token ids (and token types): the exact input of
    the prefix. The tokenizer, `--max-length` and the data files all act through the ids, so an edited
    row, another tokenizer or a truncation that changes an example makes that example miss, while
    examples whose ids are unchanged hit (their prefix output is the same). Other seeds, learning rates,
    nested `--train-size` subsets and even other datasets sharing sentences reuse what is there.
Storage (store.py): per prefix key, a list of *shards*, each one flat [tokens, H] array plus offsets and
the examples' hashes, written once under `<cache dir>/frozen/<prefix key>/` and checked when opened. They
are kept in memory while the process's cached bytes stay under `--cache-max-gb`, else read memory-mapped
from disk, and held in one registry, so later runs in the same process (a sweep) reuse them.
This file is the cache users see: the keys, `build` and `FrozenCache`. `python -m minifreeze.cache` is
the admin command (__main__.py: list, verify, clear, prune).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from functools import partial

import numpy as np
import torch

from .. import batching, data
from ..errors import MinifreezeError
from .auto import MIN_PASSES, resolve_auto  # noqa: F401 - --cache-frozen auto
from .store import (
    DTYPES,
    EXAMPLE_HASH_BYTES,
    GIB,
    NO_DISK,
    NUMPY_DTYPES,
    REGISTRY,
    Shard,
    Store,
    cache_folder,
    disk_array,
    new_tmp,
    publish,
    tensor_view,
)

FORMAT_VERSION = 1  # bump when the layout or the meaning of a key changes: old folders are then ignored
# In-memory bound by default: SST-2's 67k training sentences (897k tokens) through a bert-base prefix are
# 2.6 GiB in fp32 (1.3 GiB in bf16); beyond this, shards are read memory-mapped and the page cache decides.
DEFAULT_MAX_GB = 4.0
HEAD_ONLY_FIELDS = ("num_labels", "id2label", "classifier_dropout")  # config fields the prefix never reads
# A CUDA run keeps the in-memory cache in GPU memory when it takes at most this share of the free memory
# (the rest is for the suffix's activations): batches are then assembled on the GPU, with no host copies.
GPU_SHARE = 0.25


def check_cacheable(model: torch.nn.Module, spec: str) -> None:
    """Refuse (one line, with the fix) where a cached prefix output would not be what training computes."""
    encoder = model.encoder
    if encoder.frozen_dropout:
        raise MinifreezeError(
            "--cache-frozen needs a deterministic frozen prefix, but --frozen-dropout keeps dropout in it "
            "(its output changes every epoch): drop --frozen-dropout or --cache-frozen"
        )
    if encoder.frozen_blocks == 0:
        raise MinifreezeError(
            f"--cache-frozen: --freeze {spec} leaves no frozen prefix (something trains at the bottom: "
            "embeddings, biases or masked elements), so there is nothing to cache; use --freeze N (N >= -1), "
            "head or top:K, or drop --cache-frozen"
        )


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 of the frozen blocks' tensors (names, dtypes, shapes and bytes): exact, whatever their source."""
    digest = hashlib.sha256()
    for i, block in enumerate(model.encoder.blocks()[: model.encoder.frozen_blocks]):
        for name, tensor in [*block.named_parameters(str(i)), *block.named_buffers(str(i))]:
            t = tensor.detach().contiguous().cpu()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def prefix_key(model: torch.nn.Module, dtype: str, device: torch.device) -> tuple[str, dict]:
    """(key, description): everything the prefix output depends on except the examples themselves.

    The active autocast state is read from torch, so call this where the prefix will run.
    """
    encoder = model.encoder
    config = {k: v for k, v in encoder.config.to_dict().items() if k not in HEAD_ONLY_FIELDS}
    amp = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
    description = {
        "format": FORMAT_VERSION,
        "weights_sha256": weights_hash(model),
        "config": config,
        "frozen_blocks": encoder.frozen_blocks,
        "attention": "textbook" if any(layer.textbook_attention for layer in encoder.layers) else "sdpa",
        "autocast": str(amp) if amp else "off",
        "dtype": dtype,
        "device": device.type,
        "torch": torch.__version__,
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32], description


def example_hashes(encoded: data.EncodedSplit) -> list[bytes]:
    """One hash per example of exactly what the prefix reads: its token ids and token types."""
    hashes = []
    for i, ids in enumerate(encoded.input_ids):
        h = hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=EXAMPLE_HASH_BYTES)
        if encoded.token_type_ids is not None:
            h.update(np.asarray(encoded.token_type_ids[i], dtype=np.int64).tobytes())
        hashes.append(h.digest())
    return hashes


class FrozenCache:
    """What the training loop holds: where each example's prefix output is. It only serves `hidden`; the
    suffix, head and loss run through `model.from_prefix`, the one path training always takes."""

    def __init__(self, model, store: Store, where: dict[str, np.ndarray], stats: dict, home: torch.device):
        self.model = model
        self.store = store
        self.where = where  # split name -> [n, 3] int64 (shard, first row, length) per example
        self.stats = stats
        self.home = home  # where batches are assembled: the training device if the shards live there

    def hidden(self, split: str, batch: batching.Batch) -> torch.Tensor:
        """The prefix output of a batch [B, T, H], padded with zeros like `collate` pads (the suffix masks
        padded keys, so the real tokens' results do not depend on what the padding holds)."""
        b, t = batch.input_ids.shape
        dtype = self.model.encoder.embeddings.word.weight.dtype  # what the prefix itself would return
        out = torch.zeros(b, t, self.model.config.hidden_size, dtype=dtype, device=self.home)
        for r, (shard, start, n) in enumerate(self.where[split][batch.index.cpu().numpy()].tolist()):
            out[r, :n] = self.store.shards[shard].vectors[start : start + n]
        return out.to(batch.input_ids.device)

    def report(self) -> str:
        s = self.stats
        return (
            f"frozen cache: {s['examples']:,} examples, {s['hits']:,} hits, {s['computed']:,} computed in "
            f"{s['build_seconds']:.1f} s (hashing {s['hash_seconds']:.1f} s); {s['bytes'] / 2**20:.1f} MiB "
            f"{s['dtype']} {'memory-mapped' if not s['in_memory'] else 'in ' + s['device'] + ' memory'}; "
            f"key {s['key']}" + (f" in {s['folder']}" if s["folder"] else " (memory only)")
        )


def build(
    model,
    splits: dict[str, data.EncodedSplit],
    *,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    dtype: str = "fp32",
    cache_dir: str | None = None,
    max_gb: float = DEFAULT_MAX_GB,
    spec: str = "",
    on_device: bool | None = None,
    grow_from: FrozenCache | None = None,
) -> FrozenCache:
    """Find or compute the prefix output of every example of `splits`; run under the training autocast.

    `splits` maps a name ("train", "validation") to its encoded examples; `FrozenCache.hidden(name, batch)`
    later looks a batch up by `batch.index`. `spec` (the --freeze spec) only words the refusals.
    `on_device`: move the in-memory shards to `device` (None: on CUDA when they fit in GPU_SHARE of its
    free memory; on CPU they are there already). `grow_from`: a cache of the same splits at a shallower
    depth; missing examples then run only the layers between the two depths on its rows (progressive.py).
    """
    check_cacheable(model, spec)
    if dtype not in DTYPES:
        raise MinifreezeError(f"--cache-dtype {dtype}: use one of {', '.join(DTYPES)}")
    started = time.perf_counter()
    REGISTRY.max_bytes = int(max_gb * GIB)
    key, description = prefix_key(model, dtype, device)
    root = cache_folder(cache_dir)
    store = REGISTRY.store(key, dtype, root / key if root is not None else None)
    store.refresh()
    if store.folder is not None and store.folder.is_dir():
        os.utime(store.folder)  # "last used", for `python -m minifreeze.cache prune`
    hashes = {name: example_hashes(encoded) for name, encoded in splits.items()}
    hash_seconds = time.perf_counter() - started
    missing: dict[bytes, tuple[str, int]] = {}
    for name, split_hashes in hashes.items():
        for i, h in enumerate(split_hashes):
            if h not in store.index and h not in missing:
                missing[h] = (name, i)
    if missing:
        run = partial(_grow, model, grow_from) if grow_from is not None else _prefix_output(model)
        store.add(_compute_shard(model, splits, missing, store, pad_id, batch_size, device, description, run))
    where, used = {}, set()
    for name, encoded in splits.items():
        rows = np.empty((len(encoded), 3), dtype=np.int64)
        for i, h in enumerate(hashes[name]):
            shard, j = store.index[h]
            rows[i] = (shard, store.shards[shard].offsets[j], encoded.lengths[i])
            used.add(shard)
        where[name] = rows
    shards = [store.shards[s] for s in sorted(used)]
    if on_device is None:
        on_device = device.type == "cuda" and gpu_can_hold(sum(s.vectors.nbytes for s in shards), device)
    if on_device and all(s.in_memory for s in shards):
        for shard in shards:  # moved once: later runs of a sweep find them there
            shard.vectors = shard.vectors.to(device)
    home = device if all(s.vectors.device.type == device.type for s in shards) else torch.device("cpu")
    examples = sum(len(e) for e in splits.values())
    itemsize = DTYPES[dtype].itemsize * model.config.hidden_size
    stats = {
        "key": key,
        "folder": str(store.folder) if store.folder else None,
        "dtype": dtype,
        "examples": examples,
        "hits": examples - sum(1 for h in hashes.values() for x in h if x in missing),
        "computed": len(missing),
        "bytes": int(sum(int(e.lengths.sum()) for e in splits.values()) * itemsize),
        "in_memory": all(s.in_memory for s in shards),
        "device": str(shards[0].vectors.device) if shards else "cpu",
        "hash_seconds": hash_seconds,
        "build_seconds": time.perf_counter() - started,
        "frozen_blocks": model.encoder.frozen_blocks,
        "grown_from": grow_from.stats["frozen_blocks"] if grow_from is not None else None,
    }
    return FrozenCache(model, store, where, stats, home)


def gpu_can_hold(nbytes: int, device: torch.device) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= GPU_SHARE * free


def _prefix_output(model):
    return lambda name, batch: model.encoder.prefix(
        batch.input_ids, batch.attention_mask, batch.token_type_ids
    )


def _grow(model, source: FrozenCache, name: str, batch: batching.Batch) -> torch.Tensor:
    """The prefix output at the model's depth from `source`'s rows at a shallower one: only the layers in
    between run (their inputs are the rows the deeper prefix itself would compute, padding aside)."""
    encoder = model.encoder
    h, mask = source.hidden(name, batch), encoder.key_mask(batch.attention_mask)
    for layer in encoder.layers[max(source.stats["frozen_blocks"] - 1, 0) : encoder.frozen_layers]:
        h = layer(h, mask)
    return h


def _compute_shard(
    model, splits, missing, store: Store, pad_id, batch_size, device, description, run
) -> Shard:
    """Run the prefix (`run(split, batch)`) over the missing examples (longest first) into a new shard."""
    owners = list(missing.values())  # (split, index) of each example to compute
    lengths = np.array([splits[name].lengths[i] for name, i in owners], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    shape = (int(offsets[-1]), model.config.hidden_size)
    nbytes = shape[0] * shape[1] * DTYPES[store.dtype].itemsize
    in_memory = nbytes <= REGISTRY.room()
    if not in_memory and store.folder is None:
        raise MinifreezeError(
            f"the frozen cache needs {nbytes / GIB:.2f} GiB, more than --cache-max-gb allows, and "
            f"--cache-dir is {NO_DISK}: raise --cache-max-gb or give a --cache-dir"
        )
    tmp = new_tmp(store.folder) if store.folder is not None else None
    if in_memory:
        array = np.empty(shape, NUMPY_DTYPES[store.dtype])
    else:  # written in place on disk: a cache larger than memory never has to fit in it
        array = disk_array(tmp, shape, NUMPY_DTYPES[store.dtype])
    vectors = tensor_view(array, store.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for name in splits:
                mine = [j for j, (owner, _) in enumerate(owners) if owner == name]
                for batch_rows in batching.sorted_batches(lengths[mine], batch_size):
                    picked = [mine[r] for r in batch_rows]
                    batch = batching.collate(splits[name], [owners[j][1] for j in picked], pad_id, 8)
                    batch = batch.to(device)
                    out = run(name, batch).to("cpu", DTYPES[store.dtype])
                    for r, j in enumerate(picked):
                        vectors[offsets[j] : offsets[j + 1]] = out[r, : lengths[j]]
    except BaseException:  # an error, or Ctrl-C: leave no half-written shard (it may be GBs) behind
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)
    hashes = list(missing)
    if tmp is not None and (name := publish(tmp, array, offsets, hashes, {**description, "key": store.key})):
        store.seen.add(name)
    return Shard(vectors, offsets, hashes, in_memory)
