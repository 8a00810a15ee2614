"""Freeze deltas: save only what trained, and apply it to the base it was trained from.

A delta folder holds `delta.safetensors` (the trainable tensors under their Hub names; for `random:P` only
the trainable elements, as `<name>` values + `<name>.__mask__`, which elements: one bit each, packed) and `delta.json` (the
base, the SHA-256 of each base weight file and of the delta, the freeze spec, the task, the keys).
Loading resolves the base like any model, checks its hashes, and copies the delta in: the logits equal
the full export's bit for bit (`load_model(DELTA)`). The format is written down in docs/deltas.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from . import checkpoints, hub
from .errors import MinifreezeError
from .runtime import write_json
from .task import TASK_KEYS

FORMAT = "minifreeze-delta/1"
MASK = ".__mask__"  # which elements of a tensor the values fill: a bit each, 8 to a byte, little-endian
INDEX = ".__index__"  # the same as int64 flat positions: what the first deltas wrote (still read)
BITS = 1 << torch.arange(8, dtype=torch.uint8)
OVERRIDE = (
    "to apply it anyway, knowingly, set MINIFREEZE_TRUST_BASE=1 (export: --allow-other-base; "
    "Python: load_model(..., trust_base=True))"
)


def is_delta(folder: str | Path) -> bool:
    return (Path(folder).expanduser() / "delta.json").is_file()


def weight_files(folder: Path) -> list[Path]:
    """The files a base's weights are read from (as checkpoints.read_state_dict picks them)."""
    found = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    return [f for f in found if f.is_file()]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def base_sha256(path: Path) -> str:
    """sha256 of a base weight file, computed once per (file, size, change time) in this process: a run
    saves a delta, or a trainable-only checkpoint, at each improved evaluation, and re-reading a 420 MB
    base each time would cost seconds. (Not for a delta's own file: a same-size edit within the clock's
    granularity would go unseen.)"""
    stat = Path(path).stat()
    return _cached_sha256(
        str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns
    )


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, *identity: int) -> str:
    return sha256(Path(path))


def base_hashes(folder: Path) -> dict[str, str]:
    """File name -> SHA-256 of each weight file of a base folder."""
    return {f.name: base_sha256(f) for f in weight_files(folder)}


def _base_shapes(folder: Path, model) -> dict[str, tuple]:
    """Hub name -> shape of every tensor the base holds (read from headers, not the data, when it can)."""
    shapes = {}
    for file in weight_files(folder):
        if file.suffix == ".safetensors":
            with safe_open(str(file), "pt") as handle:
                shapes.update({k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()})
        else:
            shapes.update({k: tuple(v.shape) for k, v in checkpoints.read_state_dict(folder).items()})
    return checkpoints.normalise_names(shapes, model.config)  # Hub names as name_table spells them


def delta_tensors(model, plan) -> dict[str, torch.Tensor]:
    """What differs from the base: the trainable tensors (masked ones as values + positions), plus any
    tensor the base lacks or holds in another shape (a fresh head that a spec left frozen)."""
    table = checkpoints.name_table(model.config, model.pooling)
    base = _base_shapes(model.source, model) if model.source else {}
    params = dict(model.named_parameters())
    out = {}
    for hub_name, ours in table.items():
        tensor = params[ours].detach().contiguous().cpu()
        fresh = base.get(hub_name) != tuple(tensor.shape)
        if ours in plan.element_masks and not fresh:
            mask = plan.element_masks[ours].flatten().bool().cpu()
            out[hub_name] = tensor.flatten()[mask].contiguous()
            out[hub_name + MASK] = pack_bits(mask)
        elif ours in plan.trainable or fresh:
            out[hub_name] = tensor
    return out


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A flat bool mask as bytes, 8 elements to a byte: an eighth of a byte per element, where int64
    positions would cost 8 bytes per trainable element (random:0.9 stores 10% of them: 0.125 vs 0.8)."""
    padded = torch.zeros(-(-mask.numel() // 8) * 8, dtype=torch.uint8)
    padded[: mask.numel()] = mask.to(torch.uint8)
    return (padded.view(-1, 8) * BITS).sum(1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor | None:
    """The flat positions a packed mask of a `numel`-element tensor marks (None if it cannot be one)."""
    if packed.dtype != torch.uint8 or packed.shape != (-(-numel // 8),):
        return None
    bits = (packed.unsqueeze(1) & BITS).ne(0).flatten()
    return None if bits[numel:].any() else bits[:numel].nonzero().flatten()


def positions(tensors: dict[str, torch.Tensor], name: str, numel: int) -> torch.Tensor | None | bool:
    """The flat positions stored for `name` (packed mask or int64 index), None if it is stored whole,
    False if what is stored cannot mark elements of a `numel`-element tensor."""
    if name + MASK in tensors:
        index = unpack_bits(tensors[name + MASK], numel)
        return False if index is None else index
    index = tensors.get(name + INDEX)
    if index is not None and index.numel() and not 0 <= int(index.min()) <= int(index.max()) < numel:
        return False
    return index


def stored_as_elements(key: str) -> bool:
    return key.endswith((MASK, INDEX))


def save_delta(model, plan, folder: str | Path, base: str | None = None, revision: str | None = None) -> None:
    """Write the delta of `model` (trained under `plan`) to `folder`, atomically.

    `base` is the name the base was loaded from ("bundled:minilm", a Hub id, a folder); it defaults to the
    folder `model` came from."""
    if model.source is None:
        raise MinifreezeError("this model was not loaded from a base folder: a delta needs one (load_model)")
    tensors = delta_tensors(model, plan)
    name = Path(str(base or model.source)).expanduser()
    name = str(name.resolve()) if name.is_dir() else str(base)  # a folder by its absolute path
    files = base_hashes(model.source)
    record = {
        "format": FORMAT,
        "base": {"name": name, "revision": revision, "sha256": files},
        "freeze": plan.spec,
        "task": {
            "id2label": {str(i): label for i, label in model.config.id2label.items()},
            "pooling": model.pooling,
            "minifreeze": checkpoints.hub_config(model)["minifreeze"],
        },
        "keys": sorted(tensors),
    }

    def fill(tmp: Path) -> None:
        save_file(tensors, str(tmp / "delta.safetensors"), metadata={"format": FORMAT})
        record["sha256"] = sha256(tmp / "delta.safetensors")
        write_json(tmp / "delta.json", record)

    checkpoints.write_atomically(Path(folder), fill)


def best_model_writer(save: str, plan, out: Path, base: str):
    """What a training run calls on each new best model, as --save asks: `model` writes OUT/model (full Hub
    layout), `delta` OUT/delta, `both` both."""

    def write(model) -> None:
        if save in ("model", "both"):
            model.save_pretrained(out / "model")
        if save in ("delta", "both"):
            save_delta(model, plan, out / "delta", base=base)

    return write


def read_record(folder: str | Path) -> dict:
    path = Path(folder).expanduser() / "delta.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MinifreezeError(f"{path} cannot be read ({err}); save the delta again") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise MinifreezeError(f"{path} is not a {FORMAT} delta (format {record.get('format')!r})")
    return record


def base_folder(folder: str | Path, trust_base: bool = False) -> Path:
    """The base of a delta, resolved like any model, after checking each weight file's SHA-256."""
    base = read_record(folder)["base"]
    try:
        resolved = hub.resolve_model(base["name"], base.get("revision"))
    except MinifreezeError as err:
        raise MinifreezeError(f"delta {folder}: its base {base['name']} cannot be found ({err})") from None
    return check_base(folder, resolved, trust_base)


