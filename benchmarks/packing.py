"""When does running the layers on the packed real tokens beat the padded batch? (issue 21)

For batches whose real-token fraction f (real tokens / B x T slots) is set by their lengths, one training
step (forward + backward of the trainable layers, the frozen prefix under no_grad, optimizer excluded) is
timed with `Encoder.packing = "off"` (padded) and `"on"` (packed), alternated, and the median ratio
packed / padded is reported per f and depth. The fraction where the ratio crosses 1 is what
`encoder.PACK_BELOW_REAL_FRACTION` ("auto") should be.
The last rows are real batches: SST-2 sentences cut the way training cuts them (length-grouped) and the
way the Trainer's collator does (random batches), so f there is what users get.

    python -m benchmarks.packing --model minilm --depths 0,4

Writes benchmarks/results/<machine>/packing.{json,md}. Time it alone.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchmarks.common import fmt, load_ours, markdown_table, resolve_model_name, write_results
from minifreeze import batching, freeze

FRACTIONS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5)


def lengths_for(fraction: float, batch_size: int, length: int, rng: np.random.Generator) -> list[int]:
    """Lengths between 2 and `length`, one of them `length`, with mean `fraction` x `length`."""
    target = fraction * length * batch_size
    lengths = np.full(batch_size, length)
    while lengths.sum() > target:
        i = rng.integers(1, batch_size)
        lengths[i] = max(2, lengths[i] - 1)
    return lengths.tolist()


def synthetic_batch(lengths: list[int], length: int, vocab: int, seed: int) -> batching.Batch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(1000, vocab // 2), vocab, (len(lengths), length), generator=g)
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    labels = torch.randint(0, 2, (len(lengths),), generator=g)
    real = int(mask.sum())
    return batching.Batch(ids * mask, mask, None, labels, torch.arange(len(lengths)), real, mask.numel())


def step_seconds(model, batches: list[batching.Batch], packing: str) -> float:
    """Seconds for one training step per batch (forward + backward), over all `batches`."""
    model.encoder.packing = packing
    start = time.perf_counter()
    for b in batches:
        loss, _ = model.loss(b.input_ids, b.attention_mask, b.token_type_ids, b.labels)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / len(batches)


def compare(model, batches, repeats: int) -> dict:
    step_seconds(model, batches[:2], "on"), step_seconds(model, batches[:2], "off")  # warm-up
    padded, packed = [], []
    for _ in range(repeats):  # alternated, so a slow spell hits both
        padded.append(step_seconds(model, batches, "off"))
        packed.append(step_seconds(model, batches, "on"))
    real = sum(int(b.attention_mask.sum()) for b in batches)
    slots = sum(b.attention_mask.numel() for b in batches)
    ratios = [p / q for p, q in zip(packed, padded)]
    return dict(
        real_fraction=real / slots,
        padded_ms=1e3 * statistics.median(padded),
        packed_ms=1e3 * statistics.median(packed),
        ratio=statistics.median(ratios),
        ratio_min=min(ratios),
        ratio_max=max(ratios),
    )


def real_batches(model, args, grouped: bool) -> list[batching.Batch]:
    from benchmarks.common import load_sentences

    encoded, pad_id, _ = load_sentences(
        "sst2", args.data_dir, model, args.real_max_length, args.real_examples
    )
    if grouped:
        chunks = batching.length_grouped_batches(encoded.lengths, args.batch_size, seed=0, epoch=0)
    else:
        chunks = batching.random_batches(len(encoded.labels), args.batch_size, seed=0, epoch=0)
    full = [c for c in chunks if len(c) == args.batch_size]
    picked = np.random.default_rng(0).choice(len(full), min(args.batches, len(full)), replace=False)
    return [batching.collate(encoded, full[i], pad_id, 8) for i in sorted(picked)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="minilm (the bundled real one), bert-base, tiny")
    parser.add_argument("--depths", default="0,4", help="comma-separated frozen depths")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=48, help="padded length of the synthetic batches")
    parser.add_argument("--fractions", default=",".join(map(str, FRACTIONS)), help="real-token fractions")
    parser.add_argument("--batches", type=int, default=8, help="batches per timing")
    parser.add_argument("--repeats", type=int, default=5, help="alternated timings per side (median kept)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--data-dir", default=None, help="folder with sst2/ for the real batches (else skipped)"
    )
    parser.add_argument("--real-examples", type=int, default=2000)
    parser.add_argument("--real-max-length", type=int, default=64)
    parser.add_argument("--out", default=None, help="results root (default benchmarks/results)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rows = []
    try:
        model = load_ours(resolve_model_name(args.model))
        model.train()
        for depth in map(int, args.depths.split(",")):
            freeze(model, depth)
            model.train()
            rng = np.random.default_rng(0)
            for fraction in map(float, args.fractions.split(",")):
                batches = [
                    synthetic_batch(
                        lengths_for(fraction, args.batch_size, args.length, rng),
                        args.length,
                        model.config.vocab_size,
                        seed,
                    )
                    for seed in range(args.batches)
                ]
                rows.append(
                    dict(
                        depth=depth,
                        batches=f"synthetic f={fraction}",
                        **compare(model, batches, args.repeats),
                    )
                )
                print(rows[-1], flush=True)
            if args.data_dir:
                for grouped in (True, False):
                    what = "SST-2, length-grouped" if grouped else "SST-2, random batches"
                    result = compare(model, real_batches(model, args, grouped), args.repeats)
                    rows.append(dict(depth=depth, batches=what, **result))
                    print(rows[-1], flush=True)
    finally:
        torch.set_num_threads(threads)
    folder = write_results("packing", rows, markdown(rows, args), root=args.out)
    print(f"wrote {folder / 'packing.md'}")
    return 0


def markdown(rows: list[dict], args) -> str:
    body = [
        [
            r["depth"],
            r["batches"],
            fmt(r["real_fraction"], ".3f"),
            fmt(r["padded_ms"]),
            fmt(r["packed_ms"]),
            f"{r['ratio']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f})",
        ]
        for r in rows
    ]
    header = [
        "frozen layers",
        "batches",
        "real fraction",
        "padded, ms/step",
        "packed, ms/step",
        "packed / padded",
    ]
    return "\n".join(
        markdown_table(header, "rllrrr", body)
        + [
            "",
            f"{args.model}, batch {args.batch_size}, synthetic length {args.length}, {args.batches} batches per "
            f"timing, {args.repeats} alternated timings per side (median, min-max of the ratio), "
            f"{args.threads} threads; forward + backward of a training step (no optimizer).",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
