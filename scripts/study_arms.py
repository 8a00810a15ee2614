"""Arms from several sweeps in one table, paired run by run against the first arm.

    python scripts/study_arms.py --metric heldout_accuracy \
        "full=docs/study/headonly/runs.csv:0" "head=docs/study/headonly/runs.csv:head" \
        "head lr 1e-3=docs/study/headonly-lr1e-3/runs.csv:head"

An arm is LABEL=RUNS_CSV:FREEZE_SPEC: the finished runs of one spec in one sweep. A sweep has one learning
rate, so comparing a head trained at its own learning rate with full fine-tuning at the protocol's takes
two sweeps; their runs pair by seed and data subset as a sweep's own specs do (same subset, same data
order, same head initialisation), and the table is the sweep report's (minifreeze/sweep/report.py).

    python scripts/study_arms.py --metric crossfit_accuracy --sweep docs/study/grid/runs.csv

--sweep takes a whole sweep, every spec as it is; several are one grid run in parts (other train sizes or
data subsets, in other folders), and the tables are that grid's, paired against depth 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minifreeze import cli
from minifreeze.errors import MinifreezeError
from minifreeze.sweep.report import interval_tables, read_runs


def arm_rows(arm: str, metric: str) -> list[dict]:
    label, sep, source = arm.partition("=")
    path, colon, spec = source.partition(".csv:")  # a spec may hold colons itself: random:0.9, top:2
    path += ".csv"
    if not (sep and colon and label and spec):
        raise MinifreezeError(f"arm {arm!r}: write LABEL=RUNS_CSV:FREEZE_SPEC, e.g. full=runs.csv:0")
    rows = [r for r in read_runs(Path(path), [metric]) if r["freeze"] == spec]
    if not rows:
        raise MinifreezeError(f"arm {arm!r}: {path} has no finished run with freeze {spec}")
    return [row | {"freeze": label} for row in rows]


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arms", nargs="*", help="LABEL=RUNS_CSV:FREEZE_SPEC; the first is the reference")
    parser.add_argument("--sweep", action="append", default=[], help="a whole sweep's runs.csv (repeatable)")
    parser.add_argument(
        "--metric", default="heldout_accuracy", help="a runs.csv column (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if bool(args.arms) == bool(args.sweep):
        raise MinifreezeError(
            "give either arms (LABEL=RUNS_CSV:FREEZE_SPEC ...) or --sweep RUNS_CSV, not both"
        )
    if args.sweep:
        rows = [row for path in args.sweep for row in read_runs(Path(path), [args.metric])]
        lines = interval_tables(rows, args.metric)
    else:
        rows = [row for arm in args.arms for row in arm_rows(arm, args.metric)]
        lines = interval_tables(rows, args.metric, reference=rows[0]["freeze"])
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    cli.run(main)
