"""Confidence intervals, in one place: Student's t quantile, the t interval of a mean over replicates,
Welch's interval of a difference of two means, and the jackknife standard error; intervals that
respect their statistic's range by construction (a transformed scale, back-transformed): the jackknife
interval of a positive or [-1, 1]-bounded statistic (:func:`jackknife_interval`), the geometric mean of
positive replicates (:func:`positive_mean_interval`) and the Fisher-z mean of bounded ones
(:func:`bounded_mean_interval`).

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


# Ranges of bounded statistics and the transform that maps each onto the whole line.
POSITIVE = "positive"  # (0, inf): log
CORRELATION = "correlation"  # (-1, 1): Fisher's z = atanh
_RANGES = {POSITIVE: (0.0, math.inf), CORRELATION: (-1.0, 1.0)}


def _transform(scale: str):
    """(forward, back) of ``scale``'s transform, on torch tensors."""
    import torch

    if scale == POSITIVE:
        return torch.log, torch.exp
    if scale == CORRELATION:
        return torch.atanh, torch.tanh
    raise ValueError(f"unknown scale {scale!r}")


def jackknife_interval(value, replicates, t: float, scale: str, boundary: bool = False):
    """(value, low, high) of a statistic from its full-sample ``value`` (shape (...)) and its K leave-one-out
    replicates (K, ...) with quantile ``t``: the jackknife interval on the transformed scale of ``scale``
    (log for a positive statistic, Fisher's z for one in [-1, 1]), back-transformed, so that it lies in
    the statistic's range by construction and contains its value.

    Where the transform is undefined (the value or a replicate at or beyond a bound: a variance of
    exactly 0, a squared bias estimated below 0, a cosine of exactly 1), the raw interval clipped to the
    range is given instead, with the value clipped too. ``boundary=True`` marks a statistic whose true
    value can lie on the bound (a squared bias of 0, a cosine of 1: an unbiased estimator's): there the
    raw interval, clipped, is also kept wherever it reaches the bound, since no interval inside the open
    range can cover a true value on it; the transform is used where the data resolve the value from the
    bound. Element-wise: each coordinate of a tensor statistic chooses for itself."""
    import torch

    low_bound, high_bound = _RANGES[scale]
    forward, back = _transform(scale)
    raw_half = t * jackknife_se(replicates)
    raw_low, raw_high = value - raw_half, value + raw_half
    inside = (value > low_bound) & (value < high_bound)
    inside &= ((replicates > low_bound) & (replicates < high_bound)).all(0)
    if boundary:
        inside &= (raw_low > low_bound) & (raw_high < high_bound)
    safe = torch.where(inside, value, torch.full_like(value, 0.5))  # any point inside the range of both scales
    safe_replicates = torch.where(inside, replicates, 0.5)
    z, half = forward(safe), t * jackknife_se(forward(safe_replicates))
    clipped = value.clamp(low_bound, high_bound)
    low = torch.where(inside, back(z - half), raw_low.clamp(low_bound, high_bound))
    high = torch.where(inside, back(z + half), raw_high.clamp(low_bound, high_bound))
    # the back-transform may round a point interval (half = 0) by an ulp off the value: keep the value inside
    return clipped, torch.minimum(low, clipped), torch.maximum(high, clipped)


def _checked_values(values, owner: str):
    import numpy as np

    from gumbench.errors import GumbenchError

    values = np.asarray(values, dtype=float).reshape(-1)
    if np.isnan(values).any():
        raise GumbenchError(f"{owner}: the values include NaN")
    return values


def positive_mean_interval(values, confidence: float = CONFIDENCE) -> Estimate:
    """The geometric mean of positive replicates (per-instance MSE ratios, variances) with the t interval of
    their mean log, back-transformed: it lies in (0, inf) by construction. NaN ends with one value, all
    NaN with none; a value <= 0 or inf (where the log scale is undefined) is refused."""
    import numpy as np

    from gumbench.errors import GumbenchError

    values = _checked_values(values, "positive_mean_interval")
    if not np.isfinite(values).all() or (values <= 0).any():
        raise GumbenchError("positive_mean_interval: the values must be positive and finite (the interval is "
                            f"taken on the log scale), got {values[~np.isfinite(values) | (values <= 0)][0]:g}")
    logs = mean_interval(np.log(values), confidence)
    return Estimate(*(math.exp(v) for v in logs))


def bounded_mean_interval(values, low: float = -1.0, high: float = 1.0, confidence: float = CONFIDENCE) -> Estimate:
    """The mean of replicates in [low, high] (cosines, correlations in [-1, 1]; rates in [0, 1]) with the
    t interval of their Fisher z = atanh(2 (v - low) / (high - low) - 1), back-transformed: the value is
    the back-transformed mean z, and the interval lies in [low, high] by construction. Where a value
    lies on a bound (z infinite), the arithmetic mean with its t interval clipped to [low, high] is
    given instead. A value outside [low, high] is refused."""
    import numpy as np

    from gumbench.errors import GumbenchError

    values = _checked_values(values, "bounded_mean_interval")
    if not low < high:
        raise GumbenchError(f"bounded_mean_interval: low must be below high, got [{low:g}, {high:g}]")
    if ((values < low) | (values > high)).any():
        raise GumbenchError(f"bounded_mean_interval: the values must lie in [{low:g}, {high:g}], got "
                            f"{values[(values < low) | (values > high)][0]:g}")
    if ((values == low) | (values == high)).any():
        raw = mean_interval(values, confidence)
        return Estimate(*(min(max(v, low), high) if not math.isnan(v) else v for v in raw))
    unit = 2 * (values - low) / (high - low) - 1
    z = mean_interval(np.arctanh(unit), confidence)
    return Estimate(*(low + (high - low) * (math.tanh(v) + 1) / 2 for v in z))
