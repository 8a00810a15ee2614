"""Progressive freezing: the frozen depth grows during a run (`--freeze-schedule`, docs/progressive.md).

Schedules, in the depths of `--freeze N` (0 nothing, -1 the embeddings, N the embeddings + N layers), which
grow one block at a time in the order 0, -1, 1, 2, ..., L:
    linear:A-B        from depth A at step 0 to depth B, one block per equal share of the run (FreezeOut,
                      Composer's LayerFreezing); depth B holds for the last share
    K@S,K@S,...       explicit points: depth K from step S on (S a step count, or epochs: 1ep, 0.5ep); the
                      first point is at 0 (the start), depths and steps strictly increase
    auto[:N[:TOL]]    from --freeze N: every N steps (default 20) the lowest trainable block's mean gradient
                      norm over those steps is compared with the previous window's; a relative change below
                      TOL (default 0.1) means it stopped learning and it freezes; never past --max-freeze

When the depth grows, `Freezer.grow` does everything that depends on it: requires_grad and the no_grad
prefix (freezing.freeze), the optimizer (the frozen parameters leave their groups and their AdamW state
is dropped, so neither the update nor the weight decay can move them again), the frozen cache (grown from
the old one: only the newly frozen layers run, once per example) and the compiled graphs and DDP wrapper
(both bake in the trainable set, so they are built again).
"""

from __future__ import annotations

import gc
import math
import re
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from . import cache as frozen_cache
from . import distributed
from .errors import MinifreezeError
from .freezing import freeze
from .model import TrainablePart

AUTO_EVERY, AUTO_TOLERANCE = 20, 0.1
USAGE = "use linear:A-B, points K@STEP,K@STEP (steps or epochs: 1ep), or auto[:EVERY[:TOL]]"


def blocks(depth: int) -> int:
    """Frozen blocks of a depth (0 -> 0, -1 -> 1 (the embeddings), N -> N + 1): the order depths grow in."""
    return 0 if depth == 0 else 1 if depth == -1 else depth + 1


def depth(frozen_blocks: int) -> int:
    return 0 if frozen_blocks == 0 else -1 if frozen_blocks == 1 else frozen_blocks - 1


@dataclass(frozen=True)
class Schedule:
    text: str
    kind: str  # linear, points or auto
    start: int  # depth at step 0
    points: tuple = ()  # linear: (A, B); points: ((depth, "120" | "1.5ep"), ...)
    every: int = AUTO_EVERY
    tolerance: float = AUTO_TOLERANCE
    max_depth: int = 0  # auto only

    def resolve(self, steps_per_epoch: int, total_steps: int) -> list[tuple[int, int]]:
        """The fixed schedule as (step, depth) events after step 0, checked against the run's length."""
        if self.kind == "linear":
            a, b = self.points
            n = blocks(b) - blocks(a)
            events = [(round(k * total_steps / (n + 1)), depth(blocks(a) + k)) for k in range(1, n + 1)]
        else:
            events = [(_steps(when, steps_per_epoch), d) for d, when in self.points[1:]]
        steps = [0] + [s for s, _ in events]
        if any(b <= a for a, b in zip(steps, steps[1:])) or steps[-1] >= total_steps:
            raise MinifreezeError(
                f"--freeze-schedule {self.text}: its freeze steps {steps[1:]} must increase and stay below "
                f"the run's {total_steps} steps; train longer or freeze in fewer points"
            )
        return events


def _steps(when: str, steps_per_epoch: int) -> int:
    return round(float(when[:-2]) * steps_per_epoch) if when.endswith("ep") else int(when)


