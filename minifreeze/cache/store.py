"""The frozen cache's shards: where they live on disk, how they are written, checked and read back.

A prefix key's folder `<cache dir>/frozen/<key>/` holds shards. A shard folder holds vectors.npy ([tokens, H]
in the storage dtype), offsets.npy ([n + 1] int64), hashes.bin (n example hashes) and meta.json: the prefix
description, the key, and each data file's size and SHA-256, recorded at publish. A shard is written once,
into a temporary folder renamed into place (readers never see half a shard), and checked when opened (the
disk is not trusted: a zeroed, truncated or edited file is found, reported in one line and replaced).

In memory, `REGISTRY` holds this process's shards by key, so later runs in one process (a sweep) reuse them
without touching the disk; it is the only registry (`python -m minifreeze.cache` imports this module too).
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

from ..errors import MinifreezeError

CACHE_ENV = "MINIFREEZE_CACHE"
DEFAULT_CACHE_DIR = "~/.cache/minifreeze"
NO_DISK = "none"  # --cache-dir none: memory only
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# numpy has no bfloat16: its bits are stored as uint16 and reinterpreted on load
NUMPY_DTYPES = {"fp32": np.float32, "bf16": np.uint16, "fp16": np.float16}
EXAMPLE_HASH_BYTES = 16  # 128-bit example hashes: collisions are out of reach for any dataset
GIB = 2**30
SHARD_FILES = ("vectors.npy", "offsets.npy", "hashes.bin")  # each with its size and SHA-256 in meta.json
READ_CHUNK = 2**24  # checksums read files in 16 MiB pieces
STALE_TMP_SECONDS = 3600  # a temporary shard folder of unknown owner this old belongs to no running build


def cache_folder(cache_dir: str | None) -> Path | None:
    """`--cache-dir` as a folder: the option, else $MINIFREEZE_CACHE, else ~/.cache/minifreeze; None = memory."""
    value = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return None if value.lower() == NO_DISK else Path(value).expanduser() / "frozen"


@dataclass
class Shard:
    """Prefix outputs of some examples: example j owns rows offsets[j]:offsets[j + 1] of `vectors`."""

    vectors: torch.Tensor  # [tokens, H] in the storage dtype; in memory or memory-mapped
    offsets: np.ndarray  # [n + 1] int64
    hashes: list[bytes]
    in_memory: bool


class DamagedShard(Exception):
    """A shard folder that fails a check; the message says which one, in a few words."""


def tensor_view(array: np.ndarray, dtype: str) -> torch.Tensor:
    """The stored rows as a tensor of the storage dtype, sharing memory (bf16 is stored as uint16 bits)."""
    return torch.from_numpy(array).view(DTYPES[dtype])


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

    def drop(self, store: Store) -> None:
        """Forget a store (its memory goes; its disk shards stay), e.g. a progressive run's grown cache."""
        self.stores.pop((store.key, str(store.folder)), None)

    def room(self) -> int:
        """Bytes that may still be held in memory (the bound is the latest build's --cache-max-gb)."""
        used = sum(s.vectors.nbytes for st in self.stores.values() for s in st.shards if s.in_memory)
        return self.max_bytes - used

    def clear(self) -> None:
        """Forget every shard held by this process (the disk copies stay)."""
        self.stores.clear()


REGISTRY = Registry()


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
    return Shard(tensor_view(vectors, dtype), offsets, hashes, in_memory)


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
