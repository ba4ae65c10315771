"""Summaries of a study over independently seeded problem instances (the replicate of every gradient question).

A study's rows carry an ``instance`` column; several rows of one instance (evaluation images of the ELBO
study) are first averaged into one value per instance, so that the interval is over instances, not over
images of one model. :func:`summarize` gives, per group (estimator, checkpoint), the mean over instances
with its 95% t interval on the scale where the statistic is unbounded:

    relative bias  the arithmetic mean, t interval with its low end clipped at 0: an unbiased estimator's
                   bias is exactly 0, on the bound, where no log-scale interval could reach
    relative std,  the geometric mean, t interval of the logs back-transformed
    relative MSE   (:func:`gumbench.intervals.positive_mean_interval`); where an instance reads exactly 0
                   (a deterministic estimator), the arithmetic mean clipped at 0 as for the bias
    cosine         the back-transformed mean Fisher z, t interval of atanh back-transformed
                   (:func:`gumbench.intervals.bounded_mean_interval`)

:func:`orderings` ranks the estimators of each group by the geometric mean of a positive statistic (lower
is better) and says, for each estimator and the next one down, on how many of the instances both were
measured on the first one's value is the lower: "on k of n instances".
"""

from __future__ import annotations

import math

from gumbench.intervals import Estimate, bounded_mean_interval, mean_interval, positive_mean_interval

SCALES = {"relative_bias": "zero-bounded", "relative_std": "log", "relative_mse": "log", "cosine": "fisher"}


def interval_over_instances(values, scale: str) -> Estimate:
    """The mean over instances of ``values`` with its 95% t interval on ``scale`` (see the module docstring);
    NaN where a value is missing."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if not len(values) or np.isnan(values).any():
        return Estimate(math.nan, math.nan, math.nan)
    if scale == "log" and (values > 0).all():
        return positive_mean_interval(values)
    if scale == "fisher":
        return bounded_mean_interval(values)
    raw = mean_interval(values)  # a value of exactly 0 (no log): the arithmetic mean, clipped at 0 like the bias
    return Estimate(raw.value, max(raw.low, 0.0) if not math.isnan(raw.low) else raw.low, raw.high)


def per_instance(frame, keys: list[str], columns: list[str]):
    """One row per (``keys``, instance): the mean of ``columns`` over that instance's rows."""
    return frame.groupby([*keys, "instance"], sort=False)[columns].mean().reset_index()


def summarize(frame, keys: list[str], columns: list[str]):
    """Per group of ``keys``: the number of instances and, per column, ``column``, ``column_low`` and
    ``column_high`` over instances (:func:`interval_over_instances`)."""
    import pandas as pd

    rows = []
    for group, part in per_instance(frame, keys, columns).groupby(keys, sort=False):
        row = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        row["instances"] = part["instance"].nunique()
        for column in columns:
            estimate = interval_over_instances(part[column], SCALES[column])
            row.update({column: estimate.value, f"{column}_low": estimate.low, f"{column}_high": estimate.high})
        rows.append(row)
    return pd.DataFrame(rows)


def orderings(frame, keys: list[str], column: str = "relative_mse", by: str = "label"):
    """Per group of ``keys``: the estimators (``by``) ranked by the geometric mean over instances of ``column``
    (lower first), each with the next one down and on how many of their common instances it is lower."""
    import pandas as pd

    wide = per_instance(frame, [*keys, by], [column])
    rows = []
    for group, part in wide.groupby(keys, sort=False):
        table = part.pivot(index="instance", columns=by, values=column)
        ranked = sorted(table.columns, key=lambda name: interval_over_instances(table[name].dropna(), "log").value)
        for better, worse in zip(ranked, ranked[1:]):
            both = table[[better, worse]].dropna()
            rows.append({**dict(zip(keys, group if isinstance(group, tuple) else (group,))), "better": better,
                         "worse": worse, "wins": int((both[better] < both[worse]).sum()), "instances": len(both)})
    return pd.DataFrame(rows, columns=[*keys, "better", "worse", "wins", "instances"])  # columns even with none


def format_orderings(table) -> list[str]:
    """Lines such as 'A below B on 4 of 5 instances' (every instance: 'on every instance, 5 of 5')."""
    lines = []
    for r in table.itertuples():
        count = f"on every instance ({r.wins} of {r.instances})" if r.wins == r.instances else \
            f"on {r.wins} of {r.instances} instances"
        lines.append(f"{r.better} below {r.worse} {count}")
    return lines


def span(values, fmt: str) -> str:
    """'a' where every value formats alike, else 'min-max' (the figures of several instances)."""
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low}-{high}"
