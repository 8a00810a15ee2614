"""Intervals and paired tests for the study's tables: Student's t, from the standard library alone.

Why these and not more: a cell of the study has 3-15 runs, so its mean needs an interval (mean ± std says
how runs scatter, not how well the mean is known), and a depth is compared with depth 0 run by run (same
seed, same data subset), because most of the run-to-run noise is shared by the pair and cancels in the
difference. Many depths are compared at each train size, so a row also says which differences survive
Holm's correction for the number of comparisons in it.

Why no scipy: one distribution is needed. With t = sqrt(v) tan(theta), Student's t density with v degrees
of freedom becomes cos(theta)^(v - 1) on (-pi/2, pi/2): smooth and bounded, so Simpson's rule on that
finite interval gives the tail to about 1e-10 for every t, and bisection on theta gives the quantile.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

SIMPSON_STEPS = 2000  # even; the integrand is smooth, so this is far past the accuracy a table shows


def _cos_power_integral(theta: float, df: float) -> float:
    """The integral of cos(x)^(df - 1) from 0 to theta (Simpson's rule)."""
    h = theta / SIMPSON_STEPS
    total = sum((4 if i % 2 else 2) * math.cos(i * h) ** (df - 1) for i in range(1, SIMPSON_STEPS))
    return (total + 1 + math.cos(theta) ** (df - 1)) * h / 3


def t_central(t: float, df: float) -> float:
    """P(|T| <= t) for Student's t with `df` degrees of freedom."""
    theta = math.atan(abs(t) / math.sqrt(df))
    return _cos_power_integral(theta, df) / _cos_power_integral(math.pi / 2, df)


@cache  # a table asks for the same few degrees of freedom again and again
def t_quantile(level: float, df: float) -> float:
    """The t with P(|T| <= t) = level: the half-width of a `level` interval is t * std / sqrt(n)."""
    low, high = 0.0, math.pi / 2
    for _ in range(60):  # bisection on theta: 2^-60 of the interval
        mid = (low + high) / 2
        low, high = (mid, high) if t_central(math.sqrt(df) * math.tan(mid), df) < level else (low, mid)
    return math.sqrt(df) * math.tan((low + high) / 2)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of its `level` confidence interval); the half-width is NaN for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, t_quantile(level, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


@dataclass(frozen=True)
class Paired:
    """A paired comparison: b - a over the keys both have."""

    n: int
    mean: float
    half_width: float  # of the 95% interval of the mean difference
    p: float  # two-sided paired t-test; NaN below two pairs

    def text(self, significant: str = "") -> str:
        if self.n < 2:
            return f"{self.mean:+.3f} (1 pair)"
        return f"{self.mean:+.3f} ± {self.half_width:.3f}{significant} (p {self.p:.2g})"


def paired(a: dict, b: dict, level: float = 0.95) -> Paired:
    """Compare two cells run by run: `a` and `b` map a run's key (seed, data subset) to its value."""
    keys = sorted(set(a) & set(b))
    if not keys:
        raise ValueError("no run is in both cells: nothing to pair")
    diffs = [b[k] - a[k] for k in keys]
    mean, half = mean_ci(diffs, level)
    if len(diffs) < 2:
        return Paired(len(diffs), mean, half, float("nan"))
    std = statistics.stdev(diffs)
    if std == 0:  # every pair moved by the same amount (often 0: the same predictions)
        return Paired(len(diffs), mean, 0.0, 1.0 if mean == 0 else 0.0)
    t = mean / (std / math.sqrt(len(diffs)))
    return Paired(len(diffs), mean, half, 1 - t_central(t, len(diffs) - 1))


def chi2_cdf(x: float, df: float) -> float:
    """P(X <= x) for a chi-square with `df` degrees of freedom: the lower incomplete gamma's series."""
    if x <= 0:
        return 0.0
    a, half = df / 2, x / 2
    term = total = 1 / a
    k = 0
    while term > 1e-16 * total:  # the terms shrink once k > half; a few hundred at most for a table's x
        k += 1
        term *= half / (a + k)
        total += term
    return math.exp(a * math.log(half) - half - math.lgamma(a)) * total


def std_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(sample std, low, high): the `level` interval of the spread sigma, from the chi-square of s^2."""
    if len(values) < 2:
        return float("nan"), float("nan"), float("nan")
    std = statistics.stdev(values)
    return (std, *sigma_interval(std, len(values) - 1, level))


def sigma_interval(std: float, df: int, level: float = 0.95) -> tuple[float, float]:
    """The `level` interval of sigma given a sample std with `df` degrees of freedom (normal runs).

    Five runs pin a std down only to within a factor of about two each way: what this interval shows.
    """
    tail = (1 - level) / 2
    return std * math.sqrt(df / _chi2_quantile(1 - tail, df)), std * math.sqrt(df / _chi2_quantile(tail, df))


@cache
def _chi2_quantile(p: float, df: float) -> float:
    low, high = 0.0, df + 20 * math.sqrt(2 * df) + 20
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if chi2_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Which of the tests are significant at family-wise error `alpha` (Holm's step-down; NaN never is)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if p == p)
    significant = [False] * len(p_values)
    for rank, (p, i) in enumerate(order):
        if p > alpha / (len(order) - rank):
            break
        significant[i] = True
    return significant
