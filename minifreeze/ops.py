"""Stable import path for minifreeze's fused ops, whatever the folder layout of ``kernels/``.

``setup.cfg`` installs ``kernels/minifreeze_kernels`` as the top-level package ``minifreeze_kernels``.
Running from a source checkout without installing, that package is not on ``sys.path`` yet, so we add
``<repo>/kernels`` (the folder *containing* it; it has no ``__init__.py`` and is never importable as
``kernels``, a name that Hugging Face's ``kernels`` package and transformers' probe of it own).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("minifreeze_kernels") is None:
    _source_kernels = Path(__file__).resolve().parent.parent / "kernels"
    if (_source_kernels / "minifreeze_kernels" / "__init__.py").is_file():
        sys.path.append(str(_source_kernels))

from minifreeze_kernels import (  # noqa: E402
    HAS_TRITON,
    IMPLS,
    MaskedMeanCrossEntropyFunction,
    masked_mean_cross_entropy,
    masked_mean_cross_entropy_reference,
    resolve_impl,
)

__all__ = [
    "HAS_TRITON",
    "IMPLS",
    "MaskedMeanCrossEntropyFunction",
    "masked_mean_cross_entropy",
    "masked_mean_cross_entropy_reference",
    "resolve_impl",
]
