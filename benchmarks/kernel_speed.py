"""Speed and memory of the fused masked-mean + linear + cross-entropy op: eager reference vs
`torch.compile`d reference vs the Triton kernel, forward + backward (grads for hidden, weight, bias).

    python benchmarks/kernel_speed.py                       # both cases, threads=2, default dtypes
    python benchmarks/kernel_speed.py --cases bert --repeats 50

Cases: BERT-base head (B=32, T=128, H=768, C=2) and a large one (B=64, T=512, H=1024, C=2); the mask
keeps a random length per row (uniform in [T/8, T]), as padded batches do.

What is measured:
  * time: median of `--repeats` forward+backward steps after `--warmup` (CUDA: synchronised).
  * CUDA memory: `torch.cuda.max_memory_allocated` during one step, minus what was allocated before.
  * CPU memory, two numbers per implementation:
      - saved: bytes of the tensors autograd keeps between forward and backward
        (`torch.autograd.graph.saved_tensors_hooks`, storages deduplicated, the op's inputs excluded,
        since they exist anyway): the activation memory the op adds to a training step;
      - peak: the highest sum of live CPU allocations made during one forward+backward, from the
        profiler's memory timeline (`profile_memory=True`); it includes the [B, T, H] gradient of
        `hidden`, which every implementation must produce, so `peak - grad` is the op's own overhead.
The Triton kernel runs only on CUDA: this Triton has no CPU backend and its interpreter (numpy, one
block at a time) measures nothing about speed, so CPU rows compare eager vs compiled only.
Results go to benchmarks/results/<machine-tag>/kernel_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO))

from benchmarks.machine import command_line, load_average, write_results  # noqa: E402
from minifreeze.ops import HAS_TRITON, masked_mean_cross_entropy  # noqa: E402

CASES = {"bert": (32, 128, 768, 2), "large": (64, 512, 1024, 2)}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_inputs(B: int, T: int, H: int, C: int, dtype: torch.dtype, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(max(1, T // 8), T + 1, (B,), generator=g)
    return dict(
        hidden=torch.randn(B, T, H, generator=g).to(device, dtype).requires_grad_(),
        mask=(torch.arange(T)[None, :] < lengths[:, None]).to(device),
        weight=(torch.randn(C, H, generator=g) / H**0.5).to(device, dtype).requires_grad_(),
        bias=torch.zeros(C).to(device, dtype).requires_grad_(),
        labels=torch.randint(0, C, (B,), generator=g).to(device),
    )


def step(x: dict, impl: str) -> tuple[torch.Tensor, ...]:
    """One forward + backward; `autograd.grad` returns fresh gradients (no accumulation into .grad)."""
    loss = masked_mean_cross_entropy(x["hidden"], x["mask"], x["weight"], x["bias"], x["labels"], impl=impl)
    return torch.autograd.grad(loss, (x["hidden"], x["weight"], x["bias"]))


def time_ms(x: dict, impls: list[str], warmup: int, repeats: int, cuda: bool) -> dict[str, list[float]]:
    """Per-step times of each implementation, interleaved (a, b, a, b, ...) so that a change in machine
    load during the run hits every implementation alike and the ratios stay fair."""
    for impl in impls:
        for _ in range(warmup):
            step(x, impl)
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    for _ in range(repeats):
        for impl in impls:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(x, impl)
            if cuda:
                torch.cuda.synchronize()
            times[impl].append((time.perf_counter() - t0) * 1e3)
    return times


def saved_bytes(x: dict, impl: str) -> int:
    """Bytes autograd saves for backward beyond the inputs themselves (deduplicated by storage)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = masked_mean_cross_entropy(
            x["hidden"], x["mask"], x["weight"], x["bias"], x["labels"], impl=impl
        )
    inputs = {t.untyped_storage().data_ptr() for t in x.values()}
    del loss
    return sum(n for ptr, n in storages.items() if ptr not in inputs)


