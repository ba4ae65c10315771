"""The tidy frames the report's figures are drawn from: one row per plotted point, its mean over the
replicates (problem instances for gradient statistics, training seeds for training curves) and the 95%
t interval of that mean (:mod:`gumbench.intervals`), never a min-max range.

On a logarithmic axis (total variance) a point is the geometric mean of its replicates and its interval
the t interval of the mean of their log10, taken back: both ends stay positive. An estimator whose
value is exactly 0 on every replicate (a deterministic estimator's variance) is the point 0 with the
interval [0, 0]; one with some zero and some positive values has no geometric mean and keeps the
arithmetic mean and its t interval, its lower end floored at 0.

Also here: which tasks a temperature figure shows, how panels split into figures of a readable height,
and panel titles wrapped to a panel's width.
"""

from __future__ import annotations

import math

from gumbench.intervals import CONFIDENCE, t_quantile

MOST_PANELS = 6  # two rows of three: a figure that fits a 900 px screen


def _t_factors(counts):
    """t(n - 1) quantile of a two-sided 95% interval for each count (NaN below 2), one quantile per distinct n."""
    import numpy as np

    counts = np.asarray(counts, dtype=int)
    quantiles = {n: (t_quantile(0.5 + CONFIDENCE / 2, n - 1) if n > 1 else math.nan) for n in set(counts.tolist())}
    return np.array([quantiles[n] for n in counts], dtype=float)


def grouped_interval(frame, keys: list[str], column: str, log: bool = False):
    """Per group of ``keys``: ``mean``, ``low``, ``high`` (95% t interval of the mean over the group's finite
    values) and ``n`` (their count). ``log``: geometric mean and interval from the log10 values where every
    value is positive (see the module docstring). Linear in the rows."""
    import numpy as np

    values = frame[column].astype(float)
    finite = frame.assign(_v=values.where(np.isfinite(values)))
    if log:
        not_positive = (finite["_v"] <= 0).groupby([finite[k] for k in keys]).transform("sum")
        finite = finite.assign(_pos=not_positive == 0, _log=np.log10(finite["_v"].where(finite["_v"] > 0)))
    stats = finite.groupby(keys, sort=False)["_v"].agg(["mean", "std", "count"])
    half = _t_factors(stats["count"]) * stats["std"].to_numpy() / np.sqrt(stats["count"].clip(lower=1))
    out = stats.assign(low=stats["mean"] - half, high=stats["mean"] + half)
    if log:
        logs = finite.groupby(keys, sort=False).agg(pos=("_pos", "first"), lm=("_log", "mean"), ls=("_log", "std"))
        lhalf = _t_factors(stats["count"]) * logs["ls"].to_numpy() / np.sqrt(stats["count"].clip(lower=1))
        use = logs["pos"].to_numpy() & (stats["count"].to_numpy() > 0)
        out["mean"] = np.where(use, 10 ** logs["lm"], out["mean"])
        out["low"] = np.where(use, 10 ** (logs["lm"] - lhalf), out["low"].clip(lower=0))
        out["high"] = np.where(use, 10 ** (logs["lm"] + lhalf), out["high"])
        zero = (stats["std"] == 0) & (stats["mean"] == 0)
        out.loc[zero, ["low", "high"]] = 0.0
    return out.rename(columns={"count": "n"})[["mean", "low", "high", "n"]].reset_index()


def wide_gradstats(grad):
    """One row per unit: short task, label, family, tau, instance, series (label without tau) and the metrics."""
    from gumbench.benchmarks.sweep.verdict import short_task
    from gumbench.registry import format_spec, parse_spec

    wide = grad.pivot_table(index=["unit_id", "task", "label", "estimator_name", "estimator"], columns="metric",
                            values="value", aggfunc="first").reset_index()
    for metric in grad["metric"].unique():  # a metric with no finite value (blanked, finite_rows) keeps its column
        if metric not in wide:
            wide[metric] = float("nan")
    units = grad.drop_duplicates("unit_id").set_index("unit_id")
    wide["tau"] = units.loc[wide["unit_id"], "tau"].to_numpy()
    # the replicate: the problem instance (until rows carry one, the repetition, which seeds it)
    wide["instance"] = units.loc[wide["unit_id"], "instance" if "instance" in units else "repetition"].to_numpy()
    order = {t: i for i, t in enumerate(grad["task"].unique())}  # the config's order, not the pivot's
    wide = wide.sort_values("task", key=lambda t: t.map(order), kind="stable")
    wide["task"] = wide["task"].map({t: short_task("gradstats", t) for t in wide["task"].unique()})

    def series(label):
        parsed = parse_spec(label)
        return format_spec(parsed.name, {k: v for k, v in parsed.params.items() if k != "tau"})

    wide["series"] = wide["label"].map({s: series(s) for s in wide["label"].unique()})
    return wide


