"""`--cache-frozen auto`: build the cache only where it saves prefix work.

Without the cache the frozen prefix runs over every training example once per epoch and over the
validation set once per evaluation; with it, once per example (the build), after which an epoch or an
evaluation reads rows instead. So the cache pays when the prefix would otherwise make clearly more than
one pass over the data:

    passes = (epochs x n_train + evaluations x n_validation) / (n_train + n_validation) >= MIN_PASSES

MIN_PASSES = 1.5 leaves room for the build's own costs (hashing each example, copying rows out), which
docs/cache.md measures next to the prefix time they replace. A run with no deterministic frozen prefix
(nothing frozen at the bottom, or --frozen-dropout) never caches.
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
        use = passes >= MIN_PASSES
        why = f"the prefix would make {passes:.1f} passes over the data without it (caches from {MIN_PASSES})"
    say(f"--cache-frozen auto: {'on' if use else 'off'} ({why})")
    return dataclasses.replace(cfg, cache_frozen=use)
