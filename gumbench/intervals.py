"""Confidence intervals, in one place: Student's t quantile, the t interval of a mean over replicates,
Welch's interval of a difference of two means, and the jackknife standard error.

The sweep's verdict and report, the docs generator and gradstats all quote intervals from here, so a
number printed in one place is computed the way it is everywhere else. Functions that take summary
statistics (a mean, a standard deviation or variance, a count) leave computing those to the caller:
pandas and numpy sum in different orders, and a caller keeps the library it used before, so its
numbers stay the same to the last bit.

The quantile comes from ``scipy.special.stdtrit``, which is what ``scipy.stats.t.ppf`` calls (the
same number), without importing ``scipy.stats`` (three times as long).
"""

from __future__ import annotations

import math
from typing import NamedTuple

CONFIDENCE = 0.95


class Estimate(NamedTuple):
    """A value with the low and high ends of its interval (NaN ends: no interval can be given)."""

    value: float
    low: float
    high: float


def t_quantile(probability: float, df: float) -> float:
    """Student's t quantile: the x with P(T <= x) = ``probability`` for T with ``df`` degrees of
    freedom (df need not be whole, as in Welch's test); NaN for df <= 0."""
    from scipy.special import stdtrit

    return float(stdtrit(df, probability))


def _upper(confidence: float) -> float:
    """The upper quantile's probability of a two-sided interval: 0.975 for 95%."""
    return 0.5 + confidence / 2


def t_half_width(sd: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half the width of the t interval of a mean of ``n`` values with sample standard deviation
    ``sd`` (ddof=1): t(n - 1) * sd / sqrt(n); NaN with fewer than two values."""
    if n < 2:
        return math.nan
    return t_quantile(_upper(confidence), n - 1) * sd / math.sqrt(n)


def t_interval(mean: float, sd: float, n: int, confidence: float = CONFIDENCE) -> Estimate:
    """The mean with its t interval, from the mean, the sample standard deviation and the count."""
    half = t_half_width(sd, n, confidence)
    return Estimate(mean, mean - half, mean + half)


def mean_interval(values, confidence: float = CONFIDENCE) -> Estimate:
    """The mean of the replicates with its t interval (numpy's mean and standard deviation); NaN ends
    with one value, and everything NaN with none or with a NaN among them."""
    import numpy as np

    values = np.asarray(values, dtype=float).reshape(-1)
    if not len(values):
        return Estimate(math.nan, math.nan, math.nan)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return t_interval(mean, sd, len(values), confidence)


def welch_interval(
    a: tuple[float, float, int], b: tuple[float, float, int], confidence: float = CONFIDENCE
) -> Estimate:
    """mean(a) - mean(b) with Welch's t interval; each side given as (mean, variance (ddof=1), count).
    NaN ends when a side has fewer than two values; a point interval when both variances are 0."""
    (mean_a, var_a, n_a), (mean_b, var_b, n_b) = a, b
    diff = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return Estimate(diff, math.nan, math.nan)
    va, vb = var_a / n_a, var_b / n_b
    if va + vb == 0:
        return Estimate(diff, diff, diff)
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))  # Welch-Satterthwaite
    half = t_quantile(_upper(confidence), df) * math.sqrt(va + vb)
    return Estimate(diff, diff - half, diff + half)


def welch_difference(a, b, confidence: float = CONFIDENCE) -> Estimate:
    """mean(a) - mean(b) of two sets of replicates with Welch's t interval (numpy's statistics)."""
    import numpy as np

    sides = []
    for values in (a, b):
        values = np.asarray(values, dtype=float).reshape(-1)
        sides.append((float(values.mean()) if len(values) else math.nan,
                      float(values.var(ddof=1)) if len(values) > 1 else math.nan, len(values)))
    return welch_interval(*sides, confidence=confidence)


def jackknife_se(replicates, dim: int = 0):
    """The jackknife standard error from K leave-one-out (or leave-one-group-out) replicates of a
    statistic along ``dim`` of a torch tensor: sqrt((K - 1) / K * sum_k (r_k - mean r)^2)."""
    k = replicates.shape[dim]
    spread = (replicates - replicates.mean(dim, keepdim=True)).pow(2).sum(dim)
    return ((k - 1) / k * spread).sqrt()