def check_base(folder: str | Path, resolved: Path, trust_base: bool = False) -> Path:
    """`resolved` if its weight files are the ones the delta in `folder` was trained on, else an error."""
    base = read_record(folder)["base"]
    if trust_base or os.environ.get("MINIFREEZE_TRUST_BASE") == "1":
        return resolved
    have = base_hashes(resolved)
    for file, digest in base["sha256"].items():
        if have.get(file) != digest:
            what = "is missing" if file not in have else "differs (SHA-256 mismatch)"
            raise MinifreezeError(
                f"delta {folder} was trained from another base: {resolved / file} {what}; {OVERRIDE}"
            )
    if set(have) != set(base["sha256"]):
        extra = ", ".join(sorted(set(have) - set(base["sha256"])))
        raise MinifreezeError(
            f"delta {folder}: the base {resolved} has other weight files ({extra}); {OVERRIDE}"
        )
    return resolved


def read_tensors(folder: str | Path, record: dict) -> dict[str, torch.Tensor]:
    path = Path(folder).expanduser() / "delta.safetensors"
    if not path.is_file():
        raise MinifreezeError(f"{path} is missing; save the delta again")
    if sha256(path) != record.get("sha256"):
        raise MinifreezeError(
            f"{path} was edited or truncated (its SHA-256 differs from delta.json); save it again"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise MinifreezeError(f"{path} is corrupted ({err}); save the delta again") from None
    if sorted(tensors) != record["keys"]:
        raise MinifreezeError(f"{path}: its tensors are not the keys delta.json lists; save the delta again")
    return tensors


def apply_delta(model, folder: str | Path) -> None:
    """Copy a delta into `model` in place (the base must already be loaded into it)."""
    record = read_record(folder)
    tensors = read_tensors(folder, record)
    table = checkpoints.name_table(model.config, model.pooling)
    unknown = sorted(k for k in tensors if not stored_as_elements(k) and k not in table)
    if unknown:
        raise MinifreezeError(
            f"delta {folder}: keys that this {model.config.family} model does not have: {', '.join(unknown[:8])}"
            + (f" (+{len(unknown) - 8} more)" if len(unknown) > 8 else "")
        )
    params = dict(model.named_parameters())
    values = {name: v for name, v in tensors.items() if not stored_as_elements(name)}
    where = {}
    for name, value in values.items():  # check everything first: a refused delta leaves the model as it was
        target = params[table[name]]
        where[name] = index = positions(tensors, name, target.numel())
        if index is None and target.shape != value.shape:
            raise MinifreezeError(
                f"delta {folder}: shape mismatch for {name}: delta {tuple(value.shape)}, "
                f"model {tuple(target.shape)}"
            )
        if index is False or (index is not None and index.shape != value.shape):
            raise MinifreezeError(f"delta {folder}: positions of {name} do not fit the model's tensor")
    with torch.no_grad():
        for name, value in values.items():
            target, index = params[table[name]], where[name]
            if index is None:
                target.copy_(value)
            else:
                target.view(-1)[index.to(target.device)] = value.to(target.device, target.dtype)
    model.task = {k: v for k, v in record["task"]["minifreeze"].items() if k in TASK_KEYS}


def base_and_task(folder: str | Path, trust_base: bool = False) -> tuple[Path, dict]:
    """The checked base folder of a delta and the load_model arguments that rebuild its head: load the
    base with them, then `apply_delta` (model.load_model does both for a delta folder)."""
    task = read_record(folder)["task"]
    id2label = {int(i): label for i, label in task["id2label"].items()}
    return base_folder(folder, trust_base), dict(
        id2label=id2label, pooling=task["pooling"], reinit_head="mismatch"
    )