def parse(text: str | None, freeze_spec: str, max_freeze: int | None, num_layers: int) -> Schedule | None:
    """Read `--freeze-schedule` against the model (None without one); impossible schedules fail in one line."""
    if max_freeze is not None and not -1 <= max_freeze <= num_layers:
        raise MinifreezeError(f"--max-freeze {max_freeze}: must be in -1..{num_layers} for this model")
    if not text:
        if max_freeze is not None:
            raise MinifreezeError("--max-freeze bounds a --freeze-schedule; without one, use --freeze N")
        return None
    if not re.fullmatch(r"-?\d+", str(freeze_spec).strip()):
        raise MinifreezeError(
            f"--freeze-schedule grows a depth, but --freeze {freeze_spec} is not one (bitfit, random:P, "
            "regex: and head/top:K train other sets): use --freeze N or drop --freeze-schedule"
        )
    schedule = _read(text.strip(), int(freeze_spec), max_freeze, num_layers)
    depths = [schedule.start, schedule.max_depth] if schedule.kind == "auto" else _depths(schedule)
    for d in depths:
        if not -1 <= d <= num_layers:
            raise MinifreezeError(
                f"--freeze-schedule {text}: depth {d} is past the model's {num_layers} layers "
                f"(depths are -1..{num_layers})"
            )
    order = [blocks(d) for d in depths]
    if any(b <= a for a, b in zip(order, order[1:])):
        raise MinifreezeError(
            f"--freeze-schedule {text}: the depths must grow (in the order 0, -1, 1, 2, ...); "
            f"{' -> '.join(map(str, depths))} does not"
        )
    if max_freeze is not None and blocks(max(depths, key=blocks)) > blocks(max_freeze):
        raise MinifreezeError(f"--freeze-schedule {text} goes past --max-freeze {max_freeze}")
    return schedule


def _depths(schedule: Schedule) -> list[int]:
    if schedule.kind == "linear":
        return list(schedule.points)
    return [d for d, _ in schedule.points]


def _read(text: str, start: int, max_freeze: int | None, num_layers: int) -> Schedule:
    try:
        if text.startswith("linear:"):
            a, b = re.fullmatch(r"(-?\d+)-(-?\d+)", text[7:]).groups()
            return Schedule(text, "linear", int(a), (int(a), int(b)))
        if text == "auto" or text.startswith("auto:"):
            every, _, tol = text[5:].partition(":")
            every, tol = int(every or AUTO_EVERY), float(tol or AUTO_TOLERANCE)
            if every < 1 or not tol > 0:
                raise ValueError
            top = max_freeze if max_freeze is not None else num_layers - 1
            return Schedule(text, "auto", start, every=every, tolerance=tol, max_depth=top)
        points = tuple(_point(p) for p in text.split(","))
    except (ValueError, AttributeError):
        raise MinifreezeError(f"--freeze-schedule {text!r}: cannot read it; {USAGE}") from None
    if points[0][1] not in ("0", "0ep", "0.0ep"):
        raise MinifreezeError(
            f"--freeze-schedule {text}: the first point must be at step 0 (it is the starting depth), "
            f"e.g. 0@0,{text}"
        )
    return Schedule(text, "points", points[0][0], points)


def _point(text: str) -> tuple[int, str]:
    k, s = re.fullmatch(r"\s*(-?\d+)@(\d+|\d*\.?\d+ep)\s*", text).groups()
    return int(k), s


class AutoRule:
    """AutoFreeze's signal, simplified: is the lowest trainable block's gradient norm still changing?

    Every step adds that block's gradient norm (before clipping) to the window; every `every` steps the
    window's mean is kept. Once the block has two window means, it has stopped learning when the newer one
    differs from the older one by less than `tolerance` of it. The state is a plain dict that lives in the
    checkpointed Progress, so a resumed run decides exactly as the uninterrupted one.
    """

    def __init__(self, every: int, tolerance: float):
        self.every, self.tolerance = every, tolerance

    def update(self, state: dict, norm: float) -> bool:
        """Add one step's norm; True when the block should freeze now (the state then starts over). A
        non-finite norm (an fp16 step the grad scaler skips) is left out: it says nothing about learning."""
        if not math.isfinite(norm):
            return False
        window = state.setdefault("window", [])
        means = state.setdefault("means", [])
        window.append(norm)
        if len(window) < self.every:
            return False
        means.append(sum(window) / len(window))
        window.clear()
        if len(means) < 2:
            return False
        change = abs(means[-1] - means[-2]) / max(means[-2], 1e-12)
        if change >= self.tolerance:
            return False
        means.clear()  # the next block is judged on its own history
        return True


