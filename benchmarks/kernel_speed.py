"""Speed and memory of the fused masked-mean + linear + cross-entropy op: eager reference vs
`torch.compile`d reference vs the Triton kernel, forward + backward (grads for hidden, weight, bias).

    python benchmarks/kernel_speed.py                       # both cases, threads=2, default dtypes
    python benchmarks/kernel_speed.py --cases bert --repeats 50
    python benchmarks/kernel_speed.py --cases tiny --repeats 2 --no-write                  # smoke test

Cases: BERT-base head (B=32, T=128, H=768, C=2) and a large one (B=64, T=512, H=1024, C=2); the mask
keeps a random length per row (uniform in [T/8, T]), as padded batches do.

Before anything is timed, every implementation's loss, logits and gradients are compared with the
reference's on the same inputs, with the tolerances of tests/test_kernel_triton.py (float32:
|k - r| <= 1e-5 + 1e-5 |r| element-wise; float16/bfloat16: error against the float64 reference at most
twice the same-dtype reference's error plus one rounding unit at the tensor's scale). A wrong kernel is
refused, not timed: the script says which quantity is off and exits 1, writing nothing.

What is measured (benchmarks/common.py's timer and probes):
  * time: median of `--repeats` forward+backward steps after `--warmup`, implementations interleaved
    (CUDA: synchronised); the first call of each (it compiles) is timed on its own.
  * CUDA memory: the allocator's peak during one step, minus what was allocated before it.
  * CPU memory, two numbers per implementation:
      - saved: bytes of the tensors autograd keeps between forward and backward (storages
        deduplicated, the op's inputs excluded, since they exist anyway): the activation memory the op
        adds to a training step;
      - peak: the highest sum of live CPU allocations made during one forward+backward, from the
        profiler's memory timeline (`profile_memory=True`); it includes the [B, T, H] gradient of
        `hidden`, which every implementation must produce, so `peak - grad` is the op's own overhead.
The Triton kernel runs only on CUDA: this Triton has no CPU backend and its interpreter (numpy, one
block at a time) measures nothing about speed, so CPU rows compare eager vs compiled only.
Results go to benchmarks/results/<machine-tag>/kernel_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/X.py` in a checkout

from benchmarks import common
from benchmarks.machine import command_line, load_average
from minifreeze.ops import HAS_TRITON, masked_mean_cross_entropy

CASES = {"bert": (32, 128, 768, 2), "large": (64, 512, 1024, 2), "tiny": (4, 16, 32, 3)}  # tiny: smoke tests
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTITIES = ("loss", "logits", "d_hidden", "d_weight", "d_bias")
FP32_RTOL = FP32_ATOL = 1e-5  # tests/test_kernel_triton.py's float32 tolerance


class WrongKernel(Exception):
    """An implementation disagrees with the reference: its timings would mean nothing."""


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


def op(x: dict, impl: str, return_logits: bool = False):
    return masked_mean_cross_entropy(
        x["hidden"], x["mask"], x["weight"], x["bias"], x["labels"], impl=impl, return_logits=return_logits
    )


def outputs(x: dict, impl: str, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Loss, logits and the gradients of hidden, weight and bias, on fresh leaves (cast to `dtype`)."""
    leaves = {k: x[k].detach().to(dtype or x[k].dtype).requires_grad_() for k in ("hidden", "weight", "bias")}
    loss, logits = op({**x, **leaves}, impl, return_logits=True)
    grads = torch.autograd.grad(loss, tuple(leaves.values()))
    return dict(zip(QUANTITIES, (loss.detach(), logits.detach(), *grads)))


def tolerance_used(got: dict, ref: dict, exact: dict | None, eps: float) -> dict[str, float]:
    """Per quantity, the fraction of its tolerance the error uses (<= 1 passes; NaN fails).

    `exact` (the reference in float64, for float16/bfloat16 inputs) switches to the low-precision rule.
    """
    used = {}
    for q in QUANTITIES:
        k, r = got[q].double(), ref[q].double()
        if exact is None:
            used[q] = ((k - r).abs() / (FP32_ATOL + FP32_RTOL * r.abs())).max().item()
            continue
        e = exact[q].double()
        error = (k - e).abs().max().item()
        bound = 2 * (r - e).abs().max().item() + eps * e.abs().max().item()
        used[q] = error / bound if bound > 0 else (0.0 if error == 0 else math.inf)
    return used


def check_against_reference(x: dict, impl: str, got: dict, ref: dict) -> dict[str, float]:
    """Raise WrongKernel unless `impl`'s outputs (`got`) match the reference's (`ref`) on inputs `x`."""
    dtype = x["hidden"].dtype
    exact = outputs(x, "reference", torch.float64) if dtype != torch.float32 else None
    used = tolerance_used(got, ref, exact, torch.finfo(dtype).eps)
    for q, fraction in used.items():
        if not fraction <= 1.0:
            raise WrongKernel(f"{impl} disagrees with the reference on {q}: {fraction:.3g}x the tolerance")
    return used


def kernel_side(x: dict, impl: str, device: str) -> common.Side:
    """Forward (the loss) + backward; `autograd.grad` returns fresh gradients (nothing accumulates)."""
    leaves = (x["hidden"], x["weight"], x["bias"])
    return common.Side(
        impl,
        lambda inputs: op(inputs, impl),
        device=device,
        backward=lambda loss: torch.autograd.grad(loss, leaves),
    )


