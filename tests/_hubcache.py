"""Build a Hugging Face Hub cache folder by hand, so Hub code paths run offline in tests.

The layout is the one huggingface_hub reads with `HF_HUB_OFFLINE=1`:
`<cache>/<type>s--<org>--<name>/refs/<revision>` holds a commit hash and
`<cache>/<type>s--<org>--<name>/snapshots/<hash>/<path>` holds the files. (The real cache stores
blobs and symlinks them into the snapshot; plain files in the snapshot are read the same way.)
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def make_hub_cache(
    cache_dir: str | Path,
    repo_id: str,
    files: dict[str, Path | bytes],
    repo_type: str = "model",
    revision: str = "main",
) -> Path:
    """Write `files` (repo path -> source file or bytes) as a cached snapshot; return the snapshot folder.

    The commit hash is derived from the content, so the same files give the same snapshot. A
    `revision` that is a branch or ref (`main`, `refs/convert/parquet`) gets a refs file pointing at it.
    """
    blobs = {name: src if isinstance(src, bytes) else Path(src).read_bytes() for name, src in files.items()}
    digest = hashlib.sha1(revision.encode())
    for name in sorted(blobs):
        digest.update(name.encode() + b"\0" + blobs[name])
    commit = revision if COMMIT.match(revision) else digest.hexdigest()
    repo_folder = Path(cache_dir) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo_folder / "snapshots" / commit
    for name, data in blobs.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if not COMMIT.match(revision):
        ref = repo_folder / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    return snapshot


def copy_folder_files(folder: Path) -> dict[str, Path]:
    """All files under `folder`, keyed by their path relative to it (the `files` argument above)."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def use_offline_cache(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    """Point huggingface_hub at `cache_dir` with the network off, for code that reads env or constants.

    huggingface_hub reads HF_HUB_OFFLINE and HF_HUB_CACHE into `constants` at import, so setting the
    environment alone does not reach an already-imported module: patch both.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
