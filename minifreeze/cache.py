"""Frozen-prefix cache: compute the frozen layers once per example, then train only the suffix.

With the frozen prefix in eval mode, its output for an example is a pure function of that example's token
ids (and the frozen weights). So `--cache-frozen` runs the prefix once per training and validation example,
keeps each output unpadded ([len_i, H] in `--cache-dtype`), and every epoch and evaluation after that
feeds the cached rows (padded exactly as `batching.collate` pads the batch) straight into
`encoder.suffix(...)` and the head. An epoch then costs the trainable suffix only.

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
Storage: per prefix key, a list of *shards*, each one flat [tokens, H] array plus offsets and the
examples' hashes. A shard is written once (to a temporary folder, then renamed: readers never see half
a shard) under `<cache dir>/frozen/<prefix key>/`, and kept in memory while the process's cached bytes
stay under `--cache-max-gb`, else read memory-mapped from disk. Shards live in a module-level registry,
so later runs in the same process (a sweep) reuse them without touching the disk.
The disk is not trusted: each file's size and SHA-256 go into the shard's metadata when it is written, and
are checked when it is opened. A shard that fails (zeroed, truncated, edited, written by round 1 without
checksums) is reported in one line, and its examples are computed again into a shard that replaces it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import batching, data
from .errors import MinifreezeError

FORMAT_VERSION = 1  # bump when the layout or the meaning of a key changes: old folders are then ignored
CACHE_ENV = "MINIFREEZE_CACHE"
DEFAULT_CACHE_DIR = "~/.cache/minifreeze"
NO_DISK = "none"  # --cache-dir none: memory only
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# numpy has no bfloat16: its bits are stored as uint16 and reinterpreted on load
NUMPY_DTYPES = {"fp32": np.float32, "bf16": np.uint16, "fp16": np.float16}
EXAMPLE_HASH_BYTES = 16  # 128-bit example hashes: collisions are out of reach for any dataset
GIB = 2**30
# In-memory bound by default: SST-2's 67k training sentences (897k tokens) through a bert-base prefix are
# 2.6 GiB in fp32 (1.3 GiB in bf16); beyond this, shards are read memory-mapped and the page cache decides.
DEFAULT_MAX_GB = 4.0
HEAD_ONLY_FIELDS = ("num_labels", "id2label", "classifier_dropout")  # config fields the prefix never reads
# A CUDA run keeps the in-memory cache in GPU memory when it takes at most this share of the free memory
# (the rest is for the suffix's activations): batches are then assembled on the GPU, with no host copies.
GPU_SHARE = 0.25
SHARD_FILES = ("vectors.npy", "offsets.npy", "hashes.bin")  # each with its size and SHA-256 in meta.json
READ_CHUNK = 2**24  # checksums read files in 16 MiB pieces
STALE_TMP_SECONDS = 3600  # a temporary shard folder of unknown owner this old belongs to no running build


def cache_folder(cache_dir: str | None) -> Path | None:
    """`--cache-dir` as a folder: the option, else $MINIFREEZE_CACHE, else ~/.cache/minifreeze; None = memory."""
    value = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return None if value.lower() == NO_DISK else Path(value).expanduser() / "frozen"


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


@dataclass
class Store:
    """All shards of one prefix key (in this process), and where each example hash lives."""

    key: str
    dtype: str
    folder: Path | None
    shards: list[Shard] = field(default_factory=list)
    index: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # hash -> (shard, example)
    seen: set[str] = field(default_factory=set)  # shard folders already opened

    def add(self, shard: Shard) -> None:
        for j, h in enumerate(shard.hashes):
            self.index.setdefault(h, (len(self.shards), j))
        self.shards.append(shard)

    def refresh(self) -> None:
        """Pick up shards written since (by earlier runs or other processes). A shard that fails its checks
        is reported (one line), moved away, and its examples count as missing: they are computed again."""
        if self.folder is None or not self.folder.is_dir():
            return
        remove_abandoned(self.folder)
        for path in sorted(self.folder.glob("shard-*")):
            if path.name in self.seen:
                continue
            try:
                self.add(open_shard(path, REGISTRY.room()))
            except DamagedShard as err:
                warn(f"shard {path} is damaged ({err}); computing its examples again and replacing it")
                discard(path)
                continue
            self.seen.add(path.name)


class Registry:
    """The stores of this process by (prefix key, folder), and the memory bound they share.

    Module-level so that every run in one process (a sweep over seeds and learning rates) finds the
    shards earlier runs built, already in memory.
    """

    def __init__(self) -> None:
        self.stores: dict[tuple[str, str], Store] = {}
        self.max_bytes = 0

    def store(self, key: str, dtype: str, folder: Path | None) -> Store:
        return self.stores.setdefault((key, str(folder)), Store(key, dtype, folder))

    def room(self) -> int:
        """Bytes that may still be held in memory (the bound is the latest build's --cache-max-gb)."""
        used = sum(s.vectors.nbytes for st in self.stores.values() for s in st.shards if s.in_memory)
        return self.max_bytes - used

    def clear(self) -> None:
        """Forget every shard held by this process (the disk copies stay)."""
        self.stores.clear()


REGISTRY = Registry()


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
) -> FrozenCache:
    """Find or compute the prefix output of every example of `splits`; run under the training autocast.

    `splits` maps a name ("train", "validation") to its encoded examples; `FrozenCache.loss(batch, name)`
    later looks a batch up by `batch.index`. `spec` (the --freeze spec) only words the refusals.
    `on_device`: move the in-memory shards to `device` (None: on CUDA when they fit in GPU_SHARE of its
    free memory; on CPU they are there already).
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
        store.add(_compute_shard(model, splits, missing, store, pad_id, batch_size, device, description))
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
    }
    return FrozenCache(model, store, where, stats, home)


def gpu_can_hold(nbytes: int, device: torch.device) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= GPU_SHARE * free


def _compute_shard(model, splits, missing, store: Store, pad_id, batch_size, device, description) -> Shard:
    """Run the prefix over the missing examples (longest first, little padding) into a new shard."""
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
    vectors = _vectors(array, store.dtype)
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
                    out = model.encoder.prefix(batch.input_ids, batch.attention_mask, batch.token_type_ids)
                    out = out.to("cpu", DTYPES[store.dtype])
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


# ================================================================================================ shards on disk
# Everything that reads or writes a shard folder, in one place. A shard folder holds vectors.npy
# ([tokens, H] in the storage dtype), offsets.npy ([n + 1] int64), hashes.bin (n example hashes) and
# meta.json: the prefix description, the key, and each data file's size and SHA-256, recorded at publish.


@dataclass
class Shard:
    """Prefix outputs of some examples: example j owns rows offsets[j]:offsets[j + 1] of `vectors`."""

    vectors: torch.Tensor  # [tokens, H] in the storage dtype; in memory or memory-mapped
    offsets: np.ndarray  # [n + 1] int64
    hashes: list[bytes]
    in_memory: bool


class DamagedShard(Exception):
    """A shard folder that fails a check; the message says which one, in a few words."""


def _vectors(array: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(array).view(DTYPES[dtype])


def warn(message: str) -> None:
    """One line on stderr (warnings.warn prints two, and shows a repeated warning only once)."""
    print(f"frozen cache: warning: {message}", file=sys.stderr, flush=True)


def sha256(path: Path, array: np.ndarray | None = None) -> str:
    """SHA-256 of a file, read in pieces (a multi-GB shard is streamed, never held twice). With `array`
    (what the .npy file holds, already read or mapped): of the file's header, then of the array's bytes;
    the same value, without reading the file again. SHA-256 rather than blake2b: with the CPU's SHA
    instructions it is the faster of the two here (~1 GiB/s, blake2b half that)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if array is None:
            pieces = iter(lambda: f.read(READ_CHUNK), b"")
        else:
            digest.update(f.read(os.fstat(f.fileno()).st_size - array.nbytes))  # the .npy header
            flat = array.reshape(-1).view(np.uint8)
            pieces = (flat[i : i + READ_CHUNK] for i in range(0, flat.size, READ_CHUNK))
        for piece in pieces:
            digest.update(piece)
    return digest.hexdigest()


