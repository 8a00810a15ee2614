"""The Triton kernel against the reference, on CPU through the Triton interpreter (TRITON_INTERPRET=1).

The interpreter is chosen when `triton.jit` decorates a kernel, i.e. when the kernel module is first
imported, and the rest of the test suite imports it without the interpreter. So the kernel runs in one
child process (this file run as a script with ``--worker``): it computes every case, prints a JSON
table of errors, and the tests below judge that table. One child keeps the cost of importing torch and
triton to once (the whole file takes about 20 s on 2 cores).

Tolerances (errors are max |.| over the tensor; "ref64" is the reference in float64 on the same,
already rounded inputs, so input rounding is not counted as error):
  * float32: kernel vs the float32 reference element-wise, |k - r| <= 1e-5 + 1e-5 |r| (different
    summation order only; both are ~1e-7 relative from float64).
  * float16 / bfloat16: err(kernel vs ref64) <= 2 err(same-dtype reference vs ref64) + one unit of
    rounding at the tensor's scale (eps * max|ref64|; the floor matters when the reference happens to
    be exact). The kernel accumulates in float32, so it is usually far more accurate than that.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QUANTITIES = ("loss", "logits", "d_hidden", "d_weight", "d_bias")
FP32_RTOL = FP32_ATOL = 1e-5

# name: B, T, H, C and what the case exercises. Small on purpose: the interpreter runs numpy per block.
CASES = {
    "odd": dict(B=5, T=7, H=33, C=3, mask="bool", bias=True, use_logits=True),
    "single": dict(B=1, T=1, H=1, C=1, mask="int", bias=False, use_logits=True),
    "noncontig_float_mask": dict(
        B=17, T=9, H=130, C=20, mask="float", bias=True, use_logits=True, noncontig=True
    ),
    "many_classes": dict(B=3, T=4, H=20, C=1030, mask="bool", bias=True, use_logits=False),
    "wide": dict(B=3, T=3, H=4100, C=2, mask="bool", bias=True, use_logits=False),
    "all_ignored": dict(B=4, T=5, H=16, C=4, mask="bool", bias=True, use_logits=False, all_ignored=True),
    # autocast on a GPU hands a bf16/fp16 hidden state to a float32 head
    "mixed_fp32_weight": dict(B=6, T=5, H=24, C=3, mask="bool", bias=True, use_logits=True, fp32_head=True),
    "frozen_hidden": dict(B=6, T=11, H=40, C=2, mask="int", bias=True, use_logits=True, frozen=True),
}


# ------------------------------------------------------------------------------------------------
# Worker (child process, TRITON_INTERPRET=1)
# ------------------------------------------------------------------------------------------------
def _make_inputs(spec: dict, dtype: torch.dtype, seed: int) -> dict:
    """Inputs in `dtype`; float64 masters are rounded first so every implementation sees the same values."""
    g = torch.Generator().manual_seed(seed)
    B, T, H, C = spec["B"], spec["T"], spec["H"], spec["C"]
    if spec.get("noncontig"):
        # hidden is a [T, B, H] buffer seen as [B, T, H]; weight is the transpose of an [H, C] buffer;
        # mask and labels are every other element of a larger tensor.
        hidden_base = torch.randn(T, B, H, generator=g, dtype=torch.float64).to(dtype)
        weight_base = (torch.randn(H, C, generator=g, dtype=torch.float64) / H**0.5).to(dtype)
        mask = torch.rand(B, 2 * T, generator=g, dtype=torch.float64)
        labels = torch.randint(0, C, (2 * B,), generator=g)[::2]
    else:
        hidden_base = torch.randn(B, T, H, generator=g, dtype=torch.float64).to(dtype)
        weight_base = (torch.randn(C, H, generator=g, dtype=torch.float64) / H**0.5).to(dtype)
        mask = torch.rand(B, T, generator=g, dtype=torch.float64)
        labels = torch.randint(0, C, (B,), generator=g)
    if spec["mask"] == "bool":
        mask = mask > 0.3
    elif spec["mask"] == "int":
        mask = (mask > 0.3).to(torch.int64)
    else:
        mask = mask.to(torch.float32)  # float weights: a weighted mean
    if spec.get("noncontig"):
        mask = mask[:, ::2]
    if B > 2:  # leave rows 2.. ordinary, so every gradient has some non-zero entries
        mask[1] = 0  # an empty row: pooled = 0, logits = bias
        labels[0] = -100  # an ignored row
    if spec.get("all_ignored"):
        labels[:] = -100
    if spec.get("fp32_head"):
        weight_base = weight_base.to(torch.float32)
    head_dtype = torch.float32 if spec.get("fp32_head") else dtype
    bias = torch.randn(C, generator=g, dtype=torch.float64).to(head_dtype) if spec["bias"] else None
    logit_weights = torch.randn(B, C, generator=g, dtype=torch.float64)
    return dict(hidden_base=hidden_base, weight_base=weight_base, mask=mask, bias=bias, labels=labels,
                logit_weights=logit_weights, noncontig=bool(spec.get("noncontig")), frozen=bool(spec.get("frozen")),
                use_logits=spec["use_logits"])  # fmt: skip


def _run(inputs: dict, impl: str, dtype: torch.dtype | None) -> dict[str, torch.Tensor | None]:
    """Forward + backward of one implementation; `dtype=None` keeps the inputs' dtype, else casts (float64)."""
    from minifreeze.ops import masked_mean_cross_entropy

    def leaf(t: torch.Tensor | None, grad: bool = True) -> torch.Tensor | None:
        if t is None:
            return None
        t = t.detach().clone() if dtype is None else t.detach().to(dtype)
        return t.requires_grad_(grad)

    hidden_base = leaf(inputs["hidden_base"], grad=not inputs["frozen"])
    weight_base, bias = leaf(inputs["weight_base"]), leaf(inputs["bias"])
    hidden = hidden_base.transpose(0, 1) if inputs["noncontig"] else hidden_base
    weight = weight_base.t() if inputs["noncontig"] else weight_base
    loss, logits = masked_mean_cross_entropy(
        hidden, inputs["mask"], weight, bias, inputs["labels"], return_logits=True, impl=impl
    )
    objective = loss
    if inputs["use_logits"]:  # also send a gradient through the logits output
        objective = objective + (logits.double() * inputs["logit_weights"]).sum()
    objective.backward()
    d_hidden = hidden_base.grad
    if d_hidden is not None and inputs["noncontig"]:
        d_hidden = d_hidden.transpose(0, 1)
    d_weight = weight_base.grad.t() if inputs["noncontig"] else weight_base.grad
    return dict(loss=loss.detach(), logits=logits.detach(), d_hidden=d_hidden, d_weight=d_weight,
                d_bias=None if bias is None else bias.grad)  # fmt: skip