def bias_variance_points(wide, compared):
    """One row per (task, label): relative bias (mean, t interval) and total variance (geometric mean, t interval
    on log10), the count of instances measured, and whether the verdict calls the estimator degenerate."""
    keys = ["task", "label", "estimator_name"]
    bias = grouped_interval(wide, keys, "relative_bias")
    variance = grouped_interval(wide, keys, "total_variance", log=True)
    points = bias.merge(variance, on=keys, suffixes=("_bias", "_variance"))
    standing = compared.set_index(["task", "label"])["standing"].to_dict() if not compared.empty else {}
    points["degenerate"] = [standing.get((t, lb)) == "degenerate" for t, lb in zip(points["task"], points["label"])]
    # an instance whose exact gradient vanishes has no statistics (vanishing_gradient rows): n counts the others,
    # and an estimator with none left is not drawn
    return points.dropna(subset=["mean_bias", "mean_variance"]).reset_index(drop=True)


def temperature_tasks(wide) -> list[str]:
    """The tasks in which one estimator (a label without its temperature: a series) is measured at more than one
    temperature, in their order. Two estimators each at its own temperature do not make a temperature question."""
    taus = wide.dropna(subset=["tau"]).groupby(["task", "series"])["tau"].nunique()
    varied = set(taus[taus > 1].index.get_level_values("task"))
    return [t for t in dict.fromkeys(wide["task"]) if t in varied]


def temperature_points(wide, metric: str, log: bool):
    """For the :func:`temperature_tasks`: one row per (task, series, tau) with the metric's mean and t interval over
    instances (tau NaN: an estimator without a temperature, drawn as a level)."""
    rows = wide[wide["task"].isin(temperature_tasks(wide))]
    keys = ["task", "series", "estimator_name", "tau"]
    return grouped_interval(rows.assign(tau=rows["tau"].fillna(-1.0)), keys, metric, log=log).assign(
        tau=lambda f: f["tau"].where(f["tau"] >= 0)
    )


def training_bands(training, metric: str, log: bool = False):
    """One row per (task, label, step): the metric's mean over seeds with its t interval and the seed count.
    ``log``: geometric means and intervals in the tasks whose values are all positive (drawn on a log axis)."""
    import pandas as pd

    rows = training[training["metric"] == metric]
    keys = ["task", "label", "estimator_name", "step"]
    if not log:
        return grouped_interval(rows, keys, "value")
    positive = (rows["value"] > 0) | rows["value"].isna()
    logged = positive.groupby(rows["task"]).transform("all")
    parts = [grouped_interval(rows[logged], keys, "value", log=True), grouped_interval(rows[~logged], keys, "value")]
    order = {t: i for i, t in enumerate(dict.fromkeys(rows["task"]))}
    bands = pd.concat([p for p in parts if not p.empty] or parts[:1], ignore_index=True)
    return bands.sort_values("task", key=lambda t: t.map(order), kind="stable", ignore_index=True)


def panel_chunks(tasks: list[str], family) -> list[list[str]]:
    """The tasks split into figures of at most :data:`MOST_PANELS` panels: whole problem families (``family``:
    task -> name) packed together in order, a family with more panels split into nearly equal parts."""
    groups: dict[str, list[str]] = {}
    for task in tasks:
        groups.setdefault(family(task), []).append(task)
    chunks: list[list[str]] = []
    for members in groups.values():
        parts = math.ceil(len(members) / MOST_PANELS)
        size = math.ceil(len(members) / parts)
        for i in range(0, len(members), size):
            part = members[i:i + size]
            if chunks and len(chunks[-1]) + len(part) <= MOST_PANELS and parts == 1:
                chunks[-1].extend(part)
            else:
                chunks.append(list(part))
    return chunks


def wrap_title(text: str, width: int) -> str:
    """``text`` on lines of at most ``width`` characters where it can be: broken after commas (a spec's parameters),
    a piece still too long after its opening bracket, then anywhere."""
    import re

    pieces = []
    for piece in re.split(r"(?<=,)", text):
        pieces += re.split(r"(?<=\[)", piece) if len(piece) > width else [piece]
    lines = [""]
    for piece in (p for p in pieces if p):
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
        while len(lines[-1]) > width:
            lines[-1:] = [lines[-1][:width], lines[-1][width:]]
    return "\n".join(line.strip() for line in lines if line.strip())
