"""Fused masked mean pooling + linear classifier + cross-entropy, as one differentiable op.

Inputs: ``hidden`` x [B, T, H], ``mask`` m [B, T] (bool, int or float weights), ``weight`` W [C, H],
``bias`` c [C] or None, ``labels`` y [B] (class ids, ``ignore_index`` marks rows to skip).

Forward (one read of ``hidden``; everything after the pooling is [B, H] or [B, C] sized):

    n_b      = sum_t m[b,t]                                       tokens (or total weight) of row b
    a[b,t]   = m[b,t] / n_b, and a[b,t] = 0 when n_b == 0         pooling weights
    p[b,:]   = sum_t a[b,t] * x[b,t,:]                            masked mean               [B, H]
    z[b,:]   = W p[b,:] + c                                       logits                    [B, C]
    lse_b    = log sum_c exp z[b,c]                               (computed with a running max)
    loss     = (1/N) sum_{b valid} (lse_b - z[b, y_b]),   valid: y_b != ignore_index, N = #valid rows

Backward, with g = dloss (a scalar) and G = dlogits (when the caller also used the logits):

    dz[b,c]    = g/N * (softmax(z_b)[c] - [c == y_b]) * [b valid] + G[b,c]                      [B, C]
    dW         = dz^T p          dc = sum_b dz[b,:]                                    [C, H], [C]
    dp         = dz W                                                                           [B, H]
    dx[b,t,:]  = a[b,t] * dp[b,:]       (the only [B, T, H] tensor: the gradient itself)

Defined edge cases (the same in every implementation):
  * a row whose mask is all zero pools to p = 0, so its logits are exactly the bias (0 without bias)
    and no gradient reaches its ``hidden`` (a[b,:] = 0). No NaN, no error.
  * every label equal to ``ignore_index``: loss = 0 and all gradients are zero (F.cross_entropy
    would return NaN for 0/0; a training step on a fully padded batch should be a no-op instead).
  * ``mask`` holds non-negative weights; a float mask gives a weighted mean.
  * the loss is float32 (float64 for float64 inputs); logits have dtype
    ``promote_types(hidden.dtype, weight.dtype)``.
  * labels outside [0, C) that are not ``ignore_index``: a ValueError for CPU tensors (checked on the
    host, as F.cross_entropy does); on CUDA the Triton kernel gives such a row a NaN loss instead of
    checking on the host (a check would cost launches or a synchronisation every step), so the error
    still shows.

Layout of this file: the reference (plain PyTorch, the definition) -> Triton kernels (forward: pool,
head; backward: dlogits, dW/dbias, dpooled, dhidden) -> launchers -> a short autograd.Function ->
the public dispatcher ``masked_mean_cross_entropy``. The Triton path accumulates in float32 whatever
the input dtype, keeps no [B, T, H] temporary, and stores only [B, H] / [B, C] / [B] tensors for the
backward (plus the inputs themselves).
"""

from __future__ import annotations