def _compare_case(spec: dict, dtype: torch.dtype, seed: int, device: str = "cpu") -> dict:
    inputs = _make_inputs(spec, dtype, seed)
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    ref64 = _run(inputs, "reference", torch.float64)
    ref = _run(inputs, "reference", None)
    kern = _run(inputs, "triton", None)
    out: dict = {"dtypes": {}, "errors": {}}
    for q in QUANTITIES:
        if ref64[q] is None:
            assert kern[q] is None and ref[q] is None, q
            continue
        exact = ref64[q].double()
        k, r = kern[q].double(), ref[q].double()
        out["dtypes"][q] = [str(kern[q].dtype), str(ref[q].dtype)]
        out["errors"][q] = {
            "kernel_vs_ref64": (k - exact).abs().max().item(),
            "ref_vs_ref64": (r - exact).abs().max().item(),
            "scale": exact.abs().max().item(),
            # fraction of the fp32 element-wise tolerance used (<= 1 passes)
            "fp32_tol_used": ((k - r).abs() / (FP32_ATOL + FP32_RTOL * r.abs())).max().item(),
            "finite": bool(torch.isfinite(k).all()),
        }
    mask = inputs["mask"]
    empty = (mask != 0).sum(1) == 0
    if bool(empty.any()):
        bias = inputs["bias"]
        expected = (
            torch.zeros(spec["C"], dtype=kern["logits"].dtype, device=kern["logits"].device)
            if bias is None
            else bias.to(kern["logits"].dtype)
        )
        out["empty_row_logits_minus_bias"] = (kern["logits"][empty] - expected).abs().max().item()
        if kern["d_hidden"] is not None:
            out["empty_row_d_hidden"] = kern["d_hidden"][empty].abs().max().item()
    if spec.get("all_ignored"):
        grads = [kern[q] for q in ("d_hidden", "d_weight", "d_bias") if kern[q] is not None]
        out["all_ignored_loss"] = kern["loss"].item()
        # with use_logits=False the only gradient source is the loss, so everything must be exactly 0
        out["all_ignored_max_grad"] = max(g.abs().max().item() for g in grads)
    return out


def _train_curve(impl: str, steps: int = 8) -> list[float]:
    """A toy mean-pool classifier (embedding + fused head) trained with SGD; returns the loss per step.

    Each sequence draws most of its tokens from the third of the vocabulary named by its label, so the
    mean-pooled embedding is linearly separable and the loss must fall within a few steps.
    """
    from minifreeze.ops import masked_mean_cross_entropy

    g = torch.Generator().manual_seed(0)
    vocab, hidden, classes, n, length = 30, 24, 3, 24, 12
    labels = torch.randint(0, classes, (n,), generator=g)
    own_group = labels[:, None] * (vocab // classes) + torch.randint(
        0, vocab // classes, (n, length), generator=g
    )
    anywhere = torch.randint(0, vocab, (n, length), generator=g)
    tokens = torch.where(torch.rand(n, length, generator=g) < 0.6, own_group, anywhere)
    mask = torch.arange(length)[None, :] < torch.randint(2, length + 1, (n,), generator=g)[:, None]
    labels[::11] = -100  # a few unlabeled rows
    torch.manual_seed(1)
    emb = torch.nn.Embedding(vocab, hidden)
    head = torch.nn.Linear(hidden, classes)
    opt = torch.optim.SGD([*emb.parameters(), *head.parameters()], lr=1.0)
    curve = []
    for _ in range(steps):
        loss = masked_mean_cross_entropy(emb(tokens), mask, head.weight, head.bias, labels, impl=impl)
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(loss.item())
    return curve


