"""minifreeze's fused ops (Triton kernels beside their plain PyTorch references), one op per module.

Import them through ``minifreeze.ops``; this package lives in ``kernels/minifreeze_kernels`` and is
installed under the name ``minifreeze_kernels`` (never ``kernels``: see ``kernels/README.md``).
"""

from .masked_mean_cross_entropy import (
    HAS_TRITON,
    IMPLS,
    TRITON_DTYPES,
    MaskedMeanCrossEntropyFunction,
    masked_mean_cross_entropy,
    masked_mean_cross_entropy_reference,
    resolve_impl,
)

__all__ = [
    "HAS_TRITON",
    "IMPLS",
    "TRITON_DTYPES",
    "MaskedMeanCrossEntropyFunction",
    "masked_mean_cross_entropy",
    "masked_mean_cross_entropy_reference",
    "resolve_impl",
]
