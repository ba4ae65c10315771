"""The report's figures, drawn from stored results, each captioned with what "better" means, at most
1,300 px wide so that it reads at 100%, and split into parts of at most six panels (two rows: a screen),
with the legend beside the panels:

* per task, relative bias against total variance with the Pareto front marked;
* relative bias and total variance against the temperature, a panel per task in which one estimator is run
  at several temperatures;
* training loss and evaluation code perplexity per step;
* the kernel profile, when a CSV from ``gumbench profile-kernel`` is given.

Every point carries the 95% t interval of its mean over the replicates (problem instances for gradient
statistics, seeds for training), computed in :mod:`gumbench.benchmarks.sweep.figure_data`; a test draws
every figure of the reference run and fails when two texts overlap.
Estimators are coloured by family (one hue each) with a shade per variant, the same in every figure.
:func:`draw_figures` returns them as PNG bytes; :mod:`gumbench.benchmarks.sweep.report` lays them out.
"""

from __future__ import annotations

import io
import math

from gumbench.benchmarks.sweep.figure_data import (
    bias_variance_points,
    panel_chunks,
    temperature_points,
    training_bands,
    wide_gradstats,
    wrap_title,
)
from gumbench.benchmarks.sweep.verdict import short_task

FAMILIES = (
    "st-gumbel",
    "soft-gumbel",
    "straight-through",
    "gumbel-rao",
    "gst",
    "reinmax",
    "reinforce",
    "disarm",
    "vq-commitment",
)
WIDTH_IN, DPI = 11.6, 110  # 1,276 px: readable at 100% in a 1,400 px window
TITLE_CHARS = 44  # a panel title's line, in characters, at three panels and a legend to a row
LINESTYLES = ("-", "--", ":", "-.")


def set_style() -> None:
    """The report's look, set once before drawing: the Agg backend and seaborn's white grid at 0.8 of its font."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", font_scale=0.8)


# --- colours ---------------------------------------------------------------------------------

def _hues() -> list[tuple]:
    """Distinct family colours: tab10, then Dark2 and Set1 for the families past the tenth (a sweep of
    every estimator has about twenty), so that two families share a colour only past 27."""
    import seaborn as sns

    return sns.color_palette("tab10", 10) + sns.color_palette("Dark2", 8) + sns.color_palette("Set1", 9)


def family_palette(pairs) -> dict[str, tuple]:
    """label -> RGB for rows with ``label``, ``estimator_name`` and ``tau``: one hue per family (:func:`_hues`),
    shades from light to dark across its variants (by temperature, then name)."""
    import numpy as np

    hues = _hues()
    known = list(FAMILIES) + sorted(set(pairs["estimator_name"]) - set(FAMILIES))
    palette = {}
    for family, group in pairs.drop_duplicates("label").groupby("estimator_name"):
        base = np.array(hues[known.index(family) % len(hues)])
        labels = group.sort_values(["tau", "label"], na_position="first")["label"].tolist()
        for label, t in zip(labels, np.linspace(-0.4, 0.4, len(labels)) if len(labels) > 1 else [0.0]):
            shade = base + (1 - base) * -t if t < 0 else base * (1 - t)
            palette[label] = tuple(float(c) for c in shade)
    return palette


def _family_handles(pairs):
    """Legend handles: one mid shade per family."""
    from matplotlib.lines import Line2D

    hues = _hues()
    known = list(FAMILIES) + sorted(set(pairs["estimator_name"]) - set(FAMILIES))
    return [Line2D([], [], color=hues[known.index(f) % len(hues)], marker="o", linestyle="", label=f)
            for f in known if f in set(pairs["estimator_name"])]


# --- figures ---------------------------------------------------------------------------------

def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _panels(count: int, height: float):
    """A figure of ``count`` panels, three to a row, with room on the right for the legend."""
    import matplotlib.pyplot as plt

    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, height * rows + 0.4), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _legend_beside(fig, handles, fontsize: float = 7.5) -> None:
    """The figure's legend to the right of its panels, in as many columns as its height needs."""
    rows_fit = max(4, int(fig.get_size_inches()[1] * 72 / (fontsize * 1.45)))
    fig.legend(handles=handles, loc="outside right upper", ncol=max(1, math.ceil(len(handles) / rows_fit)),
               fontsize=fontsize, frameon=False, handlelength=1.8, borderaxespad=0.2)


def _family(task: str) -> str:
    return task.split("[", 1)[0]


def _title(ax, task: str, extra: str = "") -> None:
    ax.set_title(wrap_title(task, TITLE_CHARS) + (f"\n{wrap_title(extra, TITLE_CHARS)}" if extra else ""),
                 fontsize=8.5)


