"""Look after the frozen-prefix cache on disk: `python -m minifreeze.cache list | verify | clear | prune`.

The cache never deletes anything by itself: a sweep may come back to a key weeks later, and only the user
knows whether it will. So reclaiming the disk is an explicit step: `list` shows each key (which model,
depth and dtype it belongs to, its size and when a run last used it), `clear` removes some keys or all,
`prune --max-gb N` removes the least recently used keys until at most N GiB remain. `verify` checks every
shard as a run does (each file's size and SHA-256) and lists the damaged ones; it removes nothing, since the
next run that needs their examples computes them again and replaces the shard anyway.

Removal is safe while runs are going: a key folder is first renamed out of the way (one atomic step), so
a run finds either the whole key or none of it, and a run that already holds shards memory-mapped keeps
reading them (on Linux the files live until it closes them). Half-written shards that a killed build left
behind (`.tmp-*` whose process is gone, or older than an hour) go with any `clear` or `prune`.

This is the package's __main__: `python -m minifreeze.cache` runs it after importing the package once, so
the command works on the same modules (and the one shard registry, store.REGISTRY) as training does.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .. import cli
from ..errors import MinifreezeError
from .store import GIB, NO_DISK, DamagedShard, abandoned, cache_folder, open_shard


@dataclass(frozen=True)
class CacheAdminConfig:
    command: list[str] = cli.option(
        [],
        "list | verify | clear [KEY ...] (all keys if none; a unique prefix of a key is enough) | prune",
        positional=True,
    )
    cache_dir: str | None = cli.option(
        None, "cache folder (default: $MINIFREEZE_CACHE or ~/.cache/minifreeze)"
    )
    max_gb: float | None = cli.option(
        None, "prune: remove least recently used keys until this many GiB remain"
    )
    dry_run: bool = cli.option(False, "clear / prune: say what would be removed, remove nothing")


@dataclass
class Key:
    """One prefix key on disk: a folder of shards."""

    folder: Path
    bytes: int
    examples: int
    last_used: float  # the folder's mtime: a run touches it on every use
    meta: dict

    def line(self) -> str:
        config = self.meta.get("config") if isinstance(self.meta.get("config"), dict) else {}
        model = (
            f"{config.get('family', '?')} L{config.get('num_layers', '?')} H{config.get('hidden_size', '?')}"
        )
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.last_used))
        depth, dtype = self.meta.get("frozen_blocks", "?"), self.meta.get("dtype", "?")
        return (
            f"{self.folder.name}  {model:<16} blocks {depth!s:<3} {dtype:<5} {self.examples:>10,} examples  "
            f"{human(self.bytes):>10}  last used {used}"
        )


def human(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB / 10 else f"{nbytes / 2**20:.1f} MiB"


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def read_keys(root: Path) -> list[Key]:
    """Every key folder under root, least recently used first."""
    keys = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        metas = []
        for meta_file in sorted(folder.glob("shard-*/meta.json")):
            try:
                meta = json.loads(meta_file.read_text())
            except (OSError, ValueError):  # a damaged shard still takes disk: count it, describe the rest
                continue
            if isinstance(meta, dict):
                metas.append(meta)
        examples = sum(m["examples"] for m in metas if isinstance(m.get("examples"), int))
        keys.append(
            Key(folder, folder_bytes(folder), examples, folder.stat().st_mtime, metas[0] if metas else {})
        )
    return sorted(keys, key=lambda k: k.last_used)


def remove(folder: Path) -> None:
    """Rename out of the way (atomic: readers see all or nothing), then delete."""
    trash = folder.parent / f".trash-{uuid.uuid4().hex}"
    folder.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def stale_leftovers(root: Path) -> list[Path]:
    """Half-written shards of killed builds, and trash a killed `clear` or shard repair left."""
    return [*root.glob(".trash-*"), *root.glob("*/.damaged-*"), *filter(abandoned, root.glob("*/.tmp-*"))]


def verify(keys: list[Key]) -> list[Path]:
    """Check every shard as a run would; print the damaged ones and return them."""
    damaged, checked = [], 0
    for key in keys:
        for shard in sorted(key.folder.glob("shard-*")):
            checked += 1
            try:
                open_shard(shard, room=0)  # memory-mapped: checked without holding it
            except DamagedShard as err:
                print(f"damaged {shard}: {err}")
                damaged.append(shard)
    fix = ": the next run that needs their examples computes them again and replaces them" if damaged else ""
    print(f"{checked} shards checked, {len(damaged)} damaged{fix}")
    return damaged


def pick(keys: list[Key], wanted: list[str]) -> list[Key]:
    if not wanted:
        return keys
    picked = []
    for prefix in wanted:
        matches = [k for k in keys if k.folder.name.startswith(prefix)]
        if len(matches) != 1:
            how = "no key starts" if not matches else f"{len(matches)} keys start"
            raise MinifreezeError(f"{how} with {prefix!r}: `python -m minifreeze.cache list` shows the keys")
        picked += matches
    return picked


def main(argv: list[str] | None = None) -> list:
    """Run a command; returns the keys it listed or removed, or the damaged shards (for tests)."""
    cfg = cli.parse(CacheAdminConfig, argv, "python -m minifreeze.cache", __doc__.split("\n\n")[0])
    command, *names = cfg.command or ["list"]
    if command not in ("list", "verify", "clear", "prune"):
        raise MinifreezeError(
            f"unknown command {command!r}: use list, verify, clear [KEY ...] or prune --max-gb N"
        )
    if command == "prune" and (cfg.max_gb is None or cfg.max_gb < 0):
        raise MinifreezeError("prune needs --max-gb N (N >= 0): the most the cache may keep on disk")
    if names and command != "clear":
        raise MinifreezeError(f"{command} takes no keys (got {' '.join(names)}); did you mean clear?")
    root = cache_folder(cfg.cache_dir)
    if root is None:
        raise MinifreezeError(f"--cache-dir {NO_DISK} is the memory-only cache: there is nothing on disk")
    if not root.is_dir():
        print(f"no frozen cache in {root}")
        return []
    try:
        keys = read_keys(root)
    except OSError as err:
        raise MinifreezeError(f"cannot read the frozen cache in {root} ({err.strerror or err})") from None
    if command == "verify":
        return verify(keys)
    total = sum(k.bytes for k in keys)
    if command == "list":
        print(f"frozen cache in {root}: {len(keys)} keys, {human(total)}")
        for key in keys:
            print(key.line())
        return keys
    if command == "clear":
        doomed = pick(keys, names)
    else:
        doomed, left = [], total
        for key in keys:  # least recently used first
            if left <= cfg.max_gb * GIB:
                break
            doomed.append(key)
            left -= key.bytes
    verb = "would remove" if cfg.dry_run else "removed"
    for key in doomed:
        if not cfg.dry_run:
            remove(key.folder)
        print(f"{verb} {key.line()}")
    if not cfg.dry_run and (command == "prune" or not names):
        for leftover in stale_leftovers(root):
            shutil.rmtree(leftover, ignore_errors=True)
    freed = sum(k.bytes for k in doomed)
    print(f"{verb} {len(doomed)} keys, {human(freed)}; {human(total - freed)} kept in {root}")
    return doomed


def entry() -> None:
    """The console script minifreeze-cache: `main` as the command line runs it."""
    cli.run(main)


if __name__ == "__main__":  # `python -m minifreeze.cache`; importing this module runs nothing
    cli.run(main)
