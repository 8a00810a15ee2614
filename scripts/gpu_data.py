"""Write the small SST-2 slice that scripts/gpu_check.sh trains on, to carry to a GPU machine.

`python scripts/gpu_data.py .gpu_data [--data-dir ../shared/data] [--train 4000]` writes
`.gpu_data/sst2/{train,validation}.tsv`: the first N training rows of each label in turn (a stratified,
fixed subset) and the whole validation file, byte for byte as the shared data has them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("MINIFREEZE_DATA_DIR", "../shared/data"))
    )
    parser.add_argument("--train", type=int, default=4000, help="training rows to keep")
    args = parser.parse_args()
    source = args.data_dir / "sst2"
    if not (source / "train.tsv").is_file():
        raise SystemExit(f"error: {source}/train.tsv not found: pass --data-dir (the folder holding sst2/)")
    header, *rows = (source / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    by_label: dict[str, list[str]] = {}
    for row in rows:
        by_label.setdefault(row.rstrip("\n").rsplit("\t", 1)[-1], []).append(row)
    kept = [row for group in zip(*by_label.values()) for row in group][: args.train]
    target = args.out / "sst2"
    target.mkdir(parents=True, exist_ok=True)
    (target / "train.tsv").write_text(header + "".join(kept), encoding="utf-8")
    (target / "validation.tsv").write_bytes((source / "validation.tsv").read_bytes())
    print(f"wrote {len(kept)} training rows and the validation file to {target}")


if __name__ == "__main__":
    main()
