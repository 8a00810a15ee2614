"""`--cache-frozen auto`: build the cache only where it saves prefix work.

Without the cache the frozen prefix runs over every training example once per epoch and over the
validation set once per evaluation; with it, once per example (the build), after which an epoch or an
evaluation reads rows instead. So the cache pays when the prefix would otherwise make clearly more than
one pass over the data:

    passes = (epochs x n_train + evaluations x n_validation) / (n_train + n_validation) >= MIN_PASSES

MIN_PASSES = 1.5 leaves room for the build's own costs (hashing each example, copying rows out). A deep
prefix (at least half of the layers) pays even at one pass, since the build runs it on length-sorted
batches more cheaply than training does: measured by benchmarks/cache_payoff.py (MiniLM, 2,000 SST-2
examples: at depth 4 of 6 one pass with the cache took 0.88 of the time without, three passes 0.76; at
depth 1 one pass 1.04, three passes 0.99). A run with no deterministic frozen prefix (nothing frozen at the
bottom, or --frozen-dropout) never caches.
"""

from __future__ import annotations

import dataclasses
import math

MIN_PASSES = 1.5


def prefix_passes(cfg, n_train: int, n_validation: int) -> float:
    """How many passes over train + validation the frozen prefix makes in this run without the cache."""
    from .. import run_options

    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    _, eval_every = run_options.check_steps(cfg, steps_per_epoch, total_steps)
    evaluations = total_steps // eval_every + (total_steps % eval_every > 0)  # the last step always evaluates
    epochs = total_steps / steps_per_epoch
    return (epochs * n_train + evaluations * n_validation) / max(n_train + n_validation, 1)


def resolve_auto(cfg, plan, schedule, splits: dict, say=print):
    """`cfg` with `cache_frozen` decided (True or False) where it says "auto", and the reason said once."""
    if cfg.cache_frozen != "auto":
        return cfg
    passes = prefix_passes(cfg, len(splits["train"]), len(splits["validation"]))
    if cfg.frozen_dropout or not (plan.prefix_blocks or schedule):
        use, why = False, "no deterministic frozen prefix to cache"
    else:
        deep = schedule is None and 2 * (plan.prefix_blocks - 1) >= plan.num_layers  # half the layers or more
        use = passes >= MIN_PASSES or (deep and passes >= 1)
        why = (
            f"the prefix would make {passes:.1f} passes over the data without it (caches from "
            f"{MIN_PASSES}, or from 1 when at least half of the layers are frozen)"
        )
    say(f"--cache-frozen auto: {'on' if use else 'off'} ({why})")
    return dataclasses.replace(cfg, cache_frozen=use)
