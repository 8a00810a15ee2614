"""Read and write Hub checkpoints: parameter names per family, strict loading, atomic saving.

Each family's names are a literal table (Hub name -> our name). Loading normalises the known quirks of
real Hub files first (a `bert.` / `roberta.` / `distilbert.` prefix or none, legacy `LayerNorm.gamma/beta`,
stray `position_ids` buffers, MLM heads), then demands the exact key set and every shape: a checkpoint
either loads completely or fails with a message that lists what is wrong. Only the task head (and the
BERT pooler, absent from some files) may be missing; those are created fresh, as transformers does.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import problem
from .config import MEAN_POOLED_TYPE, TOKENIZER_FILES, EncoderConfig
from .errors import MinifreezeError
from .runtime import write_json

PREFIX = {"bert": "bert.", "roberta": "roberta.", "distilbert": "distilbert."}
ARCHITECTURE = {
    "bert": "BertForSequenceClassification",
    "roberta": "RobertaForSequenceClassification",
    "distilbert": "DistilBertForSequenceClassification",
}
# Keys that real checkpoints carry and a classifier never uses.
IGNORED_PREFIXES = (
    "cls.",
    "lm_head.",
    "vocab_transform.",
    "vocab_layer_norm.",
    "vocab_projector.",
    "qa_outputs.",
)

MEAN_POOLED_NOTE = (
    "mean-pooled classifier: load it with minifreeze.load_model; transformers has no such head. To use just "
    "the encoder in transformers (AutoModel), set model_type back to the value here"
)
TOKENIZER_CLASS = {  # the transformers class that reads each shape of tokenizer files
    "tokenizer.json": "PreTrainedTokenizerFast",
    "vocab.txt": "BertTokenizer",
    "merges.txt": "RobertaTokenizer",
}

EMBEDDINGS = {
    "embeddings.word_embeddings": "encoder.embeddings.word",
    "embeddings.position_embeddings": "encoder.embeddings.position",
    "embeddings.token_type_embeddings": "encoder.embeddings.token_type",
    "embeddings.LayerNorm": "encoder.embeddings.norm",
}
BERT_LAYER = {  # also RoBERTa: encoder.layer.{i}.<hub name> -> encoder.layers.{i}.<our name>
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}
DISTILBERT_LAYER = {  # transformer.layer.{i}.<hub name> -> encoder.layers.{i}.<our name>
    "attention.q_lin": "query",
    "attention.k_lin": "key",
    "attention.v_lin": "value",
    "attention.out_lin": "attn_out",
    "sa_layer_norm": "attn_norm",
    "ffn.lin1": "ffn_in",
    "ffn.lin2": "ffn_out",
    "output_layer_norm": "ffn_norm",
}
HEAD = {  # full Hub name (prefix included) -> our name, per family and pooling
    ("bert", "cls"): {"bert.pooler.dense": "head.pooler", "classifier": "head.classifier"},
    ("roberta", "cls"): {"classifier.dense": "head.dense", "classifier.out_proj": "head.out_proj"},
    ("distilbert", "cls"): {"pre_classifier": "head.pre_classifier", "classifier": "head.classifier"},
}


def name_table(cfg: EncoderConfig, pooling: str) -> dict[str, str]:
    """Every parameter's full Hub name (as *ForSequenceClassification stores it) -> our name."""
    prefix = PREFIX[cfg.family]
    modules = {prefix + hub: ours for hub, ours in EMBEDDINGS.items()}
    if not cfg.has_token_types:
        modules.pop(prefix + "embeddings.token_type_embeddings")
    layer_table, stack = (
        (DISTILBERT_LAYER, "transformer.layer")
        if cfg.family == "distilbert"
        else (BERT_LAYER, "encoder.layer")
    )
    for i in range(cfg.num_layers):
        for hub, ours in layer_table.items():
            modules[f"{prefix}{stack}.{i}.{hub}"] = f"encoder.layers.{i}.{ours}"
    modules.update(HEAD.get((cfg.family, pooling), {"classifier": "head.classifier"}))
    table = {}
    for hub, ours in modules.items():
        kinds = ("weight",) if hub.endswith("_embeddings") else ("weight", "bias")
        table.update({f"{hub}.{kind}": f"{ours}.{kind}" for kind in kinds})
    return table


# Task-head modules, stored outside the family prefix by every *ForSequenceClassification.
HEAD_MODULES = ("classifier", "pre_classifier", "classifier.dense", "classifier.out_proj")