def cpu_peak_bytes(side: common.Side, x: dict) -> int | None:
    """Peak of live CPU allocations during one step, from the profiler's memory timeline (private API:
    returns None if this torch version lacks it)."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(
            activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
        ) as p:
            side.step(x)
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


def measure_case(case: str, dname: str, impls: list[str], device: str, args) -> list[dict]:
    """Check every implementation against the reference, then time and measure them (WrongKernel first)."""
    B, T, H, C = CASES[case]
    x = make_inputs(B, T, H, C, DTYPES[dname], device)
    got, first_s = {}, {}
    for impl in impls:  # the first call compiles (torch.compile, Triton JIT): timed on its own
        first_s[impl] = common.timed(lambda impl=impl: got.update({impl: outputs(x, impl)}), device)
    checks = {impl: check_against_reference(x, impl, got[impl], got["reference"]) for impl in impls[1:]}
    sides = [kernel_side(x, impl, device) for impl in impls]
    common.round_robin(sides, lambda i: x, args.repeats, args.warmup)
    rows = []
    for side in sides:
        times = [t * 1e3 for t in side.times["step"]]
        peak = common.peak_step_bytes(side, x) if device == "cuda" else cpu_peak_bytes(side, x)
        rows.append(dict(case=case, B=B, T=T, H=H, C=C, dtype=dname, device=device, impl=side.name,
                         median_ms=statistics.median(times), min_ms=min(times), repeats=len(times),
                         first_call_s=first_s[side.name], saved_bytes=side.saved_bytes(x, list(x.values())),
                         hidden_grad_bytes=x["hidden"].numel() * x["hidden"].element_size(), peak_bytes=peak,
                         tolerance_used=checks.get(side.name)))  # fmt: skip
        peak_mib = "-" if peak is None else f"{peak / common.MB:8.2f}"
        print(f"{case:5s} {dname:8s} {side.name:9s} {rows[-1]['median_ms']:9.2f} ms  saved "
              f"{rows[-1]['saved_bytes'] / common.MB:7.3f} MiB  peak {peak_mib} MiB  "
              f"(first call {first_s[side.name]:.1f} s)")  # fmt: skip
    for row in rows:
        row["speedup_vs_eager"] = rows[0]["median_ms"] / row["median_ms"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="bert,large", help=f"comma-separated, from {list(CASES)}")
    parser.add_argument("--dtypes", default=None, help="default: float32 on CPU, float32,bfloat16 on CUDA")
    parser.add_argument(
        "--impls", default=None, help="comma-separated (default: reference,compiled[,triton on CUDA])"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    common.add_options(parser, "--threads", "--results-root", "--no-write")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtypes = (args.dtypes or ("float32,bfloat16" if cuda else "float32")).split(",")
    impls = (
        args.impls.split(",") if args.impls else ["compiled"] + (["triton"] if cuda and HAS_TRITON else [])
    )
    impls = ["reference"] + [
        i for i in impls if i != "reference"
    ]  # the baseline, and what the others must match
    for option, given, known in (("--cases", args.cases.split(","), CASES), ("--dtypes", dtypes, DTYPES),
                                 ("--impls", impls, ("reference", "compiled", "triton"))):  # fmt: skip
        if unknown := [g for g in given if g not in known]:
            parser.error(f"{option}: unknown {unknown}; choose from {list(known)}")
    if "triton" in impls and not (cuda and HAS_TRITON):
        parser.error(
            "--impls triton needs a CUDA device and the triton package (its CPU interpreter times nothing)"
        )
    torch.set_num_threads(args.threads)
    load_before = load_average()
    rows = []
    for case in args.cases.split(","):
        for dname in dtypes:
            try:
                rows += measure_case(case, dname, impls, device, args)
            except WrongKernel as err:
                print(
                    f"kernel_speed: refusing to time a wrong kernel ({case}, {dname}): {err}", file=sys.stderr
                )
                return 1
    markdown = to_markdown(rows, cuda)
    print(markdown)
    if not args.no_write:
        extra = {"load_average_before": load_before, "load_average_after": load_average()}
        command = command_line(argv, "benchmarks/kernel_speed.py")
        folder = common.write_results("kernel_speed", rows, markdown, command=command, root=args.results_root,
                               extra=extra, device=device)  # fmt: skip
        print(f"wrote {folder}/kernel_speed.json and .md")
    return 0


def to_markdown(rows: list[dict], cuda: bool) -> str:
    header = ["case", "B x T x H, C", "dtype", "impl", "median ms", "min ms", "vs eager (median)",
              "saved MiB", "peak MiB", "peak - grad(hidden) MiB"]  # fmt: skip
    table, mib = [], common.MB
    for r in rows:
        peak = r["peak_bytes"]
        table.append(
            [
                r["case"],
                f"{r['B']}x{r['T']}x{r['H']}, {r['C']}",
                r["dtype"],
                r["impl"],
                f"{r['median_ms']:.2f}",
                f"{r['min_ms']:.2f}",
                f"{r['speedup_vs_eager']:.2f}x",
                f"{r['saved_bytes'] / mib:.3f}",
                "-" if peak is None else f"{peak / mib:.2f}",
                "-" if peak is None else f"{(peak - r['hidden_grad_bytes']) / mib:.2f}",
            ]
        )
    worst = max((max(r["tolerance_used"].values()) for r in rows if r["tolerance_used"]), default=None)
    notes = [
        "",
        "- time: median (and min) of the repeats of forward + backward (gradients of hidden, weight, bias), after "
        "warm-up, implementations interleaved. On a shared CPU (see the load average in the JSON) the median "
        "includes waiting for a core; the min is the closest to an idle machine.",
        "- checked before timing: loss, logits and gradients of every implementation against the reference on "
        "the same inputs (tests/test_kernel_triton.py's tolerances)"
        + ("" if worst is None else f"; the worst used {worst:.2g} of its tolerance")
        + ".",
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
    return "\n".join(common.markdown_table(header, "llll" + "r" * 6, table) + notes)


if __name__ == "__main__":
    raise SystemExit(main())