def _log_axis(axis) -> None:
    """A log axis with at most five labelled decades and no labelled minor ticks (they collide)."""
    from matplotlib.ticker import LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(numticks=5))
    axis.set_minor_formatter(NullFormatter())


def _axis_range(values, decades: float = 8.0):
    """(low, high) of a log axis covering the positive values, at most ``decades`` below the largest and at least
    two decades wide (so that a labelled decade shows)."""
    import numpy as np

    positive = np.asarray(values, dtype=float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if not len(positive):
        return 1e-3, 1.0
    low, high = max(positive.min() / 2, positive.max() * 2 / 10 ** decades), positive.max() * 2
    if high / low < 100:
        middle = math.sqrt(high * low)
        low, high = middle / 10, middle * 10
    return low, high


def _front(healthy) -> list:
    """The Pareto front of the healthy points (by their means): left to right, each with less bias than the last."""
    front, best = [], math.inf
    for row in healthy.sort_values(["mean_variance", "mean_bias"]).itertuples():
        if row.mean_bias < best:
            front.append(row)
            best = row.mean_bias
    return front


def _bias_variance_panel(ax, task, rows, palette) -> None:
    import numpy as np

    healthy = rows[~rows["degenerate"]]
    x_low, x_high = _axis_range(np.concatenate([rows["mean_variance"], rows["low_variance"], rows["high_variance"]]))
    highest = (healthy if len(healthy) else rows)["high_bias"].fillna(rows["mean_bias"]).max()
    y_high = max(1.05, 1.1 * highest) if math.isfinite(highest) else 1.05
    for row in rows.itertuples():
        x, y = float(np.clip(row.mean_variance, x_low, x_high)), min(row.mean_bias, y_high)
        xerr = [[max(x - max(row.low_variance, x_low), 0)], [max(min(row.high_variance, x_high) - x, 0)]]
        yerr = [[max(y - row.low_bias, 0)], [max(row.high_bias - y, 0)]]
        line, _, _ = ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="x" if row.degenerate else "o", markersize=4,
                                 color=palette[row.label], elinewidth=0.8, capsize=1.5, zorder=3)
        line.set_clip_on(False)
    front = _front(healthy)
    if front:
        xs = [float(np.clip(r.mean_variance, x_low, x_high)) for r in front]
        ax.step(xs, [r.mean_bias for r in front], where="post", color="black", linewidth=0.8, zorder=2)
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(0, y_high)
    _title(ax, task, "front, left to right: " + ", ".join(r.label for r in front) if front else "")
    ax.set_xlabel("total variance tr(Σ) (log)")
    ax.set_ylabel("relative bias ‖E[x]−e‖/‖e‖")


def bias_variance_figures(points, palette) -> list:
    """Per task, relative bias against total variance (log) with 95% t intervals over instances in both axes and
    the Pareto front of the healthy estimators; a figure per :func:`panel_chunks` part."""
    figures = []
    by_task = dict(tuple(points.groupby("task", sort=False)))  # one pass over the rows, not one per panel
    for tasks in panel_chunks(list(by_task), _family):
        fig, axes = _panels(len(tasks), 3.3)
        for ax, task in zip(axes, tasks):
            _bias_variance_panel(ax, task, by_task[task], palette)
        _legend_beside(fig, _family_handles(points[points["task"].isin(tasks)]))
        figures.append((tasks, fig))
    return figures


def _series_styles(points) -> dict[str, str]:
    styles = {}
    for _, group in points.groupby("estimator_name"):
        for i, series in enumerate(sorted(group["series"].unique())):
            styles[series] = LINESTYLES[i % len(LINESTYLES)]
    return styles


def _temperature_panel(ax, rows, colors, styles, handles) -> None:
    levels = rows[rows["tau"].isna()]
    for series, group in rows[rows["tau"].notna()].groupby("series", sort=True):
        group = group.sort_values("tau")
        low, high = (group["mean"] - group["low"]).clip(lower=0), (group["high"] - group["mean"]).clip(lower=0)
        container = ax.errorbar(group["tau"], group["mean"], yerr=[low, high], marker="o", markersize=3,
                                color=colors[series], linestyle=styles[series], linewidth=1.1, elinewidth=0.7,
                                capsize=1.5, label=series)
        handles.setdefault(series, container)
    for row in levels.sort_values("series").itertuples():
        style = (0, (4, 2)) if styles[row.series] == "-" else styles[row.series]
        line = ax.axhline(row.mean, color=colors[row.series], linestyle=style, linewidth=1.1, label=row.series)
        if math.isfinite(row.low):
            ax.axhspan(row.low, row.high, color=colors[row.series], alpha=0.1, linewidth=0)
        handles.setdefault(row.series, line)


