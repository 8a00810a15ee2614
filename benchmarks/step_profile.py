"""Where one training step's time goes at a user's batch (issue 21): batch 16 x ~24 real tokens, 2 threads.

One full step as `minifreeze.train` takes it (forward, loss, backward, gradient clipping, AdamW, zero_grad)
on the real MiniLM, under `torch.profiler`; every op's self time is put in one of a few classes, so the
share that is not arithmetic (GEMMs and the element-wise math of the layers) stands out:

    gemm          aten::mm / addmm / bmm / SDPA's products: the FLOPs a limit counts
    elementwise   GELU, LayerNorm, softmax, adds and muls of the layers, forward and backward
    dropout       the random masks (bernoulli) and their products
    optimizer     AdamW's update, gradient norm and clipping
    memory        fills, copies and new tensors (zeroing the embedding's dense [vocab, H] gradient)
    other         the rest (views, autograd bookkeeping, indexing)

    python -m benchmarks.step_profile --depths 0,4

Writes benchmarks/results/<machine>/step_profile.{json,md}. Time it alone.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import load_ours, markdown_table, resolve_model_name, write_results
from minifreeze import freeze
from minifreeze.optim import make_optimizer

CLASSES = {
    "gemm": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product", "aten::matmul"),
    "dropout": ("aten::bernoulli", "aten::native_dropout", "aten::dropout"),
    "optimizer": ("aten::_fused_adamw", "aten::_foreach", "aten::linalg_vector_norm", "aten::clamp", "Optimizer"),
    "memory": ("aten::fill_", "aten::zero_", "aten::copy_", "aten::empty", "aten::zeros", "aten::clone",
               "aten::index_put", "aten::embedding_dense_backward", "aten::index_add", "aten::index_select",
               "aten::index_copy"),
    "elementwise": ("aten::gelu", "aten::native_layer_norm", "aten::_softmax", "aten::add", "aten::mul",
                    "aten::div", "aten::sub", "aten::tanh", "aten::sum", "aten::_log_softmax", "aten::nll_loss",
                    "aten::where", "aten::masked_fill", "aten::embedding", "aten::threshold"),
}  # fmt: skip


def classify(name: str) -> str:
    for cls, prefixes in CLASSES.items():
        if name.startswith(prefixes):
            return cls
    return "other"


def make_step(model, depth: int, batch_size: int, seed: int = 0):
    plan = freeze(model, depth)
    model.train()
    optimizer = make_optimizer(model, plan, 5e-5, 0.0)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(12, 36, (batch_size,), generator=g)  # ~24 real tokens on average
    length = int(lengths.max())
    vocab = model.config.vocab_size
    ids = torch.randint(min(1000, vocab // 2), vocab, (batch_size, length), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    labels = torch.randint(0, 2, (batch_size,), generator=g)
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        loss, _ = model.loss(ids * mask, mask, None, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, int(mask.sum())


def measure(model, depth: int, args) -> dict:
    step, real = make_step(model, depth, args.batch_size)
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_s = (time.perf_counter() - start) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    shares: dict[str, float] = {}
    top = []
    for event in prof.key_averages():
        shares[classify(event.key)] = shares.get(classify(event.key), 0.0) + event.self_cpu_time_total
        top.append((event.self_cpu_time_total, event.key))
    total = sum(shares.values())
    top.sort(reverse=True)
    return dict(
        depth=depth,
        step_ms=1e3 * step_s,
        real_tokens=real,
        shares={k: v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])},
        top_ops=[(name, t / total) for t, name in top[: args.top]],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="minilm (the bundled real one), bert-base, tiny")
    parser.add_argument("--depths", default="0,4", help="comma-separated frozen depths")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="steps timed, then profiled")
    parser.add_argument("--top", type=int, default=8, help="ops listed per depth")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="results root (default benchmarks/results)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        rows = []
        for depth in map(int, args.depths.split(",")):
            model = load_ours(resolve_model_name(args.model))  # fresh: freeze() once per model
            rows.append(measure(model, depth, args))
            print(rows[-1]["depth"], f"{rows[-1]['step_ms']:.1f} ms", rows[-1]["shares"], flush=True)
    finally:
        torch.set_num_threads(threads)
    folder = write_results("step_profile", rows, markdown(rows, args), root=args.out)
    print(f"wrote {folder / 'step_profile.md'}")
    return 0


def markdown(rows: list[dict], args) -> str:
    classes = [*CLASSES, "other"]
    body = [
        [
            r["depth"],
            f"{r['step_ms']:.1f}",
            r["real_tokens"],
            *(f"{r['shares'].get(c, 0):.1%}" for c in classes),
        ]
        for r in rows
    ]
    lines = markdown_table(
        ["frozen layers", "ms / step", "real tokens", *classes], "r" * (3 + len(classes)), body
    )
    for r in rows:
        lines += ["", f"Top ops at depth {r['depth']} (share of the step's self time):", ""]
        lines += markdown_table(["op", "share"], "lr", [[n, f"{s:.1%}"] for n, s in r["top_ops"]])
    lines += [
        "",
        f"{args.model}, batch {args.batch_size}, lengths 12-35 (~24 real tokens), {args.threads} threads; "
        f"{args.steps} steps timed without the profiler (ms / step), then {args.steps} profiled (shares).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
