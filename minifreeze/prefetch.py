"""Download models and datasets into the Hugging Face cache now, so that later runs work offline.

    python -m minifreeze.prefetch bert-base-uncased roberta-base sst2 cola nyu-mll/glue:mrpc
    HF_HUB_OFFLINE=1 python -m minifreeze.train --model bert-base-uncased --dataset sst2   # later, offline

Each name is fetched exactly the way the commands fetch it (the same files, the same cache), so what this
finds is what a run will find: a model id gets its config, weights and tokenizer files; a named dataset
(sst2, cola, rotten_tomatoes, amazon_polarity, imdb) or a Hub dataset id (ORG/NAME, ORG/NAME:CONFIG)
gets its parquet files, read once to check them. `--dataset` forces a name to be read as a dataset.
Set HF_HUB_CACHE to fill another cache (e.g. one to copy to an offline machine).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import data, hub
from .errors import MinifreezeError
from .tokenizer import load_tokenizer


def fetch_model(name: str) -> str:
    folder = hub.resolve_model(name)
    load_tokenizer(name)  # the tokenizer files come from the same snapshot
    return f"model {name}: {folder}"


def fetch_dataset(name: str) -> str:
    os.environ.pop(data.DATA_DIR_ENV, None)  # the Hub only: a local data dir would hide a missing copy
    dataset = data.load_dataset(name)
    test = f", {len(dataset.test):,} test" if dataset.test is not None else ""
    return f"dataset {name}: {len(dataset.train):,} train, {len(dataset.validation):,} validation{test}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minifreeze.prefetch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("names", nargs="+", help="model ids, named datasets or Hub dataset ids")
    parser.add_argument("--dataset", action="append", default=[], help="fetch NAME as a dataset")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.names + args.dataset:
        is_dataset = name in args.dataset or name in data.NAMED_DATASETS
        is_dataset |= ":" in name and name != hub.BUNDLED_MODEL  # ORG/NAME:CONFIG
        try:
            print(fetch_dataset(name) if is_dataset else fetch_model(name))
        except MinifreezeError as err:
            failed += 1
            print(f"error: {name}: {err}", file=sys.stderr)
    return 1 if failed else 0


def entry() -> None:
    """The console script minifreeze-prefetch."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