class Freezer:
    """The run's frozen depth and what the loop runs with at that depth (`trainable`, `prefix`, `scorer`,
    `cache`, `params`), rebuilt whenever the depth grows. With no schedule the depth never changes."""

    def __init__(self, schedule, model, optimizer, cache, make_cache, cfg, steps_per_epoch, total_steps):
        self.schedule, self.model, self.optimizer = schedule, model, optimizer
        self.cache, self.make_cache, self.cfg = cache, make_cache, cfg
        self.depth = depth(model.encoder.frozen_blocks)
        fixed = schedule is not None and schedule.kind != "auto"
        self.events = schedule.resolve(steps_per_epoch, total_steps) if fixed else []
        auto = schedule is not None and schedule.kind == "auto"
        self.rule = AutoRule(schedule.every, schedule.tolerance) if auto else None
        self.norm: float | None = None
        self.first_cache = cache  # computed from the loaded weights: later runs may reuse it, not the grown
        if schedule is not None and cfg.cache_frozen and cfg.frozen_dropout:  # refused now, not at a growth
            raise MinifreezeError(
                "--cache-frozen needs a deterministic frozen prefix, but --frozen-dropout keeps dropout in "
                "it: drop --frozen-dropout or --cache-frozen"
            )

    def wire(self, info: distributed.Dist, device: torch.device) -> None:
        """The suffix + head as one module (in DDP under torchrun), compiled with --compile."""
        self.info, self.device = info, device
        self.trainable = distributed.wrap(self.model, info, device)
        self.prefix, self.scorer = self.model.encoder.prefix, TrainablePart(self.model)
        if self.cfg.compile:  # compiled graphs bake in requires_grad: rebuilt by grow()
            self.trainable, self.prefix, self.scorer = map(
                torch.compile, (self.trainable, self.prefix, self.scorer)
            )
        self.params = [p for p in self.model.parameters() if p.requires_grad]  # what the clip sees

    def observe(self) -> None:
        """After backward, before clipping: the lowest trainable block's gradient norm (auto only)."""
        if self.rule is None:
            return
        block = self.model.encoder.blocks()[blocks(self.depth)]
        grads = [p.grad.detach().float().norm() for p in block.parameters() if p.grad is not None]
        self.norm = float(torch.stack(grads).norm()) if grads else 0.0

    def after_step(self, progress) -> None:
        """Grow the depth if the schedule says so after this step; the event goes into `progress`."""
        target = next((d for s, d in self.events if s == progress.step), None)
        if self.rule is not None and blocks(self.depth) < blocks(self.schedule.max_depth):
            stopped = self.rule.update(progress.freeze_signal, self.norm)
            if distributed.any_flag(stopped, self.info):  # every rank freezes together
                target = depth(blocks(self.depth) + 1)
        if target is None:
            return
        self.grow(target)
        progress.freeze_events.append({"step": progress.step, "depth": target})
        if self.info.is_main:
            trains = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            tqdm.write(f"step {progress.step}: frozen depth {target} ({trains:,} parameters still train)")
        if self.cfg.compile:
            torch._dynamo.reset()  # no graph of the old trainable set may be reused
        self.wire(self.info, self.device)

    def replay(self, progress) -> None:
        """--resume: come back at the checkpoint's depth (before its optimizer state is loaded)."""
        for event in progress.freeze_events:
            self.grow(event["depth"])

    def grow(self, new_depth: int) -> None:
        freeze(self.model, str(new_depth), frozen_dropout=self.cfg.frozen_dropout, seed=self.cfg.seed)
        self.depth = new_depth
        frozen = {id(p) for p in self.model.parameters() if not p.requires_grad}
        for group in self.optimizer.param_groups:  # groups stay (maybe empty): the scheduler counts them
            group["params"] = [p for p in group["params"] if id(p) not in frozen]
        for p in [p for p in self.optimizer.state if id(p) in frozen]:
            del self.optimizer.state[p]
        for p in self.model.parameters():
            if id(p) in frozen:
                p.grad = None
        if self.cfg.cache_frozen:  # fp32: grown from the old cache; else computed again, as a direct one
            old = self.cache
            self.cache = self.make_cache(grow_from=old if self.cfg.cache_dtype == "fp32" else None)
            if old is not None and old is not self.first_cache:  # its weights were this run's: no reuse
                frozen_cache.REGISTRY.drop(old.store)
        gc.collect()  # an old DDP wrapper's hooks go with it
