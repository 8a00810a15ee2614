"""Merge a freeze delta back into a full model: `python -m minifreeze.export DELTA --out FOLDER`.

The base is resolved and checked as for any `--model DELTA` (docs/deltas.md), the delta applied, and the
result written in the Hub layout with the base's tokenizer files, so transformers loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import cli
from .delta import is_delta
from .errors import MinifreezeError


@dataclass(frozen=True)
class ExportConfig:
    delta: list[str] = cli.option([], "the delta folder (a run's DIR/delta)", positional=True)
    out: str = cli.option(None, "folder to write the full Hub-layout model to (must not exist)")
    allow_other_base: bool = cli.option(
        False, "apply the delta even if the base's weight files differ from the ones it was trained on"
    )


def main(argv: list[str] | None = None) -> Path:
    from .model import load_model

    cfg = cli.parse(ExportConfig, argv, "python -m minifreeze.export", __doc__.splitlines()[0])
    if len(cfg.delta) != 1 or not is_delta(cfg.delta[0]):
        given = " ".join(cfg.delta) or "nothing"
        raise MinifreezeError(f"pass one delta folder (a run's DIR/delta, with delta.json), not {given}")
    if not cfg.out:
        raise MinifreezeError("--out is required: the folder to write the full model to")
    out = Path(cfg.out).expanduser()
    if out.exists():
        raise MinifreezeError(f"{out} exists: pick a new folder, or delete it first")
    load_model(cfg.delta[0], trust_base=cfg.allow_other_base).save_pretrained(out)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    cli.run(main)