def temperature_figures(points, metric_label: str, colors, log: bool) -> list:
    """The metric against the temperature in each task where one estimator is run at several temperatures
    (:func:`temperature_tasks`): mean over instances with its 95% t interval at each temperature; estimators without
    a temperature as dashed levels with their interval as a band. ``colors``: series -> colour."""
    import numpy as np

    styles = _series_styles(points)
    figures = []
    by_task = dict(tuple(points.groupby("task", sort=False)))
    for tasks in panel_chunks(list(by_task), _family):
        fig, axes = _panels(len(tasks), 3.0)
        handles: dict = {}
        for ax, task in zip(axes, tasks):
            rows = by_task[task]
            _title(ax, task)
            if not np.isfinite(rows["mean"].astype(float)).any():  # all infinite or missing: no scale to set
                ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
                continue
            _temperature_panel(ax, rows, colors, styles, handles)
            ax.set_xscale("log")
            _log_axis(ax.xaxis)
            if log and (rows["mean"] > 0).any():  # a log axis needs a positive value to show
                ax.set_yscale("log")
                _log_axis(ax.yaxis)
            else:
                ax.set_ylim(bottom=0)
            ax.set_xlabel("temperature τ (log)")
            ax.set_ylabel(metric_label)
        _legend_beside(fig, [handles[s] for s in sorted(handles)])
        figures.append((tasks, fig))
    return figures


def training_figures(bands, label: str, palette, log: bool) -> list:
    """``label`` per step, a panel per training task: mean over seeds with its 95% t interval as a band; the seed
    count in the legend where it differs between lines."""
    rows = bands.dropna(subset=["mean"])
    counts = rows.groupby("label")["n"].max()
    mixed = counts.nunique() > 1
    variants = rows.drop_duplicates("label").groupby("estimator_name")["label"].apply(sorted).to_dict()
    by_task = dict(tuple(rows.groupby("task", sort=False)))
    figures = []
    for tasks in panel_chunks(list(by_task), _family):
        fig, axes = _panels(len(tasks), 3.0)
        handles = {}
        for ax, task in zip(axes, tasks):
            panel = by_task[task]
            for name, group in panel.groupby("label"):
                family = variants[group["estimator_name"].iloc[0]]
                text = f"{name} (n={counts[name]})" if mixed else name
                line, = ax.plot(group["step"], group["mean"], color=palette[name], linewidth=1.1,
                                linestyle=LINESTYLES[family.index(name) % len(LINESTYLES)], label=text)
                ax.fill_between(group["step"], group["low"], group["high"], color=palette[name], alpha=0.15,
                                linewidth=0)
                handles.setdefault(text, line)
            if log and (panel["mean"] > 0).all() and (panel["low"].dropna() > 0).all():
                ax.set_yscale("log")
            _title(ax, task)
            ax.set_xlabel("step")
            ax.set_ylabel(label)
        _legend_beside(fig, [handles[k] for k in sorted(handles)])
        figures.append((tasks, fig))
    return figures


def kernel_figure(frame, name: str):
    import seaborn as sns

    metric = "GB/s" if "GB/s" in set(frame["metric"]) else frame["metric"].iloc[0]
    value = "median" if "median" in frame.columns else "value"
    rows = frame[frame["metric"] == metric]
    grid = sns.relplot(data=rows, x="x", y=value, hue="provider", col="mode" if "mode" in rows else None,
                       kind="line", marker="o", height=3.2, aspect=1.0)
    grid.figure.set_size_inches(min(WIDTH_IN, grid.figure.get_size_inches()[0]), 3.4)
    grid.figure.suptitle(f"kernel profile: {metric} ({name})", y=1.03)
    return grid.figure


def finite_rows(rows):
    """(the rows with non-finite values blanked to NaN, a caption note counting them: '' when there are none).
    Figures draw finite values only; the tables keep every value."""
    import numpy as np

    values = rows["value"].to_numpy(dtype=float)
    finite = np.isfinite(values)
    dropped = int((~finite & ~np.isnan(values)).sum())
    note = f" {dropped:,} infinite value{'s' if dropped > 1 else ''} not drawn." if dropped else ""
    return (rows.assign(value=np.where(finite, values, np.nan)) if dropped else rows), note


def _count(n) -> str:
    """'3' or '2-3': the replicate counts of the points in a figure."""
    low, high = int(n.min()), int(n.max())
    return f"{low}" if low == high else f"{low}–{high}"


def _named(base: str, caption: str, figures) -> list:
    """(name, caption, figure) per part: ``base`` alone, or ``base-1``, ``base-2``, ... with 'Part i of k: tasks'."""
    if len(figures) == 1:
        return [(base, caption, figures[0][1])]
    return [(f"{base}-{i}", f"Part {i} of {len(figures)} ({', '.join(dict.fromkeys(map(_family, tasks)))}). "
             + caption, fig) for i, (tasks, fig) in enumerate(figures, 1)]


