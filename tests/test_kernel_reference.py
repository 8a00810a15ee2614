"""The reference masked-mean + linear + cross-entropy: gradients, an independent composition, edge cases
and the dispatcher. (The Triton kernel is judged against this reference in test_kernel_triton.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minifreeze import ops
from minifreeze.ops import masked_mean_cross_entropy, masked_mean_cross_entropy_reference


def _inputs(B=4, T=6, H=5, C=3, *, dtype=torch.float64, bias=True, mask_kind="bool", seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g, dtype=dtype, requires_grad=True)
    mask = torch.rand(B, T, generator=g) > 0.4
    mask[:, 0] = True
    if mask_kind == "int":
        mask = mask.to(torch.int32)
    elif mask_kind == "float":
        mask = mask * torch.rand(B, T, generator=g, dtype=dtype)  # weights for a weighted mean
    weight = torch.randn(C, H, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(C, generator=g, dtype=dtype, requires_grad=True) if bias else None
    labels = torch.randint(0, C, (B,), generator=g)
    return hidden, mask, weight, b, labels


def _by_hand(hidden, mask, weight, bias, labels, ignore_index=-100):
    """The same quantity from F.cross_entropy's own mean reduction, pooling row by row with a Python loop."""
    pooled = []
    for b in range(hidden.shape[0]):
        m = mask[b].to(hidden.dtype)
        total = m.sum()
        pooled.append(
            (m[:, None] * hidden[b]).sum(0) / total if total != 0 else hidden.new_zeros(hidden.shape[2])
        )
    logits = F.linear(torch.stack(pooled), weight, bias)
    if bool((labels == ignore_index).all()):
        return logits.sum() * 0, logits
    return F.cross_entropy(logits, labels, ignore_index=ignore_index), logits


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(bias=False),
        dict(mask_kind="int", B=3, T=1, H=2, C=1),
        dict(mask_kind="float", B=5, T=4, H=3, C=4),
    ],
)
def test_reference_gradcheck_float64(kw: dict) -> None:
    hidden, mask, weight, bias, labels = _inputs(**kw)
    labels[0] = -100
    if hidden.shape[0] > 2:
        mask[1] = 0  # an empty row
    inputs = (hidden, weight) + ((bias,) if bias is not None else ())

    def f(*args):
        h, w = args[0], args[1]
        b = args[2] if bias is not None else None
        return masked_mean_cross_entropy_reference(h, mask, w, b, labels)

    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("mask_kind", ["bool", "int", "float"])
def test_reference_matches_plain_composition(mask_kind: str) -> None:
    hidden, mask, weight, bias, labels = _inputs(B=6, T=7, H=9, C=4, mask_kind=mask_kind, seed=3)
    labels[2] = -100
    mask[4] = 0
    loss, logits = masked_mean_cross_entropy_reference(hidden, mask, weight, bias, labels)
    expected_loss, expected_logits = _by_hand(hidden, mask, weight, bias, labels)
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(logits, expected_logits)
    got = torch.autograd.grad(loss + logits.sum(), (hidden, weight, bias))
    want = torch.autograd.grad(expected_loss + expected_logits.sum(), (hidden, weight, bias))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_empty_mask_row_pools_to_zero() -> None:
    """Documented choice: a row without tokens has logits == bias, and its hidden gets no gradient."""
    hidden, mask, weight, bias, labels = _inputs(dtype=torch.float32)
    mask[2] = False
    loss, logits = masked_mean_cross_entropy(hidden, mask, weight, bias, labels, return_logits=True)
    assert torch.isfinite(loss)
    assert torch.equal(logits[2], bias.detach())
    loss.backward()
    assert torch.equal(hidden.grad[2], torch.zeros_like(hidden.grad[2]))
    assert hidden.grad[0].abs().sum() > 0


def test_all_ignored_gives_zero_loss_and_zero_grads() -> None:
    """Documented choice: F.cross_entropy would give NaN (0/0); we return 0 so the step is a no-op."""
    hidden, mask, weight, bias, labels = _inputs(dtype=torch.float32)
    labels[:] = -100
    loss = masked_mean_cross_entropy(hidden, mask, weight, bias, labels)
    assert loss.item() == 0.0
    loss.backward()
    for t in (hidden, weight, bias):
        assert torch.equal(t.grad, torch.zeros_like(t))


def test_custom_ignore_index_is_a_mean_over_kept_rows() -> None:
    hidden, mask, weight, bias, labels = _inputs(B=6)
    labels[[1, 4]] = 7
    loss, logits = masked_mean_cross_entropy(
        hidden, mask, weight, bias, labels, ignore_index=7, return_logits=True
    )
    keep = labels != 7
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], labels[keep]))


def test_output_dtypes_and_mixed_precision() -> None:
    hidden, mask, weight, bias, labels = _inputs(dtype=torch.float32)
    loss, logits = masked_mean_cross_entropy(
        hidden.bfloat16(), mask, weight, bias, labels, return_logits=True
    )
    assert loss.dtype == torch.float32 and logits.dtype == torch.float32  # promote(bf16, fp32)
    loss, logits = masked_mean_cross_entropy(
        hidden.bfloat16(), mask, weight.bfloat16(), bias.bfloat16(), labels, return_logits=True
    )
    assert loss.dtype == torch.float32 and logits.dtype == torch.bfloat16
    exact = masked_mean_cross_entropy(hidden.double(), mask, weight.double(), bias.double(), labels)
    assert abs(loss.item() - exact.item()) < 0.05 * max(1.0, exact.item())