def read_meta(folder: Path) -> dict:
    if not (folder / "meta.json").is_file():
        raise DamagedShard("meta.json missing")
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise DamagedShard(f"meta.json unreadable ({getattr(err, 'strerror', None) or err})") from None
    if not isinstance(meta, dict):
        raise DamagedShard("meta.json unreadable (not a JSON object)")
    if not isinstance(meta.get("files"), dict):
        raise DamagedShard("no checksums: written by a minifreeze that did not keep them")
    if meta.get("key") != folder.parent.name:
        raise DamagedShard(f"it belongs to key {meta.get('key')}, not to the key folder it is in")
    return meta


def check_sizes(folder: Path, files: dict) -> None:
    for name in SHARD_FILES:
        if not (folder / name).is_file():
            raise DamagedShard(f"{name} missing")
        size, want = (folder / name).stat().st_size, files[name]["bytes"]
        if size != want:
            raise DamagedShard(
                f"{'truncated: ' if size < want else ''}{name} has {size:,} bytes, not {want:,}"
            )


def check_sums(folder: Path, files: dict, vectors: np.ndarray) -> None:
    for name in SHARD_FILES:
        if sha256(folder / name, vectors if name == "vectors.npy" else None) != files[name]["sha256"]:
            where = "offsets inconsistent: " if name == "offsets.npy" else ""
            raise DamagedShard(f"{where}checksum mismatch in {name}")


