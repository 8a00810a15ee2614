"""Fine-tune a classifier with layer freezing: `python -m minifreeze.train --help`.

One function, `train(cfg)`, read top to bottom: run folder, data, model, freeze plan, frozen cache,
optimizer, compile, loop, summary; the named pieces it calls follow it (the batches across epochs, the
validation, the writes after an evaluation). No callbacks, no trainer object. The frozen prefix costs
nothing in backward because the encoder runs it under torch.no_grad() (see encoder.py); this file never
has to think about it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import batching, cli, data, distributed, hub, problem, progressive, pydata, run_options, runlog
from . import cache as frozen_cache
from .delta import best_model_writer
from .encoder import PACKINGS
from .errors import MinifreezeError
from .freezing import freeze
from .model import load_model
from .optim import make_optimizer, make_scheduler
from .resume import Progress, load_state, save_state
from .run_folder import RunFolder, disk_error, disk_errors
from .runtime import Laps, autocast, pick_device, write_json
from .scoring import evaluate_split, heldout_parts
from .task import task_record
from .token_cache import encoder_for
from .tokenizer import load_tokenizer


@dataclass(frozen=True)
class TrainConfig:
    model: str = cli.option(hub.DEFAULT_MODEL, "Hub id, local folder, or bundled:minilm")
    dataset: str = cli.option(
        "sst2",
        "named dataset (sst2, rotten_tomatoes, cola, imdb, amazon_polarity), "
        "Hub dataset id, data file or folder",
    )
    data_dir: str | None = cli.option(
        None, "folder with <dataset>/train.tsv etc. (default: $MINIFREEZE_DATA_DIR)"
    )
    text_column: str | None = cli.option(None, "text column (default: sentence/text/content/review)")
    text_pair_column: str | None = cli.option(None, "second text column, for pair tasks")
    label_column: str | None = cli.option(
        None, "label column (default: label); multi-label also takes several 0/1 columns: a,b,c"
    )
    problem_type: str = cli.option(
        problem.SINGLE,
        "what a label is (docs/tasks.md): one class (cross-entropy), a number (regression: MSE on one "
        "output) or a set of classes (multi_label: BCE per class); transformers' names also accepted",
        choices=problem.CHOICES,
    )
    threshold: float = cli.option(0.5, "multi-label: a class is predicted when its probability is above this")
    class_weights: str | None = cli.option(
        None,
        "single-label: weigh the cross-entropy per class: auto (w_c = N / (C * n_c), inverse class "
        "frequency, mean weight 1 per training example) or w1,w2,... in class-id order",
    )
    label_smoothing: float = cli.option(0.0, "single-label: cross-entropy label smoothing, 0 <= F < 1")
    validation_split: str | None = cli.option(
        None, "split to evaluate on when the data has several, e.g. validation_matched (default: validation)"
    )
    freeze: str = cli.option("2", "what to freeze: N (-1..L), head, top:K, bitfit, random:P, regex:PATTERN")
    freeze_schedule: str | None = cli.option(
        None,
        "grow the frozen depth while training (docs/progressive.md): linear:A-B, points K@STEP,K@STEP "
        "(steps or epochs: 2@1ep), or auto[:EVERY[:TOL]] (from --freeze N, by each layer's gradient norm)",
    )
    max_freeze: int | None = cli.option(None, "deepest depth --freeze-schedule auto freezes (default: L - 1)")
    lr_decay: float = cli.option(
        1.0, "layer-wise lr decay F: layer l of L gets lr * F^(L-l), embeddings F^(L+1), head lr"
    )
    frozen_dropout: bool = cli.option(
        False, "keep dropout in frozen layers (as requires_grad=False freezing does)"
    )
    pooling: str = cli.option(
        "cls", "sentence vector: the family's [CLS] head, or a masked mean", choices=("cls", "mean")
    )
    fused_head: str = cli.option(
        "auto", "fused masked-mean + cross-entropy (mean pooling only)", choices=("auto", "on", "off")
    )
    epochs: int = cli.option(2, "passes over the training set", aliases=("--num-train-epochs",))
    max_steps: int | None = cli.option(None, "stop after this many optimizer steps (overrides epochs)")
    batch_size: int = cli.option(32, "examples per optimizer step, over all devices")
    grad_accum: int = cli.option(1, "micro-batches per step (batch_size must divide evenly)")
    lr: float = cli.option(5e-5, "peak learning rate", aliases=("--learning-rate",))
    weight_decay: float = cli.option(0.01, "AdamW weight decay (never on biases and LayerNorm weights)")
    warmup: str = cli.option(
        "0.06",
        "warm-up: N steps, a fraction of all steps (0.1), or epochs (1ep); --warmup-ratio R (0 <= R < 1) "
        "is Trainer's spelling of a fraction",
        aliases=("--warmup-steps", ("--warmup-ratio", run_options.warmup_ratio)),
    )
    schedule: str = cli.option(
        "linear",
        "after warm-up: linear or cosine decay to zero, or constant",
        choices=("linear", "cosine", "constant"),
    )
    max_grad_norm: float = cli.option(1.0, "clip the gradient norm (0 = off)")
    max_length: int = cli.option(128, "truncate texts to this many tokens")
    train_size: int | None = cli.option(
        None,
        "stratified, nested training subset of N examples (default: the whole training set, as 0 is; the "
        "no-argument demo: 4000)",
    )
    data_seed: int = cli.option(0, "seed of subsets and splits (keep fixed across seeds to compare runs)")
    seed: int = cli.option(0, "seed of head init, data order and dropout")
    sampler: str = cli.option(
        "length", "training batches: length-grouped (less padding) or random", choices=("length", "random")
    )
    eval_every: str = cli.option(
        "1ep",
        "evaluate (and save the best model) every N steps, a fraction of all steps (0.1), epochs (0.5ep), "
        "or none: only after the last step",
        aliases=("--eval-steps",),
    )
    eval_batch_size: int = cli.option(64, "examples per evaluation batch")
    heldout: float = cli.option(
        0.0,
        "report on data the selection never saw: hold out this fraction of the validation set (stratified, "
        "the same examples in every run); the best model is chosen on the rest, and every evaluation also "
        "logs the held-out part as heldout_<metric> (0 = select and report on all of it)",
    )
    metric: str | None = cli.option(
        None,
        "metric that picks the best model (default: accuracy; regression pearson, multi-label f1_micro): "
        "also f1, mcc, f1_macro, spearman, mse, exact_match, or loss (lowest wins, as for mse)",
    )
    patience: int = cli.option(0, "stop after this many evaluations without improvement (0 = never)")
    amp: str = cli.option(
        "off",
        "autocast: bf16 (CPU and CUDA) or fp16 (CUDA, with grad scaling)",
        choices=("off", "bf16", "fp16"),
    )
    compile: bool = cli.option(False, "torch.compile the model after freezing")
    packing: str = cli.option(
        "auto",
        "run the layers on the real tokens only (padding costs no GEMM): auto packs a batch whose padding "
        "pays for it (docs/internals.md); compiled graphs stay padded",
        choices=PACKINGS,
    )
    cache_frozen: bool | str = cli.option(
        False,
        "run the frozen prefix once per example and train on its cached output (docs/cache.md); auto: "
        "only where it pays (>= 1.5 prefix passes over the data, or 1 with half the layers frozen)",
        or_auto=True,
    )
    cache_tokens: bool = cli.option(
        False,
        "keep tokenized splits under the cache dir and reuse them (on with --cache-frozen; docs/cache.md)",
    )
    cache_dtype: str = cli.option(
        "fp32", "storage dtype of the frozen cache (fp32 is exact)", choices=tuple(frozen_cache.DTYPES)
    )
    cache_dir: str | None = cli.option(
        None, "frozen cache folder (default: $MINIFREEZE_CACHE or ~/.cache/minifreeze; none = memory only)"
    )
    cache_max_gb: float = cli.option(
        frozen_cache.DEFAULT_MAX_GB, "hold the frozen cache in memory up to this size, else memory-map it"
    )
    device: str = cli.option("auto", "cpu, cuda, cuda:N, or auto")
    threads: int | None = cli.option(None, "CPU threads for torch (default: torch's choice)")
    out: str | None = cli.option(
        None, "run folder (default: runs/<dataset>-<freeze>-<time>)", aliases=("--output-dir",)
    )
    overwrite: bool = cli.option(
        False, "replace an existing run folder (kept aside until the new run's first checkpoint)"
    )
    resume: bool = cli.option(
        False,
        "continue the run in --out from its last checkpoint, with its saved options: only --progress, "
        "--threads, --device, --cache-dir, --cache-max-gb, --log-every and --report-to may differ; a "
        "finished run is left as it is",
    )
    progress: bool = cli.option(True, "show progress bars (without a terminal: a plain line now and then)")
    log_every: int = cli.option(
        50,
        "every N optimizer steps, a line in DIR/train_log.jsonl: window-mean loss, lr, grad norm, samples/s "
        "(docs/logging.md; 0 = off)",
        aliases=("--logging-steps",),
    )
    report_to: str = cli.option(
        "none",
        "also write the train and validation numbers to DIR/tensorboard/ (needs the tensorboard package)",
        choices=("none", "tensorboard"),
    )
    save: str = cli.option(
        "model",
        "what to write of the best model: model (DIR/model, full Hub layout), delta (DIR/delta, only what "
        "trained, see docs/deltas.md) or both",
        choices=("model", "delta", "both"),
    )


class StopRequested:
    """SIGINT / SIGTERM set a flag; the loop saves a checkpoint at the next step and exits cleanly (the
    command then exits with 128 + the signal, as shells expect)."""

    def __init__(self):
        self.signal: int | None = None
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def handle(self, signum, frame):
        if self.signal is not None:  # a second signal stops at once
            raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)
        self.signal = signum

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def train(cfg: TrainConfig, train_data=None, eval_data=None) -> dict:
    """Run one fine-tune and return its summary. `--threads` holds for this run only: sweeps and tests call
    train() in-process, and a thread count left behind would silently change every later measurement.
    `train_data` / `eval_data`: examples from Python instead of `cfg.dataset` (lists of tuples or dicts, a
    DataFrame, a datasets.Dataset: docs/own_data.md); the run then records its dataset as "python"."""
    if train_data is not None or eval_data is not None:
        cfg = dataclasses.replace(cfg, dataset=pydata.NAME)
    threads = torch.get_num_threads()
    finished = False
    try:
        with ExitStack() as stack:  # _train puts the run folder in: unlocked (a failed start undone) here
            summary = _train(cfg, stack, (train_data, eval_data))
        finished = True
        return summary
    finally:
        torch.set_num_threads(threads)
        distributed.teardown(run_finished=finished)  # once _train's frame, and its DDP module, is gone


def default_out(cfg: TrainConfig) -> str:
    return cfg.out or f"runs/{Path(cfg.dataset).name}-freeze{cfg.freeze}-{time.strftime('%Y%m%d-%H%M%S')}"


def _train(cfg: TrainConfig, stack: ExitStack, python_data: tuple = (None, None)) -> dict:
    started = time.time()
    # ---------------------------------------------------------------- options, device, run folder, seeds
    # Nothing is written before data, model and freeze plan have loaded: a typo costs no old run.
    run_options.check(cfg)
    kind, metric = problem.training_options(cfg)  # --problem-type and what picks the best checkpoint
    info, device_name = distributed.setup(cfg.device)  # one process, or one of torchrun's ranks
    device = pick_device(device_name)
    autocast(cfg.amp, device)  # refuses --amp fp16 on CPU now rather than at the first step
    say = tqdm.write if info.is_main else (lambda *args, **kwargs: None)  # only rank 0 talks and writes
    out = Path(distributed.gather(default_out(cfg) if info.is_main else None, info)[0])
    folder = stack.enter_context(RunFolder(out, cfg.resume, cfg.overwrite, active=info.is_main))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    # ---------------------------------------------------------------- data
    laps = Laps()  # summary.json "timings": where the wall time went
    dataset, train_split = load_training_data(cfg, *python_data)
    laps.lap("data")
    tokenizer = load_tokenizer(cfg.model)
    max_length = tokenizer.capped_length(cfg.max_length)  # longer would index past the positions (warns)
    encode = encoder_for(cfg)  # --cache-tokens: tokenized once per split and tokenizer
    train_set = encode(train_split, tokenizer, max_length)
    eval_set = encode(dataset.validation, tokenizer, max_length)
    laps.lap("tokenize")
    baseline = problem.baseline(kind, train_split.labels, dataset.validation.labels)
    parts = heldout_parts(dataset.validation.labels, cfg.heldout)  # (selection, held out) or None
    say(
        f"data: {dataset.name}: {len(train_set):,} train / {len(eval_set):,} validation examples, "
        f"{dataset.num_labels} labels ({problem.BASELINE[kind]} {baseline:.3f})"
        + (f"; selection on {len(parts[0]):,}, {len(parts[1]):,} held out" if parts else "")
    )

    # ---------------------------------------------------------------- model
    model = load_model(
        cfg.model,
        id2label=dataset.id2label,
        pooling=cfg.pooling,
        fused_head=cfg.fused_head,
        reinit_head="mismatch",
    )
    if model.config.vocab_size < tokenizer.vocab_size:
        raise MinifreezeError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{model.config.vocab_size}: tokenizer and model do not belong together"
        )
    model.to(device)
    model.encoder.packing = cfg.packing
    model.task = task_record(cfg, dataset, tokenizer)  # saved with the model; predict and evaluate read it
    model.head.criterion = problem.training_loss(kind, cfg, train_split.labels, dataset.id2label)

    # ---------------------------------------------------------------- freeze plan
    schedule = progressive.parse(cfg.freeze_schedule, cfg.freeze, cfg.max_freeze, len(model.encoder.layers))
    plan = freeze(
        model, schedule.start if schedule else cfg.freeze, frozen_dropout=cfg.frozen_dropout, seed=cfg.seed
    )
    say(
        plan.summary()
        + (f"\nfreeze schedule {schedule.text}: starts at depth {schedule.start}" if schedule else "")
    )
    model.trained_names = set(plan.trainable)  # DIR/last keeps these when a schedule freezes them later
    laps.lap("model")

    # ---------------------------------------------------------------- frozen cache
    cache = None
    splits = {"train": train_set, "validation": eval_set}
    cfg = frozen_cache.resolve_auto(cfg, plan, schedule, splits, say)  # --cache-frozen auto: on or off
    if cfg.cache_frozen and (schedule is None or plan.prefix_blocks):  # else from the first freeze on
        cache = build_cache(cfg, model, splits, tokenizer.pad_id, device)  # the prefix, once per example
        say(cache.report())
    laps.lap("cache_build")

    # ---------------------------------------------------------------- optimizer and schedule
    micro_batch = cfg.batch_size // cfg.grad_accum
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    warmup, eval_every = run_options.check_steps(cfg, steps_per_epoch, total_steps)
    optimizer = make_optimizer(model, plan, cfg.lr, cfg.weight_decay, lr_decay=cfg.lr_decay)
    scheduler = make_scheduler(optimizer, total_steps, warmup, cfg.schedule)
    rebuild = partial(build_cache, cfg, model, splits, tokenizer.pad_id, device)
    freezer = progressive.Freezer(
        schedule, model, optimizer, cache, rebuild, cfg, steps_per_epoch, total_steps
    )
    # fp16 needs loss scaling on CUDA; for every other run the scaler is off and passes everything through
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16" and device.type == "cuda")
    trained = (model, optimizer, scheduler, scaler)  # what a checkpoint holds, with the progress
    save_best = best_model_writer(cfg.save, plan, out, base=cfg.model)  # --save model|delta|both
    progress = Progress()  # the loop's whole state: checkpoints save it, --resume reads it back
    # Everything checked: the run folder becomes this run's (locked; an old run moved aside).
    folder.begin(None if cfg.resume else {**dataclasses.asdict(cfg), "out": str(out)})
    distributed.gather(None, info)  # other ranks read DIR/last only once rank 0 has locked and repaired it
    saved_step = None  # the step DIR/last holds
    if cfg.resume:
        progress = load_state(out / "last", *trained, before_optimizer=freezer.replay)
        saved_step = progress.step
        folder.resumed_at(progress.step)
        say(f"resumed at step {progress.step} (epoch {progress.epoch})")

    # ---------------------------------------------------------------- compile and data parallelism
    # What trains (suffix + head + loss) is one module, wrapped in DDP under torchrun; the frozen prefix
    # (or its cache) runs before it, under no_grad, so DDP never sees the frozen parameters.
    # Evaluation runs the same path without DDP (it needs no gradient sync) and without labels (logits).
    # The freezer holds these modules (and the cache): a freeze schedule changes them when the depth grows.
    freezer.wire(info, device)

    def batch_loss(batch: batching.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(cfg.amp, device):
            if freezer.cache:
                hidden = freezer.cache.hidden("train", batch)
            elif model.encoder.frozen_blocks:
                hidden = freezer.prefix(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            else:
                hidden = None  # nothing frozen at the bottom: the whole encoder trains
            return freezer.trainable(
                hidden, batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.labels
            )

    log = runlog.RunLog(cfg, out, info, progress, total_steps, steps_per_epoch)  # bars, logs, TensorBoard
    evaluate = partial(
        validation_metrics, model, freezer, eval_set, parts, tokenizer.pad_id, cfg, device, log
    )
    evaluate, save = laps.timed("evaluation", evaluate), laps.timed("checkpoint_writes", log_and_save)

    # ---------------------------------------------------------------- loop
    laps.lap("setup")  # optimizer, run folder, resume, compile and DDP wiring
    model.train()
    stop = StopRequested()
    say(log.banner(model, plan, device, (len(train_set), len(eval_set))))
    best_metrics = None  # the best evaluation's metrics, once this process has seen it
    reason = progress.done_reason(total_steps, cfg.patience)  # a resumed run may have nothing left to do
    try:
        for epoch, done, indices in epoch_batches(train_set, cfg, progress) if reason is None else ():
            step_start = time.perf_counter()
            loss_sum = 0.0
            mine = distributed.shard(indices, info)
            local = mine or indices[:1]  # a rank with no example still syncs; its stand-in counts zero
            for start in range(0, len(local), micro_batch):
                part = local[start : start + micro_batch]
                batch = batching.collate(train_set, part, tokenizer.pad_id, 8).to(device)
                loss, _ = batch_loss(batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(progress.step + 1, f"the training loss is {loss.item()}")
                weight = distributed.loss_weight(len(part), len(indices), info) * (len(mine) > 0)
                scaler.scale(loss * weight).backward()
                loss_sum += loss.item() * weight / info.world_size
                progress.real_tokens += batch.num_real_tokens
                progress.padded_tokens += batch.num_padded_tokens
            scaler.unscale_(optimizer)
            freezer.observe()  # --freeze-schedule auto reads the gradients here
            grad_norm = runlog.clip_gradients(freezer.params, cfg.max_grad_norm, log.due(progress.step + 1))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            loss_sum = distributed.all_sum([loss_sum], info)[0]
            stop_now = distributed.any_flag(stop.signal is not None, info)
            progress.took_step(epoch, done, len(indices), time.perf_counter() - step_start)
            freezer.after_step(progress)  # grows the frozen depth when the schedule says so
            lr = scheduler.get_last_lr()[0]
            log.step(progress, loss_sum, lr, grad_norm)  # DIR/train_log.jsonl every --log-every steps
            if progress.step % eval_every == 0 or progress.step >= total_steps or stop_now:
                result = evaluate(progress.step)
                epochs = epoch + done / steps_per_epoch
                record = {"step": progress.step, "epoch": epochs, "train_loss": loss_sum, "lr": lr, **result}
                record |= {"freeze_depth": freezer.depth, "wall_seconds": time.time() - started}
                improved = save(folder, trained, progress, record, metric, save_best)
                best_metrics = result if improved else best_metrics
                log.evaluated(record)
                saved_step = progress.step
                say(evaluation_line(progress.step, result, improved, problem.SUMMARY[kind]))
            reason = progress.done_reason(total_steps, cfg.patience)
            if reason is None and stop_now:
                reason = f"stopped by signal {stop.signal}: resume with --resume"
            if reason is not None:
                break
    except FloatingPointError as err:
        raise divergence(err, out, saved_step, progress.best_step, cfg) from None
    except OSError as err:  # the loop's only disk writes are to the run folder
        raise disk_error(out, err) from None
    finally:
        log.close()
        stop.restore()

    # ---------------------------------------------------------------- summary
    laps.lap("loop")
    best_metrics = best_metrics or best_logged(out / "metrics.jsonl", metric)  # resumed past the best
    real, padded = distributed.all_sum([progress.real_tokens, progress.padded_tokens], info)
    summary = {
        "metrics": {k: best_metrics[k] for k in problem.SUMMARY[kind]}  # and --heldout's, if any
        | {f"heldout_{k}": best_metrics[f"heldout_{k}"] for k in problem.SUMMARY[kind] if parts},
        "confusion_matrix": best_metrics.get("confusion_matrix"),  # None for regression and multi-label
        "best_metric": progress.best,
        "metric": metric,
        "problem_type": kind,
        "best_step": progress.best_step,
        "steps": progress.step,
        "stopped": reason,
        "signal": stop.signal if reason.startswith("stopped by signal") else None,
        # a signal during the last step's evaluation or after it: the run is complete, the caller stops
        "late_signal": None if reason.startswith("stopped by signal") else stop.signal,
        "out": str(out),
        "majority_baseline": baseline,
        "train_samples_per_second": progress.samples_per_second,
        "real_token_fraction": real / max(padded, 1),
        "world_size": info.world_size,
        "trainable_params": plan.trainable_params,
        "total_params": plan.total_params,
        "freeze": cfg.freeze,
        "prefix_blocks": plan.prefix_blocks,
        "freeze_schedule": cfg.freeze_schedule,
        "freeze_events": progress.freeze_events,  # [{"step": s, "depth": d}]: from step s on, depth d
        "cache": freezer.cache.stats if freezer.cache else None,
        "compiled_graphs": compiled_graph_count() if cfg.compile else 0,
        "packing": cfg.packing,
        "dataset": dataset.name,
        "train_examples": len(train_set),
        "wall_seconds": time.time() - started,
        "timings": laps.report(),  # seconds: data, tokenize, model, cache_build, setup, train_steps, ...
    }
    if info.is_main:
        with disk_errors(out):
            write_json(out / "summary.json", summary)
        print_closing_table(summary, out)
    return summary


def load_training_data(cfg: TrainConfig, train_data=None, eval_data=None) -> tuple[data.Dataset, data.Split]:
    """The dataset (`cfg.dataset`, or examples given in Python: pydata.py), and its training split cut to
    the stratified `--train-size` subset (nested across sizes)."""
    dataset = pydata.dataset(cfg, train_data, eval_data)
    if dataset is None:
        dataset = data.load_dataset(
            cfg.dataset,
            data_dir=cfg.data_dir,
            text_column=cfg.text_column,
            label_column=cfg.label_column,
            text_pair_column=cfg.text_pair_column,
            split_seed=cfg.data_seed,
            validation_split=cfg.validation_split,
            problem_type=problem.resolve(cfg.problem_type),
        )
    train_split = dataset.train
    if cfg.train_size and cfg.train_size < len(train_split):
        keep = data.stratified_subset(train_split.labels, cfg.train_size, cfg.data_seed)
        train_split = train_split.select(keep, f"{train_split.source} [{cfg.train_size} stratified]")
    return dataset, train_split


def build_cache(
    cfg: TrainConfig, model, splits: dict, pad_id: int, device, grow_from=None
) -> frozen_cache.FrozenCache:
    """The frozen prefix's output for every example (docs/cache.md), computed under the run's autocast
    (`grow_from`: a shallower cache to grow, see progressive.py)."""
    with autocast(cfg.amp, device):
        return frozen_cache.build(
            model,
            splits,
            pad_id=pad_id,
            batch_size=cfg.eval_batch_size,
            device=device,
            dtype=cfg.cache_dtype,
            cache_dir=cfg.cache_dir,
            max_gb=cfg.cache_max_gb,
            spec=cfg.freeze,
            grow_from=grow_from,
        )


def epoch_batches(
    train_set: data.EncodedSplit, cfg: TrainConfig, start: Progress
) -> Iterator[tuple[int, int, list[int]]]:
    """(epoch, batches of it done with this one, indices) for each global batch from where `start` stands,
    epoch after epoch for as long as the loop asks. An epoch's batches are a function of (seed, epoch)
    alone, so a resumed run goes on mid-epoch with exactly the batches the uninterrupted run had."""
    epoch, skip = start.epoch, start.batch_in_epoch
    while True:
        if cfg.sampler == "length":
            batches = batching.length_grouped_batches(train_set.lengths, cfg.batch_size, cfg.seed, epoch)
        else:
            batches = batching.random_batches(len(train_set), cfg.batch_size, cfg.seed, epoch)
        for done, indices in enumerate(batches[skip:], start=skip + 1):
            yield epoch, done, indices
        epoch, skip = epoch + 1, 0


def validation_metrics(
    model, freezer, eval_set, parts, pad_id: int, cfg: TrainConfig, device, log: runlog.RunLog, step: int
) -> dict:
    """The validation metrics at `step`, through the one suffix path without labels (`freezer.scorer`: the
    TrainablePart outside DDP, which only syncs gradients). A NaN or inf logit or loss raises
    FloatingPointError, so that such an evaluation is never logged, saved or selected."""
    finite = []
    cache = freezer.cache

    def forward(batch: batching.Batch) -> torch.Tensor:
        hidden = cache.hidden("validation", batch) if cache else None  # None: the whole encoder runs
        logits = freezer.scorer(hidden, batch.input_ids, batch.attention_mask, batch.token_type_ids)
        finite.append(bool(torch.isfinite(logits).all()))
        tick()  # the eval bar
        return logits

    model.eval()
    with autocast(cfg.amp, device), log.evaluating(len(eval_set), cfg.eval_batch_size) as tick:
        result = evaluate_split(model, eval_set, pad_id, cfg.eval_batch_size, device, forward, parts=parts)
    model.train()
    if not (all(finite) and math.isfinite(result["loss"])):
        raise FloatingPointError(step, f"the evaluation loss is {result['loss']}")
    return result


def log_and_save(
    folder: RunFolder, trained: tuple, progress: Progress, record: dict, metric: str, save_best
) -> bool:
    """After an evaluation: count it in `progress`, then (rank 0) append `record` to metrics.jsonl, save the
    best model if it improved, and save DIR/last, in that order: a kill between any two writes resumes
    from DIR/last, which drops the log lines past it. True when this evaluation is the best so far."""
    improved = progress.evaluated(record[metric], metric in problem.LOWER_IS_BETTER)
    if folder.active:
        with open(folder.path / "metrics.jsonl", "a") as log:
            log.write(json.dumps({**record, "time": runlog.now()}) + "\n")
        if improved:
            save_best(trained[0])
        save_state(folder.path / "last", *trained, progress)
    folder.commit()  # an old run this one replaces can go now
    return improved


def evaluation_line(step: int, result: dict, improved: bool, shown: tuple[str, ...]) -> str:
    scores = "  ".join(f"{k} {result[k]:.4f}" for k in ("loss", *(k for k in shown if k != "loss")))
    return f"step {step}: {scores}" + ("  (best)" if improved else "")


def best_logged(metrics_log: Path, metric: str) -> dict:
    """The best evaluation in metrics.jsonl: a run resumed after its best evaluation did not see it."""
    records = [json.loads(line) for line in metrics_log.read_text().splitlines()]
    best = min if metric in problem.LOWER_IS_BETTER else max
    return best(records, key=lambda r: r[metric])


def divergence(err: FloatingPointError, out: Path, saved_step: int | None, best_step: int, cfg) -> Exception:
    """The one line for a NaN or inf loss: where it happened, what is kept on disk, what to change."""
    step, what = err.args
    kept = (
        f"{out}/last holds the last finite evaluation (step {saved_step}), {out}/model the best "
        f"(step {best_step})"
        if saved_step is not None
        else "no evaluation was finite, so nothing was saved"
    )
    amp_hint = " or --amp off" if cfg.amp != "off" else ""
    return MinifreezeError(
        f"training diverged at step {step} ({what}); {kept}; lower --lr (now {cfg.lr:g}){amp_hint}"
    )


def compiled_graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def print_closing_table(summary: dict, out: Path) -> None:
    rows = [
        ("best " + summary["metric"], f"{summary['best_metric']:.4f} (step {summary['best_step']})"),
        *((name, f"{value:.4f}") for name, value in summary["metrics"].items()),
        (problem.BASELINE[summary["problem_type"]], f"{summary['majority_baseline']:.4f}"),
        ("trainable params", f"{summary['trainable_params']:,} of {summary['total_params']:,}"),
        ("train samples/s", f"{summary['train_samples_per_second']:.1f}"),
        ("real-token fraction", f"{summary['real_token_fraction']:.2f}"),
        ("wall time", f"{summary['wall_seconds']:.1f} s"),
        ("stopped", summary["stopped"]),
        ("best model", str(out / "model" if (out / "model").exists() else out / "delta")),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))


PROG = "python -m minifreeze.train"
DESCRIPTION = (
    "Fine-tune a classifier with layer freezing. Exit status: 0 when the run is done (also for --resume of "
    "a finished run), 2 for bad input (one line on stderr), 128 + N when signal N (SIGINT 130, SIGTERM 143) "
    "stopped it after saving a checkpoint (continue with --out DIR --resume) or came as it finished. "
    "One run at a time per --out. "
    "With no arguments at all it runs the demo: the default model on a 4,000-example subset of SST-2 "
    "(--train-size 4000; otherwise the default is the whole training set), freeze 2, 2 epochs."
)
DEMO = ["--train-size", "4000"]  # the no-argument demo's only change to the defaults: a few minutes on a CPU


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(
            f"no arguments: the demo run, {' '.join(DEMO)} of sst2 (given any option, the default is all of it)"
        )
        argv = DEMO
    cfg = cli.parse(TrainConfig, argv, PROG, DESCRIPTION)
    if cfg.resume:  # a resumed run continues with the options it started with
        cfg = run_options.resumed(TrainConfig, vars(cli.given_only(TrainConfig, PROG, DESCRIPTION, argv)))
        done = run_options.finished(Path(cfg.out))
        if done is not None:
            print(
                f"{cfg.out} finished at step {done.get('steps')} ({done.get('stopped')}); nothing to resume"
            )
            return done
    summary = train(cfg)
    if summary["signal"]:
        raise cli.Stopped(
            f"stopped by signal {summary['signal']} at step {summary['steps']}, checkpoint saved; "
            f"continue with: {PROG} --out {summary['out']} --resume",
            summary["signal"],
        )
    if summary.get("late_signal"):  # a finished run the caller was asked to stop after
        raise cli.Stopped(
            f"stopped by signal {summary['late_signal']} after the last step: the run finished, "
            f"its results are in {summary['out']}",
            summary["late_signal"],
        )
    return summary


def entry() -> None:
    """The console script minifreeze-train: `main` as the command line runs it."""
    cli.run(main)


if __name__ == "__main__":
    cli.run(main)