def cpu_peak_bytes(x: dict, impl: str) -> int | None:
    """Peak of live CPU allocations during one step, from the profiler's memory timeline (private API:
    returns None if this torch version lacks it)."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(
            activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
        ) as p:
            grads = step(x, impl)
            del grads
        timeline = p._memory_profile().timeline
    except Exception as err:  # noqa: BLE001 - a measurement we can do without; say so in the output
        print(f"  (cpu peak not measured: {err!r})")
        return None
    live = peak = 0
    for _, action, _, size in timeline:
        if action.name == "CREATE":
            live += size
        elif action.name == "DESTROY":
            live -= size
        peak = max(peak, live)
    return peak


def cuda_peak_bytes(x: dict, impl: str) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    grads = step(x, impl)
    torch.cuda.synchronize()
    del grads
    return torch.cuda.max_memory_allocated() - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="bert,large", help=f"comma-separated, from {list(CASES)}")
    parser.add_argument("--dtypes", default=None, help="default: float32 on CPU, float32,bfloat16 on CUDA")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--results-root", default=None, help="folder for <machine-tag>/ (default benchmarks/results)"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtypes = (args.dtypes or ("float32,bfloat16" if cuda else "float32")).split(",")
    impls = ["reference", "compiled"] + (["triton"] if cuda and HAS_TRITON else [])
    load_before = load_average()
    rows = []
    for case in args.cases.split(","):
        B, T, H, C = CASES[case]
        for dname in dtypes:
            x = make_inputs(B, T, H, C, DTYPES[dname], device)
            grad_bytes = x["hidden"].numel() * x["hidden"].element_size()
            first_s = {}
            for impl in impls:
                t0 = time.perf_counter()
                step(x, impl)  # first call: compiles (torch.compile, Triton JIT); timed separately
                first_s[impl] = time.perf_counter() - t0
            times = time_ms(x, impls, args.warmup, args.repeats, cuda)
            for impl in impls:
                row = dict(case=case, B=B, T=T, H=H, C=C, dtype=dname, device=device, impl=impl,
                           median_ms=statistics.median(times[impl]), min_ms=min(times[impl]),
                           repeats=len(times[impl]), first_call_s=first_s[impl],
                           saved_bytes=saved_bytes(x, impl), hidden_grad_bytes=grad_bytes)  # fmt: skip
                if cuda:
                    row["peak_bytes"] = cuda_peak_bytes(x, impl)
                else:
                    row["peak_bytes"] = cpu_peak_bytes(x, impl)
                rows.append(row)
                peak = row["peak_bytes"]
                print(f"{case:5s} {dname:8s} {impl:9s} {row['median_ms']:9.2f} ms  saved {row['saved_bytes'] / 2**20:7.3f} MiB"
                      f"  peak {'-' if peak is None else f'{peak / 2**20:8.2f}'} MiB  (first call {first_s[impl]:.1f} s)")  # fmt: skip
    for row in rows:
        eager = next(
            r
            for r in rows
            if r["case"] == row["case"] and r["dtype"] == row["dtype"] and r["impl"] == "reference"
        )
        row["speedup_vs_eager"] = eager["median_ms"] / row["median_ms"]

    extra = {"load_average_before": load_before, "load_average_after": load_average()}
    folder = write_results("kernel_speed", rows, to_markdown(rows, cuda), command=command_line(),
                           root=args.results_root, extra=extra, device=device)  # fmt: skip
    print(f"wrote {folder}/kernel_speed.json and .md")


def to_markdown(rows: list[dict], cuda: bool) -> str:
    mib = 2**20
    lines = [
        "| case | B x T x H, C | dtype | impl | median ms | min ms | vs eager (median) | saved MiB | peak MiB "
        "| peak - grad(hidden) MiB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = r["peak_bytes"]
        peak_s = "-" if peak is None else f"{peak / mib:.2f}"
        extra_s = "-" if peak is None else f"{(peak - r['hidden_grad_bytes']) / mib:.2f}"
        lines.append(
            f"| {r['case']} | {r['B']}x{r['T']}x{r['H']}, {r['C']} | {r['dtype']} | {r['impl']} | {r['median_ms']:.2f} | {r['min_ms']:.2f} "
            f"| {r['speedup_vs_eager']:.2f}x | {r['saved_bytes'] / mib:.3f} | {peak_s} | {extra_s} |"
        )
    notes = [
        "",
        "- time: median (and min) of the repeats of forward + backward (gradients of hidden, weight, bias), after "
        "warm-up, implementations interleaved. On a shared CPU (see the load average in the JSON) the median "
        "includes waiting for a core; the min is the closest to an idle machine.",
        "- saved: bytes autograd keeps for backward beyond the op's inputs (saved_tensors_hooks, storages deduplicated).",
        "- peak: "
        + (
            "`torch.cuda.max_memory_allocated` during one step minus memory allocated before it."
            if cuda
            else "highest sum of live CPU allocations during one step (profiler memory timeline)."
        ),  # fmt: skip
        "- grad(hidden) is the [B, T, H] gradient every implementation must return; peak minus it is the op's overhead.",
    ]
    if not cuda:
        notes.append(
            "- not measured here: the Triton kernel (no GPU on this machine; Triton has no CPU backend and its "
            "interpreter says nothing about speed). Its correctness on CPU is tested with TRITON_INTERPRET=1."
        )
    return "\n".join(lines + notes)


if __name__ == "__main__":
    main()