def open_shard(folder: Path, room: int) -> Shard:
    """A shard from disk, checked; read into memory if it fits in `room` bytes, else memory-mapped.

    Each file must have the size and SHA-256 recorded when it was published: the only way never to train
    on garbage (bit rot, a truncated copy, a crash before the data reached the disk). That reads every
    byte once, for a mapped multi-GB shard a read of the file at open: far cheaper than computing it
    again. The mapping is copy-on-write ("c"): torch wants a writable array, and no write reaches the file.
    """
    try:
        meta = read_meta(folder)
        check_sizes(folder, meta["files"])
        offsets = np.load(folder / "offsets.npy")
        raw = (folder / "hashes.bin").read_bytes()
        mapped = np.load(folder / "vectors.npy", mmap_mode="c")
        in_memory = mapped.nbytes <= room
        vectors = np.array(mapped) if in_memory else mapped
        check_sums(folder, meta["files"], vectors)
        dtype = meta["dtype"]
    except (OSError, ValueError, KeyError, TypeError) as err:  # files replaced while read, odd metadata
        raise DamagedShard(f"unreadable ({type(err).__name__}: {err})") from None
    hashes = [raw[i : i + EXAMPLE_HASH_BYTES] for i in range(0, len(raw), EXAMPLE_HASH_BYTES)]
    if len(hashes) + 1 != len(offsets) or vectors.shape[0] != offsets[-1]:
        raise DamagedShard(
            f"offsets inconsistent: {len(offsets)} offsets, {len(hashes)} examples, {vectors.shape[0]} rows"
        )
    return Shard(_vectors(vectors, dtype), offsets, hashes, in_memory)


def discard(folder: Path) -> None:
    """Move a damaged shard out of the way (one atomic rename: its replacement can take the name at once),
    then delete it. If another process moved it first, there is nothing left to do."""
    trash = folder.parent / f".damaged-{uuid.uuid4().hex}"
    try:
        folder.rename(trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def new_tmp(folder: Path) -> Path:
    """A temporary folder for a shard being built, named after this host and process (see abandoned())."""
    tmp = folder / f".tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        tmp.mkdir(parents=True)
    except OSError as err:
        raise MinifreezeError(
            f"cannot write the frozen cache in {folder} ({err.strerror or err}): "
            f"pass a writable --cache-dir, or --cache-dir {NO_DISK} to keep it in memory"
        ) from None
    return tmp


def abandoned(tmp: Path) -> bool:
    """Whether a temporary shard folder belongs to no running build: its process (named in it) is gone from
    this host, or, if made on another host or by an older minifreeze, it is older than STALE_TMP_SECONDS."""
    host, pid, _ = (tmp.name.removeprefix(".tmp-").rsplit("-", 2) + ["", ""])[:3]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False
    try:
        return time.time() - tmp.stat().st_mtime > STALE_TMP_SECONDS
    except OSError:  # removed meanwhile
        return False


def remove_abandoned(folder: Path) -> None:
    for tmp in folder.glob(".tmp-*"):
        if abandoned(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def disk_array(tmp: Path, shape: tuple[int, int], np_dtype) -> np.memmap:
    """vectors.npy mapped for writing, its disk blocks reserved first: a full disk fails here, in one line,
    before the prefix runs (not with a SIGBUS half-way, writing through the mapping into a sparse file)."""
    path = tmp / "vectors.npy"
    try:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np_dtype, shape=shape)
        if hasattr(os, "posix_fallocate"):  # not on macOS: there the file fills up as it is written
            with open(path, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        size = shape[0] * shape[1] * np.dtype(np_dtype).itemsize / GIB
        raise MinifreezeError(
            f"cannot write the frozen cache ({size:.2f} GiB) in {tmp.parent} ({err.strerror or err}): free "
            "some disk, pass another --cache-dir, or raise --cache-max-gb to keep it in memory"
        ) from None
    return array


def publish(tmp: Path, array: np.ndarray, offsets, hashes: list[bytes], meta: dict) -> str | None:
    """Finish a shard in its temporary folder and rename it into place; its name, or None when it could not
    be written (disk full, ...: one warning line, the run goes on with the shard unsaved, nothing is left).

    The rename is atomic, so a reader sees a whole shard or none. Two runs that computed the same examples
    give it the same name: the first rename wins, the second run drops its copy (the values are the same).
    A memory-mapped array stays readable after its folder is renamed or removed (POSIX keeps mapped files).
    """
    joined = b"".join(hashes)
    try:
        if isinstance(array, np.memmap):
            array.flush()
        else:
            np.save(tmp / "vectors.npy", array)
        np.save(tmp / "offsets.npy", offsets)
        (tmp / "hashes.bin").write_bytes(joined)
        files = {
            name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256(tmp / name, vectors)}
            for name, vectors in zip(SHARD_FILES, (array, None, None))
        }
        meta = {**meta, "examples": len(hashes), "tokens": int(offsets[-1]), "files": files}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        warn(
            f"cannot write a shard into {tmp.parent} ({err.strerror or err}); this run goes on with it unsaved"
        )
        return None
    name = "shard-" + hashlib.sha256(joined).hexdigest()[:24]  # same examples, same name
    try:
        tmp.rename(tmp.parent / name)
    except OSError:  # another process published the same examples first: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return name


if __name__ == "__main__":  # python -m minifreeze.cache list | clear | prune: see cache_admin.py
    from . import cli
    from .cache_admin import main

    cli.run(main)