def test_non_contiguous_inputs() -> None:
    hidden, mask, weight, bias, labels = _inputs(B=4, T=6, H=5, C=3)
    h_nc = hidden.detach().transpose(0, 1).contiguous().transpose(0, 1)
    w_nc = weight.detach().t().contiguous().t()
    assert not h_nc.is_contiguous() and not w_nc.is_contiguous()
    a = masked_mean_cross_entropy(hidden, mask, weight, bias, labels)
    b = masked_mean_cross_entropy(h_nc, mask, w_nc, bias, labels)
    torch.testing.assert_close(a, b)


def test_dispatch_on_cpu() -> None:
    hidden, mask, weight, bias, labels = _inputs(dtype=torch.float32)
    assert ops.resolve_impl("auto", hidden) == "reference"
    assert ops.resolve_impl("off", hidden) == "reference"
    assert ops.resolve_impl("compiled", hidden) == "compiled"
    want = masked_mean_cross_entropy_reference(hidden, mask, weight, bias, labels)[0]
    for impl in ("auto", "reference", "off"):
        torch.testing.assert_close(
            masked_mean_cross_entropy(hidden, mask, weight, bias, labels, impl=impl), want
        )
    with pytest.raises(ValueError, match="impl must be one of"):
        masked_mean_cross_entropy(hidden, mask, weight, bias, labels, impl="fast")


def test_triton_demanded_on_cpu_fails_clearly() -> None:
    from minifreeze_kernels.masked_mean_cross_entropy import _kernels_interpreted

    if _kernels_interpreted():
        pytest.skip(
            "this process runs triton in interpreter mode (TRITON_INTERPRET=1): CPU tensors are allowed"
        )
    hidden, mask, weight, bias, labels = _inputs(dtype=torch.float32)
    for impl in ("triton", "on"):
        with pytest.raises(
            RuntimeError, match="TRITON_INTERPRET" if ops.HAS_TRITON else "needs the `triton`"
        ):
            masked_mean_cross_entropy(hidden, mask, weight, bias, labels, impl=impl)
    with pytest.raises(RuntimeError, match="supports" if ops.HAS_TRITON else "needs the `triton`"):
        masked_mean_cross_entropy(hidden.double(), mask, weight.double(), None, labels, impl="triton")


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(hidden=torch.zeros(2, 3)), "hidden must be"),
        (dict(mask=torch.ones(2, 4, dtype=torch.bool)), "mask must be"),
        (dict(weight=torch.zeros(3, 6)), "weight must be"),
        (dict(bias=torch.zeros(4)), "bias must be"),
        (dict(labels=torch.zeros(2)), "labels must be"),
        (dict(labels=torch.tensor([0, 3])), r"labels must lie in \[0, 3\)"),
    ],
)
def test_invalid_inputs_raise(bad: dict, match: str) -> None:
    args = dict(hidden=torch.zeros(2, 3, 5), mask=torch.ones(2, 3, dtype=torch.bool), weight=torch.zeros(3, 5),
                bias=torch.zeros(3), labels=torch.tensor([0, 2]))  # fmt: skip
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        masked_mean_cross_entropy(**args)


@pytest.mark.slow
def test_compiled_reference_matches_eager() -> None:
    """impl='compiled' (torch.compile of the reference; about 20 s to compile on 2 CPU cores)."""
    hidden, mask, weight, bias, labels = _inputs(dtype=torch.float32, B=5, T=7, H=6, C=3)
    labels[0] = -100
    loss, logits = masked_mean_cross_entropy(
        hidden, mask, weight, bias, labels, return_logits=True, impl="compiled"
    )
    got = torch.autograd.grad(loss + logits.sum(), (hidden, weight, bias))
    want_loss, want_logits = masked_mean_cross_entropy_reference(hidden, mask, weight, bias, labels)
    want = torch.autograd.grad(want_loss + want_logits.sum(), (hidden, weight, bias))
    torch.testing.assert_close(loss, want_loss)
    torch.testing.assert_close(logits, want_logits)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


WITHOUT_TRITON = """
import sys
sys.modules["triton"] = None  # makes `import triton` raise ImportError, as on a CPU-only install
import torch
from minifreeze.ops import HAS_TRITON, masked_mean_cross_entropy
assert not HAS_TRITON
hidden, mask = torch.randn(2, 3, 4, requires_grad=True), torch.ones(2, 3, dtype=torch.bool)
loss = masked_mean_cross_entropy(hidden, mask, torch.randn(2, 4), None, torch.tensor([0, 1]))
loss.backward()
try:
    masked_mean_cross_entropy(hidden, mask, torch.randn(2, 4), None, torch.tensor([0, 1]), impl="on")
except RuntimeError as err:
    print("error:", err)
"""


def test_works_without_triton() -> None:
    """The reference path (and a clear error for impl='triton') when triton cannot be imported."""
    repo = Path(__file__).resolve().parent.parent
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p)
    )
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_TRITON], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "error: impl='triton' (--fused-head on) needs the `triton` package" in proc.stdout