import os
import types
from typing import Any

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # CPU-only installs: the reference path still works, the kernels are never launched.
    HAS_TRITON = False
    # Stand-ins so the kernel definitions below still parse; `resolve_impl` never routes to a launcher.
    triton = types.SimpleNamespace(jit=lambda fn: fn, cdiv=lambda a, b: -(-a // b))
    tl = types.SimpleNamespace(constexpr=None)


def _kernels_interpreted() -> bool:
    """Whether `triton.jit` below produced interpreter functions (decided once, when this module is imported)."""
    if not HAS_TRITON:
        return False
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


IMPLS = ("auto", "triton", "reference", "compiled")
# The training loop's `--fused-head auto|on|off` maps straight onto these.
_ALIASES = {"on": "triton", "off": "reference"}
# dtypes the Triton kernels accept (they accumulate in float32, so float64 would silently lose precision).
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------------
# Reference: the definition, written to be read. Autograd provides its backward.
# --------------------------------------------------------------------------------------------------
def masked_mean_cross_entropy_reference(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean pooling -> linear -> mean cross-entropy in plain PyTorch; returns ``(loss, logits)``.

    The pooling weights a = m / n are computed in float32 (at least) because a bf16 sum of more than
    256 ones is no longer exact; the pooling itself runs in ``hidden.dtype`` and the cross-entropy in
    at least float32, like autocast does.
    """
    weights_dtype = torch.promote_types(hidden.dtype, torch.float32)
    m = mask.to(weights_dtype)
    n = m.sum(dim=1, keepdim=True)  # [B, 1]
    # An all-zero mask row gets weights 0 (so pooled = 0, logits = bias) instead of 0/0 = NaN.
    a = torch.where(n != 0, m / torch.where(n != 0, n, 1), 0)
    pooled = torch.einsum("bt,bth->bh", a.to(hidden.dtype), hidden)  # [B, H], no [B, T, H] temporary

    out_dtype = torch.promote_types(hidden.dtype, weight.dtype)
    logits = F.linear(
        pooled.to(out_dtype), weight.to(out_dtype), None if bias is None else bias.to(out_dtype)
    )

    loss_dtype = torch.promote_types(out_dtype, torch.float32)
    total = F.cross_entropy(logits.to(loss_dtype), labels, ignore_index=ignore_index, reduction="sum")
    n_valid = (labels != ignore_index).sum()
    loss = total / n_valid.clamp(min=1)  # all rows ignored -> 0 / 1 = 0 with zero gradients
    return loss, logits


_compiled_reference: Any = None


def _get_compiled_reference() -> Any:
    """The reference under `torch.compile`, built on first use (compiling is slow; most runs never need it).

    Default (automatic) dynamic shapes: after the first recompile for a new T or B the graph is traced
    with symbolic sizes, so dynamic padding does not recompile every batch.
    """
    global _compiled_reference
    if _compiled_reference is None:
        _compiled_reference = torch.compile(masked_mean_cross_entropy_reference)
    return _compiled_reference


# --------------------------------------------------------------------------------------------------
# Triton kernels. Every load is cast to float32; every pointer offset uses the tensor's own strides,
# so non-contiguous inputs need no copy. Block sizes are powers of two; masks handle the ragged edges.
# --------------------------------------------------------------------------------------------------
@triton.jit
def _pool_fwd_kernel(
    hidden_ptr, mask_ptr, pooled_ptr, inv_count_ptr,
    T, H,
    stride_xb, stride_xt, stride_xh, stride_mb, stride_mt,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    """Program (b, h-block): p[b, h-block] = sum_t m[b,t] x[b,t,h-block] / n_b; the single pass over x."""
    b = tl.program_id(0).to(tl.int64)  # int64: b * stride_xb overflows int32 for big activations
    pid_h = tl.program_id(1)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    h_in = offs_h < H
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    count = tl.zeros([BLOCK_T], dtype=tl.float32)  # per-lane partial sums of m, reduced after the loop
    for t0 in range(0, T, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        t_in = offs_t < T
        m = tl.load(mask_ptr + b * stride_mb + offs_t * stride_mt, mask=t_in, other=0).to(tl.float32)
        x_ptrs = hidden_ptr + b * stride_xb + offs_t[:, None] * stride_xt + offs_h[None, :] * stride_xh
        x = tl.load(x_ptrs, mask=t_in[:, None] & h_in[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(m[:, None] * x, axis=0)
        count += m
    n = tl.sum(count, axis=0)
    inv = tl.where(n != 0.0, 1.0 / tl.where(n != 0.0, n, 1.0), 0.0)  # empty row -> weights 0 -> p = 0
    tl.store(pooled_ptr + b * H + offs_h, acc * inv, mask=h_in)
    if pid_h == 0:
        tl.store(inv_count_ptr + b, inv)


@triton.jit
def _head_fwd_kernel(
    pooled_ptr, weight_ptr, bias_ptr, labels_ptr, logits_ptr, lse_ptr, loss_ptr,
    B, C, H, ignore_index,
    stride_wc, stride_wh, stride_bias, stride_y,
    HAS_BIAS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    """Program (b-block): z = p W^T + c block by block over C, with a running max / sum for lse_b."""
    offs_b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    b_in = offs_b < B
    y = tl.load(labels_ptr + offs_b * stride_y, mask=b_in, other=ignore_index)
    run_max = tl.full([BLOCK_B], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_B], dtype=tl.float32)
    z_y = tl.zeros([BLOCK_B], dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        c_in = offs_c < C
        z = tl.zeros([BLOCK_B, BLOCK_C], dtype=tl.float32)
        for h0 in range(0, H, BLOCK_H):
            offs_h = h0 + tl.arange(0, BLOCK_H)
            h_in = offs_h < H
            p = tl.load(pooled_ptr + offs_b[:, None] * H + offs_h[None, :],
                        mask=b_in[:, None] & h_in[None, :], other=0.0)  # fmt: skip
            w_t = tl.load(weight_ptr + offs_c[None, :] * stride_wc + offs_h[:, None] * stride_wh,
                          mask=h_in[:, None] & c_in[None, :], other=0.0).to(tl.float32)  # W^T tile  # fmt: skip
            z = tl.dot(p, w_t, z, input_precision="ieee")  # true fp32 products, no TF32 rounding
        if HAS_BIAS:
            z += tl.load(bias_ptr + offs_c * stride_bias, mask=c_in, other=0.0).to(tl.float32)[None, :]
        tl.store(logits_ptr + offs_b[:, None] * C + offs_c[None, :], z, mask=b_in[:, None] & c_in[None, :])
        z = tl.where(c_in[None, :], z, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(z, axis=1))
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(z - new_max[:, None]), axis=1)
        run_max = new_max
        z_y += tl.sum(tl.where(offs_c[None, :] == y[:, None], z, 0.0), axis=1)
    lse = run_max + tl.log(run_sum)
    tl.store(lse_ptr + offs_b, lse, mask=b_in)
    loss_row = tl.where(y != ignore_index, lse - z_y, 0.0)
    bad_label = (y != ignore_index) & ((y < 0) | (y >= C))
    tl.store(loss_ptr + offs_b, tl.where(bad_label, float("nan"), loss_row), mask=b_in)  # loud, not silent


@triton.jit
def _dlogits_kernel(
    logits_ptr, lse_ptr, labels_ptr, grad_loss_ptr, n_valid_ptr, grad_logits_ptr, dlogits_ptr,
    C, ignore_index, stride_y, stride_gb, stride_gc,
    HAS_GRAD_LOSS: tl.constexpr, HAS_GRAD_LOGITS: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """Program (b, c-block): dz[b,c] = g/N (softmax(z_b)[c] - [c == y_b]) [b valid] + G[b,c]."""
    b = tl.program_id(0)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_in = offs_c < C
    dz = tl.zeros([BLOCK_C], dtype=tl.float32)
    if HAS_GRAD_LOSS:
        y = tl.load(labels_ptr + b * stride_y)
        scale = tl.load(grad_loss_ptr).to(tl.float32) / tl.load(n_valid_ptr)
        z = tl.load(logits_ptr + b * C + offs_c, mask=c_in, other=0.0)
        prob = tl.exp(z - tl.load(lse_ptr + b))
        dz = tl.where(y != ignore_index, (prob - tl.where(offs_c == y, 1.0, 0.0)) * scale, 0.0)
    if HAS_GRAD_LOGITS:
        g = tl.load(grad_logits_ptr + b * stride_gb + offs_c * stride_gc, mask=c_in, other=0.0)
        dz += g.to(tl.float32)
    tl.store(dlogits_ptr + b * C + offs_c, dz, mask=c_in)


@triton.jit
def _dweight_kernel(
    dlogits_ptr, pooled_ptr, dweight_ptr, dbias_ptr,
    B, C, H,
    HAS_BIAS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    """Program (c-block, h-block): dW[c,h] = sum_b dz[b,c] p[b,h]; the h-block 0 programs also write dc."""
    pid_h = tl.program_id(1)
    offs_c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    c_in = offs_c < C
    h_in = offs_h < H
    acc = tl.zeros([BLOCK_C, BLOCK_H], dtype=tl.float32)
    dbias = tl.zeros([BLOCK_C], dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        offs_b = b0 + tl.arange(0, BLOCK_B)
        b_in = offs_b < B
        dz_t = tl.load(dlogits_ptr + offs_b[None, :] * C + offs_c[:, None],
                       mask=c_in[:, None] & b_in[None, :], other=0.0)  # dz^T tile [C, B]  # fmt: skip
        p = tl.load(
            pooled_ptr + offs_b[:, None] * H + offs_h[None, :], mask=b_in[:, None] & h_in[None, :], other=0.0
        )
        acc = tl.dot(dz_t, p, acc, input_precision="ieee")
        dbias += tl.sum(dz_t, axis=1)
    out = dweight_ptr + offs_c[:, None] * H + offs_h[None, :]
    tl.store(out, acc.to(dweight_ptr.dtype.element_ty), mask=c_in[:, None] & h_in[None, :])
    if HAS_BIAS:
        if pid_h == 0:
            tl.store(dbias_ptr + offs_c, dbias.to(dbias_ptr.dtype.element_ty), mask=c_in)


@triton.jit
def _dpooled_kernel(
    dlogits_ptr, weight_ptr, dpooled_ptr,
    B, C, H, stride_wc, stride_wh,
    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    """Program (b-block, h-block): dp[b,h] = sum_c dz[b,c] W[c,h]."""
    offs_b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    b_in = offs_b < B
    h_in = offs_h < H
    acc = tl.zeros([BLOCK_B, BLOCK_H], dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        c_in = offs_c < C
        dz = tl.load(
            dlogits_ptr + offs_b[:, None] * C + offs_c[None, :], mask=b_in[:, None] & c_in[None, :], other=0.0
        )
        w = tl.load(weight_ptr + offs_c[:, None] * stride_wc + offs_h[None, :] * stride_wh,
                    mask=c_in[:, None] & h_in[None, :], other=0.0).to(tl.float32)  # fmt: skip
        acc = tl.dot(dz, w, acc, input_precision="ieee")
    tl.store(dpooled_ptr + offs_b[:, None] * H + offs_h[None, :], acc, mask=b_in[:, None] & h_in[None, :])


@triton.jit
def _dhidden_kernel(
    dpooled_ptr, mask_ptr, inv_count_ptr, dhidden_ptr,
    T, H, stride_mb, stride_mt,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    """Program (b, t-block, h-block): dx[b,t,h] = m[b,t] / n_b * dp[b,h], written straight into dx."""
    b = tl.program_id(0).to(tl.int64)
    offs_t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_h = tl.program_id(2) * BLOCK_H + tl.arange(0, BLOCK_H)
    t_in = offs_t < T
    h_in = offs_h < H
    a = tl.load(mask_ptr + b * stride_mb + offs_t * stride_mt, mask=t_in, other=0).to(tl.float32)
    a = a * tl.load(inv_count_ptr + b)
    dp = tl.load(dpooled_ptr + b * H + offs_h, mask=h_in, other=0.0)
    out = dhidden_ptr + b * T * H + offs_t[:, None] * H + offs_h[None, :]
    tl.store(
        out, (a[:, None] * dp[None, :]).to(dhidden_ptr.dtype.element_ty), mask=t_in[:, None] & h_in[None, :]
    )


# --------------------------------------------------------------------------------------------------
# Launchers: allocate outputs, pick block sizes, launch. Only small [B, H] / [B, C] buffers are created.
# --------------------------------------------------------------------------------------------------
def _pow2(n: int, lo: int, hi: int) -> int:
    """Smallest power of two >= n, clamped to [lo, hi] (tl.dot needs every block dimension >= 16)."""
    return max(lo, min(hi, triton.next_power_of_2(n)))


def _mask_arg(mask: torch.Tensor) -> torch.Tensor:
    # A bool tensor is read through a same-size uint8 view (no copy) so the kernels only see numbers.
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def _triton_forward(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    ignore_index: int,
) -> tuple[torch.Tensor, ...]:
    B, T, H = hidden.shape
    C = weight.shape[0]
    dev = hidden.device
    f32 = torch.float32
    mask_u = _mask_arg(mask)
    pooled = torch.empty(B, H, device=dev, dtype=f32)
    inv_count = torch.empty(B, device=dev, dtype=f32)
    block_h = _pow2(H, 16, 128)
    _pool_fwd_kernel[(B, triton.cdiv(H, block_h))](
        hidden, mask_u, pooled, inv_count, T, H, *hidden.stride(), *mask_u.stride(),
        BLOCK_T=_pow2(T, 1, 32), BLOCK_H=block_h,
    )  # fmt: skip

    logits = torch.empty(B, C, device=dev, dtype=f32)
    lse = torch.empty(B, device=dev, dtype=f32)
    loss_rows = torch.empty(B, device=dev, dtype=f32)
    block_b = 16
    _head_fwd_kernel[(triton.cdiv(B, block_b),)](
        pooled, weight, pooled if bias is None else bias, labels, logits, lse, loss_rows,
        B, C, H, ignore_index, *weight.stride(), 0 if bias is None else bias.stride(0), labels.stride(0),
        HAS_BIAS=bias is not None, BLOCK_B=block_b, BLOCK_C=_pow2(C, 16, 64), BLOCK_H=64,
    )  # fmt: skip
    n_valid = (labels != ignore_index).sum().clamp(min=1).to(f32)  # all ignored -> loss 0 / 1
    loss = loss_rows.sum() / n_valid
    return loss, logits, pooled, inv_count, lse, n_valid


def _triton_backward(
    grad_loss: torch.Tensor | None,
    grad_logits: torch.Tensor | None,
    saved: tuple[torch.Tensor, ...],
    ignore_index: int,
    need: tuple[bool, bool, bool],
    hidden_meta: tuple[torch.Size, torch.dtype],
    bias_dtype: torch.dtype | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    mask, weight, labels, logits, pooled, inv_count, lse, n_valid = saved
    need_hidden, need_weight, need_bias = need
    (B, T, H), hidden_dtype = hidden_meta
    C = weight.shape[0]
    dev = logits.device
    dlogits = torch.empty(B, C, device=dev, dtype=torch.float32)
    block_c = _pow2(C, 16, 1024)
    gl = grad_logits
    _dlogits_kernel[(B, triton.cdiv(C, block_c))](
        logits, lse, labels, logits if grad_loss is None else grad_loss, n_valid, logits if gl is None else gl, dlogits,
        C, ignore_index, labels.stride(0), *((0, 0) if gl is None else gl.stride()),
        HAS_GRAD_LOSS=grad_loss is not None, HAS_GRAD_LOGITS=gl is not None, BLOCK_C=block_c,
    )  # fmt: skip

    grad_hidden = grad_weight = grad_bias = None
    block_b, block_c, block_h = 16, _pow2(C, 16, 64), 64
    if need_weight or need_bias:
        # dW is written by the kernel even when only dc is needed: it is [C, H], small next to hidden.
        grad_weight = torch.empty(C, H, device=dev, dtype=weight.dtype)
        grad_bias = torch.empty(C, device=dev, dtype=bias_dtype) if need_bias else None
        _dweight_kernel[(triton.cdiv(C, block_c), triton.cdiv(H, block_h))](
            dlogits, pooled, grad_weight, grad_weight if grad_bias is None else grad_bias, B, C, H,
            HAS_BIAS=grad_bias is not None, BLOCK_B=block_b, BLOCK_C=block_c, BLOCK_H=block_h,
        )  # fmt: skip
        grad_weight = grad_weight if need_weight else None
    if need_hidden:
        dpooled = torch.empty(B, H, device=dev, dtype=torch.float32)
        _dpooled_kernel[(triton.cdiv(B, block_b), triton.cdiv(H, block_h))](
            dlogits, weight, dpooled, B, C, H, *weight.stride(),
            BLOCK_B=block_b, BLOCK_C=block_c, BLOCK_H=block_h,
        )  # fmt: skip
        grad_hidden = torch.empty(B, T, H, device=dev, dtype=hidden_dtype)
        mask_u = _mask_arg(mask)
        bt, bh = _pow2(T, 1, 32), _pow2(H, 16, 128)
        _dhidden_kernel[(B, triton.cdiv(T, bt), triton.cdiv(H, bh))](
            dpooled, mask_u, inv_count, grad_hidden, T, H, *mask_u.stride(), BLOCK_T=bt, BLOCK_H=bh,
        )  # fmt: skip
    return grad_hidden, grad_weight, grad_bias


# --------------------------------------------------------------------------------------------------
# Autograd wiring for the Triton path.
# --------------------------------------------------------------------------------------------------
class MaskedMeanCrossEntropyFunction(torch.autograd.Function):
    """Triton forward and backward; saves only the inputs plus [B, H] / [B, C] / [B] float32 buffers."""

    @staticmethod
    def forward(ctx, hidden, mask, weight, bias, labels, ignore_index):  # type: ignore[override]
        loss, logits32, pooled, inv_count, lse, n_valid = _triton_forward(
            hidden, mask, weight, bias, labels, ignore_index
        )
        ctx.save_for_backward(mask, weight, labels, logits32, pooled, inv_count, lse, n_valid)
        ctx.ignore_index = ignore_index
        ctx.hidden_meta = (hidden.shape, hidden.dtype)
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.set_materialize_grads(False)  # an unused output (loss or logits) then arrives as None
        out_dtype = torch.promote_types(hidden.dtype, weight.dtype)
        return loss, (logits32 if out_dtype == torch.float32 else logits32.to(out_dtype))

    @staticmethod
    def backward(ctx, grad_loss, grad_logits):  # type: ignore[override]
        need_hidden, _, need_weight, need_bias = ctx.needs_input_grad[:4]
        if grad_loss is None and grad_logits is None:
            return None, None, None, None, None, None
        grads = _triton_backward(
            grad_loss, grad_logits, ctx.saved_tensors, ctx.ignore_index,
            (need_hidden, need_weight, need_bias), ctx.hidden_meta, ctx.bias_dtype,
        )  # fmt: skip
        grad_hidden, grad_weight, grad_bias = grads
        return grad_hidden, None, grad_weight, grad_bias, None, None


# --------------------------------------------------------------------------------------------------
# Public entry point: validation and dispatch.
# --------------------------------------------------------------------------------------------------
def resolve_impl(impl: str, hidden: torch.Tensor, weight: torch.Tensor | None = None) -> str:
    """Map ``impl`` ("auto" | "triton" | "reference" | "compiled", or "on"/"off") to the path that will run.

    auto: Triton for CUDA tensors of a supported dtype when triton imports, else the reference.
    triton ("on"): Triton or a clear error; CPU tensors are allowed only when TRITON_INTERPRET=1 was set
    before this module was imported (the interpreter, for tests). reference ("off"): plain PyTorch.
    """
    name = _ALIASES.get(impl, impl)
    if name not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS + tuple(_ALIASES)}, got {impl!r}")
    dtypes_ok = hidden.dtype in TRITON_DTYPES and (weight is None or weight.dtype in TRITON_DTYPES)
    if name == "auto":
        return "triton" if HAS_TRITON and hidden.is_cuda and dtypes_ok else "reference"
    if name == "triton":
        if not HAS_TRITON:
            raise RuntimeError(
                "impl='triton' (--fused-head on) needs the `triton` package, which is not importable"
            )
        if not dtypes_ok:
            raise RuntimeError(
                f"the Triton kernel supports {TRITON_DTYPES}, got hidden {hidden.dtype}, "
                f"weight {None if weight is None else weight.dtype}; use impl='reference'"
            )
        if not hidden.is_cuda and not _kernels_interpreted():
            raise RuntimeError(
                "impl='triton' (--fused-head on) needs CUDA tensors; for CPU tensors set TRITON_INTERPRET=1 "
                "before importing minifreeze (the slow interpreter, meant for tests), or use impl='auto'/'reference'"
            )
    return name


def _check_inputs(hidden, mask, weight, bias, labels) -> None:
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be [B, T, H], got shape {tuple(hidden.shape)}")
    B, T, H = hidden.shape
    if min(B, T, H) < 1:
        raise ValueError(f"hidden must have B, T, H >= 1, got {tuple(hidden.shape)}")
    if tuple(mask.shape) != (B, T):
        raise ValueError(f"mask must be [B, T] = {(B, T)}, got {tuple(mask.shape)}")
    if weight.dim() != 2 or weight.shape[1] != H or weight.shape[0] < 1:
        raise ValueError(f"weight must be [C, H] with H = {H}, got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must be [C] = [{weight.shape[0]}], got {tuple(bias.shape)}")
    if tuple(labels.shape) != (B,) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be integer class ids of shape [{B}], got {labels.dtype} {tuple(labels.shape)}"
        )
    devices = {t.device for t in (hidden, mask, weight, labels) + (() if bias is None else (bias,))}
    if len(devices) != 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(map(str, devices))}")


def _check_labels(labels: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    """Out-of-range labels are an error, as in F.cross_entropy. Checked for CPU tensors only: on CUDA a
    check would synchronise every step, and the Triton kernel turns such a row's loss into NaN."""
    if labels.is_cuda:
        return
    ok = ((labels >= 0) & (labels < num_classes)) | (labels == ignore_index)
    if not bool(ok.all()):
        raise ValueError(f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}")


def masked_mean_cross_entropy(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    return_logits: bool = False,
    impl: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of ``linear(masked_mean(hidden, mask), weight, bias)`` against ``labels``.

    Returns the scalar loss, or ``(loss, logits)`` with ``return_logits=True``. Gradients flow to
    ``hidden``, ``weight`` and ``bias`` (and through ``logits`` if the caller uses them). See the module
    docstring for the math and the edge cases (empty mask rows, all-ignored batches), and
    ``resolve_impl`` for what ``impl`` selects.
    """
    _check_inputs(hidden, mask, weight, bias, labels)
    _check_labels(labels, weight.shape[0], ignore_index)
    path = resolve_impl(impl, hidden, weight)
    if path == "triton":
        loss, logits = MaskedMeanCrossEntropyFunction.apply(hidden, mask, weight, bias, labels, ignore_index)
    elif path == "compiled":
        loss, logits = _get_compiled_reference()(hidden, mask, weight, bias, labels, ignore_index)
    else:
        loss, logits = masked_mean_cross_entropy_reference(hidden, mask, weight, bias, labels, ignore_index)
    return (loss, logits) if return_logits else loss