def normalise_names(
    state: dict[str, torch.Tensor], cfg: EncoderConfig, drop_head: bool = False
) -> dict[str, torch.Tensor]:
    """Undo the quirks of real Hub files so that keys read exactly as `name_table` expects."""
    prefix = PREFIX[cfg.family]
    out = {}
    for name, tensor in state.items():
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if name.startswith(IGNORED_PREFIXES) or name.endswith("position_ids"):
            continue
        is_head = name.rsplit(".", 1)[0] in HEAD_MODULES
        if drop_head and is_head:
            continue
        if not name.startswith(prefix) and not is_head:
            name = prefix + name  # base checkpoints saved without the family prefix (e.g. MiniLM)
        if cfg.family == "roberta" and name.startswith("roberta.pooler."):
            continue  # RoBERTa's classification head does not use the pooler
        out[name] = tensor
    return out


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder: safetensors (single or sharded), else pytorch_model.bin."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [folder / shard for shard in shards]
    elif (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    else:
        files = sorted(folder.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if not file.is_file():
            raise MinifreezeError(
                f"{file} is listed in the shard index but missing; re-download the checkpoint"
            )
        try:
            state.update(load_file(str(file)))
        except (SafetensorError, OSError, ValueError) as err:
            raise MinifreezeError(
                f"{file} is corrupted or truncated ({err}); delete it and download it again"
            ) from None
    if files:
        return state
    legacy = sorted(folder.glob("pytorch_model*.bin"))
    if not legacy:
        raise MinifreezeError(
            f"no weights in {folder}: expected model.safetensors (or shards with an index) or pytorch_model.bin"
        )
    warnings.warn(
        f"{folder} has only pytorch_model.bin; loading it with torch.load(weights_only=True)", stacklevel=3
    )
    for file in legacy:
        try:
            state.update(torch.load(file, map_location="cpu", weights_only=True))
        except pickle.UnpicklingError:  # torch's own message is many lines and suggests weights_only=False
            raise MinifreezeError(
                f"{file} is a pickle checkpoint that cannot be loaded safely (it holds more than tensors); "
                "if you trust its source, convert it once to model.safetensors "
                "(safetensors.torch.save_file of its state dict) or download the model's safetensors"
            ) from None
        except Exception as err:  # a truncated zip, not a torch file at all, ...
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise MinifreezeError(f"{file} is corrupted or truncated ({reason}); download it again") from None
    return state


def load_weights(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    reinit_head: bool | str = False,
    head_hint: str = " (pass num_labels to match, or reinit_head=True)",
) -> list[str]:
    """Copy a Hub state dict into `model`; return the names of the head parameters that were not there.

    `head_hint` ends the message when a head tensor has the wrong shape (the caller knows why it might)."""
    cfg, pooling = model.config, model.pooling
    table = name_table(cfg, pooling)
    state = normalise_names(state, cfg, drop_head=reinit_head is True)
    if reinit_head == "mismatch":  # keep a fine-tuned head only where it fits the requested labels
        shapes = {n: p.shape for n, p in model.named_parameters()}
        state = {
            k: v
            for k, v in state.items()
            if k not in table or shapes[table[k]] == v.shape or not table[k].startswith("head.")
        }
    if pooling == "mean":  # the BERT pooler is unused by the mean head
        state = {k: v for k, v in state.items() if not k.startswith("bert.pooler.")}
    unexpected = sorted(set(state) - set(table))
    missing = sorted(set(table) - set(state))
    missing_body = [k for k in missing if not table[k].startswith("head.")]
    if unexpected:
        raise MinifreezeError(
            f"{source}: unexpected keys for a {cfg.family} model: {', '.join(unexpected[:8])}"
            + (f" (+{len(unexpected) - 8} more)" if len(unexpected) > 8 else "")
        )
    if missing_body:
        raise MinifreezeError(
            f"{source}: missing keys: {', '.join(missing_body[:8])}"
            + (f" (+{len(missing_body) - 8} more)" if len(missing_body) > 8 else "")
        )
    ours = dict(model.named_parameters())
    for hub_name, tensor in state.items():
        target = ours[table[hub_name]]
        if target.shape != tensor.shape:
            hint = head_hint if table[hub_name].startswith("head.") else ""
            raise MinifreezeError(
                f"{source}: shape mismatch for {hub_name}: checkpoint {tuple(tensor.shape)}, "
                f"model {tuple(target.shape)}{hint}"
            )
        with torch.no_grad():
            target.copy_(tensor)
    return [table[k] for k in missing]


def export_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our parameters under their Hub names, contiguous, ready for safetensors."""
    inverse = {ours: hub for hub, ours in name_table(model.config, model.pooling).items()}
    return {inverse[name]: p.detach().contiguous().cpu() for name, p in model.named_parameters()}


def hub_config(model: torch.nn.Module) -> dict:
    """config.json for the folder: transformers' fields, plus a "minifreeze" block with the pooling and the
    task the model was trained for (`model.task`: max_length, columns, ...; predict and evaluate read it).

    A [CLS] head is exactly transformers' *ForSequenceClassification, so that folder loads there with the
    same logits. A mean-pooled head has no transformers counterpart (it would read [CLS] through a random
    pooler and predict near chance without a word), so its model_type is MEAN_POOLED_TYPE, which
    transformers refuses; the real model_type waits in the block for minifreeze.load_model.
    """
    cfg = model.config
    raw = dict(cfg.raw)
    raw.update(
        architectures=[ARCHITECTURE[cfg.family]],
        num_labels=cfg.num_labels,
        id2label={str(i): label for i, label in cfg.id2label.items()},
        label2id={label: i for i, label in cfg.id2label.items()},
        problem_type=problem.of(model),  # so transformers computes the same kind of loss
    )
    raw.pop("_name_or_path", None)
    block = {**getattr(model, "task", {}), "pooling": model.pooling}
    if model.pooling == "mean":
        block.update(model_type=raw["model_type"], note=MEAN_POOLED_NOTE)
        raw.update(
            model_type=MEAN_POOLED_TYPE, architectures=["MinifreezeMeanPooled" + ARCHITECTURE[cfg.family]]
        )
    raw["minifreeze"] = block
    return raw


def write_atomically(target: Path, fill) -> None:
    """Build a folder with `fill(tmp_folder)`, then swap it in: a reader never sees a half-written one.

    The swap is two renames: TARGET -> .TARGET.old-PID, then .TARGET.partial-PID -> TARGET. A process
    killed between them leaves no TARGET, only the whole old copy: `recover(TARGET)` renames it back
    (the run folder calls it before a run or resume reads anything). Files, the partial folder and the
    parent are fsynced in that order, so after a power cut the parent holds the old copy or the new one.
    A disk error inside `fill` (full disk, no permission) comes out as an OSError with its errno, also
    when safetensors reports it as a SafetensorError.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        fill(partial)
        for file in partial.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_folder(partial)
    except BaseException as err:
        shutil.rmtree(partial, ignore_errors=True)
        code = _os_error_code(err)
        if code is not None:
            raise OSError(code, os.strerror(code), str(partial)) from None
        raise
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)  # left by a crashed process that had our pid
        os.replace(target, old)
    os.replace(partial, target)
    fsync_folder(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _os_error_code(err: BaseException) -> int | None:
    """The errno in a SafetensorError ("... I/O error: No space left on device (os error 28)"), if any."""
    import re  # here, not at the top: this helper belongs with write_atomically

    found = re.search(r"os error (\d+)", str(err)) if isinstance(err, SafetensorError) else None
    return int(found.group(1)) if found else None


def recover(target: Path) -> None:
    """Repair what a killed write_atomically left: bring the old copy back if TARGET is missing, then delete
    stale partial and old folders. Only for folders no other process is saving into (a locked run folder)."""
    target = Path(target)
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not target.exists():
        os.replace(olds.pop(), target)
        fsync_folder(target.parent)
    for stale in [*olds, *target.parent.glob(f".{target.name}.partial-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def write_file(path: Path, data: bytes | memoryview) -> None:
    """Write bytes through Python's file API, so a full disk raises OSError(ENOSPC) and not a library's
    own error (torch.save reports one as "unexpected pos"), and fsync them."""
    try:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:  # a failed write() names no file: add it
        raise OSError(err.errno, err.strerror, str(path)) from None


def fsync_folder(folder: Path) -> None:
    """Make renames and new entries in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some filesystems refuse to fsync a folder: durability there is the filesystem's own
    finally:
        os.close(handle)


def save_model(model: torch.nn.Module, folder: str | Path, tokenizer_dir: Path | None = None) -> None:
    """The Hub layout: config.json, model.safetensors (Hub names), tokenizer files if known."""

    def fill(tmp: Path) -> None:
        write_json(tmp / "config.json", hub_config(model))
        save_file(export_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer_dir is not None:
            for name in TOKENIZER_FILES:
                if (Path(tokenizer_dir) / name).is_file():
                    shutil.copy2(Path(tokenizer_dir) / name, tmp / name)
            if model.pooling == "mean":
                name_tokenizer_class(tmp)

    write_atomically(Path(folder), fill)


def name_tokenizer_class(folder: Path) -> None:
    """AutoTokenizer picks a class from tokenizer_config.json, else from config.json's model_type, which a
    mean-pooled export hides: name the class in tokenizer_config.json (if the copied one does not)."""
    path = folder / "tokenizer_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:  # unreadable: leave it as it was
        return
    kind = next((name for name in TOKENIZER_CLASS if (folder / name).is_file()), None)
    if kind is not None and not config.get("tokenizer_class"):
        config["tokenizer_class"] = TOKENIZER_CLASS[kind]
        write_json(path, config)