def _gradient_figures(grad, compared, palette, note: str) -> list:
    wide = wide_gradstats(grad)
    points = bias_variance_points(wide, compared)
    out = _named("bias-variance", BIAS_VARIANCE.format(n=_count(points["n_bias"])) + note,
                 bias_variance_figures(points, palette))
    colors = {}
    for series, group in wide.groupby("series"):
        labels = sorted(group["label"].unique())
        colors[series] = palette[labels[len(labels) // 2]]  # the family's middle shade
    for what, metric, log in (
        ("Relative bias ‖E[x]−e‖/‖e‖ of the mean estimate", "relative_bias", False),
        ("Total variance tr(Σ) of one estimate (log scale)", "total_variance", True),
    ):
        rows = temperature_points(wide, metric, log)
        if rows.empty:
            continue
        centre = "geometric mean, interval of the mean log10 variance" if log else "mean"
        caption = TEMPERATURE.format(what=what, n=_count(rows["n"]), centre=centre) + note
        out += _named(metric.replace("_", "-"), caption,
                      temperature_figures(rows, metric.replace("_", " "), colors, log=log))
    return out


def figure_objects(grad, training, compared, kernel=None) -> list:
    """(name, caption, matplotlib Figure) of every figure the rows allow (see the module docstring)."""
    import pandas as pd

    figures = []
    both = pd.concat([grad, training])[["label", "estimator_name", "tau"]]
    grad, grad_note = finite_rows(grad)
    training, training_note = finite_rows(training)
    palette = family_palette(both) if not both.empty else {}
    if not grad.empty:
        figures += _gradient_figures(grad, compared, palette, grad_note)
    if not training.empty:
        training = training.assign(task=training["task"].map(
            {t: short_task("training", t) for t in training["task"].unique()}))
    for metric, label, caption, log in (  # both positive: geometric means, intervals of the mean log (module doc)
        ("loss", "training loss", LOSS, True),
        ("eval_code_perplexity", "eval code perplexity", PERPLEXITY, False),
    ):
        bands = training_bands(training, metric, log=True) if not training.empty else None
        if bands is None or bands["mean"].isna().all():
            continue
        text = caption.format(n=_count(bands["n"])) + training_note
        figures += _named(f"training-{metric.replace('_', '-')}", text, training_figures(bands, label, palette, log))
    if kernel is not None:
        frame, name = kernel
        caption = "Kernel throughput by provider (higher is better)."
        figures.append(("kernel-profile", caption, kernel_figure(frame, name)))
    return figures


def draw_figures(grad, training, compared, kernel=None) -> list[tuple[str, str, bytes]]:
    """(name, caption, PNG bytes) of every figure the rows allow (see :func:`figure_objects`)."""
    return [(name, caption, _png(fig)) for name, caption, fig in figure_objects(grad, training, compared, kernel)]


BIAS_VARIANCE = (
    "Bias against variance, per task: each point is one estimator, its bias relative to the exact gradient's norm "
    "(mean over n = {n} problem instances, those whose exact gradient vanishes left out; vertical bar: 95% t "
    "interval) against the total variance of one gradient estimate (log axis: geometric mean over the instances, "
    "horizontal bar: 95% t interval of the mean log10 variance, taken back; zero variance on every instance sits on "
    "the left edge). Lower left is better. The black steps join the Pareto front of the means (no other healthy "
    "estimator has both less variance and less bias), named in the panel title from left to right; ✕ marks "
    "degenerate results; points beyond an axis sit on its edge. Colour: family; shade: variant, darker at higher "
    "temperature."
)
TEMPERATURE = (
    "{what} against the temperature, per task in which one estimator is run at several temperatures; lower is better. "
    "Points: {centre} over n = {n} problem instances, bars: 95% t interval; estimators without a temperature are "
    "dashed levels across the plot, their interval a band."
)
LOSS = ("Training loss per step, per task; lower is better (tasks differ in their loss, so compare within a panel). "
        "Line: mean over n = {n} seeds (geometric mean on a log axis), band: 95% t interval of the mean at each step "
        "(of the mean log loss on a log axis).")
PERPLEXITY = ("Evaluation code perplexity per step (exp of the entropy of hard code usage, summed over groups): "
              "higher means more codes in use, up to the codebook size; at most 2 in a group is collapse. Line: "
              "geometric mean over n = {n} seeds, band: 95% t interval of the mean log perplexity at each step, taken "
              "back (so that it stays positive).")