def _bad_label_loss() -> float:
    """The kernel itself (bypassing the host-side label check) on a label >= C: the loss must be NaN."""
    from minifreeze.ops import MaskedMeanCrossEntropyFunction

    hidden, mask, weight = torch.randn(3, 4, 8), torch.ones(3, 4, dtype=torch.bool), torch.randn(2, 8)
    loss, _ = MaskedMeanCrossEntropyFunction.apply(hidden, mask, weight, None, torch.tensor([0, 2, 1]), -100)
    return loss.item()


def _case_ids() -> list[str]:
    # the wide case costs most in the interpreter (65 blocks along H); float16 adds nothing there that
    # bfloat16 (fewer mantissa bits) and float32 do not already cover
    return [f"{name}-{d}" for name in CASES for d in DTYPES if not (name == "wide" and d == "float16")]


def _worker() -> None:
    results: dict = {"cases": {}, "bad_label_loss": _bad_label_loss()}
    for case in _case_ids():
        name, dname = case.rsplit("-", 1)
        results["cases"][case] = _compare_case(CASES[name], DTYPES[dname], seed=100 + list(CASES).index(name))
    results["train"] = {impl: _train_curve(impl) for impl in ("reference", "triton")}
    print(json.dumps(results))


# ------------------------------------------------------------------------------------------------
# Tests (parent process)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def interpreted() -> dict:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed, so the Triton kernel cannot run (the reference tests still do)")
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"interpreter worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


CASE_IDS = _case_ids()


@pytest.mark.parametrize("case", CASE_IDS)
def test_kernel_matches_reference(interpreted: dict, case: str) -> None:
    check_errors(interpreted["cases"][case], case)


def check_errors(result: dict, case: str) -> None:
    """The tolerances of the module docstring, for one case's table (shared with tests/gpu)."""
    name, dtype_name = case.rsplit("-", 1)
    eps = torch.finfo(DTYPES[dtype_name]).eps
    assert result["errors"], "no quantity was compared"
    for q, e in result["errors"].items():
        assert e["finite"], f"{q}: non-finite values"
        # exactly zero by construction: the loss with one class, everything but logits when all rows are ignored
        zero_by_design = (name == "single" and q == "loss") or (name == "all_ignored" and q != "logits")
        assert zero_by_design or e["scale"] > 0, f"{q} is all zero: the case would test nothing"
        if dtype_name == "float32":
            assert e["fp32_tol_used"] <= 1.0, f"{q}: {e}"
        else:
            bound = 2 * e["ref_vs_ref64"] + eps * e["scale"]
            assert e["kernel_vs_ref64"] <= bound, (
                f"{q}: kernel error {e['kernel_vs_ref64']:.3g} > {bound:.3g} ({e})"
            )


@pytest.mark.parametrize("case", CASE_IDS)
def test_kernel_output_dtypes(interpreted: dict, case: str) -> None:
    """Loss in float32, logits and gradients in the dtype of their input: the same as the reference."""
    for q, (kernel_dtype, ref_dtype) in interpreted["cases"][case]["dtypes"].items():
        assert kernel_dtype == ref_dtype, q


def test_kernel_edge_cases(interpreted: dict) -> None:
    cases = interpreted["cases"]
    for d in DTYPES:
        odd = cases[f"odd-{d}"]
        assert odd["empty_row_logits_minus_bias"] == 0.0  # pooled vector is exactly 0
        assert odd["empty_row_d_hidden"] == 0.0
        ignored = cases[f"all_ignored-{d}"]
        assert ignored["all_ignored_loss"] == 0.0
        assert ignored["all_ignored_max_grad"] == 0.0
        assert "d_hidden" not in cases[f"frozen_hidden-{d}"]["errors"]  # no gradient computed for it
        assert "d_bias" not in cases[f"single-{d}"]["errors"]


def test_out_of_range_label_gives_nan_loss(interpreted: dict) -> None:
    """On CUDA there is no host-side label check; the kernel makes such a loss NaN instead of wrong."""
    assert math.isnan(interpreted["bad_label_loss"])


def test_training_curve_matches_reference(interpreted: dict) -> None:
    """A few SGD steps of a toy mean-pool classifier: the fused path follows the reference's loss curve."""
    ref, fused = interpreted["train"]["reference"], interpreted["train"]["triton"]
    assert len(ref) == len(fused) == 8
    torch.testing.assert_close(torch.tensor(fused), torch.tensor(ref), rtol=1e-4, atol=1e-5)
    assert ref[-1] < 0.8 * ref[0], f"the toy model did not learn: {ref}"


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker()
